//! Request facts the handlers need: the mount prefix, JSON or HTML, who is acting, the flash.
use std::convert::Infallible;

use axum::extract::{FromRequestParts, NestedPath};
use axum::http::HeaderMap;
use axum::http::request::Parts;

/// The prefix the admin is mounted under ("" at the root). Every link starts with it.
#[derive(Debug, Clone)]
pub struct Base(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Base(base_of(&parts.extensions)))
    }
}

pub fn base_of(ext: &axum::http::Extensions) -> String {
    ext.get::<NestedPath>()
        .map(|p| p.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

/// Whether the client asked for JSON (`Accept: application/json`) or sent it (`Content-Type:
/// application/json`): JSON in, JSON out.
#[derive(Debug, Clone, Copy)]
pub struct WantsJson(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for WantsJson {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(WantsJson(wants_json(&parts.headers)))
    }
}

/// JSON was asked for (`Accept`) or sent (`Content-Type`, including `…+json` types): the
/// answer, and any error, is JSON.
pub fn wants_json(headers: &HeaderMap) -> bool {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let sent = header(axum::http::header::CONTENT_TYPE);
    let sent = sent.split(';').next().unwrap_or("").trim();
    header(axum::http::header::ACCEPT).contains("application/json")
        || sent == "application/json"
        || sent.ends_with("+json")
}

/// Who is acting, as the admin's authentication found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The operator's name, recorded on the jobs they create and abort.
    pub name: String,
    /// What they may do.
    pub role: crate::role::Role,
}

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = crate::admin::error::WebError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Every protected route runs behind the authentication layer, which puts it here.
        parts.extensions.get::<Operator>().cloned().ok_or_else(|| {
            crate::admin::error::WebError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "Please log in.",
            )
        })
    }
}

/// The message left by the previous action, if any (see `flash`).
#[derive(Debug, Clone, Default)]
pub struct Flash(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Flash {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Flash>().cloned().unwrap_or_default())
    }
}

/// What every page shows besides its content: the mount prefix, the flash message, the CSRF
/// token and who is looking.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    pub base: String,
    pub flash: Option<String>,
    pub csrf: Option<String>,
    pub operator: Option<Operator>,
}

impl Chrome {
    pub fn of(ext: &axum::http::Extensions) -> Chrome {
        Chrome {
            base: base_of(ext),
            flash: ext.get::<Flash>().and_then(|f| f.0.clone()),
            csrf: ext
                .get::<crate::admin::security::Csrf>()
                .map(|c| c.0.clone()),
            operator: ext.get::<Operator>().cloned(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Chrome {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Chrome::of(&parts.extensions))
    }
}
