//! The dashboard and `/metrics`, on SQLite and PostgreSQL: the per-minute rollups match the
//! jobs that ran (counts, a percentile in the right bucket), the charts draw with no data and
//! with data, each health signal appears when its condition is created and goes when it is
//! fixed, and `/metrics` parses as Prometheus text; both need a login or a token.
use std::collections::HashMap;
use std::time::Duration;

use nightshift::{JobContext, JobKind};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::app::{ADMIN_PASSWORD, TestApp, spawn_admin_only_on, spawn_app, spawn_app_on};
use crate::chromium::{self, ONE_AT_A_TIME};
use crate::helpers::{both_databases, builder, finished, wait_for};

/// The dashboard's JSON.
async fn dashboard(app: &TestApp) -> Value {
    let (status, body) = app.get_json("/dashboard").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The health signals of one kind, as `(subject, message)`.
async fn signals(app: &TestApp, kind: &str) -> Vec<(String, String)> {
    dashboard(app).await["health"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["signal"] == kind)
        .map(|s| {
            (
                s["subject"].as_str().unwrap().to_owned(),
                s["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until the dashboard has (or has not) a signal of `kind` about `subject`.
async fn until_signal(app: &TestApp, kind: &str, subject: &str, present: bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found: Vec<String> = signals(app, kind)
            .await
            .into_iter()
            .filter(|(s, _)| s == subject)
            .map(|(_, m)| m)
            .collect();
        if found.is_empty() != present {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "signal {kind} about {subject} never {}: {}",
            if present { "appeared" } else { "went" },
            dashboard(app).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sql(app: &TestApp, statement: &str) {
    app.worker
        .store()
        .connection()
        .execute_unprepared(statement)
        .await
        .unwrap();
}

/// Now, in ms (the test shares the machine's clock with both databases).
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

both_databases! {
    /// Six jobs of 300 ms and two failures: the last hour counts them, `Work` has six attempts
    /// whose median run time lies in the 250–500 ms bucket, and the page draws them; before
    /// any ran, the page says nothing finished and still draws its charts.
    async fn rollups_match_the_jobs_that_ran(db: TestDb) {
        let app = spawn_app_on(&db.url).await;
        // Behind login: a browser is sent to the login form, a script gets a 401.
        let res = app.anonymous.get(app.url("/dashboard")).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 303);
        assert_eq!(res.headers()["location"], "/login?next=%2Fdashboard");
        let res = app
            .anonymous
            .get(app.url("/dashboard"))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 401);
        let (status, html) = app.get_html("/dashboard").await;
        assert_eq!(status, 200);
        assert!(html.contains("<h1>Dashboard</h1>"), "{html}");
        assert!(html.contains("No jobs finished in the last hour."), "{html}");
        assert!(html.contains("No attempts finished in the last 24 hours."), "{html}");
        assert_eq!(html.matches(r#"<svg class="chart" role="img""#).count(), 2, "{html}");
        assert!(
            html.contains(r#"href="/dashboard" class="active" aria-current="page""#),
            "the navigation marks the page: {html}"
        );
        let empty = dashboard(&app).await;
        assert_eq!(empty["series"]["last_hour"]["points"].as_array().unwrap().len(), 60);
        assert_eq!(empty["series"]["last_day"]["points"].as_array().unwrap().len(), 96);
        assert_eq!(empty["series"]["last_day"]["step_s"], 900);
        assert_eq!(empty["series"]["kinds"], json!([]));
        assert_eq!(empty["health"], json!([]));

        let mut ids = Vec::new();
        for _ in 0..6 {
            ids.push(app.create("Work", json!({"ms": 300})).await);
        }
        for _ in 0..2 {
            ids.push(app.create("Fail", json!({})).await);
        }
        for id in &ids {
            finished(&app.worker, *id).await;
        }
        app.worker.flush().await;

        let d = dashboard(&app).await;
        let sum = |field: &str| -> i64 {
            d["series"]["last_hour"]["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[field].as_i64().unwrap())
                .sum()
        };
        assert_eq!((sum("done"), sum("failed")), (6, 2), "{d}");
        let kinds = d["series"]["kinds"].as_array().unwrap();
        let work = kinds.iter().find(|k| k["kind"] == "Work").expect("Work");
        assert_eq!(work["attempts"], 6, "{work}");
        assert_eq!(work["failed"], 0, "{work}");
        let p50 = work["run_ms"]["p50"].as_i64().unwrap();
        assert!((250..=500).contains(&p50), "300 ms jobs: {work}");
        assert!(work["wait_ms"]["p50"].is_i64(), "{work}");
        let fail = kinds.iter().find(|k| k["kind"] == "Fail").expect("Fail");
        assert_eq!((fail["attempts"].as_i64(), fail["failed"].as_i64()), (Some(2), Some(2)));

        let (_, html) = app.get_html("/dashboard").await;
        assert!(
            html.contains(r#"<span class="num">8</span> finished (<span class="num">2</span> failed)"#),
            "{html}"
        );
        assert!(html.contains(r#"class="done""#) && html.contains(r#"class="failed""#), "{html}");
        assert!(html.contains(r#"aria-label="Run time: p50 "#), "{html}");
        // htmx gets the panel alone.
        let fragment = app
            .client
            .get(app.url("/dashboard"))
            .header("HX-Request", "true")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(fragment.starts_with(r#"<div id="dashboard""#), "{fragment}");
        app.worker.shutdown().await;
    }

    /// Work on a queue no node serves is signalled, and the signal goes with the work.
    async fn a_queue_nobody_serves_is_signalled_until_its_work_is_gone(db: TestDb) {
        let app = spawn_app_on(&db.url).await;
        let (status, job) = app
            .post_json("/workers", &json!({"job": "Work", "args": {}, "queue": "nobody"}))
            .await;
        assert_eq!(status, 201, "{job}");
        let msg = until_signal(&app, "unserved", "nobody", true).await;
        assert_eq!(msg, ["1 job waits on queue nobody and no live node serves it."]);
        let (_, html) = app.get_html("/dashboard").await;
        assert!(html.contains(r#"<a href="/workers?status=all&amp;queue=nobody">See the jobs</a>"#), "{html}");
        app.worker.cancel(job["id"].as_i64().unwrap()).await.unwrap();
        until_signal(&app, "unserved", "nobody", false).await;
        app.worker.shutdown().await;
    }

    /// Jobs of a kind no live node handles are signalled (they are never claimed); a node
    /// with a handler starts, runs them, and the signal goes.
    async fn a_kind_without_a_handler_is_signalled_until_a_node_handles_it(db: TestDb) {
        let app = spawn_app_on(&db.url).await;
        let ghost = || JobKind::new("Ghost", |_: Value, ctx: JobContext| async move {
            ctx.log("boo").await?;
            Ok(())
        });
        // Enqueued by a process that knows the kind but runs no jobs.
        let client = nightshift::Client::connect(&db.url).await.unwrap();
        client.register(ghost()).unwrap();
        let a = client.enqueue_dynamic("Ghost", &json!({})).await.unwrap();
        let b = client.enqueue_dynamic("Ghost", &json!({})).await.unwrap();
        let msg = until_signal(&app, "no_handler", "Ghost", true).await;
        assert!(msg[0].starts_with("2 jobs of kind Ghost wait and no live node has a handler"), "{msg:?}");
        let d = dashboard(&app).await;
        let s = d["health"].as_array().unwrap().iter().find(|s| s["signal"] == "no_handler").unwrap();
        assert_eq!(s["count"], 2, "{s}");
        assert!(s["oldest"].is_string(), "{s}");
        assert_eq!(s["link"], "/workers?status=all&job=Ghost");
        // Nothing claimed them: no attempt was spent.
        assert_eq!(app.worker.job(a).await.unwrap().attempt, 0);

        let node = builder(&db).build().await.unwrap();
        node.register(ghost()).unwrap();
        node.start().await.unwrap();
        finished(&node, a).await;
        finished(&node, b).await;
        until_signal(&app, "no_handler", "Ghost", false).await;
        node.shutdown().await;
        app.worker.shutdown().await;
    }

    /// A job running far past its kind's usual time (five quick runs make the usual time; a
    /// sixth has run for two and a half minutes) is signalled until it is aborted.
    async fn a_job_running_far_past_its_usual_time_is_signalled_until_it_ends(db: TestDb) {
        let app = spawn_app_on(&db.url).await;
        for _ in 0..5 {
            let id = app.create("Work", json!({})).await;
            finished(&app.worker, id).await;
        }
        app.worker.flush().await;
        let long = app.create("Work", json!({"ms": 600_000})).await;
        wait_for(&app.worker, long, "running", |j| j.status == nightshift::JobStatus::Running).await;
        assert!(signals(&app, "overdue").await.is_empty(), "it just started");
        let started = app.worker.job(long).await.unwrap().started_at.unwrap().timestamp_millis();
        let set_started = |at: i64| format!("UPDATE nightshift_jobs SET started_at = {at} WHERE id = {long}");
        sql(&app, &set_started(now_ms() - 150_000)).await;
        let msg = until_signal(&app, "overdue", "Work", true).await;
        assert!(msg[0].starts_with("1 job of kind Work has been running for 2 min"), "{msg:?}");
        // Its own start back (the run's outcome lands only on the run it was made for), and
        // aborted: it ends `killed`, not through a rescue.
        sql(&app, &set_started(started)).await;
        app.worker.abort(long, "tests").await.unwrap();
        let job = finished(&app.worker, long).await;
        assert_eq!(job.status, nightshift::JobStatus::Killed, "{job:?}");
        until_signal(&app, "overdue", "Work", false).await;
        app.worker.shutdown().await;
    }

    /// A due job that has waited five and a half minutes (its queue paused) is late, until the queue is
    /// resumed and it runs.
    async fn a_due_job_waiting_too_long_is_late_until_it_starts(db: TestDb) {
        let app = spawn_app_on(&db.url).await;
        app.worker.pause_queue("default", "tests").await.unwrap();
        let id = app.create("Work", json!({})).await;
        assert!(signals(&app, "late").await.is_empty(), "due just now");
        sql(&app, &format!(
            "UPDATE nightshift_jobs SET run_at = {} WHERE id = {id}",
            now_ms() - 330_000
        ))
        .await;
        let msg = until_signal(&app, "late", "default", true).await;
        assert_eq!(
            msg,
            ["1 job due on queue default has not started; the oldest has waited 5 min (the queue is paused)."]
        );
        app.worker.resume_queue("default").await.unwrap();
        finished(&app.worker, id).await;
        until_signal(&app, "late", "default", false).await;
        app.worker.shutdown().await;
    }

    /// A node whose heartbeat stopped is signalled; when it is heard from again, it is not.
    async fn a_silent_node_is_signalled_until_it_is_heard_from(db: TestDb) {
        // No workers here: nothing reaps the silent node while the test looks at it.
        let app = spawn_admin_only_on(&db.url).await;
        let old = now_ms() - 60_000;
        sql(&app, &format!(
            "INSERT INTO nightshift_nodes \
             (id, hostname, pid, started_at, heartbeat_at, host, boot_id, version, queues, kinds) \
             VALUES ('far-1-abcd', 'far', 1, {old}, {old}, 'far', '', '0.1.0', '{{}}', '[]')"
        ))
        .await;
        let msg = until_signal(&app, "stale_node", "far-1-abcd", true).await;
        assert!(msg[0].starts_with("Node far-1-abcd on far has sent no heartbeat for 1 min"), "{msg:?}");
        sql(&app, &format!(
            "UPDATE nightshift_nodes SET heartbeat_at = {} WHERE id = 'far-1-abcd'",
            now_ms()
        ))
        .await;
        until_signal(&app, "stale_node", "far-1-abcd", false).await;
    }

    /// `/metrics` is Prometheus text: the attempts counted, their histograms, jobs by queue and
    /// state, the nodes; a second scrape never counts less; no token, no metrics.
    async fn metrics_parse_as_prometheus_text(db: TestDb) {
        let app = spawn_app_on(&db.url).await;
        for _ in 0..3 {
            let id = app.create("Work", json!({"ms": 20})).await;
            finished(&app.worker, id).await;
        }
        let waiting = app
            .post_json("/workers", &json!({"job": "Work", "args": {}, "queue": "nobody"}))
            .await;
        assert_eq!(waiting.0, 201);
        app.worker.flush().await;

        let anonymous = app.anonymous.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(anonymous.status().as_u16(), 401);
        assert!(anonymous.headers().get("set-cookie").is_none(), "no form cookie for a scraper");
        // A viewer's token is enough to scrape.
        let accounts = nightshift::auth::Accounts::new(app.worker.store().connection().clone());
        accounts
            .add("prometheus", "a long enough password", nightshift::Role::Viewer)
            .await
            .unwrap();
        let (token, _) = accounts.create_token("prometheus", "scraper").await.unwrap();
        let res = app
            .anonymous
            .get(app.url("/metrics"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);

        let (types, samples) = scrape(&app).await;
        for (family, kind) in [
            ("nightshift_jobs", "gauge"),
            ("nightshift_attempts_total", "counter"),
            ("nightshift_job_wait_seconds", "histogram"),
            ("nightshift_job_run_seconds", "histogram"),
            ("nightshift_nodes", "gauge"),
            ("nightshift_node_running_jobs", "gauge"),
        ] {
            assert_eq!(types.get(family).map(String::as_str), Some(kind), "{family}: {types:?}");
        }
        let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
            sample(&samples, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} in {samples:?}"))
        };
        let work = [("queue", "default"), ("kind", "Work")];
        let done = [("queue", "default"), ("kind", "Work"), ("outcome", "done")];
        assert_eq!(get("nightshift_attempts_total", &done), 3.0);
        assert_eq!(get("nightshift_job_run_seconds_count", &work), 3.0);
        assert_eq!(
            get("nightshift_job_run_seconds_bucket", &[("queue", "default"), ("kind", "Work"), ("le", "+Inf")]),
            3.0
        );
        // 20 ms jobs: none under 10 ms, all under 1 s.
        assert_eq!(
            get("nightshift_job_run_seconds_bucket", &[("queue", "default"), ("kind", "Work"), ("le", "0.01")]),
            0.0
        );
        assert_eq!(
            get("nightshift_job_run_seconds_bucket", &[("queue", "default"), ("kind", "Work"), ("le", "1")]),
            3.0
        );
        assert!(get("nightshift_job_run_seconds_sum", &work) >= 0.06);
        assert_eq!(get("nightshift_jobs", &[("queue", "nobody"), ("state", "due")]), 1.0);
        assert_eq!(get("nightshift_nodes", &[]), 1.0);

        let id = app.create("Work", json!({})).await;
        finished(&app.worker, id).await;
        app.worker.flush().await;
        let (_, again) = scrape(&app).await;
        assert_eq!(sample(&again, "nightshift_attempts_total", &done), Some(4.0));

        // `/metrics` alone on an address of its own: the same text for a token, nothing else.
        let alone: axum::Router =
            nightshift::admin::metrics_router(app.worker.clone(), nightshift::auth::Auth::sessions());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(nightshift::admin::serve::serve(
            listener,
            alone,
            std::future::pending(),
            nightshift::admin::serve::ServeOptions::default(),
        ));
        let res = app.client.get(format!("{addr}/metrics")).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let text = res.text().await.unwrap();
        assert!(
            text.contains(r#"nightshift_attempts_total{queue="default",kind="Work",outcome="done"} 4"#),
            "{text}"
        );
        let res = app.anonymous.get(format!("{addr}/metrics")).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 401);
        let res = app.client.get(format!("{addr}/dashboard")).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 404);
        app.worker.shutdown().await;
    }
}

/// In Chromium at 1400 × 900: the dashboard draws its charts with data, its panel refreshes
/// itself (a job that finishes shows up without a reload), and nothing scrolls sideways. With
/// `NIGHTSHIFT_SCREENSHOTS=1` it keeps a picture in `target/tmp/dashboard.png` (the README's;
/// `=dark` in the dark scheme, `dashboard-dark.png`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_and_refreshes_in_a_browser() {
    let _one = ONE_AT_A_TIME.lock().await;
    // `NIGHTSHIFT_SCREENSHOTS=dark`: the picture in the dark scheme.
    let dark = std::env::var("NIGHTSHIFT_SCREENSHOTS").as_deref() == Ok("dark");
    let scheme: &[&str] = if dark { &["--force-dark-mode"] } else { &[] };
    // In India (UTC+05:30, no summer time): local and UTC differ by half an hour too.
    let Some(b) = chromium::open_in_zone("1400,900", scheme, Some("Asia/Kolkata")).await else {
        return;
    };
    let app = spawn_app().await;
    let c = &b.client;
    // Some history: quick and slower jobs, failures, one on a queue nobody serves.
    let mut ids = Vec::new();
    for i in 0..24 {
        ids.push(app.create("Work", json!({"ms": 20 * (i % 6)})).await);
    }
    for _ in 0..3 {
        ids.push(app.create("Fail", json!({})).await);
    }
    ids.push(app.create("Import Products", json!({"rows": 20})).await);
    ids.push(app.create("Ping", json!({})).await);
    for id in &ids {
        finished(&app.worker, *id).await;
    }
    let (status, _) = app
        .post_json(
            "/workers",
            &json!({"job": "Ping", "args": {}, "queue": "reports"}),
        )
        .await;
    assert_eq!(status, 201);
    app.worker.flush().await;

    c.goto(&app.url("/login?next=%2Fdashboard")).await.unwrap();
    let form = c.form(fantoccini::Locator::Css("form")).await.unwrap();
    form.set_by_name("name", "admin").await.unwrap();
    form.set_by_name("password", ADMIN_PASSWORD).await.unwrap();
    form.submit().await.unwrap();
    crate::chromium::until(
        c,
        "the dashboard",
        "document.querySelector('#dashboard svg.chart')",
    )
    .await;
    let drawn = c
        .execute(
            "const charts = Array.from(document.querySelectorAll('svg.chart'));
             return { charts: charts.map(s => Math.round(s.getBoundingClientRect().height)),
                      bars: document.querySelectorAll('svg.chart rect.done').length,
                      failed: document.querySelectorAll('svg.chart rect.failed').length,
                      ranges: document.querySelectorAll('svg.pct-range rect.range').length,
                      wide: document.documentElement.scrollWidth > document.documentElement.clientWidth,
                      signals: document.querySelectorAll('.signal').length };",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        drawn["charts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h.as_i64() > Some(100)),
        "{drawn}"
    );
    assert!(
        drawn["bars"].as_i64() >= Some(2) && drawn["failed"].as_i64() >= Some(2),
        "{drawn}"
    );
    assert!(drawn["ranges"].as_i64() >= Some(6), "{drawn}");
    assert_eq!(drawn["wide"], false, "{drawn}");
    assert_eq!(drawn["signals"], 1, "the queue nobody serves: {drawn}");
    // The charts' moments in the operator's zone (local by default), and in UTC once switched.
    let moments = || async {
        c.execute(
            "return Array.from(document.querySelectorAll('#dashboard [data-at]'))
               .map(e => [e.getAttribute('data-at'), e.getAttribute('data-format'), e.textContent]);",
            vec![],
        )
        .await
        .unwrap()
    };
    let check = |found: &Value, utc: bool| {
        let found = found.as_array().unwrap();
        assert!(
            found.len() > 100,
            "every bar and both ends of each axis: {found:?}"
        );
        for m in found {
            let at = chrono::DateTime::parse_from_rfc3339(m[0].as_str().unwrap()).unwrap();
            let shown = if utc {
                at.with_timezone(&chrono::Utc).fixed_offset()
            } else {
                at.with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap())
            };
            let mut want = shown.format("%H:%M").to_string();
            if m[1] == "weekday-time" {
                want = format!("{} {want}", shown.format("%a"));
            }
            if utc {
                want.push_str(" UTC");
            }
            let text = m[2].as_str().unwrap();
            assert!(
                text == want || text.starts_with(&format!("{want}: ")),
                "{text:?} should say {want:?} (utc: {utc})"
            );
        }
    };
    check(&moments().await, false);
    crate::chromium::click(c, "[data-tz-switch]").await;
    crate::chromium::until(
        c,
        "times in UTC",
        "document.querySelector('#dashboard text.axis[data-at]').textContent.endsWith(' UTC')",
    )
    .await;
    check(&moments().await, true);
    // A job that finishes now shows up in the summary without a reload.
    c.execute("document.body.dataset.notReloaded = '1';", vec![])
        .await
        .unwrap();
    let before = c
        .execute(
            "return document.querySelector('.chart-summary .num').textContent;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(before, json!("29"), "24 + 3 + 1 + 1 finished: {before}");
    let id = app.create("Ping", json!({})).await;
    finished(&app.worker, id).await;
    crate::chromium::until(
        c,
        "the panel refreshed",
        "document.querySelector('.chart-summary .num').textContent === '30' \
         && document.body.dataset.notReloaded === '1'",
    )
    .await;
    if std::env::var("NIGHTSHIFT_SCREENSHOTS").is_ok() {
        // For the picture only (after the checks): a day of history, as the completers would
        // have counted it, so the charts have a shape.
        history(&app).await;
        c.refresh().await.unwrap();
        crate::chromium::until(
            c,
            "the dashboard again",
            "document.querySelector('#dashboard svg.chart')",
        )
        .await;
        let shot = c.screenshot().await.unwrap();
        let name = if dark {
            "dashboard-dark.png"
        } else {
            "dashboard.png"
        };
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, shot).unwrap();
    }
    b.client.clone().close().await.ok();
    app.worker.shutdown().await;
}

/// Per-minute counts for the last day, busier in the day than at night (for the README's
/// picture of the dashboard).
async fn history(app: &TestApp) {
    let now = now_ms();
    let this_minute = now - now.rem_euclid(60_000);
    let buckets = |prefix: &str, spread: &[(usize, i64)]| -> (String, String) {
        let names: Vec<String> = spread.iter().map(|(i, _)| format!("{prefix}{i}")).collect();
        let values: Vec<String> = spread.iter().map(|(_, n)| n.to_string()).collect();
        (names.join(", "), values.join(", "))
    };
    for m in 1..(24 * 60) {
        let minute = this_minute - m * 60_000;
        let wave = ((m as f64 / 180.0).sin() + 1.3) * 10.0;
        let done = (wave + (m % 7) as f64) as i64;
        let failed = i64::from(m % 11 == 0) + i64::from(m % 37 == 0) * 3;
        let retried = i64::from(m % 5 == 0);
        let (run_cols, run_vals) = buckets(
            "run_b",
            &[
                (5, done / 2),
                (6, done - done / 2 - 1),
                (8, 1 + failed + retried),
            ],
        );
        let (wait_cols, wait_vals) = buckets("wait_b", &[(0, done - 2), (2, 2 + failed + retried)]);
        sql(
            app,
            &format!(
                "INSERT INTO nightshift_stats (minute, queue, kind, done, failed, retried, cancelled, \
                 run_ms, wait_ms, {run_cols}, {wait_cols}) \
                 VALUES ({minute}, 'default', 'Send Newsletter', {done}, {failed}, {retried}, 0, \
                 {run_ms}, {wait_ms}, {run_vals}, {wait_vals})",
                run_ms = done * 700,
                wait_ms = done * 8,
            ),
        )
        .await;
    }
}

/// A sample line: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// One scrape: the `# TYPE` of each family, and every sample as `(name, labels, value)`.
/// Every line must be a comment or a sample.
async fn scrape(app: &TestApp) -> (HashMap<String, String>, Vec<Sample>) {
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = res.text().await.unwrap();
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# EOF") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("labels: {line}"));
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("label: {line}"));
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), vec![]),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "metric name: {line}"
        );
        samples.push((name, labels, value));
    }
    (types, samples)
}

/// The value of the sample `name` whose labels are exactly `labels` (in any order).
fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
}
