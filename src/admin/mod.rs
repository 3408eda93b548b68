//! The operator's admin: an axum router a host app mounts with `nest`.
use axum::Json;
use axum::Router;
use axum::routing::get;

use crate::worker::Worker;

/// The admin router for `worker`, to serve at `/` or mount under a prefix with `Router::nest`.
pub fn router<S>(worker: Worker) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(worker)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}
