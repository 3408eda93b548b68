//! `GET /dashboard`, the landing page: charts and health signals as a page, as the fragment
//! htmx reloads, or as JSON `{"series":{…},"health":[…]}`.
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum_htmx::HxRequest;

use crate::admin::AdminState;
use crate::admin::error::WebError;
use crate::admin::extract::{Chrome, WantsJson};
use crate::admin::views;

pub async fn dashboard(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
    HxRequest(htmx): HxRequest,
) -> Result<Response, WebError> {
    let d = st.worker.dashboard().await?;
    if json {
        return Ok(axum::Json(d).into_response());
    }
    if htmx {
        return Ok(views::dashboard::dashboard_panel(&chrome.base, &d).into_response());
    }
    let ctx = st.page_ctx(&chrome, Some("dashboard")).await;
    Ok(views::dashboard::dashboard_page(&ctx, &d).into_response())
}
