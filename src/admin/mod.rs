//! The operator's admin: an axum router a host app mounts with `nest`, rendering every page with
//! maud, updating live over server-sent events through htmx, with no JS build step.
//!
//! ```no_run
//! # async fn demo(worker: nightshift::Worker) {
//! use nightshift::auth::Auth;
//! let app: axum::Router =
//!     axum::Router::new().nest("/admin/jobs", nightshift::admin::router(worker, Auth::sessions()));
//! # }
//! ```
//!
//! Every page needs a signed-in operator: with [`Auth::sessions`] the admin has its own login,
//! operators and API tokens; with [`Auth::custom`] the host app says who is asking.
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod flash;
pub(crate) mod hub;
pub(crate) mod metrics;
pub(crate) mod routes;
pub(crate) mod schema_form;
pub(crate) mod security;
pub mod serve;
pub(crate) mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tower_sessions::cookie::SameSite;
use tower_sessions::cookie::time::Duration as CookieDuration;
use tower_sessions::{Expiry, SessionManagerLayer};

pub use extract::Operator;

use crate::auth::session_store::DbSessionStore;
use crate::auth::{Accounts, Auth};
use crate::client::Client;
use error::ErrorBody;
use extract::Chrome;
use hub::Hub;
use views::layout::PageCtx;

/// What the admin's handlers share.
#[derive(Clone)]
pub(crate) struct AdminState(Arc<Inner>);

/// The shared state behind [`AdminState`] (one per router).
pub(crate) struct Inner {
    /// The client every page and action goes through.
    pub worker: Client,
    /// Live updates: frames for the event streams, tab counts.
    pub hub: Arc<Hub>,
    /// How requests are authenticated.
    pub auth: Auth,
    /// Operators, tokens and login throttling (used by the built-in login only).
    pub accounts: Accounts,
    /// The counters `/metrics` has folded so far (they must never go down).
    pub metrics: tokio::sync::Mutex<metrics::Folded>,
}

impl std::ops::Deref for AdminState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AdminState {
    /// The frame of a full page: base, flash, counts, who is looking.
    pub async fn page_ctx(&self, chrome: &Chrome, tab: Option<&str>) -> PageCtx {
        PageCtx {
            base: chrome.base.clone(),
            flash: chrome.flash.clone(),
            counts: self.hub.counts().await.unwrap_or_default(),
            tab: tab.map(str::to_owned),
            csrf: chrome.csrf.clone(),
            operator: chrome.operator.clone(),
            sessions: matches!(self.auth, Auth::Sessions(_)),
        }
    }
}

impl AdminState {
    /// Refuses `op` when the kind asks for a higher role than theirs. A kind this process has
    /// not registered could ask for any role, so only an admin may act on its jobs.
    pub fn require_kind(&self, op: &Operator, kind: &str) -> Result<(), error::WebError> {
        let needed = match self.worker.kind(kind) {
            Some(k) => k.required_role(),
            None => crate::role::Role::Admin,
        };
        if op.role.allows(needed) {
            return Ok(());
        }
        let kind: String = kind.chars().take(60).collect();
        Err(error::WebError::new(
            axum::http::StatusCode::FORBIDDEN,
            format!("Jobs of {kind:?} need the {needed} role."),
        ))
    }

    /// [`Self::require_kind`] for an existing job.
    /// Returns the job as it was checked.
    pub async fn require_job_kind(
        &self,
        op: &Operator,
        id: i64,
    ) -> Result<crate::job::Job, error::WebError> {
        let job = self.worker.job(id).await?;
        self.require_kind(op, &job.job)?;
        Ok(job)
    }
}

/// The admin router on `client` (a [`Client`], or a [`crate::Worker`]): serve it at `/`, or
/// mount it under any prefix with `Router::nest`; every link honours the prefix. It needs no
/// handlers: a web process that only enqueues can serve it while other nodes run the jobs.
pub fn router<S>(client: impl Into<Client>, auth: Auth) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let worker: Client = client.into();
    let db = worker.store().connection().clone();
    let state = admin_state(worker, &auth);
    let protected = routes::protected().layer(from_fn(security::require_login));
    let app = routes::public()
        .merge(protected)
        .layer(from_fn_with_state(state.clone(), security::csrf))
        .layer(from_fn_with_state(state.clone(), security::audit_actions))
        .layer(from_fn(flash::take_flash))
        .layer(from_fn_with_state(state.clone(), render_errors))
        .layer(from_fn_with_state(state.clone(), security::authenticate));
    let app = match &auth {
        Auth::Sessions(opts) => {
            let idle = CookieDuration::seconds(opts.idle_timeout.as_secs() as i64);
            // Expired sessions and throttle windows that are over are swept out.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let sessions = DbSessionStore::new(db.clone());
                let accounts = state.accounts.clone();
                rt.spawn(async move {
                    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
                    loop {
                        tick.tick().await;
                        if let Err(e) = sessions.delete_expired().await {
                            tracing::warn!("could not delete expired sessions: {e}");
                        }
                        if let Err(e) = accounts.prune_throttle().await {
                            tracing::warn!("could not prune login throttling: {e}");
                        }
                    }
                });
            }
            app.layer(
                SessionManagerLayer::new(DbSessionStore::new(db))
                    .with_name(security::SESSION_COOKIE)
                    .with_http_only(true)
                    .with_same_site(SameSite::Strict)
                    .with_secure(opts.secure_cookies)
                    .with_path("/")
                    .with_expiry(Expiry::OnInactivity(idle)),
            )
        }
        Auth::Custom(_) => app,
    };
    app.layer(from_fn(security::security_headers))
        .layer(axum_htmx::AutoVaryLayer)
        .with_state(state)
}

fn admin_state(worker: Client, auth: &Auth) -> AdminState {
    let db = worker.store().connection().clone();
    AdminState(Arc::new(Inner {
        hub: Hub::new(worker.clone()),
        accounts: Accounts::new(db),
        worker,
        auth: auth.clone(),
        metrics: Default::default(),
    }))
}

/// `GET /metrics` alone (the Prometheus text format), to serve on an address of its own (e.g.
/// one only the monitoring network reaches): every other path is a 404. A scraper still needs
/// an API token (`Authorization: Bearer …`, any role) — or, with [`Auth::custom`], whatever the
/// host's authenticator accepts; there are no sessions here.
pub fn metrics_router<S>(client: impl Into<Client>, auth: Auth) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let state = admin_state(client.into(), &auth);
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(routes::metrics::metrics).layer(from_fn(security::require_login)),
        )
        .fallback(routes::not_found)
        .layer(from_fn_with_state(state.clone(), render_errors))
        .layer(from_fn_with_state(state.clone(), security::authenticate))
        .layer(from_fn(security::security_headers))
        .with_state(state)
}

/// Turns an [`ErrorBody`] response into JSON or the plain error page.
async fn render_errors(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    let json = extract::wants_json(req.headers());
    let chrome = Chrome::of(req.extensions());
    let res = next.run(req).await;
    render_error(&st, json, &chrome, res).await
}

/// Gives an error response its body: JSON `{"error","fields"}` or the plain error page. Other
/// responses pass unchanged.
pub(crate) async fn render_error(
    st: &AdminState,
    json: bool,
    chrome: &Chrome,
    mut res: Response,
) -> Response {
    let Some(err) = res.extensions_mut().remove::<ErrorBody>() else {
        return res;
    };
    let status = res.status();
    let mut page = if json {
        let body = serde_json::json!({"error": err.message, "fields": err.fields});
        (status, axum::Json(body)).into_response()
    } else {
        let mut ctx = st.page_ctx(chrome, None).await;
        ctx.flash = None;
        (
            status,
            views::error::error_page(&ctx, status.as_u16(), &err.message),
        )
            .into_response()
    };
    for (k, v) in res.headers().iter() {
        if k == axum::http::header::SET_COOKIE
            || k == axum::http::header::LOCATION
            || k == axum::http::header::RETRY_AFTER
        {
            page.headers_mut().append(k, v.clone());
        }
    }
    page
}
