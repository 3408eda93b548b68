//! The admin's routes over HTTP: HTML and JSON, 4xx answers, escaping, secrets, SSE, mounting.

use nightshift::JobStatus;
use serde_json::json;

use crate::app::{spawn_admin_only, spawn_app, spawn_app_at};
use crate::helpers::{finished, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_redirects_and_health_answers() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/dashboard");
    let (status, body) = app.get_json("/healthz").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, _) = app.get_html("/nope").await;
    assert_eq!(status, 404);
    let res = app
        .client
        .get(app.url("/assets/htmx.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_answers_json_and_html_with_counts_and_keyset_pages() {
    let app = spawn_app().await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    for i in 0..60 {
        app.worker
            .schedule_dynamic("Work", &json!({"lines": i}), later)
            .await
            .unwrap();
    }
    let (status, body) = app.get_json("/workers?status=scheduled").await;
    assert_eq!(status, 200);
    let jobs = body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 50);
    assert_eq!(body["counts"]["scheduled"], 60);
    assert_eq!(body["counts"]["all"], 60);
    let next = body["next"].as_i64().unwrap();
    assert!(
        jobs.windows(2)
            .all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()),
        "newest first"
    );
    let (_, page2) = app
        .get_json(&format!("/workers?status=scheduled&after={next}"))
        .await;
    assert_eq!(page2["jobs"].as_array().unwrap().len(), 10);
    assert!(page2["next"].is_null());

    let (status, html) = app.get_html("/workers?status=scheduled").await;
    assert_eq!(status, 200);
    for tab in ["All Jobs", "Running", "Scheduled", "Done", "Errors"] {
        assert!(html.contains(tab), "{tab}");
    }
    assert!(html.contains(&format!("after={next}")));

    let (status, body) = app.get_json("/workers?status=bogus").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("status:"),
        "{body}"
    );
    let (status, body) = app.get_json("/workers?after=xyz").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("after:"),
        "{body}"
    );
    // Filters by kind, group and argument text.
    let (_, body) = app.get_json("/workers?job=Ping").await;
    assert_eq!(body["jobs"].as_array().unwrap().len(), 0);
    let (_, body) = app.get_json("/workers?q=lines%3A59").await;
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1);
    let (_, body) = app.get_json("/workers?group=Mail").await;
    assert_eq!(body["jobs"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_bad_input_with_the_field_named() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_json(
            "/workers",
            &json!({"job": "Send Newsletter", "args": {"content": "x"}}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        body["fields"]["subject"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{body}"
    );
    let (status, body) = app
        .post_json("/workers", &json!({"job": "Nope", "args": {}}))
        .await;
    assert_eq!(status, 422);
    assert!(body["fields"]["job"].is_string(), "{body}");
    let (status, body) = app
        .post_json(
            "/workers",
            &json!({"job": "Ping", "args": {}, "schedule_at": "2030-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(body["fields"]["schedule_at"].is_string(), "{body}");
    let res = app
        .client
        .post(app.url("/workers"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);

    // The HTML form: 422, the message beside the field, the input kept, the secret not echoed.
    let res = app
        .post_form(
            "/workers",
            &[
                ("job", "Send Newsletter"),
                ("subject", ""),
                ("content", "kept text"),
                ("send_password", "hunter2"),
            ],
        )
        .await;
    assert_eq!(res.status().as_u16(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("Subject is required"), "{html}");
    assert!(html.contains("kept text"));
    assert!(!html.contains("hunter2"));
    let res = app
        .post_form("/workers", &[("job", "Long Export"), ("minutes", "soon")])
        .await;
    assert_eq!(res.status().as_u16(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Minutes must be a whole number")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_creates_a_scheduled_job_and_redirects_with_a_flash_message() {
    let app = spawn_app().await;
    let res = app
        .post_form(
            "/workers",
            &[
                ("job", "Send Newsletter"),
                ("subject", "Hello"),
                ("content", "Body"),
                ("send_password", "hunter2"),
                ("schedule_at", "2099-01-01T12:00"),
                ("tz_offset", "60"),
            ],
        )
        .await;
    assert_eq!(res.status().as_u16(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let id: i64 = location.rsplit('/').next().unwrap().parse().unwrap();
    let job = app.worker.job(id).await.unwrap();
    assert_eq!(job.status, JobStatus::Scheduled);
    assert_eq!(
        job.schedule_at.unwrap().to_rfc3339(),
        "2099-01-01T11:00:00+00:00"
    );
    assert_eq!(job.created_by.as_deref(), Some("admin"));
    let html = app
        .client
        .get(format!("{}{location}", app.addr))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("Job #{id} created.")));
    assert!(html.contains("Update scheduled Job"));
    assert!(html.contains("Cancel scheduled Job"));
    assert!(!html.contains("hunter2"));

    // Update through the form (POST + _method=PUT): the secret left empty stays as it was.
    let res = app
        .post_form(
            &format!("/workers/{id}"),
            &[
                ("_method", "PUT"),
                ("job", "Send Newsletter"),
                ("subject", "Changed"),
                ("content", "Body"),
                ("send_password", ""),
                ("schedule_at", "2099-02-01T00:00:00"),
                ("tz_offset", "0"),
            ],
        )
        .await;
    assert_eq!(res.status().as_u16(), 303);
    let stored = app.worker.store().job(id).await.unwrap();
    assert!(stored.args.contains("hunter2") && stored.args.contains("Changed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_answer_409_when_the_state_does_not_allow_them() {
    let app = spawn_app().await;
    let running = app.create("Work", json!({"ms": 30_000})).await;
    wait_for(&app.worker, running, "running", |j| {
        j.status == JobStatus::Running
    })
    .await;
    let (status, body) = app
        .post_json(&format!("/workers/{running}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("running"));
    let res = app
        .client
        .put(app.url(&format!("/workers/{running}")))
        .header("Accept", "application/json")
        .json(&json!({"args": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 409);
    let (status, body) = app
        .post_json(&format!("/workers/{running}/abort"), &json!({}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(body["status"], "aborting");
    assert_eq!(
        finished(&app.worker, running).await.status,
        JobStatus::Killed
    );
    let (status, _) = app
        .post_json(&format!("/workers/{running}/abort"), &json!({}))
        .await;
    assert_eq!(status, 409);

    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let waiting = app
        .worker
        .schedule_dynamic("Work", &json!({}), later)
        .await
        .unwrap();
    let res = app
        .client
        .put(app.url(&format!("/workers/{waiting}")))
        .header("Accept", "application/json")
        .json(&json!({"args": {"ms": 7}, "schedule_at": "2099-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["args"]["ms"], 7);
    assert_eq!(body["schedule_at"], "2099-01-01T00:00:00Z");
    let res = app
        .client
        .delete(app.url(&format!("/workers/{waiting}")))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        app.worker.job(waiting).await.unwrap().status,
        JobStatus::Cancelled
    );
    let (status, body) = app
        .post_json(&format!("/workers/{waiting}/rerun"), &json!({}))
        .await;
    assert_eq!(status, 201);
    assert_ne!(body["id"].as_i64().unwrap(), waiting);

    for path in ["/workers/999999", "/workers/abc", "/workers/-1"] {
        let (status, _) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, html) = app.get_html("/workers/999999").await;
    assert_eq!(status, 404);
    assert!(html.contains("job 999999 not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_detail_json_has_log_results_and_attempts_and_masks_secrets() {
    let app = spawn_app().await;
    let id = app
        .create(
            "Send Newsletter",
            json!({"subject": "s", "content": "c", "send_password": "hunter2"}),
        )
        .await;
    let rows = app.create("Import Products", json!({"rows": 8})).await;
    let job = finished(&app.worker, rows).await;
    assert_eq!(job.status, JobStatus::Exception, "row 7 has an error");
    let (status, body) = app.get_json(&format!("/workers/{rows}")).await;
    assert_eq!(status, 200);
    // Data rows only: the kind names its columns.
    assert_eq!(body["results"].as_array().unwrap().len(), 8);
    assert_eq!(body["results"][6][2]["error"], "price must be positive");
    assert_eq!(body["attempts"][0]["outcome"], "error_rows");
    assert!(
        body["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["line"] == "Imported SKU-0001")
    );

    wait_for(&app.worker, id, "logging", |j| j.progress >= 2).await;
    let (_, body) = app.get_json(&format!("/workers/{id}")).await;
    assert_eq!(body["args"]["send_password"], "••••••");
    let text = body.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("Argument: "),
        "the demo logs its arguments, masked"
    );
    let (_, html) = app.get_html(&format!("/workers/{id}")).await;
    assert!(!html.contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_in_arguments_logs_and_errors_is_inert() {
    let app = spawn_app().await;
    let evil = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";
    let id = app
        .create("Work", json!({"lines": 1, "secret": evil}))
        .await;
    app.worker.flush().await;
    let fail = app.create("Fail", json!({})).await;
    finished(&app.worker, fail).await;
    let logged = app.create("Ping", json!({})).await;
    finished(&app.worker, logged).await;
    let list = app
        .worker
        .enqueue_dynamic("Stubborn", &json!({"ms": 1}))
        .await
        .unwrap();
    finished(&app.worker, list).await;
    // Job-written text: a log line and a result cell with markup.
    app.worker
        .register(nightshift::JobKind::new(
            "Evil",
            |_: nightshift::demo::NoArgs, ctx: nightshift::JobContext| async move {
                ctx.log("<script>alert(3)</script>").await?;
                ctx.add_result_row(vec![nightshift::ResultCell::error(
                    "<b>x</b>",
                    "<i>bad</i>",
                )])
                .await?;
                anyhow::bail!("<script>alert(4)</script>")
            },
        ))
        .unwrap();
    let evil_job = app.create("Evil", json!({})).await;
    finished(&app.worker, evil_job).await;
    for path in [
        format!("/workers/{id}"),
        format!("/workers/{fail}"),
        format!("/workers/{evil_job}"),
        "/workers".to_owned(),
        "/workers?status=errors".to_owned(),
    ] {
        let (status, html) = app.get_html(&path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains("<script>alert"), "{path}: {html}");
        assert!(!html.contains("<img src=x"), "{path}");
        assert!(
            !html.contains("<b>x</b>") && !html.contains("<i>bad</i>"),
            "{path}"
        );
    }
    let (_, html) = app.get_html(&format!("/workers/{evil_job}")).await;
    assert!(html.contains("&lt;script&gt;alert(3)&lt;/script&gt;"));
    assert!(html.contains("&lt;script&gt;alert(4)&lt;/script&gt;"));
    let (_, html) = app.get_html(&format!("/workers/{fail}")).await;
    assert!(html.contains("the &lt;b&gt;upstream&lt;/b&gt; said no"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_event_stream_catches_up_and_follows_the_job_to_its_end() {
    let app = spawn_app().await;
    let id = app.create("Work", json!({"lines": 5, "ms": 300})).await;
    let res = app
        .client
        .get(app.url(&format!("/workers/{id}/events?format=json")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = crate::app::read_until_end(res).await;
    assert!(text.contains("event: end"), "{text}");
    for i in 0..5 {
        assert!(
            text.contains(&format!("\"line\":\"line {i}\"")),
            "line {i} in {text}"
        );
    }
    assert!(text.contains("event: status"));
    assert!(text.contains("\"status\":\"done\""));

    // A reconnecting viewer gets only what it missed.
    let logs = app.worker.logs(id, 100).await.unwrap();
    let third = logs[2].id;
    let res = app
        .client
        .get(app.url(&format!("/workers/{id}/events?format=json")))
        .header("Last-Event-ID", third.to_string())
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap(); // finished job: the stream ends by itself
    assert!(!text.contains("\"line 2\"") && !text.contains("\"line\":\"line 1\""));
    assert!(
        text.contains("\"line\":\"line 3\"") && text.contains("\"line\":\"line 4\""),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounted_under_a_prefix_every_link_stays_inside_it() {
    let app = spawn_app_at("/admin/jobs").await;
    let id = app.create("Import Products", json!({"rows": 3})).await;
    finished(&app.worker, id).await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let waiting = app
        .worker
        .schedule_dynamic(
            "Send Newsletter",
            &json!({"subject": "s", "content": "c", "send_password": "p"}),
            later,
        )
        .await
        .unwrap();
    let res = app.client.get(app.url("")).send().await.unwrap();
    assert_eq!(res.headers()["location"], "/admin/jobs/dashboard");
    let pages = [
        "/workers".to_owned(),
        "/workers?status=errors".to_owned(),
        "/workers/new".to_owned(),
        "/workers/new?job=Send%20Newsletter".to_owned(),
        format!("/workers/{id}"),
        format!("/workers/{waiting}"),
    ];
    let mut checked = 0;
    for page in pages {
        let (status, html) = app.get_html(&page).await;
        assert_eq!(status, 200, "{page}");
        for (attr, link) in links(&html) {
            assert!(
                link.starts_with("/admin/jobs/") || link.starts_with('#'),
                "{page}: {link}"
            );
            if link.starts_with('#') || link.contains("/events") {
                continue;
            }
            let url = format!("{}{}", app.addr, link.replace("&amp;", "&"));
            let code = app.client.get(&url).send().await.unwrap().status().as_u16();
            if attr == "href" || attr == "src" {
                assert_eq!(code, 200, "{page}: {link}");
            } else {
                // A form target: it exists (GET is 200 or 405, never 404).
                assert!(code == 200 || code == 405, "{page}: {link} -> {code}");
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "checked {checked} links");
}

/// Every `href`, `src`, `action`, `hx-post` and `sse-connect` value in a page, with its attribute.
fn links(html: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for attr in ["href", "src", "action", "hx-post", "sse-connect"] {
        let needle = format!(" {attr}=\"");
        let mut rest = html;
        while let Some(i) = rest.find(&needle) {
            rest = &rest[i + needle.len()..];
            if let Some(end) = rest.find('"') {
                out.push((attr, rest[..end].to_owned()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_follows_a_job_run_by_another_process() {
    // The admin runs no jobs (`serve --no-workers`); another node shares its database.
    let app = spawn_admin_only().await;
    let id = app.create("Work", json!({"lines": 4, "ms": 1500})).await;
    let res = app
        .client
        .get(app.url(&format!("/workers/{id}/events?format=json")))
        .send()
        .await
        .unwrap();
    let other = crate::helpers::builder(&app.db).build().await.unwrap();
    crate::helpers::register(&other);
    other.start().await.unwrap();
    let text = crate::app::read_until_end(res).await;
    for i in 0..4 {
        assert!(
            text.contains(&format!("\"line\":\"line {i}\"")),
            "line {i} in {text}"
        );
    }
    assert!(
        text.contains("\"status\":\"running\"") && text.contains("\"status\":\"done\""),
        "{text}"
    );
    other.shutdown().await;
}
