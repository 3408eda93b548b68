//! Queue routes: `GET /queues` (the page, its table for htmx, or JSON) and pausing or resuming
//! a queue on every node. Each handler extracts, makes one call into the engine, and renders.
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum_htmx::HxRequest;

use crate::admin::AdminState;
use crate::admin::error::WebError;
use crate::admin::extract::{Chrome, Operator, WantsJson};
use crate::admin::flash;
use crate::admin::views;
use crate::admin::views::queues::QueuesView;
use crate::queue::QueueInfo;

type Result<T, E = WebError> = std::result::Result<T, E>;

/// `GET /queues`: every queue.
pub async fn list(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
    HxRequest(htmx): HxRequest,
) -> Result<Response> {
    let queues = st.worker.queues().await?;
    if json {
        return Ok(axum::Json(serde_json::json!({ "queues": queues })).into_response());
    }
    let view = QueuesView {
        queues,
        now: chrono::Utc::now(),
    };
    // The fragment needs the viewer's role and token too (its buttons), so it gets the frame.
    let ctx = st.page_ctx(&chrome, Some("queues")).await;
    if htmx {
        return Ok(views::queues::queues_table(&ctx, &view).into_response());
    }
    Ok(views::queues::queues_page(&ctx, &view).into_response())
}

/// `POST /queues/{name}/pause`: no node starts its jobs until it is resumed.
pub async fn pause(
    State(st): State<AdminState>,
    chrome: Chrome,
    HxRequest(htmx): HxRequest,
    WantsJson(json): WantsJson,
    op: Operator,
    Path(name): Path<String>,
) -> Result<Response> {
    let q = st.worker.pause_queue(&name, &op.name).await?;
    let msg = format!(
        "Queue {} paused: no node starts its jobs until it is resumed.",
        q.name
    );
    Ok(acted(json, htmx, &chrome.base, &q, &msg))
}

/// `POST /queues/{name}/resume`.
pub async fn resume(
    State(st): State<AdminState>,
    chrome: Chrome,
    HxRequest(htmx): HxRequest,
    WantsJson(json): WantsJson,
    Path(name): Path<String>,
) -> Result<Response> {
    let q = st.worker.resume_queue(&name).await?;
    let msg = format!("Queue {} resumed.", q.name);
    Ok(acted(json, htmx, &chrome.base, &q, &msg))
}

/// After an action: the queue as JSON, or back to the Queues page with a flash message.
fn acted(json: bool, htmx: bool, base: &str, q: &QueueInfo, msg: &str) -> Response {
    if json {
        axum::Json(q).into_response()
    } else {
        flash::redirect(htmx, &format!("{base}/queues"), msg)
    }
}
