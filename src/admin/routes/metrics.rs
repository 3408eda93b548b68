//! `GET /metrics`: the Prometheus text format, for a scraper with an API token (any role) or a
//! signed-in operator.
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::admin::AdminState;
use crate::admin::error::WebError;
use crate::admin::metrics;

pub async fn metrics(State(st): State<AdminState>) -> Result<Response, WebError> {
    let text = metrics::render(&st.worker, &st.metrics).await?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}
