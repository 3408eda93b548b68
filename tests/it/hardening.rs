//! What an attacker and a bad day try: login floods, racing setup links, slow headers, anonymous
//! traffic, cross-site posts under a host's own sign-in, kinds this process does not know, and
//! a database that is down.
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use nightshift::Role;
use nightshift::auth::{Accounts, Auth, Authenticator, Operator};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::{ADMIN_PASSWORD, TestApp, spawn_app, spawn_app_on};
use crate::helpers::{builder, register, temp_db};

/// A browser-like client (cookies, no redirects), sending from `from` when given (any
/// 127.x.y.z works on Linux loopback: a second "address" for the throttle).
fn browser(from: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true);
    if let Some(ip) = from {
        b = b.local_address(ip.parse::<IpAddr>().unwrap());
    }
    b.build().unwrap()
}

/// The CSRF token a page carries in its meta tag.
fn meta_csrf(html: &str) -> Option<String> {
    let needle = "name=\"csrf-token\" content=\"";
    let start = html.find(needle)? + needle.len();
    Some(html[start..].split('"').next()?.to_owned())
}

/// Opens the login page with `c` (which keeps its CSRF cookie) and returns the form's token.
async fn login_token(base: &str, c: &reqwest::Client) -> String {
    let page = c
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    meta_csrf(&page).expect("the login page carries <meta name=\"csrf-token\">")
}

async fn try_login(base: &str, c: &reqwest::Client, token: &str, name: &str, pw: &str) -> u16 {
    c.post(format!("{base}/login"))
        .form(&[("name", name), ("password", pw), ("_csrf", token)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn count_rows(app: &TestApp, table: &str) -> i64 {
    let db = app.worker.store().connection();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_login_flood_is_held_and_the_real_user_elsewhere_gets_in_at_once() {
    let app = spawn_app().await;
    let base = app.url("");
    let attacker = browser(None);
    let token = login_token(&base, &attacker).await;
    let flood = (0..300).map(|_| {
        let (c, base, token) = (attacker.clone(), base.clone(), token.clone());
        async move { try_login(&base, &c, &token, "admin", "wrong password").await }
    });
    let statuses = futures::future::join_all(flood).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        statuses.iter().all(|s| matches!(s, 401 | 429 | 503)),
        "only refusals: {statuses:?}"
    );
    assert!(
        (1..=5).contains(&checked),
        "at most 5 of 300 parallel guesses are checked, got {checked}"
    );
    // The right password from the flooding address: still refused.
    assert_eq!(
        try_login(&base, &attacker, &token, "admin", ADMIN_PASSWORD).await,
        429
    );
    // The real user from another address gets in at once.
    let user = browser(Some("127.0.0.2"));
    let token = login_token(&base, &user).await;
    assert_eq!(
        try_login(&base, &user, &token, "admin", ADMIN_PASSWORD).await,
        303,
        "the account is not locked for everyone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_guessing_many_names_is_throttled_without_hashing() {
    let app = spawn_app().await;
    let base = app.url("");
    let c = browser(Some("127.0.0.3"));
    let token = login_token(&base, &c).await;
    let mut statuses = vec![];
    for i in 0..(nightshift::auth::accounts::ADDRESS_MAX + 5) {
        statuses.push(try_login(&base, &c, &token, &format!("user{i}"), "wrong password").await);
    }
    assert!(statuses[..50].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[50..].iter().all(|s| *s == 429), "{statuses:?}");
    // Throttled attempts write no audit rows: the table grows by the counted attempts only.
    assert_eq!(count_rows(&app, "nightshift_audit").await, 50);
}

/// The resident memory high-water mark of process `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_logins_keep_the_server_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display());
    crate::process::cli(
        dir.path(),
        &[
            "operator",
            "add",
            "alice",
            "--role",
            "admin",
            "--database-url",
            &url,
        ],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    let server = crate::process::Server::start(dir.path(), &["--no-demo", "--database-url", &url]);
    let base = server.base.clone();
    let before = peak_rss_mib(server.child.id());
    // Four addresses, 50 distinct names each: every attempt passes the throttle and needs a
    // password check, so only the hashing gate stands between them and the memory.
    let mut attempts = vec![];
    for a in 0..4 {
        let c = browser(Some(&format!("127.0.0.{}", 20 + a)));
        let token = login_token(&base, &c).await;
        for i in 0..50 {
            let (c, base, token) = (c.clone(), base.clone(), token.clone());
            attempts.push(async move {
                try_login(&base, &c, &token, &format!("u{a}x{i}"), "wrong password").await
            });
        }
    }
    let statuses = futures::future::join_all(attempts).await;
    let peak = peak_rss_mib(server.child.id());
    drop(server);
    assert!(
        statuses.iter().all(|s| matches!(s, 401 | 503)),
        "{statuses:?}"
    );
    // Each argon2 check takes ~19 MiB; unbounded, 200 at once took 3.5 GB.
    assert!(
        peak < 120,
        "peak RSS {peak} MiB (before the flood: {before} MiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setup_link_used_by_parallel_requests_creates_one_admin() {
    let db = temp_db();
    let worker = builder(&db).build().await.unwrap();
    let accounts = Accounts::new(worker.store().connection().clone());
    let setup = accounts.create_setup_token().await.unwrap();
    let base = serve(nightshift::admin::router(worker.clone(), Auth::sessions())).await;
    let c = browser(None);
    let page = c
        .get(format!("{base}/setup?token={setup}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = meta_csrf(&page).unwrap();
    let tries = (0..8).map(|i| {
        let (c, base, csrf, setup) = (c.clone(), base.clone(), csrf.clone(), setup.clone());
        async move {
            c.post(format!("{base}/setup"))
                .form(&[
                    ("_csrf", csrf.as_str()),
                    ("token", setup.as_str()),
                    ("name", format!("admin{i}").as_str()),
                    ("password", "long enough pw"),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(tries).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(accounts.count().await.unwrap(), 1);
}

/// Serves `app` on port 0 with the library's server; returns its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(nightshift::admin::serve::serve(
        listener,
        app,
        std::future::pending(),
        nightshift::admin::serve::ServeOptions::default(),
    ));
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_not_kept_by_the_browser_and_anonymous_traffic_writes_nothing() {
    let app = spawn_app().await;
    let (sessions, audit) = (
        count_rows(&app, "nightshift_sessions").await,
        count_rows(&app, "nightshift_audit").await,
    );
    let res = app.client.get(app.url("/workers")).send().await.unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    for _ in 0..20 {
        let c = browser(None);
        let page = c.get(app.url("/login")).send().await.unwrap();
        assert_eq!(page.headers()["cache-control"], "no-store");
        let html = page.text().await.unwrap();
        assert!(
            meta_csrf(&html).is_some(),
            "the login page carries the meta tag"
        );
        c.get(app.url("/workers")).send().await.unwrap();
        c.post(app.url("/workers"))
            .form(&[("job", "Ping")])
            .send()
            .await
            .unwrap();
        c.post(app.url("/logout")).send().await.unwrap();
        c.post(app.url("/workers/1/abort"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(count_rows(&app, "nightshift_sessions").await, sessions);
    assert_eq!(count_rows(&app, "nightshift_audit").await, audit);
    // A login form posted without its CSRF token is refused (login CSRF).
    let c = browser(None);
    let res = c
        .post(app.url("/login"))
        .form(&[("name", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive_and_unknown_tokens_are_throttled() {
    let app = spawn_app().await;
    let accounts = Accounts::new(app.worker.store().connection().clone());
    let (token, _) = accounts.create_token("admin", "lower").await.unwrap();
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let res = app
            .anonymous
            .get(app.url("/workers"))
            .header("Accept", "application/json")
            .header("Authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{scheme}");
    }
    let c = reqwest::Client::builder()
        .local_address("127.0.0.4".parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let mut statuses = vec![];
    for i in 0..(nightshift::auth::accounts::TOKEN_MAX + 3) {
        let res = c
            .get(app.url("/workers"))
            .header("Accept", "application/json")
            .header("Authorization", format!("Bearer ns_guess{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
}

/// A host's sign-in that trusts an `X-User` header (as a proxy would set it).
struct HeaderAuth;

#[async_trait::async_trait]
impl Authenticator for HeaderAuth {
    async fn authenticate(&self, parts: &axum::http::request::Parts) -> Option<Operator> {
        let name = parts.headers.get("x-user")?.to_str().ok()?.to_owned();
        Some(Operator {
            name,
            role: Role::Admin,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosts_own_sign_in_gets_the_csrf_token_too() {
    let db = temp_db();
    let worker = builder(&db).build().await.unwrap();
    register(&worker);
    let base = serve(nightshift::admin::router(
        worker.clone(),
        Auth::custom(HeaderAuth),
    ))
    .await;
    let c = browser(None);
    // Without the token (what a cross-site form carrying the host's cookie would send): refused.
    let res = c
        .post(format!("{base}/workers"))
        .header("x-user", "alice")
        .form(&[("job", "Work")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    assert!(
        matches!(worker.job(1).await, Err(nightshift::Error::NotFound(1))),
        "no job was created"
    );
    // The page hands out the token; echoed with its cookie, the form works.
    let page = c
        .get(format!("{base}/workers/new?job=Work"))
        .header("x-user", "alice")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = meta_csrf(&page).expect("a page under the host's sign-in carries the token");
    let res = c
        .post(format!("{base}/workers"))
        .header("x-user", "alice")
        .header("Accept", "application/json")
        .form(&[("job", "Work"), ("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);

    // A host that protects every request itself can turn it off.
    let base = serve(nightshift::admin::router(
        worker.clone(),
        Auth::custom(HeaderAuth).without_csrf(),
    ))
    .await;
    let res = reqwest::Client::new()
        .post(format!("{base}/workers"))
        .header("x-user", "alice")
        .header("Accept", "application/json")
        .json(&json!({"job": "Work", "args": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_may_act_on_a_kind_this_process_does_not_know() {
    let app = spawn_app().await;
    // Another process registered "Payroll" and queued a job of it.
    let other = builder(&app.db).build().await.unwrap();
    other
        .register(nightshift::JobKind::new(
            "Payroll",
            |_: serde_json::Value, _| async { Ok(()) },
        ))
        .unwrap();
    // The admin's own worker never claims it: it has no handler for it.
    let id = other.enqueue_dynamic("Payroll", &json!({})).await.unwrap();
    let accounts = Accounts::new(app.worker.store().connection().clone());
    accounts
        .add("olga", "operator password", Role::Operator)
        .await
        .unwrap();
    let (token, _) = accounts.create_token("olga", "t").await.unwrap();
    let res = app
        .anonymous
        .post(app.url(&format!("/workers/{id}/cancel")))
        .header("Authorization", format!("Bearer {token}"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403, "an operator may not");
    let res = app
        .client
        .post(app.url(&format!("/workers/{id}/cancel")))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "an admin may");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_headers_slowly_is_cut_off() {
    let db = temp_db();
    let worker = builder(&db).build().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(nightshift::admin::serve::serve(
        listener,
        nightshift::admin::router(worker, Auth::sessions()),
        std::future::pending(),
        nightshift::admin::serve::ServeOptions {
            header_read_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    ));
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One header line every 200 ms, for up to 6 s: the server must close the connection.
    let mut closed = false;
    for i in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if conn
            .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(1), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => {
                // An error answer (408) followed by the close also counts.
                closed = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(closed, "a slow-header client held its connection for 6 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_at_start_up_is_named_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            Command::new(env!("CARGO_BIN_EXE_nightshift"))
                .args([
                    "serve",
                    "--bind",
                    "127.0.0.1:0",
                    "--database-url",
                    "postgres://postgres@127.0.0.1:1/test",
                ])
                .current_dir(dir)
                .output()
                .unwrap()
        }
    });
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("start-up fails within seconds, not after a pool timeout")
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:1"), "names where: {stderr}");
    assert!(
        stderr.to_ascii_lowercase().contains("refused"),
        "names the cause: {stderr}"
    );
}

/// A TCP proxy to PostgreSQL that can be cut, as a network outage would.
struct Outage {
    port: u16,
    cut: tokio_util::sync::CancellationToken,
}

impl Outage {
    async fn start(target: String) -> Outage {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = tokio_util::sync::CancellationToken::new();
        let stop = cut.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    c = listener.accept() => c.unwrap(),
                    _ = stop.cancelled() => return,
                };
                let target = target.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        Outage { port, cut }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_database_outage_the_admin_answers_503() {
    let Some(pg) = crate::postgres::PgDb::create().await else {
        return;
    };
    let host_port = pg
        .url
        .split('@')
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    let outage = Outage::start(host_port.clone()).await;
    let proxied = pg
        .url
        .replace(&host_port, &format!("127.0.0.1:{}", outage.port));
    let app = spawn_app_on(&proxied).await;
    let (status, _) = app.get_json("/workers").await;
    assert_eq!(status, 200);
    outage.cut.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = app.get_json("/workers").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("database is unavailable"),
        "{body}"
    );
    let (status, html) = app.get_html("/workers").await;
    assert_eq!(status, 503);
    assert!(html.contains("database is unavailable"), "a plain page");
    app.worker.shutdown().await;
    pg.drop_db().await;
}
