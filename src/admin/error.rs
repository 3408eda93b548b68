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

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        res.extensions_mut().insert(ErrorBody {
            message: self.message,
            fields: self.fields,
        });
        res
    }
}
