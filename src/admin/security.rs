//! The admin's guards: who is asking (session, API token or the host's authenticator), what
//! their role allows, CSRF on every state change, the audit trail, and security headers.
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;

use super::AdminState;
use super::error::WebError;
use super::extract::{Operator, base_of, wants_json};
use crate::auth::{Auth, audit};
use crate::clock::now_ms;
use crate::role::Role;

/// The CSRF token this request's pages carry and its state changes must echo.
#[derive(Debug, Clone)]
pub struct Csrf(pub String);

/// Where the request came from (the peer address, when the server records it).
#[derive(Debug, Clone)]
pub struct Address(pub String);

/// The request was authenticated by an API token (no CSRF token needed).
#[derive(Debug, Clone, Copy)]
struct ByToken;

/// Which token a state change must echo: the signed-in session's, or (anonymous pages, the
/// host's own sign-in) the double-submit cookie's. Absent: no check.
#[derive(Debug, Clone)]
enum CsrfCheck {
    Session(Option<String>),
    Cookie(Option<String>),
}

/// Set on a response by a handler whose actor is not signed in yet (login, setup).
#[derive(Debug, Clone)]
pub struct AuditActor(pub String);

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "nightshift_session";
/// The double-submit CSRF cookie of pages without a signed-in session (the login page, the
/// host's own sign-in): random, never stored on the server.
pub const CSRF_COOKIE: &str = "nightshift_csrf";

/// Session keys.
pub const OPERATOR_ID: &str = "operator_id";
pub const LOGIN_AT: &str = "login_at";
pub const CSRF: &str = "csrf";
/// When the session was last saved for activity (see `session_operator`).
pub const SEEN_AT: &str = "seen_at";

/// The bearer token, if any. The scheme is case-insensitive (RFC 9110).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
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

/// Finds the operator behind the request and the CSRF token its pages carry. Only a login or
/// setup creates a session; a signed-in operator's is saved again at most once a minute (its
/// idle timeout counts from its last save).
pub async fn authenticate(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    // Refusals made here (a bad token, the database down) get the same bodies as the rest.
    let json = wants_json(req.headers()) || bearer(req.headers()).is_some();
    let chrome = super::extract::Chrome {
        base: base_of(req.extensions()),
        ..Default::default()
    };
    let res = identify(&st, req, next).await;
    if res.extensions().get::<super::error::ErrorBody>().is_some() {
        return super::render_error(&st, json, &chrome, res).await;
    }
    res
}

async fn identify(st: &AdminState, mut req: Request, next: Next) -> Response {
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    req.extensions_mut().insert(Address(address.clone()));
    let page = req.method() == Method::GET && !is_quiet(req.uri().path());
    let cookie_token = cookie(req.headers(), CSRF_COOKIE).map(str::to_owned);
    // A cookie-token check for anonymous or host-authenticated requests.
    let mut double_submit = true;
    let mut secure = false;
    match &st.auth {
        Auth::Custom(c) => {
            double_submit = c.csrf;
            let (mut parts, body) = req.into_parts();
            if let Some(op) = c.authenticator.authenticate(&parts).await {
                parts.extensions.insert(op);
            }
            req = Request::from_parts(parts, body);
        }
        Auth::Sessions(opts) => {
            secure = opts.secure_cookies;
            if let Some(token) = bearer(req.headers()).map(str::to_owned) {
                match token_operator(st, &token, &address).await {
                    Ok(op) => {
                        req.extensions_mut().insert(op);
                        req.extensions_mut().insert(ByToken);
                        return next.run(req).await;
                    }
                    Err(res) => return res,
                }
            }
            if let Some(session) = req.extensions().get::<Session>().cloned() {
                match session_operator(st, &session, opts).await {
                    Ok(Some((op, token))) => {
                        req.extensions_mut().insert(op);
                        if let Some(t) = &token {
                            req.extensions_mut().insert(Csrf(t.clone()));
                        }
                        req.extensions_mut().insert(CsrfCheck::Session(token));
                        return next.run(req).await;
                    }
                    Ok(None) => {}
                    Err(res) => return res,
                }
            }
        }
    }
    if !double_submit {
        return next.run(req).await;
    }
    // Anonymous pages (login, setup) and the host's sign-in: the double-submit cookie.
    let fresh = match (&cookie_token, page) {
        (None, true) => Some(crate::auth::password::random_token()),
        _ => None,
    };
    let token = cookie_token.clone().or_else(|| fresh.clone());
    if let Some(t) = &token {
        req.extensions_mut().insert(Csrf(t.clone()));
    }
    req.extensions_mut().insert(CsrfCheck::Cookie(cookie_token));
    let mut res = next.run(req).await;
    if let Some(t) = fresh {
        let cookie = format!(
            "{CSRF_COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict{}",
            if secure { "; Secure" } else { "" }
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

/// The operator behind an API token. Unknown tokens are counted per address and an address
/// that sent too many is refused before any lookup.
async fn token_operator(st: &AdminState, token: &str, address: &str) -> Result<Operator, Response> {
    let db_error = |e: crate::auth::AccountError| match e {
        crate::auth::AccountError::Database(db) => super::error::unavailable_or_500(&db),
        other => {
            tracing::error!("token lookup failed: {other}");
            WebError::new(StatusCode::INTERNAL_SERVER_ERROR, "try again").into_response()
        }
    };
    if st
        .accounts
        .token_throttled(address)
        .await
        .map_err(db_error)?
    {
        let mut res = WebError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many invalid API tokens from this address; wait a few minutes",
        )
        .into_response();
        res.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("900"),
        );
        return Err(res);
    }
    match st
        .accounts
        .operator_for_token(token)
        .await
        .map_err(db_error)?
    {
        Some(op) => Ok(Operator {
            role: op.role.parse().unwrap_or(Role::Viewer),
            name: op.name,
        }),
        None => {
            st.accounts.token_failed(address).await.map_err(db_error)?;
            Err(
                WebError::new(StatusCode::UNAUTHORIZED, "invalid or revoked API token")
                    .into_response(),
            )
        }
    }
}

/// The signed-in operator of a session and its CSRF token; `None` when nobody is signed in.
async fn session_operator(
    st: &AdminState,
    session: &Session,
    opts: &crate::auth::SessionOptions,
) -> Result<Option<(Operator, Option<String>)>, Response> {
    let store_error = |e: tower_sessions::session::Error| {
        super::error::unavailable(&format!("session store: {e}")).into_response()
    };
    let Some(id) = session.get::<i64>(OPERATOR_ID).await.map_err(store_error)? else {
        return Ok(None);
    };
    let login_at: Option<i64> = session.get(LOGIN_AT).await.map_err(store_error)?;
    if login_at.is_some_and(|t| now_ms() - t > opts.absolute_timeout.as_millis() as i64) {
        let _ = session.flush().await;
        return Ok(None);
    }
    let op = match st.accounts.by_id(id).await {
        Ok(op) if !op.disabled => op,
        Ok(_) | Err(crate::auth::AccountError::NotFound(_)) => return Ok(None),
        Err(crate::auth::AccountError::Database(db)) => {
            return Err(super::error::unavailable_or_500(&db));
        }
        Err(e) => {
            tracing::error!("session lookup failed: {e}");
            return Ok(None);
        }
    };
    // The idle timeout counts from the session's last save, so an active operator's session
    // is saved again now and then (at most once per a quarter of the timeout, and a minute):
    // never logged out mid-work, never a write per request.
    let seen: Option<i64> = session.get(SEEN_AT).await.map_err(store_error)?;
    let every = (opts.idle_timeout / 4).min(std::time::Duration::from_secs(60));
    if seen
        .or(login_at)
        .is_none_or(|t| now_ms() - t >= every.as_millis() as i64)
    {
        session
            .insert(SEEN_AT, now_ms())
            .await
            .map_err(store_error)?;
    }
    let token = session.get::<String>(CSRF).await.map_err(store_error)?;
    Ok(Some((
        Operator {
            role: op.role.parse().unwrap_or(Role::Viewer),
            name: op.name,
        },
        token,
    )))
}

fn is_quiet(path: &str) -> bool {
    path.starts_with("/assets/")
        || path.ends_with("/events")
        || path == "/healthz"
        // A scraper is no browser: no form cookie for it.
        || path == "/metrics"
}

/// Refuses cross-site state changes, and state changes that do not echo the CSRF token: the
/// session's for a signed-in operator, the double-submit cookie's for the login and setup forms
/// and for the host's own sign-in. API tokens need none (a browser never sends them by itself).
pub async fn csrf(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return forbidden("cross-site request refused");
    }
    if let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        let origin_host = origin.split("://").nth(1).unwrap_or("");
        if origin == "null" || origin_host != host {
            return forbidden("cross-site request refused");
        }
    }
    if req.extensions().get::<ByToken>().is_some() {
        return next.run(req).await;
    }
    let expected = match req.extensions().get::<CsrfCheck>() {
        Some(CsrfCheck::Session(t)) => t.clone(),
        Some(CsrfCheck::Cookie(t)) => {
            // With the built-in login, an anonymous request changes nothing but the sign-in
            // forms need it; anything else is refused further in for want of a login.
            let path = req.uri().path();
            let signs_in = path == "/login" || path == "/setup";
            if matches!(st.auth, Auth::Sessions(_)) && !signs_in {
                return next.run(req).await;
            }
            t.clone()
        }
        None => return next.run(req).await,
    };
    let from_header = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, 2 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return WebError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            )
            .into_response();
        }
    };
    let from_form = if is_form && from_header.is_none() {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()
            .and_then(|pairs| {
                pairs
                    .into_iter()
                    .find(|(k, _)| k == "_csrf")
                    .map(|(_, v)| v)
            })
    } else {
        None
    };
    let given = from_header.or(from_form);
    let ok = match (&expected, &given) {
        (Some(e), Some(g)) => constant_time_eq(e.as_bytes(), g.as_bytes()),
        _ => false,
    };
    if !ok {
        return forbidden(
            "the form has expired or did not come from this page (CSRF token missing or wrong): reload and try again",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn forbidden(msg: &str) -> Response {
    WebError::new(StatusCode::FORBIDDEN, msg).into_response()
}

/// The role a route needs: reading needs a viewer, changing jobs an operator, and managing
/// operators, tokens or reading the audit log an admin.
pub fn needed_role(method: &Method, path: &str) -> Role {
    let admin_area = ["/operators", "/tokens", "/audit"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    if admin_area {
        Role::Admin
    } else if matches!(*method, Method::GET | Method::HEAD) {
        Role::Viewer
    } else {
        Role::Operator
    }
}

/// Lets through only a signed-in operator whose role allows the route.
pub async fn require_login(req: Request, next: Next) -> Response {
    let Some(op) = req.extensions().get::<Operator>().cloned() else {
        let json = wants_json(req.headers()) || bearer(req.headers()).is_some();
        // A scraper is told it needs a token, not sent to a login form.
        let machine = req.uri().path() == "/metrics";
        if json || machine || req.method() != Method::GET {
            return WebError::new(StatusCode::UNAUTHORIZED, "Please log in.").into_response();
        }
        let base = base_of(req.extensions());
        let next_path = req
            .uri()
            .path_and_query()
            .map(|p| format!("{base}{p}"))
            .unwrap_or_default();
        let to = format!(
            "{base}/login?{}",
            serde_urlencoded::to_string([("next", next_path)]).unwrap_or_default()
        );
        return Redirect::to(&to).into_response();
    };
    let needed = needed_role(req.method(), req.uri().path());
    if !op.role.allows(needed) {
        tracing::warn!(operator = %op.name, role = %op.role, path = %req.uri().path(), "denied");
        return forbidden(&format!(
            "Your role ({}) does not allow this; it needs {needed}.",
            op.role
        ));
    }
    next.run(req).await
}

/// Set on a response by a handler that knows better than its path what it did.
#[derive(Debug, Clone)]
pub enum AuditNote {
    /// Nothing changed (a bulk action's preview): no entry.
    Skip,
    /// The entry's action and detail (a bulk action: what it did, to how many jobs).
    Action { action: String, detail: String },
}

/// Records every state-changing request of a signed-in operator in the audit log, with its
/// outcome, and every counted sign-in attempt.
///
/// A state change runs in a task of its own, to its end and into the log, even when its client
/// goes away meanwhile (a closed tab, a proxy's timeout): dropped with the connection, a bulk
/// action over 100,000 jobs stopped between two batches and left no entry. The worker's
/// shutdown waits for such tasks.
pub async fn audit_actions(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    // In the request's span, so a host's request id stays on what the handler logs.
    let worker = st.worker.clone();
    let action = tracing::Instrument::in_current_span(record_action(st, req, next));
    match worker.run_to_end(action).await {
        Ok(res) => res,
        Err(e) => {
            tracing::error!("a state-changing request failed: {e}");
            super::error::WebError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side; it has been logged.",
            )
            .into_response()
        }
    }
}

async fn record_action(st: AdminState, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let actor = req.extensions().get::<Operator>().map(|o| o.name.clone());
    let address = req
        .extensions()
        .get::<Address>()
        .map(|a| a.0.clone())
        .unwrap_or_default();
    let res = next.run(req).await;
    let note = res.extensions().get::<AuditNote>().cloned();
    if matches!(note, Some(AuditNote::Skip)) {
        return res;
    }
    let (action, mut target) = describe(&method, &path);
    let created = res
        .headers()
        .get(header::LOCATION)
        .or_else(|| res.headers().get("hx-redirect"))
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.rsplit('/').next())
        .and_then(|id| id.parse::<i64>().ok());
    let mut detail = None;
    match action {
        "create_job" => target = created.map(|id| format!("job:{id}")),
        "rerun_job" => detail = created.map(|id| format!("new job:{id}")),
        "create_recurring" => target = created.map(|id| format!("recurring:{id}")),
        "run_recurring" => detail = created.map(|id| format!("new job:{id}")),
        _ => {}
    }
    let status = res.status();
    let outcome = match status.as_u16() {
        200..=399 => "ok".to_owned(),
        401 => "failed".to_owned(),
        403 => "denied".to_owned(),
        429 => "throttled".to_owned(),
        404 | 409 | 422 => format!("refused ({})", status.as_u16()),
        s => format!("error ({s})"),
    };
    // Anonymous traffic writes only what the throttle bounds: sign-in attempts that were
    // counted. Refused, throttled or unauthenticated requests leave a log line, not a row.
    let counted_sign_in = matches!(action, "login" | "setup")
        && matches!(status.as_u16(), 200..=499)
        && !matches!(status.as_u16(), 403 | 429);
    if actor.is_none() && !counted_sign_in {
        tracing::debug!(%address, %action, %outcome, "anonymous request not audited");
        return res;
    }
    let actor = res
        .extensions()
        .get::<AuditActor>()
        .map(|a| a.0.clone())
        .or(actor)
        .unwrap_or_else(|| "anonymous".into());
    let action = match note {
        Some(AuditNote::Action { action, detail: d }) => {
            detail = Some(d);
            action
        }
        _ => action.to_owned(),
    };
    audit::record(
        st.worker.store().connection(),
        audit::Entry {
            actor,
            address,
            action,
            target,
            outcome,
            detail,
        },
    )
    .await;
    res
}

/// The audit name of a request, and its target.
fn describe(method: &Method, path: &str) -> (&'static str, Option<String>) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["workers"]) => ("create_job", None),
        ("POST", ["workers", id, "abort"]) => ("abort_job", Some(format!("job:{id}"))),
        ("POST", ["workers", id, "cancel"]) => ("cancel_job", Some(format!("job:{id}"))),
        ("POST", ["workers", id, "rerun"]) => ("rerun_job", Some(format!("job:{id}"))),
        ("POST", ["workers", "bulk"]) => ("bulk_jobs", None),
        ("PUT" | "POST", ["workers", id]) => ("update_job", Some(format!("job:{id}"))),
        ("DELETE", ["workers", id]) => ("delete_job", Some(format!("job:{id}"))),
        ("POST", ["recurring"]) => ("create_recurring", None),
        ("PUT" | "POST", ["recurring", id]) => {
            ("update_recurring", Some(format!("recurring:{id}")))
        }
        ("DELETE", ["recurring", id]) => ("delete_recurring", Some(format!("recurring:{id}"))),
        ("POST", ["recurring", id, verb]) => (
            match *verb {
                "pause" => "pause_recurring",
                "resume" => "resume_recurring",
                "skip" => "skip_recurring",
                "run" => "run_recurring",
                "delete" => "delete_recurring",
                _ => "request",
            },
            Some(format!("recurring:{id}")),
        ),
        ("POST", ["queues", name, verb]) => (
            match *verb {
                "pause" => "pause_queue",
                "resume" => "resume_queue",
                _ => "request",
            },
            Some(format!("queue:{name}")),
        ),
        ("POST", ["login"]) => ("login", None),
        ("POST", ["logout"]) => ("logout", None),
        ("POST", ["setup"]) => ("setup", None),
        ("POST", ["operators"]) => ("add_operator", None),
        ("POST", ["operators", id]) => ("update_operator", Some(format!("operator:{id}"))),
        ("POST", ["tokens"]) => ("create_token", None),
        ("POST", ["tokens", id, "revoke"]) => ("revoke_token", Some(format!("token:{id}"))),
        _ => ("request", Some(format!("{method} {path}"))),
    }
}

/// Headers on every response: a strict CSP (no inline script, no eval, no framing), no
/// caching of pages, no MIME sniffing, a tight referrer policy.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.entry(k)
            .or_insert(axum::http::HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    );
    // Pages must not outlive a logout in the browser's history (Back button) or any cache;
    // assets set their own lifetime first.
    set(h, "cache-control", "no-store");
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "same-origin");
    res
}
