//! Bad input: a NUL character anywhere, huge values, bad times. Each gets a clear 4xx naming the
//! field, on SQLite and on PostgreSQL (whose text columns cannot hold NUL); JSON in, JSON out.
use nightshift::{Error, JobContext, JobKind, JobStatus, NewJob, ResultCell};
use serde_json::{Value, json};

use crate::app::{TestApp, spawn_app, spawn_app_on, text_of};
use crate::helpers::{Args, finished};
use crate::postgres::PgDb;

const NUL: &str = "must not contain a NUL character";

/// The message of a JSON error, and of one of its fields.
fn says(body: &Value, field: &str) -> bool {
    let in_fields = body["fields"][field]
        .as_str()
        .is_some_and(|m| m.contains(NUL));
    let in_message = body["error"]
        .as_str()
        .is_some_and(|m| m.contains(&format!("{field}: {NUL}")));
    in_fields || in_message
}

async fn put_json(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let res = app
        .client
        .put(app.url(path))
        .header("Accept", "application/json")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A browser-like client that has opened the login page, and the page's CSRF token.
async fn login_page(app: &TestApp) -> (reqwest::Client, String) {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let page = text_of(&browser, app.url("/login")).await;
    let needle = "name=\"_csrf\" value=\"";
    let at = page.find(needle).expect("a CSRF token on the login page") + needle.len();
    let token = page[at..at + page[at..].find('"').unwrap()].to_owned();
    (browser, token)
}

/// Every way text reaches the database from a request refuses a NUL, naming the field.
async fn nul_is_refused_everywhere(app: &TestApp) {
    // Query strings: 400.
    for (path, field) in [
        ("/workers?q=a%00b", "q"),
        ("/workers?job=a%00b", "job"),
        ("/workers?group=a%00b", "group"),
        ("/workers?status=all&q=%00", "q"),
        ("/workers/events?q=a%00b", "q"),
        ("/workers/new?job=a%00b", "job"),
        ("/audit?actor=a%00b", "actor"),
        ("/audit?target=job%3A%00", "target"),
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(says(&body, field), "{path} names {field}: {body}");
    }

    // JSON bodies: 422, naming the path inside the body.
    let (status, body) = app
        .post_json(
            "/workers",
            &json!({"job": "Work", "args": {"secret": "a\u{0}b"}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(says(&body, "args.secret"), "{body}");
    let (status, body) = app
        .post_json(
            "/workers",
            &json!({"job": "Work", "args": {"items": [{"sku": "ok"}, {"sku": "\u{0}"}]}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(says(&body, "args.items[1].sku"), "{body}");
    let (status, body) = app
        .post_json("/workers", &json!({"job": "Wo\u{0}rk"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(says(&body, "job"), "{body}");

    // Updating a waiting job.
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let id = app
        .worker
        .schedule_dynamic("Work", &json!({}), later)
        .await
        .unwrap();
    let (status, body) = put_json(
        app,
        &format!("/workers/{id}"),
        &json!({"args": {"secret": "x\u{0}"}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(says(&body, "args.secret"), "{body}");

    // A form field: the page says which field, and so does JSON.
    let res = app
        .post_form("/workers", &[("job", "Work"), ("secret", "a\0b")])
        .await;
    assert_eq!(res.status().as_u16(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains(&format!("secret: {NUL}")), "{html}");
    let res = app
        .client
        .post(app.url("/workers"))
        .header("Accept", "application/json")
        .form(&[("job", "Work"), ("secret", "a\0b")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 422);
    let body: Value = res.json().await.unwrap();
    assert!(says(&body, "secret"), "{body}");

    // Logging in: a form, and JSON (sent without an Accept header, answered in JSON).
    let (browser, token) = login_page(app).await;
    let res = browser
        .post(app.url("/login"))
        .form(&[
            ("name", "ad\0min"),
            ("password", "whatever1"),
            ("_csrf", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains(&format!("name: {NUL}")), "{html}");
    let res = browser
        .post(app.url("/login"))
        .header("x-csrf-token", &token)
        .json(&json!({"name": "ad\u{0}min", "password": "whatever1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 422);
    let body: Value = res.json().await.unwrap();
    assert!(says(&body, "name"), "{body}");

    // Operators and tokens.
    for (path, body, field) in [
        (
            "/operators",
            json!({"name": "bob\u{0}", "password": "long enough"}),
            "name",
        ),
        (
            "/operators",
            json!({"name": "bob", "password": "long\u{0}enough"}),
            "password",
        ),
        (
            "/tokens",
            json!({"operator": "admin", "name": "ci\u{0}"}),
            "name",
        ),
        (
            "/tokens",
            json!({"operator": "ad\u{0}min", "name": "ci"}),
            "operator",
        ),
    ] {
        let (status, answer) = app.post_json(path, &body).await;
        assert_eq!(status, 422, "{path} {body}: {answer}");
        assert!(says(&answer, field), "{path} names {field}: {answer}");
    }

    // The library refuses such arguments too, naming the field.
    for res in [
        app.worker
            .insert(NewJob::from_value("Work", json!({"secret": "a\u{0}b"})))
            .await
            .map(|_| ()),
        app.worker
            .update(id, json!({"secret": "\u{0}"}), None)
            .await
            .map(|_| ()),
    ] {
        match res {
            Err(Error::InvalidArgs {
                field: Some(f),
                message,
            }) => {
                assert_eq!(f, "secret");
                assert_eq!(message, NUL);
            }
            other => panic!("expected InvalidArgs naming secret, got {other:?}"),
        }
    }

    // Nothing was created by any of this, and the app still answers.
    let (status, body) = app.get_json("/workers").await;
    assert_eq!(status, 200);
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_any_input_is_a_4xx_naming_the_field_on_sqlite() {
    let app = spawn_app().await;
    nul_is_refused_everywhere(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_any_input_is_a_4xx_naming_the_field_on_postgres() {
    let Some(pg) = PgDb::create().await else {
        return;
    };
    let app = spawn_app_on(&pg.url).await;
    nul_is_refused_everywhere(&app).await;
    app.worker.shutdown().await;
    pg.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_a_handler_reports_with_a_nul_is_stored_on_postgres() {
    let Some(pg) = PgDb::create().await else {
        return;
    };
    let app = spawn_app_on(&pg.url).await;
    app.worker
        .register(JobKind::new(
            "Nul Text",
            |_: Args, ctx: JobContext| async move {
                ctx.log("before\0after").await?;
                ctx.set_progress_text("step\0one").await?;
                ctx.add_result_row(vec![ResultCell::error("v\0", "e\0")])
                    .await?;
                Ok(())
            },
        ))
        .unwrap();
    app.worker
        .register(
            JobKind::new("Nul Fail", |_: Args, ctx: JobContext| async move {
                ctx.log("failing").await?;
                anyhow::bail!("bad\0news")
            })
            .max_attempts(1),
        )
        .unwrap();
    app.worker
        .register(JobKind::new(
            "Nul Done",
            |_: Args, ctx: JobContext| async move {
                ctx.log("a line with a \0 in it").await?;
                Ok(())
            },
        ))
        .unwrap();

    let done = app.create("Nul Done", json!({})).await;
    let job = finished(&app.worker, done).await;
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    let lines: Vec<String> = app
        .worker
        .logs(done, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(lines, ["a line with a \u{FFFD} in it"]);

    // Progress text and result cells too (an error cell ends it in `exception`).
    let text = app.create("Nul Text", json!({})).await;
    let job = finished(&app.worker, text).await;
    assert_eq!(job.status, JobStatus::Exception, "{job:?}");
    assert_eq!(job.progress_text.as_deref(), Some("step\u{FFFD}one"));
    let results = app.worker.results(text).await.unwrap();
    assert_eq!(results, [vec![ResultCell::error("v\u{FFFD}", "e\u{FFFD}")]]);
    let logs = app.worker.logs(text, 100).await.unwrap();
    assert_eq!(logs[0].line, "before\u{FFFD}after");

    // An error message.
    let fail = app.create("Nul Fail", json!({})).await;
    let job = finished(&app.worker, fail).await;
    assert_eq!(job.status, JobStatus::Exception);
    assert!(
        job.error
            .as_deref()
            .unwrap_or("")
            .contains("bad\u{FFFD}news"),
        "{job:?}"
    );
    // The admin shows them.
    let (status, body) = app.get_json(&format!("/workers/{done}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["log"][0]["line"], "a line with a \u{FFFD} in it");

    app.worker.shutdown().await;
    pg.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_sent_gets_json_back_without_an_accept_header() {
    let app = spawn_app().await;
    let is_json = |res: &reqwest::Response| {
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
    };

    // An error.
    let res = app
        .client
        .post(app.url("/workers"))
        .json(&json!({"job": "No Such Kind"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 422);
    assert!(is_json(&res));
    let body: Value = res.json().await.unwrap();
    assert!(body["fields"]["job"].is_string(), "{body}");

    // Not signed in.
    let res = app
        .anonymous
        .post(app.url("/workers"))
        .json(&json!({"job": "Work"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert!(is_json(&res));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "Please log in.");

    // An action answers with the job, not a redirect.
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let id = app
        .worker
        .schedule_dynamic("Work", &json!({}), later)
        .await
        .unwrap();
    let res = app
        .client
        .post(app.url(&format!("/workers/{id}/cancel")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(is_json(&res));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");

    // A method a path does not take.
    let res = app
        .client
        .patch(app.url("/workers"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert!(res.headers().contains_key("allow"));
    assert!(is_json(&res));

    // An unreadable query is a JSON 400 too.
    let (status, body) = app.get_json(&format!("/workers/{id}/events?after=x")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_operators_and_audit_answer_json() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/tokens").await;
    assert_eq!(status, 200, "{body}");
    let tokens = body["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    let t = &tokens[0];
    assert_eq!(
        keys(t),
        [
            "created_at",
            "id",
            "last_used_at",
            "name",
            "operator",
            "revoked_at"
        ]
    );
    assert_eq!(t["name"], "tests");
    assert_eq!(t["operator"], "admin");
    assert!(t["last_used_at"].is_string(), "the tests use it: {t}");
    assert!(t["revoked_at"].is_null());

    let (status, body) = app.get_json("/operators").await;
    assert_eq!(status, 200, "{body}");
    let ops = body["operators"].as_array().unwrap();
    assert_eq!(
        keys(&ops[0]),
        ["created_at", "disabled", "id", "name", "role"]
    );
    assert_eq!(ops[0]["name"], "admin");
    assert!(!body.to_string().contains("argon2"), "{body}");

    let (status, body) = app.get_json("/audit").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["entries"].is_array(), "{body}");
    assert!(body.as_object().unwrap().contains_key("next"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_quote_only_a_short_excerpt_of_the_input() {
    let app = spawn_app().await;
    let big = "x".repeat(1024 * 1024);
    let send = |req: reqwest::RequestBuilder| async move {
        let res = req
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, text)
    };
    let cases = [
        (
            "json kind",
            app.client
                .post(app.url("/workers"))
                .json(&json!({"job": big})),
            Some("job"),
        ),
        (
            "form kind",
            app.client
                .post(app.url("/workers"))
                .form(&[("job", big.as_str())]),
            Some("job"),
        ),
        (
            "json arg",
            app.client
                .post(app.url("/workers"))
                .json(&json!({"job": "Work", "args": {"ms": big}})),
            None,
        ),
        (
            "unknown field",
            app.client
                .post(app.url("/workers"))
                .json(&json!({"job": "Work", big.clone(): 1})),
            None,
        ),
        (
            "role",
            app.client
                .post(app.url("/operators"))
                .json(&json!({"name": "bob", "password": "long enough", "role": big})),
            Some("role"),
        ),
        (
            "token operator",
            app.client
                .post(app.url("/tokens"))
                .json(&json!({"operator": big, "name": "ci"})),
            None,
        ),
    ];
    for (what, req, field) in cases {
        let (status, text) = send(req).await;
        assert!((400..500).contains(&status), "{what}: {status}");
        assert!(text.len() < 2048, "{what}: {} bytes", text.len());
        let body: Value = serde_json::from_str(&text).unwrap();
        assert!(
            body["error"].as_str().unwrap().contains('…'),
            "{what}: {body}"
        );
        if let Some(f) = field {
            assert!(body["fields"][f].is_string(), "{what} names {f}: {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_schedule_time_names_schedule_at() {
    let app = spawn_app().await;
    let named = |body: &Value| body["fields"]["schedule_at"].is_string();
    for body in [
        json!({"job": "Work", "schedule_at": "tomorrow"}),
        json!({"job": "Work", "schedule_at": 12}),
        json!({"job": "Fail", "schedule_at": "2030-01-01T00:00:00Z"}),
    ] {
        let (status, answer) = app.post_json("/workers", &body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert!(named(&answer), "{body}: {answer}");
    }
    for form in [
        [("job", "Work"), ("schedule_at", "not a date")],
        [("job", "Fail"), ("schedule_at", "2030-01-01T00:00:00Z")],
    ] {
        let res = app
            .client
            .post(app.url("/workers"))
            .header("Accept", "application/json")
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 422);
        let answer: Value = res.json().await.unwrap();
        assert!(named(&answer), "{form:?}: {answer}");
    }
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let id = app
        .worker
        .schedule_dynamic("Work", &json!({}), later)
        .await
        .unwrap();
    let (status, answer) = put_json(
        &app,
        &format!("/workers/{id}"),
        &json!({"schedule_at": "soon"}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(named(&answer), "{answer}");
    let res = app
        .client
        .post(app.url(&format!("/workers/{id}")))
        .header("Accept", "application/json")
        .form(&[("_method", "PUT"), ("schedule_at", "soon")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 422);
    let answer: Value = res.json().await.unwrap();
    assert!(named(&answer), "{answer}");
}
