//! The one channel of job events: state changes, progress, log lines and result rows.
//!
//! Every event is sent after it is stored, so a subscriber that reads the database on receipt sees
//! at least what the event says. The admin's server-sent events and any metrics feed from here.
use serde::Serialize;
use tokio::sync::broadcast;

use crate::state::JobStatus;

/// Something that happened to a job. Subscribe with [`crate::Client::subscribe`]; every event
/// is sent after it is stored.
///
/// ```no_run
/// use nightshift::{JobEvent, JobStatus, Worker};
///
/// # async fn demo(worker: Worker) {
/// let mut events = worker.subscribe();
/// while let Ok(event) = events.recv().await {
///     if let JobEvent::Status { job_id, status: JobStatus::Exception, .. } = event {
///         eprintln!("job {job_id} failed");
///     }
/// }
/// # }
/// ```
///
/// Serialized (for a metrics feed, say), the variant is in `type`:
///
/// ```
/// use nightshift::JobEvent;
/// use serde_json::json;
///
/// let event = JobEvent::Log { job_id: 7, id: 1, at: 1_700_000_000_000, line: "hello".into() };
/// assert_eq!(
///     serde_json::to_value(&event).unwrap(),
///     json!({"type": "log", "job_id": 7, "id": 1, "at": 1_700_000_000_000_i64, "line": "hello"})
/// );
/// assert_eq!(event.job_id(), 7);
/// ```
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum JobEvent {
    /// The job moved to a new state.
    Status {
        /// The job.
        job_id: i64,
        /// Its kind.
        kind: String,
        /// The new state.
        status: JobStatus,
        /// The state before, when known (`None`: the job was just created).
        from: Option<JobStatus>,
    },
    /// The job reported progress.
    Progress {
        /// The job.
        job_id: i64,
        /// 0 to 100, when it changed.
        progress: Option<i32>,
        /// The short status line under the bar, when it changed.
        text: Option<String>,
    },
    /// The job wrote a log line.
    Log {
        /// The job.
        job_id: i64,
        /// The line's id: increasing within a job, usable as an SSE `Last-Event-ID`.
        id: i64,
        /// When, in milliseconds since the Unix epoch.
        at: i64,
        /// The line.
        line: String,
    },
    /// The job added a row to its results table.
    Result {
        /// The job.
        job_id: i64,
        /// The row's id.
        id: i64,
        /// The row's cells.
        cells: Vec<crate::context::ResultCell>,
    },
}

impl JobEvent {
    /// The job the event is about.
    pub fn job_id(&self) -> i64 {
        match self {
            JobEvent::Status { job_id, .. }
            | JobEvent::Progress { job_id, .. }
            | JobEvent::Log { job_id, .. }
            | JobEvent::Result { job_id, .. } => *job_id,
        }
    }
}

/// The sending side, cloned into every part of the runtime. Sending never blocks: a subscriber
/// that falls behind loses the oldest events (and learns it from `RecvError::Lagged`).
#[derive(Debug, Clone)]
pub(crate) struct Events {
    tx: broadcast::Sender<JobEvent>,
}

impl Events {
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Events { tx }
    }

    pub(crate) fn send(&self, event: JobEvent) {
        // No subscriber is not an error: events are a view, the database is the record.
        let _ = self.tx.send(event);
    }

    /// A new subscription, starting with the next event.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.tx.subscribe()
    }
}
