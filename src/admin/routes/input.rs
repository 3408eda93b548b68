//! Reading what a request sends: a job id from the path, a body as JSON or form fields, list
//! filters from the query. Bad input becomes a 4xx naming what is wrong.
use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use serde::Deserialize;
use serde_json::Value;

use crate::admin::error::WebError;
use crate::state::JobStatus;
use crate::store::JobFilter;
use crate::worker::Worker;

/// A job id from the path; anything else is a 404 (no such job).
pub fn job_id(raw: &str) -> Result<i64, WebError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| WebError::not_found(format!("job {raw:?} not found")))
}

/// A request body.
pub enum Body {
    Json(Value),
    Form(BTreeMap<String, String>),
}

pub fn body(headers: &HeaderMap, bytes: &[u8]) -> Result<Body, WebError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/json") {
        serde_json::from_slice(bytes)
            .map(Body::Json)
            .map_err(|e| WebError::bad_request(format!("the body is not valid JSON: {e}")))
    } else if ct.starts_with("application/x-www-form-urlencoded") || ct.is_empty() {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
            .map_err(|e| WebError::bad_request(format!("the form could not be read: {e}")))?;
        Ok(Body::Form(pairs.into_iter().collect()))
    } else {
        Err(WebError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {ct:?} is not accepted: send JSON or a form"),
        ))
    }
}

/// A body of plain fields: a form, or a flat JSON object (non-strings as JSON text).
pub fn fields(headers: &HeaderMap, bytes: &[u8]) -> Result<BTreeMap<String, String>, WebError> {
    match body(headers, bytes)? {
        Body::Form(f) => Ok(f),
        Body::Json(Value::Object(m)) => Ok(m
            .into_iter()
            .map(|(k, v)| {
                let text = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                (k, text)
            })
            .collect()),
        Body::Json(_) => Err(WebError::bad_request("send a form or a JSON object")),
    }
}

/// `GET /workers` query.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub status: Option<String>,
    pub job: Option<String>,
    pub group: Option<String>,
    pub q: Option<String>,
    pub after: Option<String>,
    /// `0` on the event stream of an older page: do not prepend new jobs there.
    pub first: Option<String>,
}

/// A list query, checked.
#[derive(Debug, Clone)]
pub struct ListSpec {
    pub tab: String,
    pub filter: JobFilter,
    pub after: Option<i64>,
    pub kind: Option<String>,
    pub group: Option<String>,
    pub q: Option<String>,
}

impl ListQuery {
    pub fn check(&self, worker: &Worker) -> Result<ListSpec, WebError> {
        let tab = self
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("all");
        let statuses = match tab {
            "all" => vec![],
            "running" => JobStatus::ACTIVE.to_vec(),
            "errors" => vec![JobStatus::Exception],
            other => match other.parse::<JobStatus>() {
                Ok(s) => vec![s],
                Err(_) => {
                    return Err(WebError::bad_request(format!(
                        "status: {other:?} is not one of all, running, scheduled, done, errors, killed, cancelled"
                    )));
                }
            },
        };
        let kind = self.job.clone().filter(|s| !s.is_empty());
        let group = self.group.clone().filter(|s| !s.is_empty());
        let mut kinds: Vec<String> = kind.iter().cloned().collect();
        if let Some(g) = &group {
            let in_group: Vec<String> = worker
                .kinds()
                .into_iter()
                .filter(|k| k.group_name() == g)
                .map(|k| k.name().to_owned())
                .collect();
            kinds = if kinds.is_empty() {
                in_group
            } else {
                kinds.into_iter().filter(|k| in_group.contains(k)).collect()
            };
            if kinds.is_empty() {
                // A group with no kinds here matches nothing.
                kinds.push(String::new());
            }
        }
        let after = match self.after.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
                WebError::bad_request(format!("after: {raw:?} is not a valid cursor"))
            })?),
        };
        let q = self
            .q
            .clone()
            .map(|s| s.trim().chars().take(200).collect::<String>())
            .filter(|s| !s.is_empty());
        Ok(ListSpec {
            tab: tab.to_owned(),
            filter: JobFilter {
                statuses,
                kinds,
                text: q.clone(),
            },
            after,
            kind,
            group,
            q,
        })
    }
}

impl ListSpec {
    /// The query string of this filter, without the cursor.
    pub fn query(&self) -> String {
        let mut pairs = vec![("status", self.tab.clone())];
        if let Some(k) = &self.kind {
            pairs.push(("job", k.clone()));
        }
        if let Some(g) = &self.group {
            pairs.push(("group", g.clone()));
        }
        if let Some(q) = &self.q {
            pairs.push(("q", q.clone()));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}
