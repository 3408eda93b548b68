//! The admin's routes, as fixed by the contract (paths relative to the mount point).
pub mod assets;
pub mod events;
pub mod input;
pub mod jobs;

use axum::Router;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};

use super::AdminState;
use super::error::WebError;
use super::extract::Base;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(healthz))
        .route("/workers", get(jobs::list_jobs).post(jobs::create_job))
        .route("/workers/new", get(jobs::new_job))
        .route("/workers/events", get(events::list_events))
        .route(
            "/workers/{id}",
            get(jobs::show_job)
                .put(jobs::update_job)
                .post(jobs::post_job)
                .delete(jobs::delete_job),
        )
        .route("/workers/{id}/abort", post(jobs::abort_job))
        .route("/workers/{id}/cancel", post(jobs::cancel_job))
        .route("/workers/{id}/rerun", post(jobs::rerun_job))
        .route("/workers/{id}/events", get(events::job_events))
        .route("/assets/{file}", get(assets::asset))
        .fallback(not_found)
}

async fn root(Base(base): Base) -> Redirect {
    Redirect::to(&format!("{base}/workers"))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn not_found() -> WebError {
    WebError::not_found("There is no such page.")
}
