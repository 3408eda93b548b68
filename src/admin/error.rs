//! The admin's one error type: a status and a plain message for the operator. 5xx causes are
//! logged once here and never shown.
use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::Error;

/// What went wrong, as the operator (or script) should hear it.
#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub message: String,
    /// Messages per field, for 422.
    pub fields: BTreeMap<String, String>,
}

/// Attached to an error response; the `render_errors` middleware turns it into a page or JSON.
#[derive(Debug, Clone)]
pub struct ErrorBody {
    pub message: String,
    pub fields: BTreeMap<String, String>,
}

impl WebError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        WebError {
            status,
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// `status` with a message about one field (`q: must not …`), also in `fields`.
    pub fn field(status: StatusCode, field: &str, message: impl Into<String>) -> Self {
        let mut e = WebError::invalid(BTreeMap::from([(field.to_owned(), message.into())]));
        e.status = status;
        e
    }

    /// 422 with one message per field.
    pub fn invalid(fields: BTreeMap<String, String>) -> Self {
        let message = fields
            .iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("; ");
        WebError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message,
            fields,
        }
    }
}

impl From<Error> for WebError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(_) => WebError::not_found(e.to_string()),
            Error::ScheduleNotFound(_) => WebError::not_found(e.to_string()),
            Error::ScheduleConflict(_) => WebError::new(StatusCode::CONFLICT, e.to_string()),
            Error::InvalidState { .. } => WebError::new(StatusCode::CONFLICT, e.to_string()),
            Error::InvalidArgs { field, message } => match field {
                Some(f) => WebError::invalid(BTreeMap::from([(f, message)])),
                None => WebError::new(StatusCode::UNPROCESSABLE_ENTITY, message),
            },
            Error::UnknownKind(_) => {
                WebError::invalid(BTreeMap::from([("job".to_owned(), e.to_string())]))
            }
            Error::NotSchedulable(_) => {
                WebError::invalid(BTreeMap::from([("schedule_at".to_owned(), e.to_string())]))
            }
            Error::Database(db) if crate::store::is_unavailable(&db) => unavailable(&db),
            other => {
                tracing::error!("admin request failed: {other}");
                WebError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on our side; it has been logged.",
                )
            }
        }
    }
}

/// 503 "database unavailable", for a database that cannot be reached. Logged once a minute
/// at most, however many requests fail: one clear line per outage, not a flood.
pub fn unavailable(cause: &dyn std::fmt::Display) -> WebError {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST_LOGGED: AtomicI64 = AtomicI64::new(0);
    let now = crate::clock::now_ms();
    let last = LAST_LOGGED.load(Ordering::Relaxed);
    if now - last > 60_000
        && LAST_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::error!("database unavailable: {cause}");
    }
    WebError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "The database is unavailable. Try again in a moment.",
    )
}

/// A database error as a response: 503 when the database cannot be reached, else a logged 500.
pub fn unavailable_or_500(e: &sea_orm::DbErr) -> Response {
    if crate::store::is_unavailable(e) {
        unavailable(e).into_response()
    } else {
        WebError::from(Error::Database(e.clone())).into_response()
    }
}

/// The longest message (and field name) an error response carries. Messages quote input only as
/// short excerpts (`text::quote`); this bounds the rest, such as serde's messages.
const MAX_MESSAGE: usize = 500;
const MAX_FIELD: usize = 100;

fn bounded(message: &str, max: usize) -> String {
    crate::text::clip(&crate::text::shorten_quotes(message), max).into_owned()
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        res.extensions_mut().insert(ErrorBody {
            message: bounded(&self.message, MAX_MESSAGE),
            fields: self
                .fields
                .iter()
                .map(|(f, m)| {
                    let f = crate::text::scrub_nul(crate::text::clip(f, MAX_FIELD).into_owned());
                    (f, bounded(m, MAX_MESSAGE))
                })
                .collect(),
        });
        res
    }
}
