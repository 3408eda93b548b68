//! Server-sent events: a job's progress, log lines, result rows and state; list rows and counts.
//!
//! Data is an HTML fragment for htmx's SSE extension, or JSON with `?format=json`. A job stream
//! starts with what the viewer missed (log lines after `Last-Event-ID` or `?after=`), then goes
//! live from the shared per-job channel.
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};

use super::input::{self, ListQuery, Query};
use crate::admin::AdminState;
use crate::admin::error::WebError;
use crate::admin::extract::Base;
use crate::admin::hub::{self, Frame, ListChange};
use crate::admin::views;
use crate::store::JobFilter;

type BoxedEvents = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;
type EventStream = Sse<axum::response::sse::KeepAliveStream<BoxedEvents>>;

#[derive(Debug, Deserialize)]
pub struct JobEventsQuery {
    after: Option<String>,
    format: Option<String>,
}

fn event(frame: &Frame, json: bool) -> Event {
    let data = if json { &frame.json } else { &frame.html };
    let mut ev = Event::default().event(&frame.event).data(data);
    if let Some(id) = frame.id {
        ev = ev.id(id.to_string());
    }
    ev
}

pub async fn job_events(
    State(st): State<AdminState>,
    Base(base): Base,
    Path(id): Path<String>,
    Query(q): Query<JobEventsQuery>,
    headers: HeaderMap,
) -> Result<EventStream, WebError> {
    let id = input::job_id(&id)?;
    let json = q.format.as_deref() == Some("json");
    let after_query = match q.after.as_deref().filter(|s| !s.is_empty()) {
        Some(raw) => Some(input::cursor("after", raw)?),
        None => None,
    };
    // Subscribe before reading, so nothing falls between the catch-up and the live stream.
    let rx = st.hub.watch_job(&base, id);
    let job = st.worker.job(id).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .or(after_query)
        .unwrap_or(0);
    let missed = st.worker.store().logs_after(id, after, 10_000).await?;
    let mut last = after;
    let mut first: Vec<Event> = Vec::with_capacity(missed.len() + 3);
    for l in &missed {
        let html = views::job::log_line(l.at, &l.line).into_string();
        let json_data =
            serde_json::json!({"id": l.id, "at": crate::clock::to_datetime(l.at), "line": l.line});
        first.push(event(
            &Frame {
                event: "log".into(),
                id: Some(l.id),
                html,
                json: json_data.to_string(),
            },
            json,
        ));
        last = l.id;
    }
    st.hub.caught_up(&job, last);
    for frame in hub::job_frames(&base, &job, true) {
        first.push(event(&frame, json));
    }
    let finished = job.status.is_finished();
    let live = stream::unfold(
        (rx, last, finished),
        move |(mut rx, mut last, done)| async move {
            if done {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(frame) => {
                        if frame.event == "log" {
                            match frame.id {
                                Some(fid) if fid <= last => continue,
                                Some(fid) => last = fid,
                                None => {}
                            }
                        }
                        let end = frame.event == "end";
                        return Some((Ok(event(&frame, json)), (rx, last, end)));
                    }
                    // Too slow: end the stream; the browser reconnects with Last-Event-ID.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    let stream = stream::iter(first.into_iter().map(Ok)).chain(live);
    Ok(Sse::new(stream.boxed()).keep_alive(KeepAlive::default()))
}

pub async fn list_events(
    State(st): State<AdminState>,
    Base(base): Base,
    Query(q): Query<ListQuery>,
) -> Result<EventStream, WebError> {
    let spec = q.check(&st.worker)?;
    let prepend = q.first.as_deref() != Some("0");
    let rx = st.hub.watch_list(&base);
    let filter = Arc::new(spec.filter);
    let stream = stream::unfold(rx, move |mut rx: broadcast::Receiver<ListChange>| {
        let filter = filter.clone();
        async move {
            match rx.recv().await {
                Ok(change) => {
                    let events = list_change_events(&change, &filter, prepend);
                    Some((stream::iter(events.into_iter().map(Ok)), rx))
                }
                // Too slow: end the stream; the browser reconnects.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => None,
            }
        }
    })
    .flatten();
    Ok(Sse::new(stream.boxed()).keep_alive(KeepAlive::default()))
}

/// What one list change means for a page showing `filter`: a row that replaces itself, a new row
/// on top (the job just entered this tab), or new counts.
fn list_change_events(change: &ListChange, filter: &JobFilter, prepend: bool) -> Vec<Event> {
    match change {
        ListChange::Counts(frames) => frames.iter().map(|f| event(f, false)).collect(),
        ListChange::Job { job, row, from } => {
            let matches = (filter.statuses.is_empty() || filter.statuses.contains(&job.status))
                && (filter.kinds.is_empty() || filter.kinds.contains(&job.job))
                && filter
                    .text
                    .as_deref()
                    .is_none_or(|t| job.args.to_string().contains(t));
            let entered = match from {
                // Just created.
                Some(None) => true,
                Some(Some(before)) => {
                    !filter.statuses.is_empty() && !filter.statuses.contains(before)
                }
                // Progress, not a state change.
                None => false,
            };
            if matches && entered && prepend {
                vec![Event::default().event("new-row").data(&row.html)]
            } else {
                vec![event(row, false)]
            }
        }
    }
}
