//! `spawn_app`: a real admin server on port 0 over a real SQLite file, with running workers.
use std::time::Duration;

use nightshift::Worker;

use crate::helpers::{TestDb, builder, register, temp_db};

pub struct TestApp {
    pub addr: String,
    /// The mount prefix ("" or e.g. "/admin/jobs").
    pub prefix: String,
    pub worker: Worker,
    /// Signed in as the admin (by API token).
    pub client: reqwest::Client,
    /// Not signed in, no cookies.
    pub anonymous: reqwest::Client,
    pub db: TestDb,
}

/// The password of the `admin` operator every test app has.
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// The admin at the root.
pub async fn spawn_app() -> TestApp {
    spawn_app_at("").await
}

/// The admin nested under `prefix` in a host app that has routes of its own.
pub async fn spawn_app_at(prefix: &str) -> TestApp {
    spawn(prefix, true).await
}

/// The admin with no workers of its own (`serve --no-workers`): jobs run elsewhere.
pub async fn spawn_admin_only() -> TestApp {
    spawn("", false).await
}

/// The admin with no workers of its own over the database at `url`.
pub async fn spawn_admin_only_on(url: &str) -> TestApp {
    let mut db = temp_db();
    db.url = url.to_owned();
    spawn_with(db, "", false).await
}

/// The admin at the root over the database at `url` (e.g. a fresh PostgreSQL database).
pub async fn spawn_app_on(url: &str) -> TestApp {
    let mut db = temp_db();
    db.url = url.to_owned();
    spawn_with(db, "", true).await
}

/// The admin at the root with the built-in login set up as `opts` says.
pub async fn spawn_app_with_sessions(opts: nightshift::auth::SessionOptions) -> TestApp {
    let auth = nightshift::auth::Auth::Sessions(opts);
    spawn_with_auth(temp_db(), "", true, auth, None).await
}

/// The admin at the root, its worker's shutdown waiting up to `drain` for what still runs.
pub async fn spawn_app_with_drain(drain: Duration) -> TestApp {
    let auth = nightshift::auth::Auth::sessions();
    spawn_with_auth(temp_db(), "", true, auth, Some(drain)).await
}

async fn spawn(prefix: &str, run_jobs: bool) -> TestApp {
    spawn_with(temp_db(), prefix, run_jobs).await
}

async fn spawn_with(db: TestDb, prefix: &str, run_jobs: bool) -> TestApp {
    spawn_with_auth(
        db,
        prefix,
        run_jobs,
        nightshift::auth::Auth::sessions(),
        None,
    )
    .await
}

async fn spawn_with_auth(
    db: TestDb,
    prefix: &str,
    run_jobs: bool,
    auth: nightshift::auth::Auth,
    drain: Option<Duration>,
) -> TestApp {
    let mut worker = builder(&db).grace_period(Duration::from_millis(500));
    if let Some(drain) = drain {
        worker = worker.drain_timeout(drain);
    }
    let worker = worker.build().await.unwrap();
    nightshift::demo::register(&worker).unwrap();
    register(&worker);
    if run_jobs {
        worker.start().await.unwrap();
    }
    let accounts = nightshift::auth::Accounts::new(worker.store().connection().clone());
    accounts
        .add("admin", ADMIN_PASSWORD, nightshift::Role::Admin)
        .await
        .unwrap();
    let (token, _) = accounts.create_token("admin", "tests").await.unwrap();
    let admin = nightshift::admin::router(worker.clone(), auth);
    let app: axum::Router = if prefix.is_empty() {
        admin
    } else {
        axum::Router::new()
            .route("/", axum::routing::get(|| async { "host app" }))
            .nest(prefix, admin)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(nightshift::admin::serve::serve(
        listener,
        app,
        std::future::pending(),
        nightshift::admin::serve::ServeOptions::default(),
    ));
    // Requests act as the admin through an API token (no CSRF token needed).
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap();
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        addr,
        prefix: prefix.to_owned(),
        worker,
        client,
        anonymous,
        db,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}{}", self.addr, self.prefix, path)
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let res = self
            .client
            .get(self.url(path))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get_html(&self, path: &str) -> (u16, String) {
        let res = self.client.get(self.url(path)).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let res = self
            .client
            .post(self.url(path))
            .header("Accept", "application/json")
            .json(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Creates a job through the API and returns its id.
    pub async fn create(&self, job: &str, args: serde_json::Value) -> i64 {
        let (status, body) = self
            .post_json("/workers", &serde_json::json!({"job": job, "args": args}))
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }
}

/// Reads a server-sent event stream until its `end` event (or 20 s), returning the text.
pub async fn read_until_end(mut res: reqwest::Response) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !text.contains("event: end") {
        let chunk = tokio::time::timeout_at(deadline, res.chunk())
            .await
            .expect("the stream reaches the end event in time");
        match chunk.unwrap() {
            Some(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            None => break,
        }
    }
    text
}

/// A page's CSRF token: a form's `_csrf` field or the `<meta name="csrf-token">` tag.
pub fn csrf_in(html: &str) -> String {
    for needle in ["name=\"_csrf\" value=\"", "name=\"csrf-token\" content=\""] {
        if let Some(i) = html.find(needle) {
            let rest = &html[i + needle.len()..];
            return rest[..rest.find('"').unwrap()].to_owned();
        }
    }
    panic!("no CSRF token in page: {html}");
}

/// A browser-like client (cookies, no redirects followed) signed in as `name` through the
/// login form, sent on to `next`.
pub async fn signed_in(app: &TestApp, name: &str, password: &str, next: &str) -> reqwest::Client {
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let page = text_of(&c, app.url("/login")).await;
    let token = csrf_in(&page);
    let res = c
        .post(app.url("/login"))
        .form(&[
            ("name", name),
            ("password", password),
            ("_csrf", token.as_str()),
            ("next", next),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303, "{name} signed in");
    c
}

/// The body of `GET url` by `c`, as text.
pub async fn text_of(c: &reqwest::Client, url: String) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}
