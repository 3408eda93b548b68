//! `GET /nodes`: the nodes sharing this database, their leases and what each runs.
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum_htmx::HxRequest;

use crate::admin::AdminState;
use crate::admin::error::WebError;
use crate::admin::extract::{Chrome, WantsJson};
use crate::admin::views;
use crate::admin::views::nodes::{NodeRow, NodesView};
use crate::clock::{now_ms, to_datetime};
use crate::state::JobStatus;

/// The running jobs listed per node on the page (the count covers them all).
pub const LISTED_JOBS: u64 = 20;

pub async fn nodes(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
    HxRequest(htmx): HxRequest,
) -> Result<Response, WebError> {
    let rows = st.worker.store().nodes_running(LISTED_JOBS).await?;
    let pruner = st.worker.last_prune().await?;
    if json {
        let nodes: Vec<serde_json::Value> = rows
            .iter()
            .map(|(n, running, _)| {
                serde_json::json!({
                    "id": n.id,
                    "host": n.host,
                    "pid": n.pid,
                    "version": n.version,
                    "started_at": to_datetime(n.started_at),
                    "heartbeat_at": to_datetime(n.heartbeat_at),
                    "running": running,
                })
            })
            .collect();
        let pruner = pruner.map(|p| {
            serde_json::json!({
                "node": p.node,
                "started_at": to_datetime(p.started_at),
                "finished_at": p.finished_at.map(to_datetime),
                "deleted": p.deleted,
                "error": p.error,
            })
        });
        return Ok(
            axum::Json(serde_json::json!({ "nodes": nodes, "pruner": pruner })).into_response(),
        );
    }
    let view = NodesView {
        nodes: rows
            .into_iter()
            .map(|(n, running, jobs)| NodeRow {
                started_at: to_datetime(n.started_at),
                heartbeat_at: to_datetime(n.heartbeat_at),
                id: n.id,
                host: n.host,
                pid: n.pid,
                version: n.version,
                running,
                jobs: jobs
                    .into_iter()
                    .map(|(id, kind, status)| {
                        (id, kind, status.parse().unwrap_or(JobStatus::Running))
                    })
                    .collect(),
            })
            .collect(),
        now: to_datetime(now_ms()),
        this_node: st.worker.node_id().to_owned(),
        node_timeout: st.worker.config().node_timeout,
        pruner,
        retention: st.worker.config().retention.clone(),
    };
    if htmx {
        return Ok(views::nodes::nodes_table(&chrome.base, &view).into_response());
    }
    let ctx = st.page_ctx(&chrome, Some("nodes")).await;
    Ok(views::nodes::nodes_page(&ctx, &view).into_response())
}
