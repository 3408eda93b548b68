//! The admin for an operator's whole day: a retry shows as one (and runs now on request), list
//! streams drop rows whose jobs left the tab, counts stay live and agree with the jobs shown, and
//! the pager goes both ways.
use std::time::Duration;

use nightshift::{Backoff, JobContext, JobKind, JobStatus};
use serde_json::json;

use crate::app::{TestApp, spawn_app};
use crate::helpers::{Args, finished, wait_for};

/// One server-sent event: its name and data.
#[derive(Debug, Clone)]
pub(crate) struct Sse {
    pub event: String,
    pub data: String,
}

/// Reads `res` until `done` holds for the events so far; panics (naming `what`) after 20 s.
pub(crate) async fn read_events(
    res: &mut reqwest::Response,
    seen: &mut Vec<Sse>,
    what: &str,
    done: impl Fn(&[Sse]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut buf = String::new();
    while !done(seen) {
        let chunk = tokio::time::timeout_at(deadline, res.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {what} within 20 s; events: {seen:#?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended before {what}; events: {seen:#?}"));
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut ev = Sse {
                event: "message".into(),
                data: String::new(),
            };
            let mut data = Vec::new();
            let mut named = false;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    ev.event = v.trim().to_owned();
                    named = true;
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            if data.is_empty() && !named {
                continue; // a keep-alive comment
            }
            ev.data = data.join("\n");
            seen.push(ev);
        }
    }
}

/// Opens an event stream of the admin.
pub(crate) async fn stream(app: &TestApp, path: &str) -> reqwest::Response {
    let res = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200, "{path}");
    res
}

/// The text of the sidebar's count for `tab` on a page.
fn sidebar_count(html: &str, tab: &str) -> String {
    let marker = format!("sse-swap=\"count-{tab}\" aria-live=\"polite\">");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no count for {tab}: {html}"));
    let rest = &html[at + marker.len()..];
    rest[..rest.find('<').unwrap()].trim().to_owned()
}

/// The URL of the event stream a page's frame (and its sidebar) follows.
fn shell_stream(page: &str) -> String {
    let marker = "class=\"shell\" sse-connect=\"";
    let at = page
        .find(marker)
        .unwrap_or_else(|| panic!("the page has no live counts: {page}"))
        + marker.len();
    page[at..at + page[at..].find('"').unwrap()].replace("&amp;", "&")
}

/// The `href` of the link with class `class` on a page, unescaped.
fn link(html: &str, class: &str) -> Option<String> {
    let at = html.find(&format!("class=\"button {class}\""))?;
    let tag = &html[html[..at].rfind('<')?..];
    let tag = &tag[..tag.find('>')?];
    let href = &tag[tag.find("href=\"")? + 6..];
    Some(href[..href.find('"')?].replace("&amp;", "&"))
}

/// A kind whose first attempt fails and whose retry waits an hour (4 attempts).
fn register_retrying(app: &TestApp) {
    app.worker
        .register(
            JobKind::new("Retrying", |_: Args, ctx: JobContext| async move {
                if ctx.attempt() == 1 {
                    anyhow::bail!("the upstream timed out");
                }
                ctx.log("second time lucky").await?;
                Ok(())
            })
            .max_attempts(4)
            .backoff(Backoff::exponential(
                Duration::from_secs(3600),
                Duration::from_secs(3600),
            )),
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_for_its_retry_shows_as_one_and_retry_now_runs_it() {
    let app = spawn_app().await;
    register_retrying(&app);
    let id = app.create("Retrying", json!({"lines": 7})).await;
    let job = wait_for(&app.worker, id, "waiting for its retry", |j| {
        j.status == JobStatus::Scheduled && j.attempt == 1
    })
    .await;
    assert!(job.error.as_deref().unwrap().contains("upstream timed out"));

    // JSON: an added field says so; the rest is as before.
    let (status, body) = app.get_json(&format!("/workers/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["retry"], true, "{body}");
    assert_eq!(body["status"], "scheduled");
    let (_, list) = app.get_json("/workers?status=scheduled").await;
    assert_eq!(list["jobs"][0]["id"], id);
    assert_eq!(list["jobs"][0]["retry"], true, "{list}");

    // The detail page: a retry, the next attempt and when, the last error; Retry now and
    // Cancel, no Update.
    let (status, page) = app.get_html(&format!("/workers/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("retry 2 of 4 in "), "{page}");
    assert!(page.contains("badge-retry"), "{page}");
    assert!(page.contains("the upstream timed out"), "{page}");
    assert!(page.contains("Retry now"), "{page}");
    assert!(page.contains(&format!("/workers/{id}/cancel")), "{page}");
    assert!(!page.contains("Update scheduled Job"), "{page}");
    assert!(!page.contains("id=\"update\""), "{page}");
    assert!(!page.contains("Scheduled for"), "{page}");
    // The list row too.
    let (_, list) = app.get_html("/workers?status=scheduled").await;
    let row = &list[list.find(&format!("id=\"job-{id}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("retry 2 of 4 in "), "{row}");
    assert!(row.contains("the upstream timed out"), "{row}");
    assert!(row.contains("next try"), "{row}");

    // Retry now (the update route, audited): it runs at once, with its arguments, as attempt 2.
    let mut scheduled = stream(&app, "/workers/events?status=scheduled").await;
    let res = app
        .post_form(
            &format!("/workers/{id}"),
            &[("_method", "PUT"), ("_retry", "now")],
        )
        .await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], format!("/workers/{id}"));
    let job = finished(&app.worker, id).await;
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    assert_eq!(job.attempt, 2);
    assert_eq!(job.args["lines"], 7, "the arguments are kept: {job:?}");
    // It left the Scheduled tab: its row there removes itself.
    let mut seen = Vec::new();
    read_events(&mut scheduled, &mut seen, "the row's removal", |s| {
        s.iter()
            .any(|e| e.event == format!("row-{id}") && e.data.contains("hx-swap-oob=\"delete\""))
    })
    .await;
    let (_, page) = app.get_html(&format!("/workers/{id}")).await;
    assert!(page.contains("update_job"), "the retry is audited: {page}");

    // Only a waiting job can be retried now.
    let res = app
        .client
        .put(app.url(&format!("/workers/{id}")))
        .header("Accept", "application/json")
        .form(&[("_retry", "now")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 409, "{}", res.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_tab_stream_removes_a_row_when_its_job_finishes() {
    let app = spawn_app().await;
    let mut running = stream(&app, "/workers/events?status=running").await;
    let id = app.create("Work", json!({"ms": 600})).await;
    let mut seen = Vec::new();
    read_events(&mut running, &mut seen, "the new row", |s| {
        s.iter()
            .any(|e| e.event == "new-row" && e.data.contains(&format!("id=\"job-{id}\"")))
    })
    .await;
    assert_eq!(finished(&app.worker, id).await.status, JobStatus::Done);
    let gone =
        |e: &Sse| e.event == format!("row-{id}") && e.data.contains("hx-swap-oob=\"delete\"");
    read_events(&mut running, &mut seen, "the row's removal", |s| {
        s.iter().any(gone)
    })
    .await;
    let removal = seen.iter().find(|e| gone(e)).unwrap();
    assert!(!removal.data.contains("badge-done"), "{removal:?}");
    assert!(
        removal.data.contains(&format!("id=\"job-{id}\"")),
        "{removal:?}"
    );
    // The page of all jobs keeps the row, showing it done.
    let mut all = stream(&app, "/workers/events?status=all").await;
    let id2 = app.create("Work", json!({"ms": 300})).await;
    assert_eq!(finished(&app.worker, id2).await.status, JobStatus::Done);
    let mut seen = Vec::new();
    read_events(&mut all, &mut seen, "the done row", |s| {
        s.iter()
            .any(|e| e.event == format!("row-{id2}") && e.data.contains("badge-done"))
    })
    .await;
    assert!(
        !seen.iter().any(|e| e.data.contains("hx-swap-oob")),
        "{seen:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidebar_counts_on_a_detail_page_reflect_a_running_job() {
    let app = spawn_app().await;
    // Counts read (and cached) before the job exists.
    let (_, before) = app.get_json("/workers").await;
    assert_eq!(before["counts"]["running"], 0);
    let id = app.create("Work", json!({"ms": 2500})).await;
    wait_for(&app.worker, id, "running", |j| {
        j.status == JobStatus::Running
    })
    .await;
    let (status, page) = app.get_html(&format!("/workers/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(sidebar_count(&page, "running"), "1", "{page}");
    assert_eq!(sidebar_count(&page, "all"), "1", "{page}");

    // The page keeps them live, on its one stream: the job's, carrying the counts too, and
    // staying open for them after the job's end.
    let url = shell_stream(&page);
    assert!(url.contains(&format!("/workers/{id}/events")), "{url}");
    let mut live = stream(&app, &url).await;
    let mut seen = Vec::new();
    read_events(&mut live, &mut seen, "the running count", |s| {
        s.iter()
            .any(|e| e.event == "count-running" && e.data == "1")
    })
    .await;
    assert!(seen.iter().any(|e| e.event == "status"), "{seen:#?}");
    assert_eq!(finished(&app.worker, id).await.status, JobStatus::Done);
    read_events(
        &mut live,
        &mut seen,
        "the end and the counts after it",
        |s| {
            s.iter().any(|e| e.event == "end")
                && s.iter().any(|e| e.event == "count-done" && e.data == "1")
        },
    )
    .await;
    // Still open after the job's end: a new job is counted there.
    let other = app.create("Ping", json!({})).await;
    read_events(&mut live, &mut seen, "the next job counted", |s| {
        s.iter().any(|e| e.event == "count-all" && e.data == "2")
    })
    .await;
    assert_eq!(finished(&app.worker, other).await.status, JobStatus::Done);
    assert!(
        !seen
            .iter()
            .any(|e| e.event.starts_with("row-") || e.event == "new-row"),
        "no list rows on a job page: {seen:#?}"
    );
    let end = seen.iter().position(|e| e.event == "end").unwrap();
    let last_running = seen.iter().rev().find(|e| e.event == "count-running");
    assert_eq!(last_running.unwrap().data, "0", "{seen:#?}");
    assert!(
        seen[end..].iter().any(|e| e.event.starts_with("count-")),
        "{seen:#?}"
    );

    // A finished job's page follows the counts alone.
    let (_, page) = app.get_html(&format!("/workers/{id}")).await;
    assert_eq!(sidebar_count(&page, "done"), "2", "{page}");
    let url = shell_stream(&page);
    assert_eq!(url, "/workers/events?only=counts");
    let mut counts = stream(&app, &url).await;
    let mut seen = Vec::new();
    read_events(&mut counts, &mut seen, "the counts", |s| {
        s.iter().any(|e| e.event == "count-errors")
    })
    .await;
    assert!(
        seen.iter().all(|e| e.event.starts_with("count-")),
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|e| e.event == "count-done" && e.data == "2"),
        "{seen:#?}"
    );
    let (status, _) = app.get_json("/workers/events?only=rows").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_keeps_the_sidebar_counts_live() {
    let app = spawn_app().await;
    for path in [
        "/dashboard",
        "/queues",
        "/nodes",
        "/recurring",
        "/workers/new",
        "/operators",
        "/audit",
    ] {
        let (status, page) = app.get_html(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            shell_stream(&page),
            "/workers/events?only=counts",
            "{path} keeps its counts live"
        );
    }
    // And the stream counts a job created while such a page is open.
    let mut counts = stream(&app, "/workers/events?only=counts").await;
    let mut seen = Vec::new();
    read_events(&mut counts, &mut seen, "the first counts", |s| {
        s.iter().any(|e| e.event == "count-all" && e.data == "0")
    })
    .await;
    let id = app.create("Ping", json!({})).await;
    read_events(&mut counts, &mut seen, "the new job counted", |s| {
        s.iter().any(|e| e.event == "count-all" && e.data == "1")
    })
    .await;
    assert_eq!(finished(&app.worker, id).await.status, JobStatus::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_counts_match_the_jobs_right_after_a_rerun() {
    let app = spawn_app().await;
    let id = app.create("Ping", json!({})).await;
    assert_eq!(finished(&app.worker, id).await.status, JobStatus::Done);
    let (_, body) = app.get_json("/workers").await;
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(body["counts"]["all"], 1, "{body}");
    let (status, rerun) = app
        .post_json(&format!("/workers/{id}/rerun"), &json!({}))
        .await;
    assert_eq!(status, 201, "{rerun}");
    let (_, body) = app.get_json("/workers").await;
    assert_eq!(body["jobs"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(body["counts"]["all"], 2, "{body}");
    // The HTML list agrees with itself too.
    let again = app
        .post_json(&format!("/workers/{id}/rerun"), &json!({}))
        .await;
    assert_eq!(again.0, 201);
    let (_, page) = app.get_html("/workers").await;
    assert_eq!(sidebar_count(&page, "all"), "3", "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pager_goes_both_ways_and_says_where_it_is() {
    let app = spawn_app().await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    for i in 0..110 {
        app.worker
            .schedule_dynamic("Work", &json!({"lines": i}), later)
            .await
            .unwrap();
    }
    let (_, p1) = app.get_json("/workers?status=scheduled").await;
    let n1 = p1["next"].as_i64().unwrap();
    let (_, p2) = app
        .get_json(&format!("/workers?status=scheduled&after={n1}"))
        .await;
    let n2 = p2["next"].as_i64().unwrap();

    let (_, page) = app.get_html("/workers?status=scheduled").await;
    assert!(page.contains("Jobs 1–50"), "{page}");
    assert_eq!(link(&page, "pager-newer"), None);
    assert_eq!(link(&page, "pager-first"), None);
    assert_eq!(
        link(&page, "pager-older").as_deref(),
        Some(format!("/workers?status=scheduled&after={n1}").as_str())
    );

    let (_, page) = app
        .get_html(&format!("/workers?status=scheduled&after={n1}"))
        .await;
    assert!(page.contains("Jobs 51–100"), "{page}");
    let first = "/workers?status=scheduled";
    assert_eq!(link(&page, "pager-newer").as_deref(), Some(first), "{page}");
    assert_eq!(link(&page, "pager-first").as_deref(), Some(first), "{page}");
    assert_eq!(
        link(&page, "pager-older").as_deref(),
        Some(format!("/workers?status=scheduled&after={n2}").as_str())
    );
    // An older page's live stream does not prepend new jobs.
    assert!(page.contains("first=0"), "{page}");

    let (_, page) = app
        .get_html(&format!("/workers?status=scheduled&after={n2}"))
        .await;
    assert!(page.contains("Jobs 101–110"), "{page}");
    assert_eq!(
        link(&page, "pager-newer").as_deref(),
        Some(format!("/workers?status=scheduled&after={n1}").as_str()),
        "{page}"
    );
    assert_eq!(link(&page, "pager-first").as_deref(), Some(first));
    assert_eq!(link(&page, "pager-older"), None);
    // The newer link leads to the page it came from.
    let (_, back) = app
        .get_json(&format!("/workers?status=scheduled&after={n1}"))
        .await;
    assert_eq!(back["jobs"], p2["jobs"]);

    // With a filter the links keep it.
    let (_, page) = app
        .get_html(&format!("/workers?status=scheduled&job=Work&after={n1}"))
        .await;
    assert_eq!(
        link(&page, "pager-first").as_deref(),
        Some("/workers?status=scheduled&job=Work")
    );
    assert!(page.contains("Jobs 51–100"), "{page}");
}

/// What a screen reader needs: help text tied to its field, a named progress bar, and live
/// regions where the page changes by itself (counts, a job's status and progress).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_progress_and_live_regions_are_announced() {
    let app = spawn_app().await;
    let (status, form) = app.get_html("/workers/new?job=Send%20Newsletter").await;
    assert_eq!(status, 200);
    let input = tag_with(&form, "id=\"f-subject\"");
    assert!(
        input.contains("aria-describedby=\"f-subject-help\""),
        "{input}"
    );
    assert!(
        form.contains("id=\"f-subject-help\">The newsletter's subject line."),
        "{form}"
    );
    let id = app.create("Ping", json!({})).await;
    assert_eq!(finished(&app.worker, id).await.status, JobStatus::Done);
    let (_, page) = app.get_html(&format!("/workers/{id}")).await;
    assert!(
        tag_with(&page, "<progress").contains("aria-label=\"Progress\""),
        "{page}"
    );
    for region in ["id=\"job-progress\"", "id=\"job-status\""] {
        assert!(
            tag_with(&page, region).contains("aria-live=\"polite\""),
            "{region}: {page}"
        );
    }
    assert!(
        tag_with(&page, "sse-swap=\"count-all\"").contains("aria-live=\"polite\""),
        "{page}"
    );
}

/// The whole start tag that contains `needle`.
fn tag_with(html: &str, needle: &str) -> String {
    let at = html
        .find(needle)
        .unwrap_or_else(|| panic!("no {needle} in {html}"));
    let start = html[..at].rfind('<').unwrap();
    let end = at + html[at..].find('>').unwrap();
    html[start..=end].to_owned()
}

/// A kind that names its result columns gets a real header (`<thead>`), and its rows are data
/// only: the demo import no longer adds its header as a first row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_result_columns_are_the_results_header() {
    let app = spawn_app().await;
    let id = app.create("Import Products", json!({"rows": 2})).await;
    assert_eq!(finished(&app.worker, id).await.status, JobStatus::Done);
    let (_, page) = app.get_html(&format!("/workers/{id}")).await;
    assert!(
        page.contains(
            "<thead><tr><th scope=\"col\">SKU</th><th scope=\"col\">Name</th><th scope=\"col\">Price</th></tr></thead>"
        ),
        "{page}"
    );
    let (_, body) = app.get_json(&format!("/workers/{id}")).await;
    assert_eq!(body["result_columns"], json!(["SKU", "Name", "Price"]));
    let rows = body["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{body}");
    assert_eq!(rows[0][0]["value"], "SKU-0001", "{body}");
}
