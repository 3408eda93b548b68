//! The admin's side of queues: the Queues page and its JSON, pausing and resuming a queue from
//! the browser (CSRF, roles, audit), and the new job options (queue, priority, tags, uniqueness
//! key) through `POST /workers`, with the list's `queue` and `tag` filters.
use std::time::Duration;

use nightshift::{JobStatus, Role};
use serde_json::{Value, json};

use crate::app::{ADMIN_PASSWORD, TestApp, csrf_in, signed_in, spawn_app, spawn_app_at};
use crate::helpers::{finished, wait_for};

/// A queue no node of the test app serves: jobs put on it wait.
const NOBODY: &str = "nobody-serves";

/// A browser-like client signed in as `name`.
async fn log_in(app: &TestApp, name: &str, password: &str) -> reqwest::Client {
    signed_in(app, name, password, "/queues").await
}

async fn text(c: &reqwest::Client, url: String) -> String {
    let res = c.get(url).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    res.text().await.unwrap()
}

/// The queue named `name` in `GET /queues`.
async fn queue(app: &TestApp, name: &str) -> Value {
    let (status, body) = app.get_json("/queues").await;
    assert_eq!(status, 200, "{body}");
    body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("queue {name} in {body}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_json_lists_each_queue_with_its_counts_and_nodes() {
    let app = spawn_app().await;
    let (status, job) = app
        .post_json(
            "/workers",
            &json!({"job": "Work", "args": {}, "queue": NOBODY}),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["queue"], NOBODY);

    let q = queue(&app, NOBODY).await;
    assert_eq!(q["waiting"], 1, "{q}");
    assert_eq!(q["due"], 1, "{q}");
    assert_eq!(q["running"], 0, "{q}");
    assert_eq!(q["paused"], false, "{q}");
    assert_eq!(q["nodes"], 0, "{q}");
    assert_eq!(q["concurrency"], 0, "nobody serves it: {q}");
    assert!(q["oldest_waiting_s"].is_i64(), "{q}");
    assert_eq!(q["throughput"].as_array().map(Vec::len), Some(15), "{q}");

    let served = queue(&app, "default").await;
    assert!(served["nodes"].as_u64().unwrap() >= 1, "{served}");
    assert!(served["concurrency"].as_i64().unwrap() >= 1, "{served}");
    assert_eq!(served["paused"], false);

    // The page warns about the queue nobody serves, and links to its jobs.
    let (status, html) = app.get_html("/queues").await;
    assert_eq!(status, 200);
    assert!(html.contains("<h1>Queues</h1>"), "{html}");
    assert!(
        html.contains("No node serves this queue: its jobs wait."),
        "{html}"
    );
    assert!(
        html.contains(&format!("href=\"/workers?status=all&amp;queue={NOBODY}\"")),
        "{html}"
    );
    assert!(
        html.contains(r#"role="img" aria-label="0 finished in the last 15 minutes""#),
        "{html}"
    );
    assert!(
        html.contains(r#"href="/queues" class="active" aria-current="page""#),
        "the navigation marks the page: {html}"
    );
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pauses_a_queue_from_the_page_and_its_jobs_wait_until_resumed() {
    let app = spawn_app().await;
    let browser = log_in(&app, "admin", ADMIN_PASSWORD).await;
    let page = text(&browser, app.url("/queues")).await;
    let token = csrf_in(&page);
    assert!(
        page.contains(r#"action="/queues/default/pause""#),
        "an operator gets the button: {page}"
    );

    // Without the page's token the form is refused and nothing changes.
    let res = browser
        .post(app.url("/queues/default/pause"))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    assert_eq!(queue(&app, "default").await["paused"], false);

    let res = browser
        .post(app.url("/queues/default/pause"))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/queues");
    let q = queue(&app, "default").await;
    assert_eq!(q["paused"], true, "{q}");
    assert_eq!(q["paused_by"], "admin", "{q}");

    // The table's 2 s refresh may land before the page it goes back to: it leaves the
    // message for the page.
    let refresh = browser
        .get(app.url("/queues"))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert!(refresh.headers().get("set-cookie").is_none());
    // The page says so, and who did it; the button is now Resume.
    let page = text(&browser, app.url("/queues")).await;
    assert!(page.contains("Queue default paused"), "the flash: {page}");
    assert!(page.contains("Paused by admin, "), "{page}");
    assert!(
        page.contains(r#"action="/queues/default/resume""#),
        "{page}"
    );
    // The table refreshes itself; alone it is what htmx asks for.
    assert!(
        page.contains(r#"hx-get="/queues" hx-trigger="every 2s" hx-swap="outerHTML""#),
        "{page}"
    );
    let fragment = browser
        .get(app.url("/queues"))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(fragment.starts_with("<div id=\"queues\""), "{fragment}");
    assert!(fragment.contains("Paused by admin"), "{fragment}");

    // A job enqueued now waits.
    let id = app.create("Work", json!({})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let job = app.worker.job(id).await.unwrap();
    assert_eq!(job.status, JobStatus::New, "a paused queue starts nothing");
    assert_eq!(queue(&app, "default").await["waiting"], 1);

    // Resumed (here by a script, with the token in a header): it runs.
    let res = browser
        .post(app.url("/queues/default/resume"))
        .header("Accept", "application/json")
        .header("X-CSRF-Token", token.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let q: Value = res.json().await.unwrap();
    assert_eq!(q["name"], "default", "{q}");
    assert_eq!(q["paused"], false, "{q}");
    assert_eq!(finished(&app.worker, id).await.status, JobStatus::Done);

    // Both actions are in the audit log, against the queue.
    let (_, audit) = app.get_json("/audit?target=queue:default").await;
    let actions: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(actions.contains(&("pause_queue", "ok")), "{audit}");
    assert!(actions.contains(&("pause_queue", "denied")), "{audit}");
    assert!(actions.contains(&("resume_queue", "ok")), "{audit}");
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_queues_but_cannot_pause_them_and_bad_names_are_named() {
    let app = spawn_app().await;
    let accounts = nightshift::auth::Accounts::new(app.worker.store().connection().clone());
    accounts
        .add("vera", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    let (token, _) = accounts.create_token("vera", "read").await.unwrap();
    let as_viewer = |m: reqwest::Method, p: &str| {
        app.anonymous
            .request(m, app.url(p))
            .header("Authorization", format!("Bearer {token}"))
    };
    let res = as_viewer(reqwest::Method::GET, "/queues")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body["queues"].is_array(), "{body}");
    for verb in ["pause", "resume"] {
        let res = as_viewer(reqwest::Method::POST, &format!("/queues/default/{verb}"))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 403, "{verb}");
    }
    assert_eq!(queue(&app, "default").await["paused"], false);
    // Their page has no buttons.
    let viewer = log_in(&app, "vera", "viewer-password").await;
    let page = text(&viewer, app.url("/queues")).await;
    assert!(page.contains("<code>default</code>"), "{page}");
    assert!(!page.contains("/queues/default/pause"), "{page}");

    // A name no queue can have: 422 naming the field, never a 500.
    for bad in ["bad%20name", "%C3%BC", &"q".repeat(65)] {
        let (status, body) = app
            .post_json(&format!("/queues/{bad}/pause"), &json!({}))
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body["fields"]["queue"].is_string(), "{bad}: {body}");
    }
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queues_page_stays_under_the_mount_prefix() {
    let app = spawn_app_at("/admin/jobs").await;
    let browser = log_in(&app, "admin", ADMIN_PASSWORD).await;
    let page = text(&browser, app.url("/queues")).await;
    assert!(page.contains(r#"hx-get="/admin/jobs/queues""#), "{page}");
    assert!(
        page.contains(r#"action="/admin/jobs/queues/default/pause""#),
        "{page}"
    );
    assert!(page.contains(r#"href="/admin/jobs/queues""#), "{page}");
    let token = csrf_in(&page);
    let res = browser
        .post(app.url("/queues/default/pause"))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/admin/jobs/queues");
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_takes_queue_priority_tags_and_a_key_and_a_duplicate_gets_the_first_job() {
    let app = spawn_app().await;
    let new = json!({
        "job": "Work", "args": {}, "queue": NOBODY, "priority": 7,
        "tags": ["eu", " vip "], "unique_key": "customer-42",
    });
    let (status, first) = app.post_json("/workers", &new).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["queue"], NOBODY);
    assert_eq!(first["priority"], 7);
    assert_eq!(first["tags"], json!(["eu", "vip"]));
    assert_eq!(first["unique_key"], "customer-42");
    assert!(first.get("already_queued").is_none(), "{first}");

    let (status, again) = app.post_json("/workers", &new).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["id"], first["id"],
        "the waiting job, not a second one"
    );
    assert_eq!(again["already_queued"], true, "{again}");
    let (_, list) = app.get_json(&format!("/workers?queue={NOBODY}")).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "{list}");

    // Bad options are refused with every field named.
    let (status, body) = app
        .post_json(
            "/workers",
            &json!({"job": "Work", "priority": 12, "queue": "no spaces", "tags": ["a,b"]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["fields"]["priority"]
            .as_str()
            .unwrap()
            .contains("0 to 9"),
        "{body}"
    );
    assert!(body["fields"]["queue"].is_string(), "{body}");
    assert!(body["fields"]["tags"].is_string(), "{body}");
    for bad in [json!("high"), json!(-1), json!(1e12)] {
        let (status, body) = app
            .post_json("/workers", &json!({"job": "Work", "priority": bad}))
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body["fields"]["priority"].is_string(), "{bad}: {body}");
    }
    let (status, body) = app
        .post_json("/workers", &json!({"job": "Work", "tags": "eu"}))
        .await;
    assert_eq!(status, 422, "tags are a list: {body}");
    assert!(body["fields"]["tags"].is_string(), "{body}");
    let (_, list) = app.get_json("/workers").await;
    assert_eq!(
        list["jobs"].as_array().unwrap().len(),
        1,
        "nothing refused was added: {list}"
    );
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_takes_the_options_and_sends_a_duplicate_to_the_job_it_found() {
    let app = spawn_app().await;
    let browser = log_in(&app, "admin", ADMIN_PASSWORD).await;
    let form_page = text(&browser, app.url("/workers/new?job=Work")).await;
    assert!(
        form_page.contains(r#"<details class="options">"#),
        "folded while empty: {form_page}"
    );
    let token = csrf_in(&form_page);
    let post = |priority: &'static str| {
        let token = token.clone();
        let browser = browser.clone();
        let url = app.url("/workers");
        async move {
            browser
                .post(url)
                .form(&[
                    ("_csrf", token.as_str()),
                    ("job", "Work"),
                    ("ms", "0"),
                    ("queue", NOBODY),
                    ("priority", priority),
                    ("tags", "eu, vip,"),
                    ("unique_key", "import-7"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let res = post("5").await;
    assert_eq!(res.status().as_u16(), 303);
    let to = res.headers()["location"].to_str().unwrap().to_owned();
    let id: i64 = to.rsplit('/').next().unwrap().parse().unwrap();
    let job = app.worker.job(id).await.unwrap();
    assert_eq!(
        (job.queue.as_str(), job.priority, job.tags.clone()),
        (NOBODY, 5, vec!["eu".to_owned(), "vip".to_owned()])
    );
    assert_eq!(job.unique_key.as_deref(), Some("import-7"));
    let page = text(&browser, app.url(&to)).await;
    assert!(page.contains(&format!("Job #{id} created.")), "{page}");
    assert!(
        page.contains(&format!("queue {NOBODY}")) && page.contains("priority 5"),
        "{page}"
    );
    assert!(page.contains(r#"href="/workers?tag=vip""#), "{page}");
    assert!(page.contains("<code>import-7</code>"), "{page}");

    // The same key again: sent to the job that holds it, and told so.
    let res = post("5").await;
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"].to_str().unwrap(), to);
    let page = text(&browser, app.url(&to)).await;
    assert!(
        page.contains(&format!(
            "Already queued: job #{id} with key import-7 is waiting"
        )),
        "{page}"
    );

    // A bad priority: the form again, open on the options, the message beside the field.
    let res = post("12").await;
    assert_eq!(res.status().as_u16(), 422);
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"<details class="options" open>"#), "{page}");
    assert!(page.contains("Priority must be 0 to 9"), "{page}");
    assert!(
        page.contains(r#"name="priority" aria-describedby="f-priority-help" min="0" max="9" step="1" value="12""#),
        "{page}"
    );
    let res = post("soon").await;
    assert_eq!(res.status().as_u16(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Priority must be a whole number from 0 to 9"),
    );
    let (_, list) = app.get_json("/workers").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "{list}");
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tag_filter_finds_whole_tags_only_and_chips_are_escaped() {
    tag_filter(spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tag_filter_finds_whole_tags_only_on_postgres() {
    if let Some(db) = crate::helpers::TestDb::postgres().await {
        tag_filter(crate::app::spawn_app_on(&db.url).await).await;
    }
}

/// Tags match whole and as written (SQLite's LIKE would fold case), LIKE's wildcards match
/// themselves, and a tag shows escaped wherever it is shown.
async fn tag_filter(app: TestApp) {
    let make = |tags: Value| {
        let app = &app;
        async move {
            let (status, job) = app
                .post_json(
                    "/workers",
                    &json!({"job": "Work", "args": {}, "tags": tags}),
                )
                .await;
            assert_eq!(status, 201, "{job}");
            job["id"].as_i64().unwrap()
        }
    };
    let eu = make(json!(["eu", "vip"])).await;
    let upper = make(json!(["EU"])).await;
    let europe = make(json!(["europe", "e_u"])).await;
    let _plain = make(json!([])).await;
    let script = make(json!(["<b>x</b>"])).await;
    for id in [eu, upper, europe, script] {
        wait_for(&app.worker, id, "finished", |j| j.status.is_finished()).await;
    }

    let ids = |list: &Value| -> Vec<i64> {
        list["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_i64().unwrap())
            .collect()
    };
    for (tag, want) in [
        ("eu", vec![eu]),
        ("vip", vec![eu]),
        ("EU", vec![upper]),
        ("e_u", vec![europe]),
        // LIKE's wildcards match themselves only.
        ("e%25", vec![]),
        ("_u", vec![]),
        ("%3Cb%3Ex%3C%2Fb%3E", vec![script]),
    ] {
        let (status, list) = app.get_json(&format!("/workers?tag={tag}")).await;
        assert_eq!(status, 200, "{tag}: {list}");
        assert_eq!(ids(&list), want, "tag={tag}: {list}");
    }
    let (status, body) = app.get_json("/workers?tag=a%22b").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["fields"]["tag"].is_string(), "{body}");
    let (status, body) = app.get_json("/workers?queue=no%20such").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["fields"]["queue"].is_string(), "{body}");

    // The chips: escaped, linking to the filtered list, which keeps the filter in its pager
    // and form and offers to drop it.
    let (_, html) = app.get_html("/workers").await;
    assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"), "{html}");
    assert!(!html.contains("<b>x</b>"), "{html}");
    assert!(
        html.contains(r#"class="tag" href="/workers?tag=%3Cb%3Ex%3C%2Fb%3E""#),
        "{html}"
    );
    let (_, html) = app.get_html("/workers?tag=eu").await;
    assert!(html.contains(&format!("id=\"job-{eu}\"")), "{html}");
    assert!(!html.contains(&format!("id=\"job-{upper}\"")), "{html}");
    assert!(
        html.contains(r#"<input type="hidden" name="tag" value="eu">"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<a href="/workers?status=all" title="Jobs with any tags">Tag: eu"#),
        "a link drops the filter: {html}"
    );
    assert!(
        html.contains("/workers/events?status=all&amp;tag=eu"),
        "the live stream is filtered too: {html}"
    );
    let (_, html) = app.get_html(&format!("/workers/{script}")).await;
    assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"), "{html}");
    assert!(!html.contains("<b>x</b>"), "{html}");
    app.worker.shutdown().await;
}
