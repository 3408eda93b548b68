//! The operator's admin: an axum router a host app mounts with `nest`, rendering every page with
//! maud, updating live over server-sent events through htmx, with no JS build step.
//!
//! ```no_run
//! # async fn demo(worker: nightshift::Worker) {
//! let app: axum::Router = axum::Router::new().nest("/admin/jobs", nightshift::admin::router(worker));
//! # }
//! ```
//!
//! The admin does not authenticate: put an authentication layer in front of it and insert an
//! [`Operator`] into each request's extensions to record who acts.
pub mod error;
pub mod extract;
pub mod flash;
pub mod hub;
pub mod routes;
pub mod schema_form;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};

pub use extract::Operator;

use crate::worker::Worker;
use error::ErrorBody;
use hub::Hub;
use views::layout::PageCtx;

/// What the admin's handlers share.
#[derive(Clone)]
pub struct AdminState(Arc<Inner>);

pub struct Inner {
    pub worker: Worker,
    pub hub: Arc<Hub>,
}

impl std::ops::Deref for AdminState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AdminState {
    /// The frame of a full page: base, flash, counts.
    pub async fn page_ctx(&self, base: &str, flash: Option<String>, tab: Option<&str>) -> PageCtx {
        PageCtx {
            base: base.to_owned(),
            flash,
            counts: self.hub.counts().await.unwrap_or_default(),
            tab: tab.map(str::to_owned),
            csrf: None,
            operator: None,
        }
    }
}

/// The admin router for `worker`: serve it at `/`, or mount it under any prefix with
/// `Router::nest`; every link honours the prefix.
pub fn router<S>(worker: Worker) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let state = AdminState(Arc::new(Inner {
        hub: Hub::new(worker.clone()),
        worker,
    }));
    routes::routes()
        .layer(from_fn(flash::take_flash))
        .layer(from_fn_with_state(state.clone(), render_errors))
        .layer(axum_htmx::AutoVaryLayer)
        .with_state(state)
}

/// Turns an [`ErrorBody`] response into JSON or the plain error page.
async fn render_errors(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    let json = extract::wants_json(req.headers());
    let base = extract::base_of(req.extensions());
    let mut res = next.run(req).await;
    let Some(err) = res.extensions_mut().remove::<ErrorBody>() else {
        return res;
    };
    let status = res.status();
    if json {
        let body = serde_json::json!({"error": err.message, "fields": err.fields});
        return (status, axum::Json(body)).into_response();
    }
    let ctx = st.page_ctx(&base, None, None).await;
    (
        status,
        views::error::error_page(&ctx, status.as_u16(), &err.message),
    )
        .into_response()
}
