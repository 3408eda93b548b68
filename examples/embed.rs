//! A host app that embeds Nightshift: its own pages and sign-in, a signup that writes the app's
//! own row and enqueues a job in the same transaction, a worker in the same process, and the
//! Nightshift admin mounted at `/admin/jobs` behind the app's sign-in.
//!
//! ```text
//! cargo run --example embed
//! ```
//!
//! Then open <http://127.0.0.1:3000>, sign up an address, sign in as `alice` with the password
//! it prints, and open the admin. Environment: `EMBED_BIND` (default `127.0.0.1:3000`; port 0
//! picks a free one), `EMBED_PASSWORD` (default: a random one, printed), and
//! `NIGHTSHIFT_DATABASE_URL` (default: a throwaway SQLite file). Ctrl-C (or SIGTERM) stops it
//! gracefully: the server stops accepting, open requests drain, running jobs finish.
//!
//! The sign-in is deliberately small to keep the example short: one account, sessions in
//! memory. A real app uses its own user table (passwords hashed with argon2, failed logins
//! throttled) and its own session system (tower-sessions, axum-login, …). What the admin needs
//! is the same either way: the app's middleware finds the user, and an [`Authenticator`] tells
//! the admin who that user is.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, OriginalUri, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use nightshift::admin::serve::{ServeOptions, serve};
use nightshift::auth::{Auth, Authenticator, Operator};
use nightshift::{Client, JobArgs, JobContext, JobKind, NewJob, Role, Worker};
use rand_core::{OsRng, RngCore};
use schemars::JsonSchema;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, SqlErr, Statement, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The welcome mail a signup sends, in the background.
#[derive(Serialize, Deserialize, JsonSchema)]
struct SendWelcomeEmail {
    user_id: i64,
    email: String,
}

impl JobArgs for SendWelcomeEmail {
    const KIND: &'static str = "send_welcome_email";

    fn configure(kind: JobKind) -> JobKind {
        kind.label("Send Welcome Email")
            .group("Mail")
            .max_attempts(3)
    }
}

async fn send_welcome_email(args: SendWelcomeEmail, ctx: JobContext) -> anyhow::Result<()> {
    ctx.log(format!(
        "sending the welcome mail to user {} <{}>",
        args.user_id, args.email
    ))
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ctx.set_progress(100).await?;
    ctx.log("sent").await?;
    Ok(())
}

/// The app's one account.
const USER: &str = "alice";
/// The app's session cookie.
const SESSION_COOKIE: &str = "app_session";
/// How long a sign-in lasts.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// Who is signed in to the app: put in the request's extensions by [`identify`].
#[derive(Debug, Clone)]
struct User {
    name: String,
}

/// The app's state: the Nightshift client, its account, its sessions.
#[derive(Clone)]
struct App {
    client: Client,
    account: Arc<Account>,
    /// Random session token -> session. A real app keeps sessions in its session store.
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

/// The one account: a name and the SHA-256 of its password (a real app stores argon2 hashes).
struct Account {
    name: String,
    password_sha256: [u8; 32],
}

impl Account {
    fn new(name: &str, password: &str) -> Account {
        Account {
            name: name.to_owned(),
            password_sha256: Sha256::digest(password.as_bytes()).into(),
        }
    }

    /// Compares digests in constant time, so the time taken says nothing about the password.
    fn check(&self, name: &str, password: &str) -> bool {
        let given = Sha256::digest(password.as_bytes());
        let diff = given
            .iter()
            .zip(self.password_sha256.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0) & (name == self.name)
    }
}

struct Session {
    user: String,
    expires: Instant,
}

/// 32 random bytes from the operating system, as hex: a session token nobody can guess.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
        .find(|v| !v.is_empty())
}

/// The app's middleware, on every route: finds the signed-in user from the session cookie.
async fn identify(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let user = cookie(req.headers(), SESSION_COOKIE).and_then(|token| {
        let mut sessions = app.sessions.lock().unwrap();
        match sessions.get(token) {
            Some(s) if s.expires > Instant::now() => Some(User {
                name: s.user.clone(),
            }),
            Some(_) => {
                sessions.remove(token);
                None
            }
            None => None,
        }
    });
    if let Some(user) = user {
        req.extensions_mut().insert(user);
    }
    next.run(req).await
}

/// The app's guard in front of the admin: nobody signed in is sent to the app's login page
/// (or, for scripts and forms, refused).
async fn require_user(req: Request, next: Next) -> Response {
    if req.extensions().get::<User>().is_some() {
        return next.run(req).await;
    }
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("json"));
    if req.method() != Method::GET || wants_json {
        return (StatusCode::UNAUTHORIZED, "Please sign in.").into_response();
    }
    // Inside the nested router the path has lost its prefix: come back to the full one.
    let here = req
        .extensions()
        .get::<OriginalUri>()
        .and_then(|u| u.0.path_and_query().map(|p| p.to_string()))
        .unwrap_or_else(|| "/".into());
    let query = serde_urlencoded::to_string([("next", here)]).unwrap_or_default();
    Redirect::to(&format!("/login?{query}")).into_response()
}

/// Tells the admin who is asking: the app's signed-in user. A real app maps its own roles to
/// Nightshift's (`Viewer`, `Operator`, `Admin`); here the one account is an admin.
struct HostUser;

#[async_trait::async_trait]
impl Authenticator for HostUser {
    async fn authenticate(&self, parts: &Parts) -> Option<Operator> {
        let user = parts.extensions.get::<User>()?;
        Some(Operator {
            name: user.name.clone(),
            role: Role::Admin,
        })
    }
}

/// The app's own CSRF defence for its forms (the admin has its own): a state change must come
/// from a page of this site. With the `SameSite=Lax` session cookie, cross-site forms carry no
/// session either.
async fn same_origin(req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        let headers = req.headers();
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let site_ok = text("sec-fetch-site").is_none_or(|s| s == "same-origin" || s == "none");
        let origin_ok = match (text(header::ORIGIN.as_str()), text(header::HOST.as_str())) {
            (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, o)| o == host),
            (Some(_), None) => false,
            (None, _) => true,
        };
        if !(site_ok && origin_ok) {
            return (StatusCode::FORBIDDEN, "Cross-site request refused.").into_response();
        }
    }
    next.run(req).await
}

/// Only a path on this site: never an open redirect.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn layout(title: &str, user: Option<&User>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · Example App" }
            }
            body {
                nav {
                    a href="/" { "Home" }
                    " · "
                    a href="/admin/jobs" { "Jobs admin" }
                    " · "
                    @if let Some(user) = user {
                        "Signed in as " strong { (user.name) } " "
                        form method="post" action="/logout" style="display:inline" {
                            button type="submit" { "Sign out" }
                        }
                    } @else {
                        a href="/login" { "Sign in" }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

async fn home(
    State(app): State<App>,
    user: Option<axum::Extension<User>>,
) -> Result<Markup, AppError> {
    let user = user.map(|u| u.0);
    let signups = match &user {
        Some(_) => latest_signups(app.client.connection()).await?,
        None => Vec::new(),
    };
    Ok(layout(
        "Home",
        user.as_ref(),
        html! {
            h2 { "Sign up" }
            p { "Signing up writes your account and enqueues its welcome mail in one transaction." }
            form method="post" action="/signup" {
                label { "Email " input type="email" name="email" required; }
                " "
                button type="submit" { "Sign up" }
            }
            @if user.is_some() {
                h2 { "Latest signups" }
                ul {
                    @for (id, email) in &signups {
                        li { (id) ": " (email) }
                    }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn login_page(next: &str, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            @if let Some(error) = error { p role="alert" { (error) } }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                p { label { "Name " input name="name" autocomplete="username" required; } }
                p {
                    label {
                        "Password "
                        input type="password" name="password" autocomplete="current-password" required;
                    }
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

async fn show_login(Query(q): Query<NextQuery>) -> Markup {
    login_page(&safe_next(q.next.as_deref()), None)
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    next: Option<String>,
}

async fn login(State(app): State<App>, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    if !app.account.check(&form.name, &form.password) {
        let page = login_page(&next, Some("Wrong name or password."));
        return (StatusCode::UNAUTHORIZED, page).into_response();
    }
    // A new token at every sign-in: a token planted before it is worth nothing.
    let token = random_token();
    app.sessions.lock().unwrap().insert(
        token.clone(),
        Session {
            user: app.account.name.clone(),
            expires: Instant::now() + SESSION_TTL,
        },
    );
    // Served over HTTPS, add `; Secure`.
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        app.sessions.lock().unwrap().remove(token);
    }
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    ([(header::SET_COOKIE, expired)], Redirect::to("/")).into_response()
}

#[derive(Deserialize)]
struct SignupForm {
    email: String,
}

/// Writes the app's row and enqueues the welcome mail in one transaction: both or neither.
async fn signup(
    State(app): State<App>,
    user: Option<axum::Extension<User>>,
    Form(form): Form<SignupForm>,
) -> Result<Response, AppError> {
    let user = user.map(|u| u.0);
    let email = form.email.trim().to_owned();
    let plausible = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !plausible {
        let page = layout(
            "Sign up",
            user.as_ref(),
            html! { p { "That is not an email address." } },
        );
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }

    // On SQLite this is the engine's only writer: keep the transaction short.
    let txn = app.client.connection().begin().await?;
    let user_id = match insert_signup(&txn, &email).await {
        Ok(id) => id,
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            txn.rollback().await?;
            let page = layout(
                "Sign up",
                user.as_ref(),
                html! { p { (email) " has already signed up." } },
            );
            return Ok((StatusCode::CONFLICT, page).into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let job = NewJob::of(&SendWelcomeEmail {
        user_id,
        email: email.clone(),
    })?
    .created_by("signup");
    let job = app.client.insert_in(&txn, job).await?;
    // The job exists, and a worker may run it, only once this commits.
    txn.commit().await?;

    let page = layout(
        "Welcome",
        user.as_ref(),
        html! {
            p { "Account " (user_id) " created for " (email) "." }
            p {
                "Its welcome mail is job " (job.id) " ("
                a href={ "/admin/jobs/workers/" (job.id) } { "see it in the admin" }
                ")."
            }
        },
    );
    Ok((StatusCode::CREATED, page).into_response())
}

/// The app's own table, created with plain SQL on the engine's connection.
async fn create_app_tables(db: &DatabaseConnection) -> Result<(), DbErr> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            "CREATE TABLE IF NOT EXISTS app_signups (
                 id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 email TEXT NOT NULL UNIQUE)"
        }
        _ => {
            "CREATE TABLE IF NOT EXISTS app_signups (
                 id INTEGER PRIMARY KEY,
                 email TEXT NOT NULL UNIQUE)"
        }
    };
    db.execute_unprepared(sql).await?;
    Ok(())
}

async fn insert_signup(db: &impl ConnectionTrait, email: &str) -> Result<i64, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "INSERT INTO app_signups (email) VALUES ($1) RETURNING id",
        _ => "INSERT INTO app_signups (email) VALUES (?) RETURNING id",
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [email.into()]))
        .await?
        .ok_or_else(|| DbErr::Custom("the insert returned no row".into()))?;
    row.try_get_by_index::<i64>(0)
}

async fn latest_signups(db: &DatabaseConnection) -> Result<Vec<(i64, String)>, DbErr> {
    let backend = db.get_database_backend();
    let sql = "SELECT id, email FROM app_signups ORDER BY id DESC LIMIT 10";
    db.query_all_raw(Statement::from_string(backend, sql))
        .await?
        .iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect()
}

/// Any unexpected failure: logged, answered with a plain 500.
struct AppError(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for AppError {
    fn from(e: E) -> Self {
        AppError(e.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        tracing::error!("request failed: {:#}", self.0);
        (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong.").into_response()
    }
}

/// Ctrl-C, or SIGTERM (what `docker stop` and systemd send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let (url, _dir) = match std::env::var("NIGHTSHIFT_DATABASE_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("app.db").display());
            (url, Some(dir))
        }
    };
    let password = match std::env::var("EMBED_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            let p = random_token()[..16].to_owned();
            println!("sign in as {USER} with the password {p}");
            p
        }
    };

    // The worker runs jobs in this process; its client enqueues and serves the admin.
    let worker = Worker::builder().database_url(&url).build().await?;
    worker.handle(send_welcome_email)?;
    create_app_tables(worker.connection()).await?;
    worker.start().await?;

    let app = App {
        client: worker.client(),
        account: Arc::new(Account::new(USER, &password)),
        sessions: Arc::default(),
    };
    // The admin behind the app's sign-in: `require_user` turns strangers away, and `HostUser`
    // names the app's user as the admin's operator.
    let admin = nightshift::admin::router(worker.client(), Auth::custom(HostUser))
        .layer(from_fn(require_user));
    let router = Router::new()
        .route("/", get(home))
        .route("/login", get(show_login).post(login))
        .route("/logout", post(logout))
        .route("/signup", post(signup))
        // axum's `nest` serves `/admin/jobs` and below, not `/admin/jobs/`: send that there.
        .route(
            "/admin/jobs/",
            get(|| async { Redirect::permanent("/admin/jobs") }),
        )
        .layer(from_fn(same_origin))
        .nest("/admin/jobs", admin)
        .layer(from_fn_with_state(app.clone(), identify))
        .with_state(app);

    let bind = std::env::var("EMBED_BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("listening on http://{}", listener.local_addr()?);

    // Stops accepting at the signal and drains open requests (live admin pages included) for
    // a bounded time; then the worker lets running jobs finish and writes everything.
    serve(listener, router, shutdown_signal(), ServeOptions::default()).await?;
    worker.shutdown().await;
    println!("stopped");
    Ok(())
}
