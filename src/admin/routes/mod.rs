//! The admin's routes, as fixed by the contract (paths relative to the mount point).
pub mod access;
pub mod assets;
pub mod bulk;
pub mod dashboard;
pub mod events;
pub mod input;
pub mod jobs;
pub mod metrics;
pub mod nodes;
pub mod queues;
pub mod recurring;
pub mod session;

use axum::Router;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};

use super::AdminState;
use super::error::WebError;
use super::extract::Base;

/// Routes anyone may reach: health, assets, login, logout, first-run setup.
pub fn public() -> Router<AdminState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/assets/{file}", get(assets::asset))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/setup", get(session::setup_page).post(session::setup))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// Routes that need a signed-in operator (the role each needs: see `security::needed_role`).
pub fn protected() -> Router<AdminState> {
    Router::new()
        .route("/", get(root))
        .route("/dashboard", get(dashboard::dashboard))
        .route("/metrics", get(metrics::metrics))
        .route("/workers", get(jobs::list_jobs).post(jobs::create_job))
        .route("/workers/new", get(jobs::new_job))
        .route("/workers/bulk", post(bulk::bulk))
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
        .route("/nodes", get(nodes::nodes))
        .route("/queues", get(queues::list))
        .route("/queues/{name}/pause", post(queues::pause))
        .route("/queues/{name}/resume", post(queues::resume))
        .route("/recurring", get(recurring::list).post(recurring::create))
        .route("/recurring/new", get(recurring::new_schedule))
        .route(
            "/recurring/{id}",
            get(recurring::show)
                .put(recurring::update)
                .post(recurring::post)
                .delete(recurring::delete),
        )
        .route("/recurring/{id}/pause", post(recurring::pause))
        .route("/recurring/{id}/resume", post(recurring::resume))
        .route("/recurring/{id}/skip", post(recurring::skip))
        .route("/recurring/{id}/run", post(recurring::run))
        .route("/recurring/{id}/delete", post(recurring::delete_form))
        .route(
            "/operators",
            get(access::operators).post(access::add_operator),
        )
        .route("/operators/{id}", post(access::update_operator))
        .route("/tokens", get(access::tokens).post(access::create_token))
        .route("/tokens/{id}/revoke", post(access::revoke_token))
        .route("/audit", get(access::audit))
        .method_not_allowed_fallback(method_not_allowed)
}

/// The landing page is the dashboard.
async fn root(Base(base): Base) -> Redirect {
    Redirect::to(&format!("{base}/dashboard"))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Any path no route takes.
pub(crate) async fn not_found() -> WebError {
    WebError::not_found("There is no such page.")
}

/// A known path with a method it does not take (axum adds the `Allow` header).
async fn method_not_allowed() -> WebError {
    WebError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "This page does not take that method.",
    )
}
