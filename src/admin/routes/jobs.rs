//! Job routes: list, new, create, show, update, abort, cancel, rerun, delete. Each handler
//! extracts, makes one call into the engine, and renders.
use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_htmx::HxRequest;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::input::{self, Body, ListQuery, Query, RawBody};
use crate::NewJob;
use crate::admin::AdminState;
use crate::admin::error::WebError;
use crate::admin::extract::{Base, Chrome, Operator, WantsJson, wants_json};
use crate::admin::flash;
use crate::admin::hub;
use crate::admin::schema_form;
use crate::admin::views;
use crate::admin::views::form::FormState;
use crate::admin::views::job::JobView;
use crate::admin::views::list::ListView;
use crate::error::Error;
use crate::job::Job;
use crate::kind::JobKind;
use crate::store::JobFilter;
use crate::text::quote;

type Result<T, E = WebError> = std::result::Result<T, E>;

const PAGE_SIZE: u64 = 50;
const DETAIL_LOG_LINES: u64 = 1000;
/// Result rows per page of the job page.
const RESULTS_PER_PAGE: u64 = 500;

/// `GET /workers/{id}` query: which page of the results.
#[derive(Debug, Default, serde::Deserialize)]
pub struct DetailQuery {
    results_page: Option<String>,
}

pub async fn list_jobs(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let (spec, bad) = q.check_page(&st.worker)?;
    if let Some(bad) = bad {
        if json {
            return Err(WebError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "q",
                bad.0,
            ));
        }
        // The page with the message above an empty list: never every job as if they matched.
        let view = list_view(&st, &spec, vec![], None, (None, 0), Some(bad.0), None);
        let mut ctx = st.page_ctx(&chrome, Some(&spec.tab)).await;
        ctx.counts = st.hub.counts_since(tokio::time::Instant::now()).await?;
        let mut res = views::list::list_page(&ctx, &view).into_response();
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(res);
    }
    let models = st
        .worker
        .store()
        .list_jobs(&spec.filter, spec.after, PAGE_SIZE + 1)
        .await?;
    // The counts are read after the jobs, so they count at least the jobs shown.
    let counts = st.hub.counts_since(tokio::time::Instant::now()).await?;
    let more = models.len() as u64 > PAGE_SIZE;
    let jobs: Vec<Job> = models
        .into_iter()
        .take(PAGE_SIZE as usize)
        .map(|m| {
            let kind = st.worker.kind(&m.kind);
            Job::from_model(m, kind.as_ref())
        })
        .collect::<Result<_, _>>()?;
    let next = if more {
        jobs.last().map(|j| j.id)
    } else {
        None
    };
    if json {
        let jobs: Vec<Value> = jobs.iter().map(hub::job_json).collect();
        return Ok(
            axum::Json(serde_json::json!({"jobs": jobs, "next": next, "counts": counts}))
                .into_response(),
        );
    }
    let newer = match spec.after {
        Some(after) => {
            let (newer, skipped) = newer_page(&st, &spec.filter, after).await?;
            (Some(newer), skipped)
        }
        None => (None, 0),
    };
    let bulk = if chrome_may_change(&chrome) && !jobs.is_empty() {
        let paged = more || spec.after.is_some();
        Some(matching(&st, &spec, &counts, jobs.len(), paged).await?)
    } else {
        None
    };
    let view = list_view(&st, &spec, jobs, next, newer, None, bulk);
    let mut ctx = st.page_ctx(&chrome, Some(&spec.tab)).await;
    ctx.counts = counts;
    Ok(views::list::list_page(&ctx, &view).into_response())
}

/// The list page's view of `jobs` under `spec`.
fn list_view(
    st: &AdminState,
    spec: &input::ListSpec,
    jobs: Vec<Job>,
    next: Option<i64>,
    (newer, skipped): (Option<Option<i64>>, u64),
    error: Option<String>,
    bulk: Option<Option<u64>>,
) -> ListView {
    let kinds = st.worker.kinds();
    let mut groups: Vec<String> = kinds.iter().map(|k| k.group_name().to_owned()).collect();
    groups.dedup();
    ListView {
        bulk,
        tab: spec.tab.clone(),
        jobs,
        next,
        after: spec.after,
        newer,
        skipped,
        kind: spec.kind.clone(),
        group: spec.group.clone(),
        q: spec.q.clone(),
        queue: spec.queue.clone(),
        tag: spec.tag.clone(),
        kinds: kinds
            .iter()
            .map(|k| (k.name().to_owned(), k.display_label().to_owned()))
            .collect(),
        groups,
        query: spec.query(),
        error,
    }
}

/// Whether the viewer may change jobs (an operator): they get the bulk bar.
fn chrome_may_change(chrome: &Chrome) -> bool {
    chrome
        .operator
        .as_ref()
        .is_some_and(|o| o.role.allows(crate::role::Role::Operator))
}

/// How many jobs the list's filter holds, for the bulk bar (`None`: over the cap). One page:
/// those shown; a tab without other filters: its count in the sidebar; else a capped count.
async fn matching(
    st: &AdminState,
    spec: &input::ListSpec,
    counts: &hub::Counts,
    shown: usize,
    paged: bool,
) -> Result<Option<u64>> {
    let n = if !paged {
        shown as u64
    } else if let Some(n) = (spec.kind.is_none()
        && spec.group.is_none()
        && spec.q.is_none()
        && spec.queue.is_none()
        && spec.tag.is_none())
    .then(|| counts.tabs().into_iter().find(|(t, _)| *t == spec.tab))
    .flatten()
    .map(|(_, n)| n)
    {
        n
    } else {
        st.worker.store().count_capped(&spec.filter).await?
    };
    Ok((n <= crate::store::COUNT_CAP).then_some(n))
}

/// For the page after cursor `after` (jobs with a smaller id): the cursor of the page before it
/// (`None`: the first page), and how many jobs of the list come before it (up to the cap). The
/// same keyset as the pages themselves: ids from `after` up, never an offset.
async fn newer_page(st: &AdminState, filter: &JobFilter, after: i64) -> Result<(Option<i64>, u64)> {
    let store = st.worker.store();
    // Newest first, the page before this one starts below the (PAGE_SIZE + 1)th newer job.
    let ids = store.list_ids_from(filter, after, PAGE_SIZE + 1).await?;
    let cursor = ids.get(PAGE_SIZE as usize).copied();
    let skipped = store.count_capped_from(filter, after).await?;
    Ok((cursor, skipped))
}

#[derive(Debug, Deserialize)]
pub struct NewQuery {
    job: Option<String>,
}

pub async fn new_job(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
    Query(q): Query<NewQuery>,
) -> Result<Response> {
    let kinds = st.worker.kinds();
    if json {
        let list: Vec<Value> = kinds
            .iter()
            .filter(|k| q.job.as_deref().is_none_or(|j| j == k.name()))
            .map(|k| {
                serde_json::json!({"job": k.name(), "label": k.display_label(), "group": k.group_name(),
                    "schedulable": k.is_schedulable(), "schema": k.schema()})
            })
            .collect();
        return Ok(axum::Json(serde_json::json!({"kinds": list})).into_response());
    }
    let chosen = match q.job.as_deref().filter(|j| !j.is_empty()) {
        Some(name) => {
            let missing = || WebError::not_found(format!("no job kind named {}", quote(name)));
            Some(st.worker.kind(name).ok_or_else(missing)?)
        }
        None => None,
    };
    let state = FormState::default();
    let ctx = st.page_ctx(&chrome, None).await;
    let page = views::form::new_job_page(&ctx, &kinds, chosen.as_ref().map(|k| (k, &state)));
    Ok(page.into_response())
}

/// `POST /workers` as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateJson {
    job: String,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    schedule_at: Option<DateTime<Utc>>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    priority: Option<i32>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    unique_key: Option<String>,
}

/// The longest uniqueness key taken (in characters): a key names a thing, it is not a payload.
const MAX_UNIQUE_KEY_CHARS: usize = 255;

/// A new job's settings besides its arguments; `None` (or no tags): the kind's.
#[derive(Debug, Default)]
struct JobOptions {
    queue: Option<String>,
    priority: Option<i32>,
    tags: Vec<String>,
    unique_key: Option<String>,
}

impl JobOptions {
    /// Every bad option at once, by field (the engine would stop at the first).
    fn check(&self) -> BTreeMap<String, String> {
        let mut errors = BTreeMap::new();
        let mut note = |field: &str, r: crate::error::Result<()>| {
            if let Err(e) = r {
                let message = match e {
                    Error::InvalidArgs { message, .. } => message,
                    other => other.to_string(),
                };
                errors.insert(field.to_owned(), message);
            }
        };
        if let Some(q) = &self.queue {
            note("queue", crate::queue::check_name(q));
        }
        if let Some(p) = self.priority {
            note("priority", crate::queue::check_priority(p));
        }
        note("tags", crate::queue::clean_tags(&self.tags).map(drop));
        if let Some(key) = &self.unique_key {
            let chars = key.chars().count();
            if chars == 0 || chars > MAX_UNIQUE_KEY_CHARS {
                errors.insert(
                    "unique_key".into(),
                    format!(
                        "must be 1 to {MAX_UNIQUE_KEY_CHARS} characters (leave it out for none)"
                    ),
                );
            }
        }
        errors
    }

    fn apply(self, mut new: NewJob) -> NewJob {
        if let Some(q) = self.queue {
            new = new.queue(q);
        }
        if let Some(p) = self.priority {
            new = new.priority(p);
        }
        if let Some(k) = self.unique_key {
            new = new.unique_key(k);
        }
        new.tags(self.tags)
    }
}

/// The options a form sends (blank ones are not given). Only those the kind's form offers:
/// a field named like one of its arguments is that argument.
fn form_options(
    kind: &JobKind,
    form: &BTreeMap<String, String>,
) -> std::result::Result<JobOptions, BTreeMap<String, String>> {
    let offered = views::form::option_fields(kind);
    let given = |name: &str| {
        offered
            .contains(&name)
            .then(|| form.get(name).map(|v| v.trim()))
            .flatten()
            .filter(|v| !v.is_empty())
    };
    let mut errors = BTreeMap::new();
    let priority = match given("priority") {
        None => None,
        Some(raw) => match raw.parse::<i32>() {
            Ok(p) => Some(p),
            Err(_) => {
                errors.insert(
                    "priority".to_owned(),
                    format!("must be a whole number from 0 to 9, got {}", quote(raw)),
                );
                None
            }
        },
    };
    let options = JobOptions {
        queue: given("queue").map(str::to_owned),
        priority,
        // Tags hold no commas, so the one text field splits on them.
        tags: given("tags")
            .map(|t| t.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        unique_key: given("unique_key").map(str::to_owned),
    };
    for (field, message) in options.check() {
        errors.entry(field).or_insert(message);
    }
    if errors.is_empty() {
        Ok(options)
    } else {
        Err(errors)
    }
}

pub async fn create_job(
    State(st): State<AdminState>,
    chrome: Chrome,
    HxRequest(htmx): HxRequest,
    WantsJson(json): WantsJson,
    op: Operator,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    match input::body(&headers, &body)? {
        Body::Json(v) => {
            let req: CreateJson = read_json(v)?;
            st.require_kind(&op, &req.job)?;
            let options = JobOptions {
                queue: req.queue,
                priority: req.priority,
                tags: req.tags.unwrap_or_default(),
                unique_key: req.unique_key,
            };
            let errors = options.check();
            if !errors.is_empty() {
                return Err(WebError::invalid(errors));
            }
            let mut new = NewJob::from_value(
                req.job,
                req.args.unwrap_or(Value::Object(Default::default())),
            )
            .created_by(op.name);
            if let Some(at) = req.schedule_at {
                new = new.schedule_at(at);
            }
            let job = st.worker.insert(options.apply(new)).await?;
            Ok(created(&chrome.base, &job))
        }
        Body::Form(form) => {
            let name = form.get("job").cloned().unwrap_or_default();
            let kind = st.worker.kind(&name).ok_or_else(|| {
                WebError::invalid(BTreeMap::from([(
                    "job".to_owned(),
                    format!("no job kind named {}", quote(&name)),
                )]))
            })?;
            st.require_kind(&op, &name)?;
            let base = &chrome.base;
            // The arguments and the options are checked together: one answer names them all.
            let made = match (form_args(&kind, &form, false), form_options(&kind, &form)) {
                (Ok((args, at)), Ok(options)) => {
                    let new = NewJob::from_value(kind.name(), args).created_by(op.name.clone());
                    Ok(options.apply(match at {
                        Some(at) => new.schedule_at(at),
                        None => new,
                    }))
                }
                (Err(FormError::Fields(mut errors)), Err(more)) => {
                    errors.extend(more);
                    Err(FormError::Fields(errors))
                }
                (Ok(_), Err(errors)) => Err(FormError::Fields(errors)),
                (Err(e), _) => Err(e),
            };
            let result = match made {
                Ok(new) => st.worker.insert(new).await.map_err(form_error),
                Err(e) => Err(e),
            };
            match result {
                Ok(job) if json => Ok(created(base, &job)),
                Ok(job) => {
                    let message = if job.already_queued {
                        already_queued(&job)
                    } else {
                        format!("Job #{} created.", job.id)
                    };
                    Ok(flash::redirect(
                        htmx,
                        &format!("{base}/workers/{}", job.id),
                        &message,
                    ))
                }
                Err(FormError::Fields(errors)) if !json => {
                    let state = refill(&kind, &form, errors);
                    let ctx = st.page_ctx(&chrome, None).await;
                    let kinds = st.worker.kinds();
                    let page = views::form::new_job_page(&ctx, &kinds, Some((&kind, &state)));
                    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
                }
                Err(FormError::Fields(errors)) => Err(WebError::invalid(errors)),
                Err(FormError::Other(e)) => Err(e),
            }
        }
    }
}

/// What the operator hears when their job was not added: another with its key is there (the
/// page they are sent to is that job's).
fn already_queued(job: &Job) -> String {
    let doing = if job.status.is_waiting() {
        "is waiting"
    } else {
        "is running"
    };
    format!(
        "Already queued: job #{} with key {} {doing}; no second job was added.",
        job.id,
        job.unique_key.as_deref().unwrap_or_default()
    )
}

pub async fn show_job(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
    Path(id): Path<String>,
    input::Query(q): input::Query<DetailQuery>,
) -> Result<Response> {
    let id = input::job_id(&id)?;
    let page = match q.results_page.as_deref().filter(|p| !p.is_empty()) {
        None => 1,
        Some(raw) => raw.parse::<u64>().ok().filter(|p| *p >= 1).ok_or_else(|| {
            WebError::bad_request(format!(
                "results_page: {} is not a page number (1, 2, …)",
                crate::text::quote(raw)
            ))
        })?,
    };
    let view = job_view(&st, id, None, page).await?;
    if json {
        return Ok(axum::Json(job_json(&view)).into_response());
    }
    // Counts read after the job: the sidebar counts the job this page shows.
    let counts = st.hub.counts_since(tokio::time::Instant::now()).await?;
    let mut ctx = st.page_ctx(&chrome, None).await;
    ctx.counts = counts;
    Ok(views::job::job_page(&ctx, &view).into_response())
}

async fn job_view(
    st: &AdminState,
    id: i64,
    form: Option<FormState>,
    results_page: u64,
) -> Result<JobView> {
    let job = st.worker.job(id).await?;
    let kind = st.worker.kind(&job.job);
    let form = match (form, &kind) {
        (Some(f), _) => Some(f),
        // A retry is run now or cancelled, not edited.
        (None, Some(_)) if job.status.is_waiting() && !views::job::is_retry(&job) => {
            Some(prefill(&job))
        }
        _ => None,
    };
    Ok(JobView {
        log: st.worker.logs(id, DETAIL_LOG_LINES).await?,
        results: st
            .worker
            .results_page(id, results_page - 1, RESULTS_PER_PAGE)
            .await?,
        results_page,
        results_per_page: RESULTS_PER_PAGE,
        result_summary: st.worker.result_summary(id).await?,
        attempts: st.worker.attempts(id).await?,
        history: crate::auth::audit::list(
            st.worker.store().connection(),
            &crate::auth::audit::Filter {
                target: Some(format!("job:{id}")),
                ..Default::default()
            },
            None,
            50,
        )
        .await
        .map_err(Error::from)?,
        kind,
        form,
        job,
    })
}

fn job_json(view: &JobView) -> Value {
    let mut v = hub::job_json(&view.job);
    if let Value::Object(map) = &mut v {
        let log: Vec<Value> = view
            .log
            .iter()
            .map(|l| serde_json::json!({"at": crate::clock::to_datetime(l.at), "line": l.line}))
            .collect();
        let attempts: Vec<Value> = view
            .attempts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "attempt": a.attempt, "node": a.node,
                    "started_at": crate::clock::to_datetime(a.started_at),
                    "finished_at": a.finished_at.map(crate::clock::to_datetime),
                    "outcome": a.outcome, "error": a.error,
                })
            })
            .collect();
        map.insert("log".into(), Value::Array(log));
        if let Some(kind) = view.kind.as_ref().filter(|k| !k.columns().is_empty()) {
            map.insert("result_columns".into(), serde_json::json!(kind.columns()));
        }
        map.insert(
            "results".into(),
            serde_json::to_value(&view.results).unwrap_or_default(),
        );
        map.insert("attempts".into(), Value::Array(attempts));
    }
    v
}

/// A JSON body as `T`, naming the field at fault; a time that is not one says what it takes.
fn read_json<T: serde::de::DeserializeOwned>(v: Value) -> Result<T> {
    input::from_json(v).map_err(|mut e| {
        if let Some(m) = e.fields.get_mut("schedule_at") {
            *m = format!("{NOT_A_TIME} (RFC 3339, such as 2030-01-01T09:00:00Z)");
            e.message = format!("schedule_at: {m}");
        }
        e
    })
}

const NOT_A_TIME: &str = "is not a date and time";

/// `PUT /workers/{id}` as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateJson {
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    schedule_at: Option<DateTime<Utc>>,
}

pub async fn update_job(
    State(st): State<AdminState>,
    chrome: Chrome,
    op: Operator,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let id = input::job_id(&id)?;
    let (htmx, json) = (headers.contains_key("hx-request"), wants_json(&headers));
    let current = st.require_job_kind(&op, id).await?;
    match input::body(&headers, &body)? {
        Body::Json(v) => {
            let req: UpdateJson = read_json(v)?;
            let args = match req.args {
                Some(a) => a,
                None => serde_json::from_str(&st.worker.store().job(id).await?.args)
                    .map_err(|e| Error::Corrupt(e.to_string()))?,
            };
            let job = st.worker.update(id, args, req.schedule_at).await?;
            Ok(axum::Json(job).into_response())
        }
        Body::Form(form) => update_from_form(st, chrome, htmx, json, current, form).await,
    }
}

/// `POST /workers/{id}` with `_method=PUT`: the update form of browsers.
pub async fn post_job(
    State(st): State<AdminState>,
    chrome: Chrome,
    op: Operator,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let id = input::job_id(&id)?;
    let (htmx, json) = (headers.contains_key("hx-request"), wants_json(&headers));
    let current = st.require_job_kind(&op, id).await?;
    match input::body(&headers, &body)? {
        Body::Form(form) if form.get("_method").map(String::as_str) == Some("PUT") => {
            update_from_form(st, chrome, htmx, json, current, form).await
        }
        _ => Err(WebError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST here takes the update form (_method=PUT); use PUT with JSON",
        )),
    }
}

async fn update_from_form(
    st: AdminState,
    chrome: Chrome,
    htmx: bool,
    json: bool,
    current: Job,
    form: BTreeMap<String, String>,
) -> Result<Response> {
    let base = &chrome.base;
    let id = current.id;
    if form.contains_key(views::job::RETRY_NOW_FIELD) {
        return retry_now(&st, base, htmx, json, id).await;
    }
    let kind = st
        .worker
        .kind(&current.job)
        .ok_or_else(|| WebError::from(Error::UnknownKind(current.job.clone())))?;
    let result = match form_args(&kind, &form, true) {
        Ok((args, at)) => st.worker.update(id, args, at).await.map_err(form_error),
        Err(e) => Err(e),
    };
    match result {
        Ok(job) if json => Ok(axum::Json(job).into_response()),
        Ok(job) => Ok(flash::redirect(
            htmx,
            &format!("{base}/workers/{}", job.id),
            &format!("Job #{} updated.", job.id),
        )),
        Err(FormError::Fields(errors)) if !json => {
            let state = refill(&kind, &form, errors);
            let view = job_view(&st, id, Some(state), 1).await?;
            let ctx = st.page_ctx(&chrome, None).await;
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                views::job::job_page(&ctx, &view),
            )
                .into_response())
        }
        Err(FormError::Fields(errors)) => Err(WebError::invalid(errors)),
        Err(FormError::Other(e)) => Err(e),
    }
}

/// "Retry now": a waiting job (a retry waiting out its backoff) runs as soon as a worker is
/// free, with its arguments as stored: the update with no time. Its attempts so far count.
async fn retry_now(
    st: &AdminState,
    base: &str,
    htmx: bool,
    json: bool,
    id: i64,
) -> Result<Response> {
    let args: Value = serde_json::from_str(&st.worker.store().job(id).await?.args)
        .map_err(|e| Error::Corrupt(e.to_string()))?;
    let job = st.worker.update(id, args, None).await?;
    if json {
        return Ok(axum::Json(hub::job_json(&job)).into_response());
    }
    let msg = format!("Job #{id} will run again now.");
    Ok(flash::redirect(htmx, &format!("{base}/workers/{id}"), &msg))
}

pub async fn abort_job(
    State(st): State<AdminState>,
    Base(base): Base,
    HxRequest(htmx): HxRequest,
    WantsJson(json): WantsJson,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = input::job_id(&id)?;
    st.require_job_kind(&op, id).await?;
    let job = st.worker.abort(id, &op.name).await?;
    let msg = format!("Abort requested for job #{}.", job.id);
    Ok(acted(json, htmx, &base, StatusCode::ACCEPTED, &job, &msg))
}

pub async fn cancel_job(
    State(st): State<AdminState>,
    Base(base): Base,
    HxRequest(htmx): HxRequest,
    WantsJson(json): WantsJson,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = input::job_id(&id)?;
    st.require_job_kind(&op, id).await?;
    let job = st.worker.cancel(id).await?;
    let msg = format!("Job #{} cancelled.", job.id);
    Ok(acted(json, htmx, &base, StatusCode::OK, &job, &msg))
}

pub async fn rerun_job(
    State(st): State<AdminState>,
    Base(base): Base,
    HxRequest(htmx): HxRequest,
    WantsJson(json): WantsJson,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = input::job_id(&id)?;
    st.require_job_kind(&op, id).await?;
    let job = st.worker.rerun(id, Some(&op.name)).await?;
    let msg = format!("Job #{} created as a rerun of #{id}.", job.id);
    Ok(acted(json, htmx, &base, StatusCode::CREATED, &job, &msg))
}

/// `DELETE /workers/{id}`: abort if running, cancel if waiting.
pub async fn delete_job(
    State(st): State<AdminState>,
    Base(base): Base,
    HxRequest(htmx): HxRequest,
    WantsJson(json): WantsJson,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = input::job_id(&id)?;
    let current = st.require_job_kind(&op, id).await?;
    let (job, status, msg) = if current.status.is_waiting() {
        let job = st.worker.cancel(id).await?;
        (job, StatusCode::OK, format!("Job #{id} cancelled."))
    } else {
        let job = st.worker.abort(id, &op.name).await?;
        (
            job,
            StatusCode::ACCEPTED,
            format!("Abort requested for job #{id}."),
        )
    };
    Ok(acted(json, htmx, &base, status, &job, &msg))
}

/// 201 with the new job and where it lives; 200 with the job already holding its uniqueness
/// key when none was added.
fn created(base: &str, job: &Job) -> Response {
    let location = format!("{base}/workers/{}", job.id);
    let status = if job.already_queued {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (
        status,
        [(axum::http::header::LOCATION, location)],
        axum::Json(job),
    )
        .into_response()
}

/// After an action: the job as JSON, or back to its page with a flash message.
fn acted(json: bool, htmx: bool, base: &str, status: StatusCode, job: &Job, msg: &str) -> Response {
    if json && status == StatusCode::CREATED {
        created(base, job)
    } else if json {
        (status, axum::Json(job)).into_response()
    } else {
        flash::redirect(htmx, &format!("{base}/workers/{}", job.id), msg)
    }
}

enum FormError {
    Fields(BTreeMap<String, String>),
    Other(WebError),
}

/// Engine refusals that belong beside a field go back to the form; the rest are errors.
fn form_error(e: Error) -> FormError {
    match e {
        Error::InvalidArgs {
            field: Some(f),
            message,
        } => FormError::Fields(BTreeMap::from([(f, message)])),
        Error::InvalidArgs {
            field: None,
            message,
        } => FormError::Fields(BTreeMap::from([("_form".to_owned(), message)])),
        Error::NotSchedulable(_) => {
            FormError::Fields(BTreeMap::from([("schedule_at".to_owned(), e.to_string())]))
        }
        other => FormError::Other(other.into()),
    }
}

/// The arguments and schedule time a form makes.
fn form_args(
    kind: &JobKind,
    form: &BTreeMap<String, String>,
    update: bool,
) -> Result<(Value, Option<DateTime<Utc>>), FormError> {
    let fields = schema_form::fields(kind);
    let mut errors = BTreeMap::new();
    let args = match schema_form::parse(&fields, form, update) {
        Ok(a) => Some(a),
        Err(e) => {
            errors = e;
            None
        }
    };
    let at = match form
        .get("schedule_at")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(raw) => {
            match schema_form::parse_time(raw, schema_form::offset_of(form, "schedule_at")) {
                Some(t) => Some(t),
                None => {
                    errors.insert("schedule_at".into(), NOT_A_TIME.into());
                    None
                }
            }
        }
    };
    match args {
        Some(args) if errors.is_empty() => Ok((args, at)),
        _ => Err(FormError::Fields(errors)),
    }
}

/// The operator's input re-shown with errors (never the secrets).
fn refill(
    kind: &JobKind,
    form: &BTreeMap<String, String>,
    mut errors: BTreeMap<String, String>,
) -> FormState {
    let secrets: Vec<String> = kind.secret_fields().map(str::to_owned).collect();
    let values = form
        .iter()
        .filter(|(k, _)| !secrets.contains(k) && !k.starts_with('_'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let message = errors.remove("_form");
    FormState {
        values,
        errors,
        message: message.or_else(|| Some("Please correct the fields marked below.".into())),
        utc: false,
    }
}

/// The update form's starting values: the job's arguments (secrets left empty) and time.
fn prefill(job: &Job) -> FormState {
    let mut values = BTreeMap::new();
    if let Value::Object(map) = &job.args {
        for (k, v) in map {
            let text = match v {
                Value::String(s) if s == crate::kind::SECRET_MASK => continue,
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Null => continue,
                other => other.to_string(),
            };
            values.insert(k.clone(), text);
        }
    }
    if let Some(at) = job.schedule_at {
        values.insert(
            "schedule_at".into(),
            at.format("%Y-%m-%dT%H:%M:%S").to_string(),
        );
    }
    FormState {
        values,
        utc: true,
        ..FormState::default()
    }
}
