//! Reading what a request sends: a job id from the path, a body as JSON or form fields, list
//! filters from the query. Bad input becomes a 4xx naming what is wrong.
//!
//! Text from a request never holds a NUL character (PostgreSQL cannot store one in text): the
//! body readers ([`body`], [`fields`]) refuse it with a 422 naming the field or JSON path, the
//! query readers ([`Query`], [`ListQuery::check`]) with a 400 naming the parameter. Messages
//! quote input only as a short excerpt ([`crate::text::quote`]).
use std::collections::BTreeMap;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::admin::error::WebError;
use crate::client::Client;
use crate::state::JobStatus;
use crate::store::{JobFilter, SearchContext, SearchError, SearchQuery};
use crate::text::{NUL_REFUSED, excerpt, quote, scrub_nul};

/// A job id from the path; anything else is a 404 (no such job).
pub fn job_id(raw: &str) -> Result<i64, WebError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| WebError::not_found(format!("job {} not found", quote(raw))))
}

/// A field's name as a message may show it: short, without NUL.
fn field_name(name: &str) -> String {
    scrub_nul(excerpt(name).into_owned())
}

/// Refuses a query parameter holding a NUL character: 400, naming it.
pub fn query_text(name: &str, value: Option<&str>) -> Result<(), WebError> {
    match value {
        Some(v) if v.contains('\0') || name.contains('\0') => Err(WebError::field(
            StatusCode::BAD_REQUEST,
            &field_name(name),
            NUL_REFUSED,
        )),
        _ => Ok(()),
    }
}

/// The query string as `T` (whose fields should be strings, checked by the handler). Unlike
/// axum's, a bad query is a [`WebError`] (JSON or a page, like every error), and a parameter
/// holding a NUL character is refused here, naming it.
#[derive(Debug, Clone, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|e| WebError::bad_request(format!("the query could not be read: {e}")))?;
        for (name, value) in &pairs {
            query_text(name, Some(value))?;
        }
        serde_urlencoded::from_str(raw)
            .map(Query)
            .map_err(|e| WebError::bad_request(format!("the query could not be read: {e}")))
    }
}

/// The request body, read whole. Unlike axum's `Bytes`, one too large is a [`WebError`] (JSON
/// or a page, like every error).
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Self, WebError> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| WebError::new(e.status(), e.body_text()))
    }
}

/// A JSON body as `T`: a mismatch is a 422 naming the field (`schedule_at`, `args`) when serde
/// says which.
pub fn from_json<T: DeserializeOwned>(v: Value) -> Result<T, WebError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // A missing or unknown field is reported at the parent; name the field itself.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| message.strip_prefix(p))
            .and_then(|rest| rest.split('`').next());
        let field = match named {
            Some(name) if path == "." => Some(name.to_owned()),
            // An unknown field's path may already end with it (`filter.colour`).
            Some(name) if path == name || path.ends_with(&format!(".{name}")) => Some(path),
            Some(name) => Some(format!("{path}.{name}")),
            None if path == "." => None,
            None => Some(path),
        };
        match field {
            Some(f) => WebError::field(StatusCode::UNPROCESSABLE_ENTITY, &field_name(&f), message),
            None => WebError::new(StatusCode::UNPROCESSABLE_ENTITY, message),
        }
    })
}

/// A request body.
pub enum Body {
    Json(Value),
    Form(BTreeMap<String, String>),
}

/// A form's fields in order, a repeated name repeated; a NUL in any is refused (422, naming
/// the field).
pub fn form_pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, WebError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
        .map_err(|e| WebError::bad_request(format!("the form could not be read: {e}")))?;
    if let Some((name, _)) = pairs
        .iter()
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(WebError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            &field_name(name),
            NUL_REFUSED,
        ));
    }
    Ok(pairs)
}

pub fn body(headers: &HeaderMap, bytes: &[u8]) -> Result<Body, WebError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/json") {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| WebError::bad_request(format!("the body is not valid JSON: {e}")))?;
        // Anywhere in it: `args.subject`, `args.items[2].sku`.
        if let Some(path) = crate::text::nul_path(&v, "") {
            let path = if path.is_empty() { "body".into() } else { path };
            return Err(WebError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                &field_name(&path),
                NUL_REFUSED,
            ));
        }
        Ok(Body::Json(v))
    } else if ct.starts_with("application/x-www-form-urlencoded") || ct.is_empty() {
        Ok(Body::Form(form_pairs(bytes)?.into_iter().collect()))
    } else {
        Err(WebError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {} is not accepted: send JSON or a form",
                quote(ct)
            ),
        ))
    }
}

/// A body of plain fields: a form, or a flat JSON object (non-strings as JSON text). A NUL
/// character anywhere is refused (see [`body`]).
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
    /// Only jobs on this queue.
    pub queue: Option<String>,
    /// Only jobs carrying this tag.
    pub tag: Option<String>,
    pub after: Option<String>,
    /// `0` on the event stream of an older page: do not prepend new jobs there.
    pub first: Option<String>,
    /// `counts` on an event stream: only the tab counts (the sidebar of pages that are not lists).
    pub only: Option<String>,
}

impl ListQuery {
    /// Whether an event stream should carry the counts only (`only=counts`); anything else
    /// there is a 400.
    pub fn counts_only(&self) -> Result<bool, WebError> {
        match self.only.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(false),
            Some("counts") => Ok(true),
            Some(other) => Err(WebError::field(
                StatusCode::BAD_REQUEST,
                "only",
                format!("{} is not counts", quote(other)),
            )),
        }
    }
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
    pub queue: Option<String>,
    pub tag: Option<String>,
}

impl ListQuery {
    /// The list this query asks for; a search that cannot run is a 422 naming `q`.
    pub fn check(&self, worker: &Client) -> Result<ListSpec, WebError> {
        let (spec, bad) = self.check_page(worker)?;
        match bad {
            Some(e) => Err(WebError::field(StatusCode::UNPROCESSABLE_ENTITY, "q", e.0)),
            None => Ok(spec),
        }
    }

    /// The list this query asks for and, apart, why its search cannot run: then the list holds
    /// no search and must not be shown as if it were the answer (the page shows the message).
    pub fn check_page(&self, worker: &Client) -> Result<(ListSpec, Option<SearchError>), WebError> {
        for (name, value) in [
            ("status", &self.status),
            ("job", &self.job),
            ("group", &self.group),
            ("q", &self.q),
            ("queue", &self.queue),
            ("tag", &self.tag),
            ("after", &self.after),
            ("first", &self.first),
            ("only", &self.only),
        ] {
            query_text(name, value.as_deref())?;
        }
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
                    return Err(WebError::field(
                        StatusCode::BAD_REQUEST,
                        "status",
                        format!(
                            "{} is not one of all, running, scheduled, done, errors, killed, cancelled",
                            quote(other)
                        ),
                    ));
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
            Some(raw) => Some(cursor("after", raw)?),
        };
        let q = self
            .q
            .clone()
            .map(|s| s.trim().chars().take(200).collect::<String>())
            .filter(|s| !s.is_empty());
        let queue = self.queue_filter()?;
        let tag = self.tag_filter()?;
        let (search, bad) = match q.as_deref() {
            None => (None, None),
            Some(text) => {
                let kinds = worker.kinds();
                let ctx = SearchContext::of_kinds(kinds.iter());
                match SearchQuery::parse(text, &ctx, chrono::Utc::now()) {
                    Ok(s) => (Some(s), None),
                    Err(e) => (None, Some(e)),
                }
            }
        };
        let spec = ListSpec {
            tab: tab.to_owned(),
            filter: JobFilter {
                statuses,
                kinds,
                search,
                queue: queue.clone(),
                tag: tag.clone(),
            },
            after,
            kind,
            group,
            q,
            queue,
            tag,
        };
        Ok((spec, bad))
    }

    /// `queue=NAME`: a name a queue may have, else a 400 naming `queue`.
    fn queue_filter(&self) -> Result<Option<String>, WebError> {
        let Some(name) = self
            .queue
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            return Ok(None);
        };
        crate::queue::check_name(name).map_err(|e| refused("queue", e))?;
        Ok(Some(name.to_owned()))
    }

    /// `tag=TAG`: one tag as jobs carry them (no quotes, commas, …), else a 400 naming `tag`.
    fn tag_filter(&self) -> Result<Option<String>, WebError> {
        let Some(raw) = self.tag.as_deref() else {
            return Ok(None);
        };
        let tags = crate::queue::clean_tags([raw]).map_err(|e| refused("tag", e))?;
        Ok(tags.into_iter().next())
    }
}

/// An engine refusal of query parameter `name`: a 400 naming it, with the engine's message.
fn refused(name: &str, e: crate::error::Error) -> WebError {
    let message = match e {
        crate::error::Error::InvalidArgs { message, .. } => message,
        other => other.to_string(),
    };
    WebError::field(StatusCode::BAD_REQUEST, name, message)
}

/// A page cursor (a row id) from the query: a 400 naming `name` when it is not one.
pub fn cursor(name: &str, raw: &str) -> Result<i64, WebError> {
    raw.parse::<i64>().map_err(|_| {
        WebError::field(
            StatusCode::BAD_REQUEST,
            name,
            format!("{} is not a valid cursor", quote(raw)),
        )
    })
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
        if let Some(queue) = &self.queue {
            pairs.push(("queue", queue.clone()));
        }
        if let Some(tag) = &self.tag {
            pairs.push(("tag", tag.clone()));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}
