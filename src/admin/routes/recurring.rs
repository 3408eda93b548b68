//! Recurring routes: the page (or JSON) of every schedule, create, edit, pause, resume, skip the
//! next tick, run now, delete. Each handler extracts, makes one call into the engine, and
//! renders.
use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_htmx::HxRequest;
use serde::Deserialize;
use serde_json::Value;

use super::input::{self, Body, RawBody};
use crate::admin::AdminState;
use crate::admin::error::WebError;
use crate::admin::extract::{Base, Chrome, Operator, WantsJson, wants_json};
use crate::admin::flash;
use crate::admin::views;
use crate::admin::views::form::FormState;
use crate::admin::views::recurring::{RecurringView, ScheduleForm};
use crate::error::Error;
use crate::recurring::{Missed, Recurring, Schedule, ScheduleEdit};
use crate::text::quote;

type Result<T, E = WebError> = std::result::Result<T, E>;

/// A schedule id from the path; anything else is a 404.
fn schedule_id(raw: &str) -> Result<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| WebError::not_found(format!("recurring schedule {} not found", quote(raw))))
}

/// `GET /recurring`: every schedule.
pub async fn list(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
    HxRequest(htmx): HxRequest,
) -> Result<Response> {
    let schedules = st.worker.recurring_schedules().await?;
    if json {
        return Ok(axum::Json(serde_json::json!({ "schedules": schedules })).into_response());
    }
    let view = RecurringView { schedules };
    let ctx = st.page_ctx(&chrome, Some("recurring")).await;
    if htmx {
        return Ok(views::recurring::schedules(&ctx, &view).into_response());
    }
    Ok(views::recurring::recurring_page(&ctx, &view).into_response())
}

/// `GET /recurring/new`: the form for a new schedule.
pub async fn new_schedule(State(st): State<AdminState>, chrome: Chrome) -> Result<Response> {
    let state = FormState {
        values: BTreeMap::from([
            ("timezone".to_owned(), "UTC".to_owned()),
            ("args".to_owned(), "{}".to_owned()),
            ("missed".to_owned(), Missed::Skip.as_str().to_owned()),
        ]),
        ..FormState::default()
    };
    form_page(&st, &chrome, None, &state, StatusCode::OK).await
}

/// `GET /recurring/{id}`: one schedule (JSON), or its edit form.
pub async fn show(
    State(st): State<AdminState>,
    chrome: Chrome,
    WantsJson(json): WantsJson,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = schedule_id(&id)?;
    let schedule = st.worker.recurring_schedule(id).await?;
    if json {
        return Ok(axum::Json(schedule).into_response());
    }
    let state = prefill(&schedule);
    form_page(&st, &chrome, Some(&schedule), &state, StatusCode::OK).await
}

async fn form_page(
    st: &AdminState,
    chrome: &Chrome,
    schedule: Option<&Schedule>,
    state: &FormState,
    status: StatusCode,
) -> Result<Response> {
    let kinds: Vec<_> = st
        .worker
        .kinds()
        .into_iter()
        .filter(|k| {
            chrome
                .operator
                .as_ref()
                .is_some_and(|op| op.role.allows(k.required_role()))
        })
        .collect();
    let ctx = st.page_ctx(chrome, Some("recurring")).await;
    let form = ScheduleForm {
        schedule,
        kinds: &kinds,
        state,
    };
    Ok((status, views::recurring::schedule_form_page(&ctx, &form)).into_response())
}

/// The edit form's starting values: the schedule as it is (secrets masked).
fn prefill(s: &Schedule) -> FormState {
    FormState {
        values: BTreeMap::from([
            ("job".to_owned(), s.job.clone()),
            ("cron".to_owned(), s.cron.clone()),
            ("timezone".to_owned(), s.timezone.clone()),
            (
                "args".to_owned(),
                serde_json::to_string_pretty(&s.args).unwrap_or_default(),
            ),
            ("missed".to_owned(), s.missed.as_str().to_owned()),
        ]),
        ..FormState::default()
    }
}

/// A schedule as sent: JSON `{"name","job","cron","timezone","args","missed"}`, or the form's
/// fields (`args` as JSON text).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleInput {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    job: Option<String>,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    missed: Option<String>,
    /// The form's `args` text when it is not JSON.
    #[serde(skip)]
    args_error: Option<String>,
}

/// Reads the body: the input, whether it came from a form (and the form's raw fields).
fn read_input(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(ScheduleInput, Option<BTreeMap<String, String>>)> {
    match input::body(headers, body)? {
        Body::Json(v) => Ok((input::from_json(v)?, None)),
        Body::Form(form) => {
            let text = |k: &str| form.get(k).cloned();
            let (args, args_error) = match form.get("args").map(|s| s.trim()) {
                None => (None, None),
                Some("") => (Some(Value::Object(Default::default())), None),
                Some(raw) => match serde_json::from_str(raw) {
                    Ok(v) => (Some(v), None),
                    Err(e) => (None, Some(format!("is not valid JSON: {e}"))),
                },
            };
            let input = ScheduleInput {
                name: text("name"),
                job: text("job"),
                cron: text("cron"),
                timezone: text("timezone"),
                args,
                missed: text("missed"),
                args_error,
            };
            Ok((input, Some(form)))
        }
    }
}

/// Checks what can be checked without the engine, naming every bad field at once: the
/// expression, the zone, the policy, the kind, the arguments' form.
fn check(st: &AdminState, input: &ScheduleInput, create: bool) -> BTreeMap<String, String> {
    let mut errors = BTreeMap::new();
    let mut note = |e: Error| {
        if let Error::InvalidArgs {
            field: Some(f),
            message,
        } = e
        {
            errors.entry(f).or_insert(message);
        }
    };
    if create && input.cron.as_deref().is_none_or(|c| c.trim().is_empty()) {
        note(Error::InvalidArgs {
            field: Some("cron".into()),
            message: "is required".into(),
        });
    }
    if let Some(cron) = &input.cron
        && let Err(e) = crate::recurring::parse_cron(cron)
    {
        note(e);
    }
    if let Some(tz) = &input.timezone
        && let Err(e) = crate::recurring::parse_timezone(tz)
    {
        note(e);
    }
    if let Some(m) = &input.missed
        && let Err(e) = m.parse::<Missed>()
    {
        note(e);
    }
    match &input.job {
        None if create => note(Error::InvalidArgs {
            field: Some("job".into()),
            message: "is required".into(),
        }),
        Some(job) if st.worker.kind(job).is_none() => note(Error::InvalidArgs {
            field: Some("job".into()),
            message: Error::UnknownKind(job.clone()).to_string(),
        }),
        _ => {}
    }
    if let Some(e) = &input.args_error {
        note(Error::InvalidArgs {
            field: Some("args".into()),
            message: e.clone(),
        });
    }
    if let Some(args) = &input.args
        && !args.is_object()
    {
        note(Error::InvalidArgs {
            field: Some("args".into()),
            message: "must be a JSON object".into(),
        });
    }
    errors
}

/// Where an engine refusal goes: beside a field of the form, or an error page.
enum Refusal {
    Fields(BTreeMap<String, String>),
    Other(WebError),
}

fn refusal(e: Error) -> Refusal {
    match e {
        Error::InvalidArgs {
            field: Some(f),
            message,
        } => Refusal::Fields(BTreeMap::from([(f, message)])),
        Error::InvalidArgs {
            field: None,
            message,
        } => Refusal::Fields(BTreeMap::from([("args".to_owned(), message)])),
        Error::UnknownKind(_) => {
            Refusal::Fields(BTreeMap::from([("job".to_owned(), e.to_string())]))
        }
        other => Refusal::Other(other.into()),
    }
}

/// A refused form again, with the operator's input and the messages beside the fields.
async fn refill(
    st: &AdminState,
    chrome: &Chrome,
    schedule: Option<&Schedule>,
    form: &BTreeMap<String, String>,
    errors: BTreeMap<String, String>,
) -> Result<Response> {
    let state = FormState {
        values: form
            .iter()
            .filter(|(k, _)| !k.starts_with('_'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        errors,
        message: Some("Please correct the fields marked below.".into()),
        utc: false,
    };
    form_page(
        st,
        chrome,
        schedule,
        &state,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

/// `POST /recurring`: creates a schedule (201 with it, or 422 naming the fields).
pub async fn create(
    State(st): State<AdminState>,
    chrome: Chrome,
    HxRequest(htmx): HxRequest,
    op: Operator,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let json = wants_json(&headers);
    let (input, form) = read_input(&headers, &body)?;
    let mut errors = check(&st, &input, true);
    if let Some(job) = &input.job
        && !errors.contains_key("job")
    {
        st.require_kind(&op, job)?;
    }
    let job = input.job.clone().unwrap_or_default();
    let cron = input.cron.clone().unwrap_or_default();
    let timezone = input
        .timezone
        .clone()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| "UTC".to_owned());
    let name = input
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("{job} {} {timezone}", cron.trim()));
    let result = if errors.is_empty() {
        let def = Recurring::new(
            name.trim(),
            cron,
            job,
            &input
                .args
                .clone()
                .unwrap_or(Value::Object(Default::default())),
        )
        .timezone(timezone)
        .missed(
            input
                .missed
                .as_deref()
                .and_then(|m| m.parse().ok())
                .unwrap_or_default(),
        );
        st.worker
            .add_recurring(def, &op.name)
            .await
            .map_err(refusal)
    } else {
        Err(Refusal::Fields(std::mem::take(&mut errors)))
    };
    let base = &chrome.base;
    match (result, form) {
        (Ok(s), _) if json => Ok((
            StatusCode::CREATED,
            [(header::LOCATION, format!("{base}/recurring/{}", s.id))],
            axum::Json(s),
        )
            .into_response()),
        (Ok(s), _) => Ok(flash::redirect(
            htmx,
            &format!("{base}/recurring#schedule-{}", s.id),
            &format!("Schedule {} created.", s.name),
        )),
        (Err(Refusal::Fields(errors)), Some(form)) if !json => {
            refill(&st, &chrome, None, &form, errors).await
        }
        (Err(Refusal::Fields(errors)), _) => Err(WebError::invalid(errors)),
        (Err(Refusal::Other(e)), _) => Err(e),
    }
}

/// `PUT /recurring/{id}`: edits a schedule (200 with it, or 422 naming the fields).
pub async fn update(
    State(st): State<AdminState>,
    chrome: Chrome,
    op: Operator,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let id = schedule_id(&id)?;
    let (input, form) = read_input(&headers, &body)?;
    edit(st, chrome, op, id, &headers, input, form).await
}

/// `POST /recurring/{id}` with `_method=PUT` (the edit form) or `_method=DELETE`.
pub async fn post(
    State(st): State<AdminState>,
    chrome: Chrome,
    op: Operator,
    Path(raw): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let id = schedule_id(&raw)?;
    let (input, form) = read_input(&headers, &body)?;
    match form
        .as_ref()
        .and_then(|f| f.get("_method"))
        .map(String::as_str)
    {
        Some("PUT") => edit(st, chrome, op, id, &headers, input, form).await,
        Some("DELETE") => {
            let htmx = headers.contains_key("hx-request");
            remove(&st, &chrome.base, htmx, wants_json(&headers), &op, id).await
        }
        _ => Err(WebError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST here takes the edit form (_method=PUT); use PUT with JSON",
        )),
    }
}

async fn edit(
    st: AdminState,
    chrome: Chrome,
    op: Operator,
    id: i64,
    headers: &HeaderMap,
    input: ScheduleInput,
    form: Option<BTreeMap<String, String>>,
) -> Result<Response> {
    let (htmx, json) = (headers.contains_key("hx-request"), wants_json(headers));
    let current = st.worker.recurring_schedule(id).await?;
    st.require_kind(&op, &current.job)?;
    let mut errors = check(&st, &input, false);
    if input.name.as_deref().is_some_and(|n| n != current.name) {
        errors.insert(
            "name".into(),
            "cannot be changed (delete the schedule and create another)".into(),
        );
    }
    if let Some(job) = &input.job
        && !errors.contains_key("job")
    {
        st.require_kind(&op, job)?;
    }
    let result = if errors.is_empty() {
        let change = ScheduleEdit {
            job: input.job,
            cron: input.cron,
            timezone: input.timezone,
            args: input.args,
            missed: input.missed.and_then(|m| m.parse().ok()),
        };
        st.worker
            .edit_recurring(id, change, &op.name)
            .await
            .map_err(refusal)
    } else {
        Err(Refusal::Fields(errors))
    };
    let base = &chrome.base;
    match (result, form) {
        (Ok(s), _) if json => Ok(axum::Json(s).into_response()),
        (Ok(s), _) => Ok(flash::redirect(
            htmx,
            &format!("{base}/recurring#schedule-{}", s.id),
            &format!("Schedule {} saved.", s.name),
        )),
        (Err(Refusal::Fields(errors)), Some(form)) if !json => {
            refill(&st, &chrome, Some(&current), &form, errors).await
        }
        (Err(Refusal::Fields(errors)), _) => Err(WebError::invalid(errors)),
        (Err(Refusal::Other(e)), _) => Err(e),
    }
}

/// After an action: the schedule as JSON, or back to the page with a flash message.
fn acted(json: bool, htmx: bool, base: &str, s: &Schedule, msg: &str) -> Response {
    if json {
        axum::Json(s).into_response()
    } else {
        flash::redirect(htmx, &format!("{base}/recurring#schedule-{}", s.id), msg)
    }
}

/// The schedule, once the operator may act on its kind.
async fn allowed(st: &AdminState, op: &Operator, id: i64) -> Result<Schedule> {
    let s = st.worker.recurring_schedule(id).await?;
    st.require_kind(op, &s.job)?;
    Ok(s)
}

/// `POST /recurring/{id}/pause`.
pub async fn pause(
    State(st): State<AdminState>,
    Base(base): Base,
    HxRequest(htmx): HxRequest,
    WantsJson(json): WantsJson,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response> {
    switch(&st, (&base, htmx, json), &op, &id, Switch::Pause).await
}

/// `POST /recurring/{id}/resume`.
pub async fn resume(
    State(st): State<AdminState>,
    Base(base): Base,
    HxRequest(htmx): HxRequest,
    WantsJson(json): WantsJson,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response> {
    switch(&st, (&base, htmx, json), &op, &id, Switch::Resume).await
}

/// `POST /recurring/{id}/skip`: skips the next tick.
pub async fn skip(
    State(st): State<AdminState>,
    Base(base): Base,
    HxRequest(htmx): HxRequest,
    WantsJson(json): WantsJson,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response> {
    switch(&st, (&base, htmx, json), &op, &id, Switch::Skip).await
}

/// What pause, resume and skip change.
#[derive(Debug, Clone, Copy)]
enum Switch {
    Pause,
    Resume,
    Skip,
}

/// Pause, resume or skip schedule `raw_id`, once the operator may act on its kind; answers
/// with the schedule (JSON) or back to the list with a flash. `(base, htmx, json)`: how the
/// request came.
async fn switch(
    st: &AdminState,
    (base, htmx, json): (&str, bool, bool),
    op: &Operator,
    raw_id: &str,
    what: Switch,
) -> Result<Response> {
    let id = schedule_id(raw_id)?;
    allowed(st, op, id).await?;
    let w = &st.worker;
    let s = match what {
        Switch::Pause => w.pause_recurring(id, &op.name).await?,
        Switch::Resume => w.resume_recurring(id, &op.name).await?,
        Switch::Skip => w.skip_recurring(id, &op.name).await?,
    };
    let msg = match what {
        Switch::Pause => format!("Schedule {} paused.", s.name),
        Switch::Resume => format!("Schedule {} resumed.", s.name),
        Switch::Skip => format!("Next run of {} skipped.", s.name),
    };
    Ok(acted(json, htmx, base, &s, &msg))
}

/// `POST /recurring/{id}/run`: a job now (201 with it).
pub async fn run(
    State(st): State<AdminState>,
    Base(base): Base,
    HxRequest(htmx): HxRequest,
    WantsJson(json): WantsJson,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = schedule_id(&id)?;
    let s = allowed(&st, &op, id).await?;
    let job = st.worker.run_recurring(id, &op.name).await?;
    let location = format!("{base}/workers/{}", job.id);
    if json {
        return Ok((
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            axum::Json(job),
        )
            .into_response());
    }
    Ok(flash::redirect(
        htmx,
        &location,
        &format!("Job #{} created by schedule {}.", job.id, s.name),
    ))
}

/// `DELETE /recurring/{id}`.
pub async fn delete(
    State(st): State<AdminState>,
    Base(base): Base,
    HxRequest(htmx): HxRequest,
    WantsJson(json): WantsJson,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = schedule_id(&id)?;
    remove(&st, &base, htmx, json, &op, id).await
}

/// `POST /recurring/{id}/delete`: the delete button of browsers.
pub async fn delete_form(
    State(st): State<AdminState>,
    Base(base): Base,
    HxRequest(htmx): HxRequest,
    WantsJson(json): WantsJson,
    op: Operator,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = schedule_id(&id)?;
    remove(&st, &base, htmx, json, &op, id).await
}

async fn remove(
    st: &AdminState,
    base: &str,
    htmx: bool,
    json: bool,
    op: &Operator,
    id: i64,
) -> Result<Response> {
    allowed(st, op, id).await?;
    let s = st.worker.delete_recurring(id).await?;
    if json {
        return Ok(axum::Json(s).into_response());
    }
    Ok(flash::redirect(
        htmx,
        &format!("{base}/recurring"),
        &format!("Schedule {} deleted.", s.name),
    ))
}
