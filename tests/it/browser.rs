//! The admin in a real headless Chromium (Debian's `chromium` and `chromium-driver`), driven over
//! WebDriver: forms, live updates without reloads, abort, reschedule, cancel, a prefix mount.
//!
//! Without a `chromedriver` on the PATH these tests say so and pass, unless
//! `NIGHTSHIFT_REQUIRE_BROWSER=1` (set by `.ci/run`), where a missing browser fails them.
use std::time::Duration;

use fantoccini::{Client, Locator};
use nightshift::JobStatus;
use serde_json::json;

use crate::app::{TestApp, spawn_app, spawn_app_at};
use crate::chromium::{self, Browser, ONE_AT_A_TIME, click, log_in, until};
use crate::helpers::{finished, wait_for};

/// The browser of these tests.
async fn browser() -> Option<Browser> {
    chromium::open("1280,1000", &[]).await
}

async fn text(c: &Client, js: &str) -> String {
    c.execute(&format!("return String({js});"), vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn accept_confirm(c: &Client) {
    for _ in 0..50 {
        if c.accept_alert().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no confirm dialog appeared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_a_job_from_the_form_and_watch_it_live_to_the_end() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let app = spawn_app().await;
    let c = &b.client;
    log_in(c, &app).await;
    c.goto(&app.url("/workers/new")).await.unwrap();
    c.find(Locator::LinkText("Send Newsletter"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "the generated form",
        "document.querySelector('input[name=subject]')",
    )
    .await;
    // The form follows the argument type: text, textarea, password, Schedule Time with a zone.
    assert_eq!(
        text(c, "document.querySelector('[name=content]').tagName").await,
        "TEXTAREA"
    );
    assert_eq!(
        text(c, "document.querySelector('[name=send_password]').type").await,
        "password"
    );
    assert!(
        !text(c, "document.querySelector('[data-zone]').textContent")
            .await
            .is_empty()
    );
    // Submitting it empty re-renders with the messages beside the fields.
    click(c, "form.job-form button[type=submit]").await;
    until(c, "field errors", "document.querySelector('.field-error')").await;
    assert!(
        text(c, "document.body.innerText")
            .await
            .contains("Subject is required")
    );

    c.find(Locator::Css("[name=subject]"))
        .await
        .unwrap()
        .send_keys("Winter <sale>")
        .await
        .unwrap();
    c.find(Locator::Css("[name=content]"))
        .await
        .unwrap()
        .send_keys("Hello")
        .await
        .unwrap();
    c.find(Locator::Css("[name=send_password]"))
        .await
        .unwrap()
        .send_keys("hunter2")
        .await
        .unwrap();
    click(c, "form.job-form button[type=submit]").await;
    until(c, "the job page", "document.querySelector('#job-log')").await;
    assert!(
        text(c, "document.querySelector('.flash').textContent")
            .await
            .contains("created")
    );
    // From here on, nothing reloads: a marker on the window survives only without navigation.
    c.execute("window.__stay = 42;", vec![]).await.unwrap();
    until(
        c,
        "log lines arriving",
        "document.querySelectorAll('#job-log .line').length > 10",
    )
    .await;
    until(
        c,
        "progress moving",
        "Number(document.querySelector('#job-progress progress').value) > 10",
    )
    .await;
    until(
        c,
        "the end",
        "document.querySelector('#job-status .badge-done')",
    )
    .await;
    // The status and the bar are swapped by separate frames of one event: wait for both.
    until(
        c,
        "the bar at 100 %",
        "document.querySelector('#job-progress progress').value == 100",
    )
    .await;
    assert_eq!(
        c.execute("return window.__stay;", vec![]).await.unwrap(),
        json!(42)
    );
    let log = text(c, "document.querySelector('#job-log').innerText").await;
    assert!(log.contains("Sending newsletter 100..."), "{log}");
    assert!(log.contains("Finished send newsletters"));
    assert!(!text(c, "document.body.innerHTML").await.contains("hunter2"));
    assert!(
        text(c, "document.body.innerText")
            .await
            .contains("Winter <sale>")
    );
    b.client.clone().close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_a_running_job_after_confirming() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let app = spawn_app().await;
    let c = &b.client;
    log_in(c, &app).await;
    let id = app.create("Work", json!({"lines": 3, "ms": 60_000})).await;
    wait_for(&app.worker, id, "running", |j| {
        j.status == JobStatus::Running
    })
    .await;
    c.goto(&app.url(&format!("/workers/{id}"))).await.unwrap();
    until(
        c,
        "the abort button",
        "document.querySelector('#job-status button.danger')",
    )
    .await;
    // Declining the confirmation does nothing.
    click(c, "#job-status button.danger").await;
    for _ in 0..50 {
        if c.dismiss_alert().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.worker.job(id).await.unwrap().status, JobStatus::Running);
    click(c, "#job-status button.danger").await;
    accept_confirm(c).await;
    until(
        c,
        "killed",
        "document.querySelector('#job-status .badge-killed')",
    )
    .await;
    let job = finished(&app.worker, id).await;
    assert_eq!(job.status, JobStatus::Killed);
    assert!(
        text(c, "document.querySelector('#job-log').innerText")
            .await
            .contains("Aborted by admin")
    );
    b.client.clone().close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reschedule_a_scheduled_job_then_cancel_another() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let app = spawn_app().await;
    let c = &b.client;
    log_in(c, &app).await;
    let args = json!({"subject": "Later", "content": "c", "send_password": "p"});
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    let id = app
        .worker
        .schedule_dynamic("Send Newsletter", &args, later)
        .await
        .unwrap();
    c.goto(&app.url(&format!("/workers/{id}"))).await.unwrap();
    until(
        c,
        "the update form",
        "document.querySelector('#update input[name=schedule_at]')",
    )
    .await;
    // The prefilled time is shown in the browser's zone and means the stored instant.
    let shown = text(
        c,
        "new Date(document.querySelector('#update input[name=schedule_at]').value).getTime()",
    )
    .await;
    assert_eq!(shown.parse::<i64>().unwrap() / 1000, later.timestamp());
    // Move it to two seconds from now, in local time as an operator would type it.
    c.execute(
        "const d = new Date(Date.now() + 2000); const p = n => String(n).padStart(2, '0');
         document.querySelector('#update input[name=schedule_at]').value =
           d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' +
           p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());",
        vec![],
    )
    .await
    .unwrap();
    click(c, "#update button[type=submit]").await;
    until(c, "the flash", "document.querySelector('.flash') && document.querySelector('.flash').textContent.includes('updated')").await;
    let job = app.worker.job(id).await.unwrap();
    let moved = job.schedule_at.unwrap();
    assert!(
        moved < later - chrono::Duration::minutes(90),
        "moved to {moved}"
    );
    until(
        c,
        "it starts by itself",
        "document.querySelector('#job-status .badge-running')",
    )
    .await;
    assert!(job.args["send_password"] == "••••••");
    assert!(
        app.worker
            .store()
            .job(id)
            .await
            .unwrap()
            .args
            .contains("\"p\""),
        "secret kept"
    );

    let other = app
        .worker
        .schedule_dynamic("Send Newsletter", &args, later)
        .await
        .unwrap();
    c.goto(&app.url(&format!("/workers/{other}")))
        .await
        .unwrap();
    until(
        c,
        "the cancel button",
        "document.querySelector('#job-status button.danger')",
    )
    .await;
    click(c, "#job-status button.danger").await;
    accept_confirm(c).await;
    until(
        c,
        "cancelled",
        "document.querySelector('#job-status .badge-cancelled')",
    )
    .await;
    assert_eq!(
        app.worker.job(other).await.unwrap().status,
        JobStatus::Cancelled
    );

    // Log out; Back must not show the job page again from the browser's cache.
    click(c, "form[action$='/logout'] button").await;
    until(
        c,
        "the login page",
        "document.querySelector('input[name=password]')",
    )
    .await;
    c.back().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    until(
        c,
        "the login page again, not the job page from the cache",
        "document.querySelector('input[name=password]') && !document.querySelector('#job-status')",
    )
    .await;
    b.client.clone().close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_prefix_the_assets_load_and_the_running_view_updates_live() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let app: TestApp = spawn_app_at("/admin/jobs").await;
    let c = &b.client;
    log_in(c, &app).await;
    c.goto(&app.url("/workers?status=running")).await.unwrap();
    until(
        c,
        "htmx loaded from the prefix",
        "window.htmx && htmx.version",
    )
    .await;
    until(
        c,
        "the list stream open",
        "document.querySelector('.shell[sse-connect]')",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.execute("window.__stay = 1;", vec![]).await.unwrap();
    // A job starts: its row appears in the Running view and moves, without a reload.
    let id = app
        .create(
            "Send Newsletter",
            json!({"subject": "s", "content": "c", "send_password": "p"}),
        )
        .await;
    until(
        c,
        "the new row",
        &format!("document.querySelector('#job-{id}')"),
    )
    .await;
    until(
        c,
        "its progress moving",
        &format!("Number(document.querySelector('#job-{id} progress').value) > 5"),
    )
    .await;
    until(
        c,
        "the running count",
        "document.querySelector('nav.side a.active .count').textContent.trim() === '1'",
    )
    .await;
    assert_eq!(
        c.execute("return window.__stay;", vec![]).await.unwrap(),
        json!(1)
    );
    // Its link stays under the prefix and opens the detail page there.
    let href = text(
        c,
        &format!("document.querySelector('#job-{id} a').getAttribute('href')"),
    )
    .await;
    assert_eq!(href, format!("/admin/jobs/workers/{id}"));
    c.goto(&format!("{}{href}", app.addr)).await.unwrap();
    until(
        c,
        "live log under the prefix",
        "document.querySelectorAll('#job-log .line').length > 5",
    )
    .await;
    let shot = c.screenshot().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshot.png");
    std::fs::write(&path, shot).unwrap();
    b.client.clone().close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_page_refreshes_itself_and_links_to_running_jobs() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let app = spawn_app().await;
    let c = &b.client;
    log_in(c, &app).await;
    // From the navigation.
    click(c, "nav.side a[href='/nodes']").await;
    until(
        c,
        "the nodes table",
        "document.querySelector('#nodes table')",
    )
    .await;
    let node = app.worker.node_id().to_owned();
    assert!(text(c, "document.body.innerText").await.contains(&node));
    c.execute("window.sameDocument = true;", vec![])
        .await
        .unwrap();
    // A job starts on this node: the table shows it within a refresh, without a reload.
    let id = app.create("Work", json!({"ms": 30_000})).await;
    wait_for(&app.worker, id, "running", |j| {
        j.status == JobStatus::Running
    })
    .await;
    until(
        c,
        "a link to the running job",
        &format!("document.querySelector('#nodes a[href=\"/workers/{id}\"]')"),
    )
    .await;
    assert_eq!(text(c, "window.sameDocument").await, "true");
    click(c, &format!("#nodes a[href='/workers/{id}']")).await;
    until(c, "the job page", "document.querySelector('.detail')").await;
    app.worker.abort(id, "tests").await.unwrap();
}
