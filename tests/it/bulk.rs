//! Bulk actions (`POST /workers/bulk`): by filter and by ids, previews that only count, the
//! compare-and-set that leaves jobs that moved on alone, deletion with logs, roles, CSRF, the
//! audit entry with its count, bad input named, and the list page's bar in a real browser.

use nightshift::{JobStatus, Role};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::app::{
    ADMIN_PASSWORD, TestApp, csrf_in, signed_in, spawn_app, spawn_app_on, spawn_app_with_drain,
    text_of,
};
use crate::chromium::{self, ONE_AT_A_TIME, click, until};
use crate::helpers::{both_databases, finished, wait_for};

/// A queue no node of the test app serves: jobs put on it wait.
const HELD: &str = "held";

/// Creates a job of `kind` on `queue` and returns its id.
async fn create_on(app: &TestApp, kind: &str, args: Value, queue: &str) -> i64 {
    let (status, body) = app
        .post_json(
            "/workers",
            &json!({"job": kind, "args": args, "queue": queue}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

async fn status_of(app: &TestApp, id: i64) -> JobStatus {
    app.worker.job(id).await.unwrap().status
}

/// `POST /workers/bulk` with `req` as JSON, by the test app's admin token.
async fn bulk(app: &TestApp, req: &Value) -> (u16, Value) {
    app.post_json("/workers/bulk", req).await
}

/// The audit entries of `action`, newest first.
async fn audit(app: &TestApp, action: &str) -> Vec<nightshift::entity::audit::Model> {
    use nightshift::entity::audit;
    let mut rows = audit::Entity::find()
        .filter(audit::Column::Action.eq(action))
        .all(app.worker.store().connection())
        .await
        .unwrap();
    rows.reverse();
    rows
}

both_databases! {
    /// Cancel on a filter: the preview counts exactly the matching jobs, the action cancels
    /// them and nothing else, and one audit entry records it with its count.
    async fn a_filter_cancels_exactly_the_matching_jobs(db: TestDb) {
        let app = spawn_app_on(&db.url).await;
        let mut matching = Vec::new();
        for _ in 0..3 {
            matching.push(create_on(&app, "Work", json!({}), HELD).await);
        }
        // Same queue, another kind; same kind, another queue; a finished job of the filter's
        // kind and queue's neighbour.
        let other_kind = create_on(&app, "Fail", json!({}), HELD).await;
        let other_queue = create_on(&app, "Work", json!({}), "held-too").await;
        let done = app.create("Work", json!({})).await;
        finished(&app.worker, done).await;

        let filter = json!({"status": "all", "job": "Work", "queue": HELD});
        let (status, body) = bulk(&app, &json!({"action": "cancel", "filter": filter, "preview": true}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["count"], 3, "{body}");
        for id in &matching {
            assert_eq!(status_of(&app, *id).await, JobStatus::New, "a preview changes nothing");
        }
        assert!(audit(&app, "bulk_cancel").await.is_empty(), "a preview is not audited");

        let (status, body) = bulk(&app, &json!({"action": "cancel", "filter": filter}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["affected"], 3, "{body}");
        assert_eq!(body["skipped"], 0, "{body}");
        for id in &matching {
            assert_eq!(status_of(&app, *id).await, JobStatus::Cancelled);
        }
        assert_eq!(status_of(&app, other_kind).await, JobStatus::New);
        assert_eq!(status_of(&app, other_queue).await, JobStatus::New);
        assert_eq!(status_of(&app, done).await, JobStatus::Done);

        let entries = audit(&app, "bulk_cancel").await;
        assert_eq!(entries.len(), 1, "one entry per bulk action: {entries:?}");
        let detail = entries[0].detail.clone().unwrap_or_default();
        assert!(detail.starts_with("affected 3, skipped 0; filter "), "{detail}");
        assert!(detail.contains("queue=held"), "{detail}");
        assert_eq!(entries[0].actor, "admin");
        assert_eq!(entries[0].outcome, "ok");

        // Again: nothing left to cancel.
        let (_, body) = bulk(&app, &json!({"action": "cancel", "filter": filter}))
            .await;
        assert_eq!(body["affected"], 0, "{body}");
        app.worker.shutdown().await;
    }

    /// By ids: a job that finished before the action is left as it is (only waiting jobs are
    /// cancelled), a running one is aborted; delete takes finished jobs with their logs and
    /// never a running job.
    async fn ids_skip_finished_jobs_and_delete_takes_the_logs(db: TestDb) {
        let app = spawn_app_on(&db.url).await;
        let done = app.create("Work", json!({"lines": 3})).await;
        finished(&app.worker, done).await;
        assert_eq!(app.worker.logs(done, 100).await.unwrap().len(), 3);
        let waiting = create_on(&app, "Work", json!({}), HELD).await;
        let running = app.create("Work", json!({"ms": 60_000})).await;
        wait_for(&app.worker, running, "running", |j| j.status == JobStatus::Running).await;

        let ids = json!([done, waiting, running]);
        let (status, body) = bulk(&app, &json!({"action": "cancel", "ids": ids, "preview": true}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["count"], 2, "the waiting and the running job: {body}");
        let (status, body) = bulk(&app, &json!({"action": "cancel", "ids": ids}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["affected"], 2, "{body}");
        assert_eq!(status_of(&app, done).await, JobStatus::Done, "finished: left alone");
        assert_eq!(status_of(&app, waiting).await, JobStatus::Cancelled);
        let killed = finished(&app.worker, running).await;
        assert_eq!(killed.status, JobStatus::Killed, "the running job was aborted");

        // Delete: the finished ones go, with their logs; one still running stays.
        let busy = app.create("Work", json!({"ms": 60_000})).await;
        wait_for(&app.worker, busy, "running", |j| j.status == JobStatus::Running).await;
        let (status, body) = bulk(&app, &json!({"action": "delete", "ids": [done, waiting, running, busy]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["affected"], 3, "{body}");
        for id in [done, waiting, running] {
            let (status, _) = app.get_json(&format!("/workers/{id}")).await;
            assert_eq!(status, 404, "job {id} is gone");
            assert!(app.worker.logs(id, 100).await.unwrap().is_empty(), "its log too");
            assert!(app.worker.attempts(id).await.unwrap().is_empty(), "its attempts too");
        }
        assert_eq!(status_of(&app, busy).await, JobStatus::Running, "never a running job");
        app.worker.abort(busy, "test").await.unwrap();
        app.worker.shutdown().await;
    }

    /// Retry runs failed jobs again (new jobs) and makes a waiting retry due now; rerun copies
    /// finished jobs of any outcome.
    async fn retry_and_rerun_add_new_jobs(db: TestDb) {
        let app = spawn_app_on(&db.url).await;
        let failed = app.create("Fail", json!({})).await;
        let ok = app.create("Work", json!({})).await;
        assert_eq!(finished(&app.worker, failed).await.status, JobStatus::Exception);
        finished(&app.worker, ok).await;

        let (status, body) = bulk(&app, &json!({"action": "retry", "filter": {"status": "all"}, "preview": true}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["count"], 1, "only the failed job: {body}");
        let (_, body) = bulk(&app, &json!({"action": "retry", "filter": {"status": "errors"}}))
            .await;
        assert_eq!(body["affected"], 1, "{body}");
        let (_, list) = app.get_json("/workers?status=all&job=Fail").await;
        let fails = list["jobs"].as_array().unwrap();
        assert_eq!(fails.len(), 2, "the failed job and its retry: {list}");
        assert_eq!(fails[0]["created_by"], "admin", "{list}");
        assert_eq!(status_of(&app, failed).await, JobStatus::Exception, "kept as it was");

        let (_, body) = bulk(&app, &json!({"action": "rerun", "ids": [ok]}))
            .await;
        assert_eq!(body["affected"], 1, "{body}");
        let (_, list) = app.get_json("/workers?status=all&job=Work").await;
        assert_eq!(list["jobs"].as_array().unwrap().len(), 2, "{list}");
        app.worker.shutdown().await;
    }
}

/// A job waiting out its retry's backoff runs now on "retry".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_makes_a_waiting_retry_due_now() {
    let app = spawn_app().await;
    let id = app.create("Work", json!({"fail_times": 1})).await;
    // Its first attempt fails; it waits 50 ms: push the wait an hour out.
    wait_for(&app.worker, id, "waiting for a retry", |j| {
        j.attempt == 1 && j.error.is_some() && j.status.is_waiting() || j.status.is_finished()
    })
    .await;
    app.worker.shutdown().await;
    use nightshift::entity::job;
    let later = nightshift::clock::now_ms() + 3_600_000;
    job::Entity::update_many()
        .col_expr(
            job::Column::Status,
            sea_orm::sea_query::Expr::value("scheduled"),
        )
        .col_expr(job::Column::RunAt, sea_orm::sea_query::Expr::value(later))
        .filter(job::Column::Id.eq(id))
        .exec(app.worker.store().connection())
        .await
        .unwrap();
    let (_, body) = bulk(&app, &json!({"action": "retry", "ids": [id]})).await;
    assert_eq!(body["affected"], 1, "{body}");
    let job = app.worker.job(id).await.unwrap();
    assert_eq!(job.status, JobStatus::New, "{job:?}");
    assert!(job.run_at <= chrono::Utc::now(), "due now: {job:?}");
    assert_eq!(job.attempt, 1, "its attempts so far count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_viewers_and_forms_without_csrf_are_refused() {
    let app = spawn_app().await;
    let id = create_on(&app, "Work", json!({}), HELD).await;
    for (body, field) in [
        (json!({"action": "explode", "ids": [id]}), "action"),
        (json!({"action": "cancel"}), "ids"),
        (json!({"action": "cancel", "ids": []}), "ids"),
        (
            json!({"action": "cancel", "ids": [id], "filter": {}}),
            "ids",
        ),
        (
            json!({"action": "cancel", "filter": {"status": "sideways"}}),
            "filter.status",
        ),
        (
            json!({"action": "cancel", "filter": {"colour": "red"}}),
            "filter.colour",
        ),
    ] {
        let (status, res) = bulk(&app, &body).await;
        assert_eq!(status, 422, "{body} -> {res}");
        assert!(
            res["fields"][field].is_string(),
            "{body} names {field}: {res}"
        );
    }

    let accounts = nightshift::auth::Accounts::new(app.worker.store().connection().clone());
    accounts
        .add("vera", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    let viewer = signed_in(&app, "vera", "viewer-password", "/workers").await;
    let page = text_of(&viewer, app.url("/workers?status=all")).await;
    assert!(
        !page.contains(r#"id="bulk""#),
        "no bar for a viewer: {page}"
    );
    let token = csrf_in(&page);
    let res = viewer
        .post(app.url("/workers/bulk"))
        .form(&[
            ("_csrf", token.as_str()),
            ("action", "cancel"),
            ("ids", &id.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);

    let admin = signed_in(&app, "admin", ADMIN_PASSWORD, "/workers").await;
    let res = admin
        .post(app.url("/workers/bulk"))
        .form(&[("action", "cancel"), ("ids", &id.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403, "no CSRF token");
    assert_eq!(status_of(&app, id).await, JobStatus::New);
    app.worker.shutdown().await;
}

/// The browser's path without JavaScript: the list's bar, the confirmation page, the flash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_bar_previews_confirms_and_flashes() {
    let app = spawn_app().await;
    let a = create_on(&app, "Work", json!({}), HELD).await;
    let b = create_on(&app, "Work", json!({}), HELD).await;
    let c = create_on(&app, "Work", json!({}), HELD).await;
    let browser = signed_in(&app, "admin", ADMIN_PASSWORD, "/workers").await;
    let page = text_of(&browser, app.url("/workers?status=new")).await;
    assert!(page.contains(r#"<form id="bulk""#), "{page}");
    assert!(page.contains("All 3 jobs matching this filter"), "{page}");
    assert!(page.contains(r#"value="cancel""#), "{page}");
    assert!(
        !page.contains(r#"value="rerun""#),
        "no rerun of waiting jobs: {page}"
    );
    let token = csrf_in(&page);
    let (a_s, b_s) = (a.to_string(), b.to_string());
    let confirm = browser
        .post(app.url("/workers/bulk"))
        .form(&[
            ("_csrf", token.as_str()),
            ("preview", "1"),
            ("status", "new"),
            ("action", "cancel"),
            ("ids", a_s.as_str()),
            ("ids", b_s.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status().as_u16(), 200);
    let confirm = confirm.text().await.unwrap();
    assert!(confirm.contains("<h1>Cancel 2 jobs?</h1>"), "{confirm}");
    assert_eq!(
        status_of(&app, a).await,
        JobStatus::New,
        "not before confirming"
    );
    let res = browser
        .post(app.url("/workers/bulk"))
        .form(&[
            ("_csrf", token.as_str()),
            ("action", "cancel"),
            ("ids", a_s.as_str()),
            ("ids", b_s.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let to = res.headers()["location"].to_str().unwrap().to_owned();
    let page = text_of(&browser, app.url(&to)).await;
    assert!(page.contains("Cancelled 2 jobs."), "{page}");
    assert_eq!(status_of(&app, a).await, JobStatus::Cancelled);
    assert_eq!(status_of(&app, b).await, JobStatus::Cancelled);
    assert_eq!(status_of(&app, c).await, JobStatus::New);
    app.worker.shutdown().await;
}

/// In Chromium, at phone width: tick two rows, choose Cancel, confirm; the flash says so and
/// the rows show the jobs cancelled; the page never scrolls sideways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_rows_confirm_and_see_them_cancelled_in_a_browser() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = chromium::open("390,900", &[]).await else {
        return;
    };
    let app = spawn_app().await;
    let a = create_on(&app, "Work", json!({}), HELD).await;
    let kept = create_on(&app, "Work", json!({}), HELD).await;
    let z = create_on(&app, "Work", json!({}), HELD).await;
    let c = &b.client;
    chromium::log_in_to(c, &app, "/workers?status=new", "the bulk bar", "#bulk").await;
    let wide = "document.documentElement.scrollWidth > document.documentElement.clientWidth";
    assert_eq!(
        c.execute(&format!("return {wide};"), vec![]).await.unwrap(),
        json!(false),
        "no sideways scroll at 390 px"
    );
    for id in [a, z] {
        // The checkbox column may sit beyond the table's own scroll box: tick it by script.
        c.execute(
            &format!("document.querySelector('input[name=ids][value=\"{id}\"]').click();"),
            vec![],
        )
        .await
        .unwrap();
    }
    click(c, "#bulk button[value=cancel]").await;
    until(
        c,
        "the confirmation",
        "document.querySelector('.bulk-confirm h1')",
    )
    .await;
    let title = c
        .execute(
            "return document.querySelector('.bulk-confirm h1').textContent;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(title, json!("Cancel 2 jobs?"));
    click(c, ".bulk-confirm button[type=submit]").await;
    until(
        c,
        "the flash",
        "document.querySelector('.flash') && document.querySelector('.flash').textContent.includes('Cancelled 2 jobs.')",
    )
    .await;
    // Back on the Waiting list: the cancelled rows are gone, the other stays.
    until(
        c,
        "the rows to change",
        &format!("!document.getElementById('job-{a}') && !document.getElementById('job-{z}') && document.getElementById('job-{kept}')"),
    )
    .await;
    assert_eq!(status_of(&app, a).await, JobStatus::Cancelled);
    assert_eq!(status_of(&app, z).await, JobStatus::Cancelled);
    assert_eq!(status_of(&app, kept).await, JobStatus::New);
    // The header's box ticks every row of the page.
    c.execute(
        "document.querySelector('input[data-select-page]').click();",
        vec![],
    )
    .await
    .unwrap();
    until(
        c,
        "every row ticked",
        "[...document.querySelectorAll('input[name=ids]')].every(b => b.checked)",
    )
    .await;
    app.worker.shutdown().await;
}

/// An operator's bulk action leaves alone the jobs of a kind that needs the admin role: the
/// preview counts them apart (`denied`), the action skips them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_kind_above_the_operators_role_are_skipped() {
    let app = spawn_app().await;
    app.worker
        .register(
            nightshift::JobKind::new("Drop Tables", |_: nightshift::demo::NoArgs, _| async {
                Ok(())
            })
            .role(Role::Admin),
        )
        .unwrap();
    let guarded = create_on(&app, "Drop Tables", json!({}), HELD).await;
    let a = create_on(&app, "Work", json!({}), HELD).await;
    let b = create_on(&app, "Work", json!({}), HELD).await;
    let accounts = nightshift::auth::Accounts::new(app.worker.store().connection().clone());
    accounts
        .add("otto", "operator-password", Role::Operator)
        .await
        .unwrap();
    let (token, _) = accounts.create_token("otto", "x").await.unwrap();
    let as_otto = |body: Value| {
        app.anonymous
            .post(app.url("/workers/bulk"))
            .header("Authorization", format!("Bearer {token}"))
            .header("Accept", "application/json")
            .json(&body)
            .send()
    };
    let filter = json!({"status": "new", "queue": HELD});
    let res = as_otto(json!({"action": "cancel", "filter": filter, "preview": true}))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({"count": 2, "denied": 1}));
    let res = as_otto(json!({"action": "cancel", "filter": filter}))
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({"affected": 2, "skipped": 1}));
    assert_eq!(status_of(&app, guarded).await, JobStatus::New);
    assert_eq!(status_of(&app, a).await, JobStatus::Cancelled);
    assert_eq!(status_of(&app, b).await, JobStatus::Cancelled);
    let entries = audit(&app, "bulk_cancel").await;
    assert_eq!(entries[0].actor, "otto");
    assert!(
        entries[0]
            .detail
            .as_deref()
            .unwrap_or_default()
            .starts_with("affected 2, skipped 1;"),
        "{entries:?}"
    );
    app.worker.shutdown().await;
}

/// Jobs on the held queue for a long bulk action.
const LONG: u64 = 20_000;

/// Puts [`LONG`] jobs on the held queue, asks to cancel them all, and hangs up after 20 ms (a
/// closed tab, a proxy's timeout): the action has hardly begun.
async fn cancel_many_and_hang_up(app: &TestApp) {
    for _ in 0..LONG / 1_000 {
        let batch = (0..1_000)
            .map(|_| nightshift::NewJob::from_value("Work", json!({})).queue(HELD))
            .collect();
        app.worker.insert_many(batch).await.unwrap();
    }
    let filter = json!({"status": "all", "job": "Work", "queue": HELD});
    let gone = app
        .client
        .post(app.url("/workers/bulk"))
        .json(&json!({"action": "cancel", "filter": filter}))
        .timeout(std::time::Duration::from_millis(20))
        .send()
        .await;
    assert!(gone.is_err(), "the action took less than 20 ms: {gone:?}");
}

/// Checks that the one `bulk_cancel` entry says all [`LONG`] jobs were cancelled.
fn says_all_cancelled(entries: &[nightshift::entity::audit::Model]) {
    assert_eq!(entries.len(), 1, "one entry: {entries:?}");
    let detail = entries[0].detail.clone().unwrap_or_default();
    assert!(
        detail.starts_with(&format!("affected {LONG}, skipped 0; filter ")),
        "{detail}"
    );
    assert_eq!(entries[0].outcome, "ok");
}

/// A long action whose requester goes away still runs to its end, and its audit entry is
/// written all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_whose_request_goes_away_still_ends_and_is_audited() {
    let app = spawn_app().await;
    cancel_many_and_hang_up(&app).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let entries = loop {
        let entries = audit(&app, "bulk_cancel").await;
        if !entries.is_empty() {
            break entries;
        }
        assert!(std::time::Instant::now() < deadline, "no audit entry");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    says_all_cancelled(&entries);
    let filter = json!({"status": "all", "job": "Work", "queue": HELD});
    let (_, body) = bulk(
        &app,
        &json!({"action": "cancel", "filter": filter, "preview": true}),
    )
    .await;
    assert_eq!(body["count"], 0, "every job was cancelled: {body}");
    app.worker.shutdown().await;
}

/// Shutting the worker down waits for a change an operator asked for (here a long bulk action
/// whose request has gone): it ends, and is audited, before shutdown returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_an_action_in_progress() {
    let app = spawn_app_with_drain(std::time::Duration::from_secs(30)).await;
    cancel_many_and_hang_up(&app).await;
    app.worker.shutdown().await;
    says_all_cancelled(&audit(&app, "bulk_cancel").await);
}
