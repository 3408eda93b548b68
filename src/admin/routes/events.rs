//! Server-sent events: a job's progress, log lines, result rows and state; list rows and counts.
//!
//! Data is an HTML fragment for htmx's SSE extension, or JSON with `?format=json`. A job stream
//! starts with what the viewer missed (log lines after `Last-Event-ID` or `?after=`, read a page
//! at a time), then goes live from the shared per-job channel. The job page asks for the tab
//! counts on the same stream (`?counts=1`: one connection a page), which then stays open after
//! the job's end for them. Every stream closes when the worker starts shutting down
//! ([`crate::Client::stopping`]), so a server can drain.
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
use crate::admin::hub::{self, CountFrames, Frame, ListChange};
use crate::admin::views;
use crate::store::JobFilter;

type BoxedEvents = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;
type EventStream = Sse<axum::response::sse::KeepAliveStream<BoxedEvents>>;

#[derive(Debug, Deserialize)]
pub struct JobEventsQuery {
    after: Option<String>,
    format: Option<String>,
    /// `1`: the tab counts too, and the stream stays open for them after the job's end.
    counts: Option<String>,
}

fn event(frame: &Frame, json: bool) -> Event {
    let data = if json { &frame.json } else { &frame.html };
    let mut ev = Event::default().event(&frame.event).data(data);
    if let Some(id) = frame.id {
        ev = ev.id(id.to_string());
    }
    ev
}

/// Log lines read per query while a job stream catches up: one connection holds at most this
/// many in memory, however long the log it replays.
pub const CATCH_UP_PAGE: u64 = 500;

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
    let with_counts = match q.counts.as_deref().filter(|s| !s.is_empty()) {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => {
            return Err(WebError::field(
                axum::http::StatusCode::BAD_REQUEST,
                "counts",
                format!("{} is not 0 or 1", crate::text::quote(other)),
            ));
        }
    };
    // Subscribe before reading, so nothing falls between the catch-up and the live stream.
    let rx = st.hub.watch_job(&base, id);
    let counts = with_counts.then(|| st.hub.watch_counts(&base));
    let job = st.worker.job(id).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .or(after_query)
        .unwrap_or(0);
    // The first page now (a database that cannot answer gets an error status, not an empty
    // stream); the rest page by page as the client reads.
    let first = st
        .worker
        .store()
        .logs_after(id, after, CATCH_UP_PAGE)
        .await?;
    let stopping = st.worker.stopping();
    let state = JobStream {
        st,
        base,
        job,
        rx,
        counts,
        last: after,
        json,
        phase: Phase::CatchUp(Some(first)),
    };
    let stream = stream::unfold(state, JobStream::step)
        .flat_map(|events| stream::iter(events.into_iter().map(Ok)))
        // A node that is shutting down closes its streams; browsers reconnect (with
        // `Last-Event-ID`) to whichever node serves them next.
        .take_until(stopping);
    Ok(Sse::new(stream.boxed()).keep_alive(KeepAlive::default()))
}

/// Where a job stream is: replaying missed log lines a page at a time, showing the job's state,
/// following the live channel, following the counts only (the job ended), or finished.
enum Phase {
    /// The next page of missed lines, when already read.
    CatchUp(Option<Vec<crate::entity::job_log::Model>>),
    State,
    Live,
    CountsOnly,
    Done,
}

struct JobStream {
    st: AdminState,
    base: String,
    job: crate::job::Job,
    rx: broadcast::Receiver<Arc<Frame>>,
    /// The tab counts, when they ride along.
    counts: Option<broadcast::Receiver<CountFrames>>,
    /// The newest log line sent.
    last: i64,
    json: bool,
    phase: Phase,
}

impl JobStream {
    async fn step(mut self) -> Option<(Vec<Event>, Self)> {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::CatchUp(read) => {
                let page = match read {
                    Some(page) => page,
                    None => {
                        let store = self.st.worker.store();
                        match store
                            .logs_after(self.job.id, self.last, CATCH_UP_PAGE)
                            .await
                        {
                            Ok(page) => page,
                            Err(e) => {
                                // Mid-stream: end it; the browser reconnects from `last`.
                                tracing::warn!(job_id = self.job.id, "catching up failed: {e}");
                                return None;
                            }
                        }
                    }
                };
                self.phase = if (page.len() as u64) < CATCH_UP_PAGE {
                    Phase::State
                } else {
                    Phase::CatchUp(None)
                };
                let events = page
                    .iter()
                    .map(|l| {
                        self.last = l.id;
                        event(&hub::log_frame(l.id, l.at, &l.line), self.json)
                    })
                    .collect();
                Some((events, self))
            }
            Phase::State => {
                self.st.hub.caught_up(&self.job, self.last);
                let mut events: Vec<Event> = hub::job_frames(&self.base, &self.job, true)
                    .iter()
                    .map(|f| event(f, self.json))
                    .collect();
                if self.counts.is_some() {
                    // The page's counts may be older (they are cached).
                    let frames = self.st.hub.count_frames().await;
                    events.extend(frames.iter().map(|f| event(f, self.json)));
                }
                self.phase = self.after_end(self.job.status.is_finished());
                Some((events, self))
            }
            Phase::Live => loop {
                let frame = match self.counts.as_mut() {
                    None => self.rx.recv().await,
                    Some(counts) => tokio::select! {
                        frame = self.rx.recv() => frame,
                        frames = counts.recv() => match frames {
                            Ok(frames) => {
                                let events = frames.iter().map(|f| event(f, self.json)).collect();
                                self.phase = Phase::Live;
                                return Some((events, self));
                            }
                            Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
                        },
                    },
                };
                match frame {
                    Ok(frame) => {
                        if frame.event == "log" {
                            match frame.id {
                                Some(fid) if fid <= self.last => continue,
                                Some(fid) => self.last = fid,
                                None => {}
                            }
                        }
                        self.phase = self.after_end(frame.event == "end");
                        return Some((vec![event(&frame, self.json)], self));
                    }
                    // Too slow: end the stream; the browser reconnects with Last-Event-ID.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
                }
            },
            Phase::CountsOnly => match self.counts.as_mut()?.recv().await {
                Ok(frames) => {
                    let events = frames.iter().map(|f| event(f, self.json)).collect();
                    self.phase = Phase::CountsOnly;
                    Some((events, self))
                }
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => None,
            },
            Phase::Done => None,
        }
    }
}

impl JobStream {
    /// What follows a frame: more of the job, or, once it `ended`, the counts or nothing.
    fn after_end(&self, ended: bool) -> Phase {
        match (ended, self.counts.is_some()) {
            (false, _) => Phase::Live,
            (true, true) => Phase::CountsOnly,
            (true, false) => Phase::Done,
        }
    }
}

pub async fn list_events(
    State(st): State<AdminState>,
    Base(base): Base,
    Query(q): Query<ListQuery>,
) -> Result<EventStream, WebError> {
    let spec = q.check(&st.worker)?;
    let counts_only = q.counts_only()?;
    let prepend = q.first.as_deref() != Some("0");
    let stopping = st.worker.stopping();
    if counts_only {
        let rx = st.hub.watch_counts(&base);
        let first = st.hub.count_frames().await;
        let live = stream::unfold(rx, |mut rx: broadcast::Receiver<CountFrames>| async move {
            match rx.recv().await {
                Ok(frames) => Some((frames, rx)),
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => None,
            }
        });
        let stream = stream::iter([first])
            .chain(live)
            .flat_map(|frames| stream::iter(frames.into_iter().map(|f| Ok(event(&f, false)))))
            .take_until(stopping);
        return Ok(Sse::new(stream.boxed()).keep_alive(KeepAlive::default()));
    }
    let rx = st.hub.watch_list(&base);
    // The page may show counts older than these (they are cached): start with them; the hub
    // pushes every later change.
    let first: Vec<Event> = st
        .hub
        .count_frames()
        .await
        .iter()
        .map(|f| event(f, false))
        .collect();
    let filter = Arc::new(spec.filter);
    let live = stream::unfold(rx, move |mut rx: broadcast::Receiver<ListChange>| {
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
    let stream = stream::iter(first.into_iter().map(Ok))
        .chain(live)
        // A node that is shutting down closes its streams; browsers reconnect.
        .take_until(stopping);
    Ok(Sse::new(stream.boxed()).keep_alive(KeepAlive::default()))
}

/// What one list change means for a page showing `filter`: a row that replaces itself, a new row
/// on top (the job just entered this tab), a row that goes (its job left this tab: a running
/// job that finished, a scheduled one that started), or new counts.
fn list_change_events(change: &ListChange, filter: &JobFilter, prepend: bool) -> Vec<Event> {
    match change {
        ListChange::Counts(frames) => frames.iter().map(|f| event(f, false)).collect(),
        ListChange::Job { job, row, from } => {
            let matches = (filter.statuses.is_empty() || filter.statuses.contains(&job.status))
                && (filter.kinds.is_empty() || filter.kinds.contains(&job.job))
                && filter.search.as_ref().is_none_or(|s| {
                    s.matches(
                        &job.job,
                        job.status,
                        &job.queue,
                        &job.tags,
                        job.created_at.timestamp_millis(),
                        &job.args,
                    )
                })
                && filter.queue.as_ref().is_none_or(|q| *q == job.queue)
                && filter.tag.as_ref().is_none_or(|t| job.tags.contains(t));
            if !matches {
                // Its row, if the page shows one, removes itself.
                let gone = views::list::row_gone(job.id).into_string();
                return vec![Event::default().event(&row.event).data(gone)];
            }
            let entered = match from {
                // Just created.
                Some(None) => true,
                Some(Some(before)) => {
                    !filter.statuses.is_empty() && !filter.statuses.contains(before)
                }
                // Progress, not a state change.
                None => false,
            };
            if entered && prepend {
                vec![Event::default().event("new-row").data(&row.html)]
            } else {
                vec![event(row, false)]
            }
        }
    }
}
