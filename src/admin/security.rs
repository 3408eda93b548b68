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

/// The CSRF token of this browser session.
#[derive(Debug, Clone)]
pub struct Csrf(pub String);

/// Where the request came from (the peer address, when the server records it).
#[derive(Debug, Clone)]
pub struct Address(pub String);

/// The request was authenticated by an API token (no CSRF token needed).
#[derive(Debug, Clone, Copy)]
struct ByToken;

/// Set on a response by a handler whose actor is not signed in yet (login, setup).
#[derive(Debug, Clone)]
pub struct AuditActor(pub String);

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "nightshift_session";

/// Session keys.
pub const OPERATOR_ID: &str = "operator_id";
pub const LOGIN_AT: &str = "login_at";
pub const CSRF: &str = "csrf";

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Finds the operator behind the request and the session's CSRF token.
pub async fn authenticate(State(st): State<AdminState>, mut req: Request, next: Next) -> Response {
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    req.extensions_mut().insert(Address(address));
    match &st.auth {
        Auth::Custom(a) => {
            let (mut parts, body) = req.into_parts();
            if let Some(op) = a.authenticate(&parts).await {
                parts.extensions.insert(op);
            }
            req = Request::from_parts(parts, body);
        }
        Auth::Sessions(opts) => {
            if let Some(token) = bearer(req.headers()).map(str::to_owned) {
                match st.accounts.operator_for_token(&token).await {
                    Ok(Some(op)) => {
                        let role = op.role.parse().unwrap_or(Role::Viewer);
                        req.extensions_mut().insert(Operator {
                            name: op.name,
                            role,
                        });
                        req.extensions_mut().insert(ByToken);
                    }
                    Ok(None) => {
                        return WebError::new(
                            StatusCode::UNAUTHORIZED,
                            "invalid or revoked API token",
                        )
                        .into_response();
                    }
                    Err(e) => {
                        tracing::error!("token lookup failed: {e}");
                        return WebError::new(StatusCode::INTERNAL_SERVER_ERROR, "try again")
                            .into_response();
                    }
                }
            } else if let Some(session) = req.extensions().get::<Session>().cloned() {
                let login_at: Option<i64> = session.get(LOGIN_AT).await.ok().flatten();
                let expired = login_at
                    .is_some_and(|t| now_ms() - t > opts.absolute_timeout.as_millis() as i64);
                if expired {
                    let _ = session.flush().await;
                } else if let Ok(Some(id)) = session.get::<i64>(OPERATOR_ID).await
                    && let Ok(op) = st.accounts.by_id(id).await
                    && !op.disabled
                {
                    let role = op.role.parse().unwrap_or(Role::Viewer);
                    req.extensions_mut().insert(Operator {
                        name: op.name,
                        role,
                    });
                }
                let token = match session.get::<String>(CSRF).await.ok().flatten() {
                    Some(t) => Some(t),
                    // Only pages hand out tokens; assets and streams need none.
                    None if req.method() == Method::GET && !is_quiet(req.uri().path()) => {
                        let t = crate::auth::password::random_token();
                        session.insert(CSRF, &t).await.ok().map(|_| t)
                    }
                    None => None,
                };
                if let Some(t) = token {
                    req.extensions_mut().insert(Csrf(t));
                }
            }
        }
    }
    next.run(req).await
}

fn is_quiet(path: &str) -> bool {
    path.starts_with("/assets/") || path.ends_with("/events") || path == "/healthz"
}

/// Refuses cross-site state changes, and session state changes without the CSRF token.
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
    // The token guards sessions: a request without a session cookie carries no ambient
    // authority (it is refused further in, if the route needs a login).
    let has_session = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.contains(&format!("{SESSION_COOKIE}=")));
    if !matches!(st.auth, Auth::Sessions(_))
        || req.extensions().get::<ByToken>().is_some()
        || !has_session
    {
        return next.run(req).await;
    }
    let expected = req.extensions().get::<Csrf>().map(|c| c.0.clone());
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
        if json || req.method() != Method::GET {
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

/// Records every state-changing request in the audit log, with its outcome.
pub async fn audit_actions(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let actor = req.extensions().get::<Operator>().map(|o| o.name.clone());
    let address = req
        .extensions()
        .get::<Address>()
        .map(|a| a.0.clone())
        .unwrap_or_default();
    let res = next.run(req).await;
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
    if outcome == "ok" && action == "login_page" {
        return res;
    }
    let actor = res
        .extensions()
        .get::<AuditActor>()
        .map(|a| a.0.clone())
        .or(actor)
        .unwrap_or_else(|| "anonymous".into());
    audit::record(
        st.worker.store().connection(),
        audit::Entry {
            actor,
            address,
            action: action.to_owned(),
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
        ("PUT" | "POST", ["workers", id]) => ("update_job", Some(format!("job:{id}"))),
        ("DELETE", ["workers", id]) => ("delete_job", Some(format!("job:{id}"))),
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

/// Headers on every response: a strict CSP (no inline script, no eval, no framing), no MIME
/// sniffing, a tight referrer policy.
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
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "same-origin");
    res
}
