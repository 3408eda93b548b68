//! Login, logout and the first-run setup of the first admin.
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_sessions::Session;

use super::input;
use crate::admin::AdminState;
use crate::admin::error::WebError;
use crate::admin::extract::Chrome;
use crate::admin::flash;
use crate::admin::security::{Address, AuditActor, LOGIN_AT, OPERATOR_ID};
use crate::admin::views;
use crate::auth::{AccountError, Auth, Login};
use crate::clock::now_ms;

type Result<T, E = WebError> = std::result::Result<T, E>;

/// The generic answer to a wrong name or password.
const INVALID: &str = "Invalid name or password.";
const THROTTLED: &str = "Too many failed logins. Wait a few minutes and try again.";
const BUSY: &str = "The server is busy. Try again in a moment.";

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only paths inside this admin: never an open redirect (browsers read `\\` as `/` and drop
/// tabs, so `/\\evil.example` would leave the site).
fn safe_next(base: &str, next: Option<&str>) -> String {
    let ok = |n: &str| {
        n.starts_with(&format!("{base}/"))
            && !n.contains('\\')
            && !n.chars().any(|c| c.is_control() || c.is_whitespace())
            && !n.starts_with("//")
            && !n.contains("://")
    };
    match next {
        Some(n) if ok(n) => n.to_owned(),
        _ => format!("{base}/workers"),
    }
}

fn sessions_only(st: &AdminState) -> Result<()> {
    match st.auth {
        Auth::Sessions(_) => Ok(()),
        Auth::Custom(_) => Err(WebError::not_found("This admin uses its host's sign-in.")),
    }
}

pub async fn login_page(
    State(st): State<AdminState>,
    chrome: Chrome,
    Query(q): Query<NextQuery>,
) -> Result<Response> {
    sessions_only(&st)?;
    let next = safe_next(&chrome.base, q.next.as_deref());
    Ok(views::session::login_page(&chrome, &next, None, "").into_response())
}

pub async fn login(
    State(st): State<AdminState>,
    chrome: Chrome,
    session: Session,
    address: Option<axum::Extension<Address>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    sessions_only(&st)?;
    let form = input::fields(&headers, &body)?;
    let name = form.get("name").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let next = safe_next(&chrome.base, form.get("next").map(String::as_str));
    let address = address.map(|a| a.0.0.clone()).unwrap_or_default();
    let outcome = st
        .accounts
        .login(&name, &password, &address)
        .await
        .map_err(account_error)?;
    let actor = AuditActor(if name.is_empty() {
        "anonymous".into()
    } else {
        name.clone()
    });
    match outcome {
        Login::Ok(op) => {
            sign_in(&session, op.id).await?;
            let mut res = flash::redirect(false, &next, &format!("Welcome, {}.", op.name));
            res.extensions_mut().insert(actor);
            Ok(res)
        }
        Login::Invalid | Login::Throttled | Login::Busy => {
            let (status, msg) = match outcome {
                Login::Throttled => (StatusCode::TOO_MANY_REQUESTS, THROTTLED),
                Login::Busy => (StatusCode::SERVICE_UNAVAILABLE, BUSY),
                _ => (StatusCode::UNAUTHORIZED, INVALID),
            };
            tracing::warn!(name = %name, %address, "failed login");
            let mut res = (
                status,
                views::session::login_page(&chrome, &next, Some(msg), &name),
            )
                .into_response();
            res.extensions_mut().insert(actor);
            if status != StatusCode::UNAUTHORIZED {
                res.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static(
                        if status == StatusCode::TOO_MANY_REQUESTS {
                            "60"
                        } else {
                            "2"
                        },
                    ),
                );
            }
            Ok(res)
        }
    }
}

fn account_error(e: AccountError) -> WebError {
    match e {
        AccountError::Database(db) if crate::store::is_unavailable(&db) => {
            crate::admin::error::unavailable(&db)
        }
        AccountError::Busy => WebError::new(StatusCode::SERVICE_UNAVAILABLE, BUSY),
        other => {
            tracing::error!("sign-in failed: {other}");
            WebError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side; it has been logged.",
            )
        }
    }
}

pub async fn logout(
    State(st): State<AdminState>,
    chrome: Chrome,
    session: Session,
) -> Result<Response> {
    sessions_only(&st)?;
    session.flush().await.map_err(session_error)?;
    Ok(flash::redirect(
        false,
        &format!("{}/login", chrome.base),
        "Logged out.",
    ))
}

#[derive(Debug, Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

pub async fn setup_page(
    State(st): State<AdminState>,
    chrome: Chrome,
    Query(q): Query<SetupQuery>,
) -> Result<Response> {
    sessions_only(&st)?;
    let token = q.token.unwrap_or_default();
    if !st.accounts.setup_token_valid(&token).await.unwrap_or(false) {
        return Err(WebError::not_found(
            "This setup link is not valid (it works once, for a day).",
        ));
    }
    Ok(views::session::setup_page(&chrome, &token, None).into_response())
}

pub async fn setup(
    State(st): State<AdminState>,
    chrome: Chrome,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    sessions_only(&st)?;
    let form = input::fields(&headers, &body)?;
    let token = form.get("token").cloned().unwrap_or_default();
    let name = form.get("name").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    match st.accounts.complete_setup(&token, &name, &password).await {
        Ok(Some(op)) => {
            sign_in(&session, op.id).await?;
            let mut res = flash::redirect(
                false,
                &format!("{}/workers", chrome.base),
                &format!("Welcome, {}: you are the first admin.", op.name),
            );
            res.extensions_mut().insert(AuditActor(op.name));
            Ok(res)
        }
        Ok(None) => Err(WebError::not_found(
            "This setup link is not valid (it works once, for a day).",
        )),
        Err(e @ (AccountError::Busy | AccountError::Database(_))) => Err(account_error(e)),
        Err(e) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            views::session::setup_page(&chrome, &token, Some(&e.to_string())),
        )
            .into_response()),
    }
}

/// Binds the session to an operator, under a new session id: a session fixed before login is
/// worth nothing after it.
async fn sign_in(session: &Session, operator_id: i64) -> Result<()> {
    session.cycle_id().await.map_err(session_error)?;
    session
        .insert(OPERATOR_ID, operator_id)
        .await
        .map_err(session_error)?;
    session
        .insert(LOGIN_AT, now_ms())
        .await
        .map_err(session_error)?;
    // A fresh CSRF token too: nothing from before login carries over.
    let csrf = crate::auth::password::random_token();
    session
        .insert(crate::admin::security::CSRF, csrf)
        .await
        .map_err(session_error)?;
    Ok(())
}

fn session_error(e: tower_sessions::session::Error) -> WebError {
    tracing::error!("session store failed: {e}");
    WebError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side; it has been logged.",
    )
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_inside_the_admin() {
        assert_eq!(safe_next("", Some("/workers/7")), "/workers/7");
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "https://evil.example/",
            "/x/https://e",
        ] {
            assert_eq!(safe_next("", Some(bad)), "/workers", "{bad:?}");
        }
        assert_eq!(safe_next("/admin", Some("/other")), "/admin/workers");
    }
}
