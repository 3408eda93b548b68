//! Admin-only pages: operators (add, disable, role, password), API tokens (create once, revoke)
//! and the audit log.
use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::input::{self, Query, RawBody};
use crate::admin::AdminState;
use crate::admin::error::WebError;
use crate::admin::extract::{Chrome, WantsJson};
use crate::admin::flash;
use crate::admin::views;
use crate::auth::{AccountError, Auth, audit};
use crate::clock::to_datetime;
use crate::role::Role;
use crate::text::quote;

type Result<T, E = WebError> = std::result::Result<T, E>;

impl From<AccountError> for WebError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::NotFound(_) => WebError::not_found(e.to_string()),
            AccountError::Database(db) => crate::Error::Database(db).into(),
            other => {
                let msg = other.to_string();
                let (field, text) = msg.split_once(": ").unwrap_or(("_form", &msg));
                WebError::invalid(BTreeMap::from([(field.to_owned(), text.to_owned())]))
            }
        }
    }
}

fn sessions_only(st: &AdminState) -> Result<()> {
    match st.auth {
        Auth::Sessions(_) => Ok(()),
        Auth::Custom(_) => Err(WebError::not_found(
            "Operators are managed by the host app.",
        )),
    }
}

fn role_field(form: &BTreeMap<String, String>) -> Result<Role> {
    let raw = form.get("role").map(String::as_str).unwrap_or("viewer");
    raw.parse()
        .map_err(|e: String| WebError::invalid(BTreeMap::from([("role".to_owned(), e)])))
}

pub async fn operators(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
) -> Result<Response> {
    sessions_only(&st)?;
    let list = st.accounts.list().await?;
    if json {
        let ops: Vec<_> = list
            .iter()
            .map(|o| {
                serde_json::json!({"id": o.id, "name": o.name, "role": o.role,
                    "disabled": o.disabled, "created_at": to_datetime(o.created_at)})
            })
            .collect();
        return Ok(axum::Json(serde_json::json!({"operators": ops})).into_response());
    }
    let ctx = st.page_ctx(&chrome, Some("operators")).await;
    Ok(views::access::operators_page(&ctx, &list, None).into_response())
}

pub async fn add_operator(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    sessions_only(&st)?;
    let form = input::fields(&headers, &body)?;
    let name = form.get("name").cloned().unwrap_or_default();
    let role = role_field(&form)?;
    let password = form.get("password").cloned().unwrap_or_default();
    match st.accounts.add(&name, &password, role).await {
        Ok(op) if json => Ok((
            StatusCode::CREATED,
            axum::Json(serde_json::json!({"id": op.id, "name": op.name, "role": op.role})),
        )
            .into_response()),
        Ok(op) => Ok(flash::redirect(
            false,
            &format!("{}/operators", chrome.base),
            &format!("Operator {} added as {}.", op.name, op.role),
        )),
        Err(
            e @ (AccountError::InvalidName
            | AccountError::WeakPassword
            | AccountError::Duplicate(_)),
        ) if !json => {
            let ctx = st.page_ctx(&chrome, Some("operators")).await;
            let list = st.accounts.list().await?;
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                views::access::operators_page(&ctx, &list, Some(&e.to_string())),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// One change to an operator: `action` is `role`, `disable`, `enable` or `password`.
pub async fn update_operator(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
    op: crate::admin::Operator,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    sessions_only(&st)?;
    let id: i64 = id
        .parse()
        .map_err(|_| WebError::not_found(format!("operator {} not found", quote(&id))))?;
    let form = input::fields(&headers, &body)?;
    let target = st.accounts.by_id(id).await?;
    let msg = match form.get("action").map(String::as_str) {
        Some("role") => {
            let role = role_field(&form)?;
            if target.name == op.name && role != Role::Admin {
                return Err(WebError::new(
                    StatusCode::CONFLICT,
                    "You cannot take the admin role from yourself.",
                ));
            }
            st.accounts.set_role(id, role).await?;
            format!("{} is now {role}.", target.name)
        }
        Some("disable") => {
            if target.name == op.name {
                return Err(WebError::new(
                    StatusCode::CONFLICT,
                    "You cannot disable yourself.",
                ));
            }
            st.accounts.set_disabled(id, true).await?;
            format!("{} is disabled.", target.name)
        }
        Some("enable") => {
            st.accounts.set_disabled(id, false).await?;
            format!("{} is enabled.", target.name)
        }
        Some("password") => {
            st.accounts
                .set_password(id, form.get("password").map(String::as_str).unwrap_or(""))
                .await?;
            format!("Password of {} changed.", target.name)
        }
        _ => {
            return Err(WebError::invalid(BTreeMap::from([(
                "action".to_owned(),
                "is not one of role, disable, enable, password".to_owned(),
            )])));
        }
    };
    if json {
        return Ok(axum::Json(serde_json::json!({"ok": true, "message": msg})).into_response());
    }
    Ok(flash::redirect(
        false,
        &format!("{}/operators", chrome.base),
        &msg,
    ))
}

/// API tokens: never the token or its hash, which is all the database has of it.
pub async fn tokens(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
) -> Result<Response> {
    sessions_only(&st)?;
    let tokens = st.accounts.tokens(None).await?;
    let ops = st.accounts.list().await?;
    if json {
        let names: BTreeMap<i64, &str> = ops.iter().map(|o| (o.id, o.name.as_str())).collect();
        let list: Vec<_> = tokens
            .iter()
            .map(|t| {
                serde_json::json!({
                    "id": t.id,
                    "name": t.name,
                    "operator": names.get(&t.operator_id),
                    "created_at": to_datetime(t.created_at),
                    "last_used_at": t.last_used_at.map(to_datetime),
                    "revoked_at": t.revoked_at.map(to_datetime),
                })
            })
            .collect();
        return Ok(axum::Json(serde_json::json!({"tokens": list})).into_response());
    }
    let ctx = st.page_ctx(&chrome, Some("tokens")).await;
    Ok(views::access::tokens_page(&ctx, &tokens, &ops, None).into_response())
}

pub async fn create_token(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    sessions_only(&st)?;
    let form = input::fields(&headers, &body)?;
    let operator = form.get("operator").cloned().unwrap_or_default();
    let name = form
        .get("name")
        .cloned()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "token".into());
    let (token, model) = match st.accounts.create_token(&operator, &name).await {
        Ok(made) => made,
        Err(AccountError::NotFound(_)) => {
            return Err(WebError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "operator",
                format!("there is no operator named {}", quote(&operator)),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        return Ok((
            StatusCode::CREATED,
            axum::Json(serde_json::json!({"id": model.id, "token": token})),
        )
            .into_response());
    }
    let tokens = st.accounts.tokens(None).await?;
    let ops = st.accounts.list().await?;
    let ctx = st.page_ctx(&chrome, Some("tokens")).await;
    // Shown once, in this response only; never stored in plain.
    let mut res = (
        StatusCode::CREATED,
        views::access::tokens_page(&ctx, &tokens, &ops, Some((&operator, &token))),
    )
        .into_response();
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

pub async fn revoke_token(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
    Path(id): Path<String>,
) -> Result<Response> {
    sessions_only(&st)?;
    let id: i64 = id
        .parse()
        .map_err(|_| WebError::not_found(format!("token {} not found", quote(&id))))?;
    st.accounts.revoke_token(id).await?;
    if json {
        return Ok(axum::Json(serde_json::json!({"ok": true})).into_response());
    }
    Ok(flash::redirect(
        false,
        &format!("{}/tokens", chrome.base),
        &format!("Token {id} revoked."),
    ))
}

/// Audit entries per page.
const AUDIT_PAGE: u64 = 100;

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    before: Option<String>,
}

pub async fn audit(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
    Query(q): Query<AuditQuery>,
) -> Result<Response> {
    let clean = |s: &Option<String>| s.clone().filter(|v| !v.trim().is_empty());
    let filter = audit::Filter {
        actor: clean(&q.actor),
        action: clean(&q.action),
        target: clean(&q.target),
    };
    let before = match clean(&q.before) {
        Some(b) => Some(input::cursor("before", &b)?),
        None => None,
    };
    let mut rows = audit::list(
        st.worker.store().connection(),
        &filter,
        before,
        AUDIT_PAGE + 1,
    )
    .await
    .map_err(crate::Error::from)?;
    let more = rows.len() as u64 > AUDIT_PAGE;
    rows.truncate(AUDIT_PAGE as usize);
    if json {
        // The cursor of the next (older) page: `?before=<next>`.
        let next = if more {
            rows.last().map(|r| r.id)
        } else {
            None
        };
        return Ok(axum::Json(serde_json::json!({"entries": rows, "next": next})).into_response());
    }
    let ctx = st.page_ctx(&chrome, Some("audit")).await;
    Ok(views::access::audit_page(&ctx, &rows, &filter).into_response())
}
