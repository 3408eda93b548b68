//! The live fan-out: one subscription to the engine's event channel for the whole admin, turned
//! into rendered SSE frames once per event, and shared by every browser watching.
//!
//! Each watched job has one `broadcast` channel, however many browsers watch it; list pages share
//! one more. A browser that falls behind loses its place (`Lagged`) and its stream ends: it
//! reconnects with `Last-Event-ID` and catches up from the database, and the job never waits for
//! it.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::views;
use crate::client::Client;
use crate::events::JobEvent;
use crate::job::Job;
use crate::state::JobStatus;
use crate::store::JobFilter;

/// One server-sent event, rendered both ways.
#[derive(Debug)]
pub struct Frame {
    pub event: String,
    pub id: Option<i64>,
    pub html: String,
    pub json: String,
}

impl Frame {
    fn new(event: impl Into<String>, id: Option<i64>, html: String, json: &impl Serialize) -> Self {
        Frame {
            event: event.into(),
            id,
            html,
            json: serde_json::to_string(json).unwrap_or_else(|_| "null".into()),
        }
    }
}

/// A change for list pages: the job as it is now, and the state it came from.
#[derive(Debug, Clone)]
pub enum ListChange {
    Job {
        job: Arc<Job>,
        row: Arc<Frame>,
        from: Option<Option<JobStatus>>,
    },
    Counts(CountFrames),
}

/// One `count-{tab}` frame per tab.
pub type CountFrames = Vec<Arc<Frame>>;

/// Per-tab counts, capped at [`crate::store::COUNT_CAP`] + 1.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub all: u64,
    pub running: u64,
    pub scheduled: u64,
    pub done: u64,
    pub errors: u64,
}

impl Counts {
    /// `(tab, count)` in navigation order.
    pub fn tabs(&self) -> [(&'static str, u64); 5] {
        [
            ("all", self.all),
            ("running", self.running),
            ("scheduled", self.scheduled),
            ("done", self.done),
            ("errors", self.errors),
        ]
    }
}

pub struct Hub {
    worker: Client,
    base: OnceLock<String>,
    started: OnceLock<()>,
    jobs: Mutex<HashMap<i64, broadcast::Sender<Arc<Frame>>>>,
    list: broadcast::Sender<ListChange>,
    /// The count frames alone, for pages that are not lists (the sidebar of a job page).
    counts_only: broadcast::Sender<CountFrames>,
    counts: tokio::sync::Mutex<Option<(Instant, Counts)>>,
    /// The counts last pushed to list pages.
    last_counts: Mutex<Option<Counts>>,
    /// What watchers of each job have been shown (for the pulse).
    seen: Mutex<HashMap<i64, Seen>>,
}

/// How often the pulse looks at the database for other processes' changes.
const PULSE: Duration = Duration::from_secs(1);

/// A watched job as last shown: state, progress and text, and its newest log line.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    state: (JobStatus, i32, Option<String>),
    last_log: i64,
}

impl Seen {
    fn of(job: &Job) -> Seen {
        Seen {
            state: (job.status, job.progress, job.progress_text.clone()),
            last_log: 0,
        }
    }
}

/// A `log` frame for line `id` of a job's log.
pub fn log_frame(id: i64, at: i64, line: &str) -> Frame {
    let html = views::job::log_line(at, line).into_string();
    let json = serde_json::json!({"id": id, "at": crate::clock::to_datetime(at), "line": line});
    Frame::new("log", Some(id), html, &json)
}

/// Counts are recomputed at most this often, however many pages ask.
const COUNTS_TTL: Duration = Duration::from_millis(1000);

impl Hub {
    pub fn new(worker: Client) -> Arc<Hub> {
        let (list, _) = broadcast::channel(1024);
        let (counts_only, _) = broadcast::channel(64);
        Arc::new(Hub {
            worker,
            base: OnceLock::new(),
            started: OnceLock::new(),
            jobs: Mutex::default(),
            list,
            counts_only,
            counts: tokio::sync::Mutex::new(None),
            last_counts: Mutex::new(None),
            seen: Mutex::default(),
        })
    }

    /// The mount prefix links in rendered frames use (a router is mounted at one prefix).
    fn base(&self) -> &str {
        self.base.get().map(String::as_str).unwrap_or("")
    }

    fn ensure_started(self: &Arc<Self>, base: &str) {
        let _ = self.base.set(base.to_owned());
        self.started.get_or_init(|| {
            let hub = self.clone();
            let rx = self.worker.subscribe();
            tokio::spawn(async move { hub.run(rx).await });
        });
    }

    /// Frames for job `id`, from now on.
    pub fn watch_job(self: &Arc<Self>, base: &str, id: i64) -> broadcast::Receiver<Arc<Frame>> {
        self.ensure_started(base);
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.retain(|_, tx| tx.receiver_count() > 0);
        jobs.entry(id)
            .or_insert_with(|| broadcast::channel(1024).0)
            .subscribe()
    }

    /// Changes for list pages, from now on.
    pub fn watch_list(self: &Arc<Self>, base: &str) -> broadcast::Receiver<ListChange> {
        self.ensure_started(base);
        self.list.subscribe()
    }

    /// The tab counts, from now on (sent when they change).
    pub fn watch_counts(self: &Arc<Self>, base: &str) -> broadcast::Receiver<CountFrames> {
        self.ensure_started(base);
        self.counts_only.subscribe()
    }

    /// Whether any page follows the counts.
    fn counts_watched(&self) -> bool {
        self.list.receiver_count() > 0 || self.counts_only.receiver_count() > 0
    }

    /// Current counts (cached for about a second, shared by every viewer).
    pub async fn counts(&self) -> crate::Result<Counts> {
        self.read_counts(None).await
    }

    /// Counts read no earlier than `since`: taken after reading the jobs a page shows, they
    /// agree with them (a job just created is counted). Still shared: counts whose reading
    /// began after `since` serve every request that asks for them.
    pub async fn counts_since(&self, since: Instant) -> crate::Result<Counts> {
        self.read_counts(Some(since)).await
    }

    async fn read_counts(&self, since: Option<Instant>) -> crate::Result<Counts> {
        let mut cached = self.counts.lock().await;
        if let Some((began, counts)) = *cached
            && began.elapsed() < COUNTS_TTL
            && since.is_none_or(|since| began >= since)
        {
            return Ok(counts);
        }
        let began = Instant::now();
        let store = self.worker.store();
        let of = |statuses: &[JobStatus]| JobFilter {
            statuses: statuses.to_vec(),
            ..JobFilter::default()
        };
        // At once, each on its own pooled connection: a page waits for the slowest count, not
        // for the five in a row.
        let filters = [
            JobFilter::default(),
            of(&JobStatus::ACTIVE),
            of(&[JobStatus::Scheduled]),
            of(&[JobStatus::Done]),
            of(&[JobStatus::Exception]),
        ];
        let (all, running, scheduled, done, errors) = tokio::try_join!(
            store.count_capped(&filters[0]),
            store.count_capped(&filters[1]),
            store.count_capped(&filters[2]),
            store.count_capped(&filters[3]),
            store.count_capped(&filters[4]),
        )?;
        let counts = Counts {
            all,
            running,
            scheduled,
            done,
            errors,
        };
        *cached = Some((began, counts));
        Ok(counts)
    }

    /// The count frames of the counts as they are (cached), for a stream that starts: the page
    /// it serves may show older ones. The pulse pushes any later change.
    pub async fn count_frames(&self) -> CountFrames {
        match self.counts().await {
            Ok(counts) => count_frames(counts),
            Err(e) => {
                tracing::warn!("could not count the jobs: {e}");
                Vec::new()
            }
        }
    }

    fn job_sender(&self, id: i64) -> Option<broadcast::Sender<Arc<Frame>>> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.get(&id).filter(|tx| tx.receiver_count() > 0).cloned()
    }

    async fn run(self: Arc<Self>, mut rx: broadcast::Receiver<JobEvent>) {
        let mut counts_due: Option<Instant> = None;
        let mut pulse = tokio::time::interval(PULSE);
        pulse.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let counts_wait = async {
                match counts_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if matches!(ev, JobEvent::Status { .. }) && counts_due.is_none() {
                            counts_due = Some(Instant::now() + Duration::from_millis(250));
                        }
                        self.dispatch(ev).await;
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("admin live view fell {n} events behind; resyncing");
                        self.resync().await;
                        counts_due = Some(Instant::now());
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = counts_wait => {
                    counts_due = None;
                    self.publish_counts().await;
                }
                _ = pulse.tick() => self.pulse().await,
            }
        }
    }

    /// Changes made by other processes (another node, `nightshift worker`) reach this admin only
    /// through the database: while someone watches, look at the watched jobs and the counts once
    /// a second and push what changed. Jobs run here are already pushed by their events.
    async fn pulse(&self) {
        let ids: Vec<i64> = {
            let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.iter()
                .filter(|(_, tx)| tx.receiver_count() > 0)
                .map(|(id, _)| *id)
                .collect()
        };
        let base = self.base().to_owned();
        for id in ids {
            let Ok(job) = self.worker.job(id).await else {
                continue;
            };
            let now = Seen::of(&job);
            let before = self.seen_of(id);
            let Some(before) = before else {
                // First look: remember where the job is; the viewer's stream already caught up.
                let last_log = match self.worker.logs(id, 1).await {
                    Ok(l) => l.last().map(|l| l.id).unwrap_or(0),
                    Err(_) => continue,
                };
                self.remember(id, Seen { last_log, ..now });
                continue;
            };
            let Some(tx) = self.job_sender(id) else {
                continue;
            };
            let mut last_log = before.last_log;
            if let Ok(lines) = self.worker.store().logs_after(id, last_log, 1000).await {
                for l in lines {
                    last_log = last_log.max(l.id);
                    let _ = tx.send(Arc::new(log_frame(l.id, l.at, &l.line)));
                }
            }
            if now.state != before.state {
                let status_changed = now.state.0 != before.state.0;
                for frame in job_frames(&base, &job, status_changed) {
                    let _ = tx.send(Arc::new(frame));
                }
            }
            self.remember(id, Seen { last_log, ..now });
        }
        if self.counts_watched()
            && let Ok(counts) = self.counts().await
        {
            let last = *self.last_counts.lock().unwrap_or_else(|e| e.into_inner());
            if last != Some(counts) {
                self.publish_counts().await;
            }
        }
    }

    /// A viewer of job `job` has caught up to log line `last_log` from the database: the pulse
    /// goes on from there (unless it already follows the job).
    pub fn caught_up(&self, job: &Job, last_log: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.entry(job.id).or_insert(Seen {
            last_log,
            ..Seen::of(job)
        });
    }

    fn seen_of(&self, id: i64) -> Option<Seen> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(&id).cloned()
    }

    fn remember(&self, id: i64, s: Seen) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let watched = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|k, _| watched.contains_key(k));
        seen.insert(id, s);
    }

    /// Notes what a local event showed, so the pulse does not push it again.
    fn saw(&self, id: i64, f: impl FnOnce(&mut Seen)) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = seen.get_mut(&id) {
            f(s);
        }
    }

    async fn dispatch(&self, ev: JobEvent) {
        let id = ev.job_id();
        let job_tx = self.job_sender(id);
        let list_watched = self.list.receiver_count() > 0;
        if job_tx.is_none() && !list_watched {
            return;
        }
        let base = self.base().to_owned();
        match ev {
            JobEvent::Log {
                id: line_id,
                at,
                line,
                ..
            } => {
                if let Some(tx) = job_tx {
                    self.saw(id, |s| s.last_log = s.last_log.max(line_id));
                    let _ = tx.send(Arc::new(log_frame(line_id, at, &line)));
                }
            }
            JobEvent::Result { cells, .. } => {
                if let Some(tx) = job_tx {
                    let html = views::job::result_row(&cells).into_string();
                    let _ = tx.send(Arc::new(Frame::new("result", None, html, &cells)));
                }
            }
            JobEvent::Progress { .. } | JobEvent::Status { .. } => {
                let from = match &ev {
                    JobEvent::Status { from, .. } => Some(*from),
                    _ => None,
                };
                let Ok(job) = self.worker.job(id).await else {
                    return;
                };
                if let Some(tx) = job_tx {
                    let state = Seen::of(&job).state;
                    self.saw(id, |s| s.state = state);
                    for frame in job_frames(&base, &job, from.is_some()) {
                        let _ = tx.send(Arc::new(frame));
                    }
                }
                if list_watched {
                    let row = views::list::job_row(&base, &job).into_string();
                    let row = Arc::new(Frame::new(format!("row-{id}"), None, row, &job));
                    let _ = self.list.send(ListChange::Job {
                        job: Arc::new(job),
                        row,
                        from,
                    });
                }
            }
        }
    }

    async fn publish_counts(&self) {
        if !self.counts_watched() {
            return;
        }
        *self.counts.lock().await = None;
        if let Ok(counts) = self.counts().await {
            *self.last_counts.lock().unwrap_or_else(|e| e.into_inner()) = Some(counts);
            let frames = count_frames(counts);
            let _ = self.counts_only.send(frames.clone());
            let _ = self.list.send(ListChange::Counts(frames));
        }
    }

    /// After missing events: send every watched job's current state.
    async fn resync(&self) {
        let ids: Vec<i64> = {
            let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.keys().copied().collect()
        };
        let base = self.base().to_owned();
        for id in ids {
            if let (Some(tx), Ok(job)) = (self.job_sender(id), self.worker.job(id).await) {
                for frame in job_frames(&base, &job, true) {
                    let _ = tx.send(Arc::new(frame));
                }
            }
        }
    }
}

/// One `count-{tab}` frame per tab.
fn count_frames(counts: Counts) -> CountFrames {
    counts
        .tabs()
        .into_iter()
        .map(|(tab, n)| {
            let html = views::components::count(n).into_string();
            Arc::new(Frame::new(format!("count-{tab}"), None, html, &n))
        })
        .collect()
}

/// A job as the admin's JSON shows it: its fields, and `retry` (whether it is waiting for a
/// retry after a failed attempt rather than for a time someone chose).
pub fn job_json(job: &Job) -> serde_json::Value {
    let mut v = serde_json::to_value(job).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(map) = &mut v {
        map.insert(
            "retry".into(),
            serde_json::Value::Bool(views::job::is_retry(job)),
        );
    }
    v
}

/// The frames that show a job's state: its progress, and on a state change its status panel
/// (and `end` once it is finished).
pub fn job_frames(base: &str, job: &Job, status_changed: bool) -> Vec<Frame> {
    let mut frames = vec![Frame::new(
        "progress",
        None,
        views::job::progress_content(job).into_string(),
        &serde_json::json!({"progress": job.progress, "progress_text": job.progress_text}),
    )];
    if status_changed {
        frames.push(Frame::new(
            "status",
            None,
            views::job::status_panel(base, job, None).into_string(),
            &job_json(job),
        ));
        if job.status.is_finished() {
            // Data that is not empty: a browser's EventSource drops an event without any.
            frames.push(Frame::new("end", None, job.status.as_str().to_owned(), job));
        }
    }
    frames
}
