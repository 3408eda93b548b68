//! `POST /workers/bulk`: cancel, retry, rerun or delete many jobs, chosen by id or by a list
//! filter; with `preview` only counted. JSON for scripts, plain forms for the browser (the list
//! page's bar, then a confirmation page, then the list with a flash).
use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::input::{self, ListQuery, RawBody};
use crate::admin::AdminState;
use crate::admin::error::WebError;
use crate::admin::extract::{Chrome, Operator, wants_json};
use crate::admin::flash;
use crate::admin::security::AuditNote;
use crate::admin::views;
use crate::role::Role;
use crate::store::{BulkAction, Selection};
use crate::text::quote;

type Result<T, E = WebError> = std::result::Result<T, E>;

/// The most ids one request may name; more is a filter's job.
pub const MAX_IDS: usize = 10_000;

/// The filter fields, as the list page's query names them.
const FILTER_FIELDS: [&str; 6] = ["status", "job", "group", "q", "queue", "tag"];

/// `POST /workers/bulk` as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkJson {
    action: String,
    #[serde(default)]
    ids: Option<Vec<i64>>,
    #[serde(default)]
    filter: Option<FilterJson>,
    #[serde(default)]
    preview: bool,
}

/// The list filter of a JSON request (as `GET /workers` takes it).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterJson {
    status: Option<String>,
    job: Option<String>,
    group: Option<String>,
    q: Option<String>,
    queue: Option<String>,
    tag: Option<String>,
}

/// Which jobs a request names.
enum Target {
    Ids(Vec<i64>),
    Filter(ListQuery),
}

/// A request, read.
struct BulkRequest {
    action: BulkAction,
    target: Target,
    preview: bool,
    /// The list the form came from (the filter fields a form sends along with ticked ids).
    list: ListQuery,
}

pub async fn bulk(
    State(st): State<AdminState>,
    chrome: Chrome,
    op: Operator,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    let json_body = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let json = wants_json(&headers) || json_body;
    let req = if json_body {
        from_json(&headers, &body)?
    } else {
        from_form(&body)?
    };
    let (sel, back) = selection(&st, &op, &req)?;
    let worker = &st.worker;
    if req.preview {
        let found = worker.bulk_count(req.action, &sel).await?;
        let mut res = if json {
            axum::Json(found).into_response()
        } else {
            let ctx = st.page_ctx(&chrome, None).await;
            let confirm = views::bulk::Confirm {
                action: req.action,
                count: found.count,
                denied: found.denied,
                fields: resend(&req),
                back: format!("{}{back}", chrome.base),
            };
            views::bulk::confirm_page(&ctx, &confirm).into_response()
        };
        // Counting changes nothing: not an action to audit.
        res.extensions_mut().insert(AuditNote::Skip);
        return Ok(res);
    }
    let done = worker.bulk(req.action, &sel, &op.name).await?;
    let mut res = if json {
        axum::Json(done).into_response()
    } else {
        let msg = views::bulk::done_message(req.action, done.affected, done.skipped);
        flash::redirect(false, &format!("{}{back}", chrome.base), &msg)
    };
    res.extensions_mut().insert(AuditNote::Action {
        action: format!("bulk_{}", req.action.as_str()),
        detail: format!(
            "affected {}, skipped {}; {}",
            done.affected,
            done.skipped,
            describe(&req.target)
        ),
    });
    Ok(res)
}

fn from_json(headers: &HeaderMap, body: &[u8]) -> Result<BulkRequest> {
    let input::Body::Json(v) = input::body(headers, body)? else {
        return Err(WebError::bad_request("send a JSON object"));
    };
    let req: BulkJson = input::from_json(v)?;
    let action = action(&req.action)?;
    let target = match (req.ids, req.filter) {
        (Some(_), Some(_)) => return Err(both()),
        (Some(ids), None) => Target::Ids(check_ids(ids)?),
        (None, Some(f)) => Target::Filter(ListQuery {
            status: f.status,
            job: f.job,
            group: f.group,
            q: f.q,
            queue: f.queue,
            tag: f.tag,
            ..ListQuery::default()
        }),
        (None, None) => return Err(neither()),
    };
    Ok(BulkRequest {
        action,
        target,
        preview: req.preview,
        list: ListQuery::default(),
    })
}

/// A form: `action`, `ids` (repeated) or `scope=filter` with the list's filter fields, and
/// `preview=1` for the confirmation page.
fn from_form(body: &[u8]) -> Result<BulkRequest> {
    let pairs = input::form_pairs(body)?;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let action = action(&get("action").unwrap_or_default())?;
    let preview = get("preview").is_some_and(|v| !v.is_empty() && v != "0");
    let list = || ListQuery {
        status: get("status"),
        job: get("job"),
        group: get("group"),
        q: get("q"),
        queue: get("queue"),
        tag: get("tag"),
        ..ListQuery::default()
    };
    let target = if get("scope").as_deref() == Some("filter") {
        Target::Filter(list())
    } else {
        let mut ids = Vec::new();
        for (_, raw) in pairs.iter().filter(|(k, _)| k == "ids") {
            let id = raw.trim().parse::<i64>().map_err(|_| {
                WebError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ids",
                    format!("{} is not a job id", quote(raw)),
                )
            })?;
            ids.push(id);
        }
        if ids.is_empty() {
            return Err(WebError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ids",
                "no job ticked: tick the jobs to change, or choose all jobs matching the filter",
            ));
        }
        Target::Ids(check_ids(ids)?)
    };
    Ok(BulkRequest {
        action,
        target,
        preview,
        list: list(),
    })
}

fn action(name: &str) -> Result<BulkAction> {
    BulkAction::parse(name).ok_or_else(|| {
        WebError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "action",
            format!("{} is not one of cancel, retry, rerun, delete", quote(name)),
        )
    })
}

fn check_ids(ids: Vec<i64>) -> Result<Vec<i64>> {
    if ids.is_empty() {
        return Err(WebError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ids",
            "must name at least one job",
        ));
    }
    if ids.len() > MAX_IDS {
        return Err(WebError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ids",
            format!(
                "at most {MAX_IDS} ids, got {}: use a filter for more",
                ids.len()
            ),
        ));
    }
    if let Some(bad) = ids.iter().find(|id| **id <= 0) {
        return Err(WebError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ids",
            format!("{bad} is not a job id"),
        ));
    }
    Ok(ids)
}

fn both() -> WebError {
    WebError::field(
        StatusCode::UNPROCESSABLE_ENTITY,
        "ids",
        "give ids or a filter, not both",
    )
}

fn neither() -> WebError {
    WebError::field(
        StatusCode::UNPROCESSABLE_ENTITY,
        "ids",
        "give ids (a list of job ids) or a filter (status, job, group, q, queue, tag)",
    )
}

/// The selection, limited to the kinds the operator's role allows, and the list (path and
/// query, below the mount point) to go back to.
fn selection(st: &AdminState, op: &Operator, req: &BulkRequest) -> Result<(Selection, String)> {
    // A kind this process has not registered could ask for any role: only an admin touches
    // its jobs (as on the single-job routes).
    let kinds = (!op.role.allows(Role::Admin)).then(|| {
        st.worker
            .kinds()
            .into_iter()
            .filter(|k| op.role.allows(k.required_role()))
            .map(|k| k.name().to_owned())
            .collect::<Vec<_>>()
    });
    Ok(match &req.target {
        Target::Ids(ids) => {
            // Back to the list the ticks were made on (a bad filter there: the whole list).
            let back = match req.list.check(&st.worker) {
                Ok(spec) => format!("/workers?{}", spec.query()),
                Err(_) => "/workers".to_owned(),
            };
            let sel = Selection {
                ids: Some(ids.clone()),
                kinds,
                ..Selection::default()
            };
            (sel, back)
        }
        Target::Filter(q) => {
            let spec = q.check(&st.worker).map_err(in_filter)?;
            (
                Selection {
                    filter: spec.filter.clone(),
                    ids: None,
                    kinds,
                },
                format!("/workers?{}", spec.query()),
            )
        }
    })
}

/// A filter field's refusal, named as the request spells it (`filter.status`), as a 422.
fn in_filter(e: WebError) -> WebError {
    if e.fields.is_empty() {
        return WebError::new(StatusCode::UNPROCESSABLE_ENTITY, e.message);
    }
    WebError::invalid(
        e.fields
            .into_iter()
            .map(|(f, m)| (format!("filter.{f}"), m))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// The selection as form fields, for the confirmation page to send again.
fn resend(req: &BulkRequest) -> Vec<(String, String)> {
    let mut fields = vec![("action".to_owned(), req.action.as_str().to_owned())];
    let list = match &req.target {
        Target::Ids(ids) => {
            fields.extend(ids.iter().map(|id| ("ids".to_owned(), id.to_string())));
            &req.list
        }
        Target::Filter(q) => {
            fields.push(("scope".to_owned(), "filter".to_owned()));
            q
        }
    };
    for (name, value) in FILTER_FIELDS.iter().zip(filter_values(list)) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            fields.push(((*name).to_owned(), v.to_owned()));
        }
    }
    fields
}

fn filter_values(q: &ListQuery) -> [Option<&str>; 6] {
    [
        q.status.as_deref(),
        q.job.as_deref(),
        q.group.as_deref(),
        q.q.as_deref(),
        q.queue.as_deref(),
        q.tag.as_deref(),
    ]
}

/// The selection for the audit log: the filter, or the ids (the first few).
fn describe(target: &Target) -> String {
    match target {
        Target::Ids(ids) => {
            let shown: Vec<String> = ids.iter().take(20).map(i64::to_string).collect();
            let more = if ids.len() > 20 {
                format!(" and {} more", ids.len() - 20)
            } else {
                String::new()
            };
            format!("ids {}{more}", shown.join(", "))
        }
        Target::Filter(q) => {
            let pairs: Vec<(&str, &str)> = FILTER_FIELDS
                .iter()
                .zip(filter_values(q))
                .filter_map(|(n, v)| Some((*n, v.filter(|v| !v.is_empty())?)))
                .collect();
            format!(
                "filter {}",
                serde_urlencoded::to_string(pairs).unwrap_or_default()
            )
        }
    }
}
