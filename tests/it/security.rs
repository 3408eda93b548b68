//! Operators and security: login, sessions, roles, CSRF, throttling, headers, audit, setup.
use nightshift::{JobStatus, Role};
use serde_json::json;

use crate::app::{
    ADMIN_PASSWORD, TestApp, csrf_in, signed_in, spawn_app, spawn_app_with_sessions, text_of,
};

/// A browser-like client with its own cookie jar.
fn browser_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap()
}

fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("nightshift_session="))
        .map(str::to_owned)
}

/// Logs `c` in through the login form; returns the Set-Cookie of the login answer.
async fn log_in(
    app: &TestApp,
    c: &reqwest::Client,
    name: &str,
    password: &str,
) -> reqwest::Response {
    let page = text_of(c, app.url("/login")).await;
    let token = csrf_in(&page);
    c.post(app.url("/login"))
        .form(&[
            ("name", name),
            ("password", password),
            ("_csrf", &token),
            ("next", "/workers"),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_login_no_route_gives_data() {
    let app = spawn_app().await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let id = app
        .worker
        .schedule_dynamic("Work", &json!({"secret": "hunter2"}), later)
        .await
        .unwrap();
    let gets = [
        "/".to_owned(),
        "/workers".into(),
        "/workers?status=running".into(),
        "/workers/new".into(),
        format!("/workers/{id}"),
        "/workers/events".into(),
        format!("/workers/{id}/events"),
        "/operators".into(),
        "/tokens".into(),
        "/audit".into(),
    ];
    for path in &gets {
        let res = app.anonymous.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 303, "{path}");
        assert!(
            res.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/login?next="),
            "{path}"
        );
        let res = app
            .anonymous
            .get(app.url(path))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 401, "{path}");
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("hunter2") && !body.contains("\"jobs\""),
            "{path}: {body}"
        );
    }
    let posts = [
        ("POST", "/workers".to_owned()),
        ("POST", format!("/workers/{id}/abort")),
        ("POST", format!("/workers/{id}/cancel")),
        ("POST", format!("/workers/{id}/rerun")),
        ("PUT", format!("/workers/{id}")),
        ("DELETE", format!("/workers/{id}")),
        ("POST", "/operators".into()),
        ("POST", "/tokens".into()),
    ];
    for (method, path) in &posts {
        let res = app
            .anonymous
            .request(method.parse().unwrap(), app.url(path))
            .header("Accept", "application/json")
            .json(&json!({"job": "Ping", "args": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 401, "{method} {path}");
    }
    assert_eq!(
        app.worker.job(id).await.unwrap().status,
        JobStatus::Scheduled
    );
    let (_, list) = app.get_json("/workers").await;
    assert_eq!(list["counts"]["all"], 1, "nothing was created");
    let res = app
        .anonymous
        .get(app.url("/workers"))
        .header("Authorization", "Bearer ns_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    // Health and assets stay open.
    assert_eq!(
        app.anonymous
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        app.anonymous
            .get(app.url("/assets/nightshift.css"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stays_while_its_operator_works_and_ends_once_they_stop() {
    let idle = std::time::Duration::from_secs(4);
    let app = spawn_app_with_sessions(nightshift::auth::SessionOptions {
        idle_timeout: idle,
        ..Default::default()
    })
    .await;
    let c = signed_in(&app, "admin", ADMIN_PASSWORD, "/workers").await;
    let list = |c: &reqwest::Client| {
        let url = app.url("/workers");
        let c = c.clone();
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    // Working past the idle timeout since login, a request a second: still signed in.
    let started = std::time::Instant::now();
    while started.elapsed() < idle + idle / 2 {
        assert_eq!(
            list(&c).await,
            200,
            "signed out mid-work after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    // Gone for longer than the idle timeout: signed out.
    tokio::time::sleep(idle + std::time::Duration::from_secs(1)).await;
    assert_eq!(
        list(&c).await,
        303,
        "still signed in after {idle:?} without a request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_renews_the_session_and_logout_kills_it() {
    let app = spawn_app().await;
    // A session id planted before login (session fixation) must be worth nothing after it.
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let planted = "nightshift_session=planted0000000000000000000000";
    jar.add_cookie_str(
        &format!("{planted}; Path=/"),
        &app.url("/").parse().unwrap(),
    );
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar)
        .build()
        .unwrap();
    let page = c.get(app.url("/login")).send().await.unwrap();
    assert!(
        session_cookie(&page).is_none_or(|c| c.starts_with("nightshift_session=;")),
        "an anonymous page stores no session (an unknown one is only cleared)"
    );
    let csrf_cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("nightshift_csrf="))
        .expect("the login form's CSRF cookie")
        .to_ascii_lowercase();
    assert!(csrf_cookie.contains("httponly"), "{csrf_cookie}");
    assert!(csrf_cookie.contains("samesite=strict"), "{csrf_cookie}");
    let before = planted.to_owned();
    let token = csrf_in(&page.text().await.unwrap());
    let res = c
        .post(app.url("/login"))
        .form(&[
            ("name", "admin"),
            ("password", ADMIN_PASSWORD),
            ("_csrf", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let after = session_cookie(&res).expect("a new session cookie at login");
    let cookie_flags = after.to_ascii_lowercase();
    assert!(cookie_flags.contains("httponly"), "{after}");
    assert!(cookie_flags.contains("samesite=strict"), "{after}");
    assert!(cookie_flags.contains("path=/"), "{after}");
    let id = |c: &str| c.split(';').next().unwrap().to_owned();
    assert_ne!(id(&before), id(&after), "session id renewed at login");
    let res = c
        .get(app.url("/workers"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);

    // Log out; the old cookie, replayed, opens nothing.
    let page = text_of(&c, app.url("/workers")).await;
    let token = csrf_in(&page);
    let res = c
        .post(app.url("/logout"))
        .form(&[("_csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let replay = app
        .anonymous
        .get(app.url("/workers"))
        .header("Accept", "application/json")
        .header("Cookie", id(&after))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_need_the_csrf_token_and_same_origin() {
    let app = spawn_app().await;
    let c = browser_client();
    assert_eq!(
        log_in(&app, &c, "admin", ADMIN_PASSWORD)
            .await
            .status()
            .as_u16(),
        303
    );
    let page = text_of(&c, app.url("/workers")).await;
    let token = csrf_in(&page);
    assert!(page.contains(&format!("<meta name=\"csrf-token\" content=\"{token}\">")));
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let id = app
        .worker
        .schedule_dynamic("Work", &json!({}), later)
        .await
        .unwrap();
    let cancel = app.url(&format!("/workers/{id}/cancel"));

    let res = c.post(&cancel).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 403, "no token");
    let res = c
        .post(&cancel)
        .header("X-CSRF-Token", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403, "wrong token");
    let res = c
        .post(&cancel)
        .form(&[("_csrf", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403, "wrong form token");
    let res = c
        .post(&cancel)
        .header("X-CSRF-Token", &token)
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403, "cross-site");
    let res = c
        .post(&cancel)
        .header("X-CSRF-Token", &token)
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403, "foreign origin");
    assert_eq!(
        app.worker.job(id).await.unwrap().status,
        JobStatus::Scheduled
    );

    let res = c
        .post(&cancel)
        .header("X-CSRF-Token", &token)
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204, "htmx with the header token");
    assert!(res.headers().contains_key("hx-redirect"));
    assert_eq!(
        app.worker.job(id).await.unwrap().status,
        JobStatus::Cancelled
    );
    let id2 = app
        .worker
        .schedule_dynamic("Work", &json!({}), later)
        .await
        .unwrap();
    let res = c
        .post(app.url(&format!("/workers/{id2}/cancel")))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status().as_u16(),
        303,
        "a plain form with the field token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_but_cannot_change_anything_and_denials_are_audited() {
    let app = spawn_app().await;
    let accounts = nightshift::auth::Accounts::new(app.worker.store().connection().clone());
    accounts
        .add("vera", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    let (token, _) = accounts.create_token("vera", "read").await.unwrap();
    let viewer = |m: reqwest::Method, p: &str| {
        app.anonymous
            .request(m, app.url(p))
            .header("Authorization", format!("Bearer {token}"))
            .header("Accept", "application/json")
    };
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let waiting = app
        .worker
        .schedule_dynamic("Work", &json!({"secret": "hunter2"}), later)
        .await
        .unwrap();
    let running = app.create("Work", json!({"ms": 30_000})).await;
    crate::helpers::wait_for(&app.worker, running, "running", |j| {
        j.status == JobStatus::Running
    })
    .await;

    let res = viewer(reqwest::Method::GET, &format!("/workers/{waiting}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body = res.text().await.unwrap();
    assert!(!body.contains("hunter2"), "secrets are never shown: {body}");
    // Nor can they be found by searching the arguments, a character at a time.
    let res = viewer(reqwest::Method::GET, "/workers?q=hunter")
        .send()
        .await
        .unwrap();
    let found: serde_json::Value = res.json().await.unwrap();
    assert_eq!(found["jobs"].as_array().unwrap().len(), 0, "{found}");
    // Nor by its key: a masked value holds no word to find.
    let res = viewer(reqwest::Method::GET, "/workers?q=secret%3Ahunter2")
        .send()
        .await
        .unwrap();
    let found: serde_json::Value = res.json().await.unwrap();
    assert_eq!(found["jobs"].as_array().unwrap().len(), 0, "{found}");
    for (m, p) in [
        (reqwest::Method::POST, format!("/workers/{running}/abort")),
        (reqwest::Method::POST, format!("/workers/{waiting}/cancel")),
        (reqwest::Method::PUT, format!("/workers/{waiting}")),
        (reqwest::Method::POST, format!("/workers/{waiting}/rerun")),
        (reqwest::Method::POST, "/workers".to_owned()),
        (reqwest::Method::GET, "/operators".to_owned()),
        (reqwest::Method::GET, "/audit".to_owned()),
    ] {
        let res = viewer(m.clone(), &p)
            .json(&json!({"job": "Work", "args": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 403, "{m} {p}");
    }
    assert_eq!(
        app.worker.job(running).await.unwrap().status,
        JobStatus::Running
    );
    assert_eq!(
        app.worker.job(waiting).await.unwrap().status,
        JobStatus::Scheduled
    );
    let (_, list) = app.get_json("/workers").await;
    assert_eq!(list["counts"]["all"], 2, "no job was created or rerun");

    // The audit log has the denials and the admin's allowed action.
    let (status, _) = app
        .post_json(&format!("/workers/{waiting}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, audit) = app.get_json("/audit").await;
    assert_eq!(status, 200);
    let entries = audit["entries"].as_array().unwrap();
    let has = |actor: &str, action: &str, outcome: &str| {
        entries
            .iter()
            .any(|e| e["actor"] == actor && e["action"] == action && e["outcome"] == outcome)
    };
    assert!(has("vera", "abort_job", "denied"), "{audit}");
    assert!(has("vera", "cancel_job", "denied"));
    assert!(has("admin", "cancel_job", "ok"));
    assert!(has("admin", "create_job", "ok"));
    let target = format!("job:{waiting}");
    assert!(
        entries
            .iter()
            .any(|e| e["target"] == target.as_str() && e["address"] == "127.0.0.1")
    );
    // And the job page shows who acted on it.
    let (_, html) = app.get_html(&format!("/workers/{waiting}")).await;
    assert!(
        html.contains("Who acted on it") && html.contains("vera"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sixth_bad_password_is_throttled_and_unknown_names_look_the_same() {
    let app = spawn_app().await;
    let c = browser_client();
    for i in 1..=5 {
        let res = log_in(&app, &c, "admin", "wrong password").await;
        assert_eq!(res.status().as_u16(), 401, "attempt {i}");
        assert!(
            res.text()
                .await
                .unwrap()
                .contains("Invalid name or password.")
        );
    }
    let res = log_in(&app, &c, "admin", ADMIN_PASSWORD).await;
    assert_eq!(
        res.status().as_u16(),
        429,
        "locked even with the right password"
    );
    // The lock is on this name from this address: the address is not locked for others.
    let unknown = log_in(&app, &browser_client(), "nobody", "wrong password").await;
    assert_eq!(
        unknown.status().as_u16(),
        401,
        "another name from this address"
    );
    let unknown_text = unknown.text().await.unwrap();
    assert!(unknown_text.contains("Invalid name or password."));
    let (_, audit) = app.get_json("/audit?action=login").await;
    let entries = audit["entries"].as_array().unwrap();
    // Counted attempts are audited; refused ones (throttled) leave a log line, not a row.
    assert_eq!(
        entries.iter().filter(|e| e["outcome"] == "failed").count(),
        6
    );
    assert!(!entries.iter().any(|e| e["outcome"] == "throttled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_the_security_headers() {
    let app = spawn_app().await;
    for path in ["/workers", "/login", "/healthz"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h.contains_key("referrer-policy"));
    }
    let (_, html) = app.get_html("/workers").await;
    assert!(html.contains("&quot;allowEval&quot;:false") || html.contains("\"allowEval\":false"));
    assert!(!html.contains("<script>"), "no inline script");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_link_creates_the_first_admin_once() {
    let db = crate::helpers::temp_db();
    let worker = crate::helpers::builder(&db).build().await.unwrap();
    let accounts = nightshift::auth::Accounts::new(worker.store().connection().clone());
    let token = accounts.create_setup_token().await.unwrap();
    let app: axum::Router =
        nightshift::admin::router(worker.clone(), nightshift::auth::Auth::sessions());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c = browser_client();
    let bad = c
        .get(format!("{addr}/setup?token=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 404);
    let page = c
        .get(format!("{addr}/setup?token={token}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_in(&page);
    let res = c
        .post(format!("{addr}/setup"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("token", &token),
            ("name", "alice"),
            ("password", "long enough pw"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let res = c
        .get(format!("{addr}/workers"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "logged in as the new admin");
    let alice = accounts.by_name("alice").await.unwrap().unwrap();
    assert_eq!(alice.role, "admin");
    assert!(
        alice
            .password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    );
    let again = c
        .get(format!("{addr}/setup?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 404, "the link dies once used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_operators_and_revoked_tokens_are_shut_out_and_kinds_can_require_admin() {
    let app = spawn_app().await;
    let accounts = nightshift::auth::Accounts::new(app.worker.store().connection().clone());
    let op = accounts
        .add("otto", "operator-password", Role::Operator)
        .await
        .unwrap();
    let (token, t) = accounts.create_token("otto", "x").await.unwrap();
    let as_otto = |p: &str| {
        app.anonymous
            .post(app.url(p))
            .header("Authorization", format!("Bearer {token}"))
            .header("Accept", "application/json")
    };
    app.worker
        .register(
            nightshift::JobKind::new("Drop Tables", |_: nightshift::demo::NoArgs, _| async {
                Ok(())
            })
            .role(Role::Admin),
        )
        .unwrap();
    let res = as_otto("/workers")
        .json(&json!({"job": "Drop Tables", "args": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403, "the kind needs an admin");
    let res = as_otto("/workers")
        .json(&json!({"job": "Ping", "args": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/workers/")
    );

    // Through the admin's pages: revoke the token, disable the operator.
    let (status, _) = app
        .post_json(&format!("/tokens/{}/revoke", t.id), &json!({}))
        .await;
    assert_eq!(status, 200);
    let res = as_otto("/workers")
        .json(&json!({"job": "Ping", "args": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let (status, _) = app
        .post_json(
            &format!("/operators/{}", op.id),
            &json!({"action": "disable"}),
        )
        .await;
    assert_eq!(status, 200);
    let c = browser_client();
    assert_eq!(
        log_in(&app, &c, "otto", "operator-password")
            .await
            .status()
            .as_u16(),
        401
    );
    // New operators through the page; bad input is refused with the field named.
    let (status, body) = app
        .post_json(
            "/operators",
            &json!({"name": "bob", "role": "viewer", "password": "short"}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(body["fields"]["password"].is_string(), "{body}");
    let (status, _) = app
        .post_json(
            "/operators",
            &json!({"name": "bob", "role": "viewer", "password": "long enough"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = app
        .post_json("/tokens", &json!({"operator": "bob", "name": "ci"}))
        .await;
    assert_eq!(status, 201);
    assert!(body["token"].as_str().unwrap().starts_with("ns_"));
    let (_, html) = app.get_html("/tokens").await;
    assert!(
        !html.contains(body["token"].as_str().unwrap()),
        "shown once only"
    );
}
