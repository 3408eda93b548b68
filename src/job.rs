//! A job as the outside world sees it: the contract's JSON shape, with secrets masked.
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::clock::to_datetime;
use crate::entity::job;
use crate::error::{Error, Result};
use crate::kind::{JobKind, SECRET_MASK};
use crate::state::JobStatus;

/// A job, ready to show: arguments have their secret fields masked. What [`crate::Client::job`],
/// [`crate::Client::insert`] and the admin's JSON give; it serializes to the admin API's shape.
///
/// ```no_run
/// use nightshift::{Client, JobStatus};
///
/// # async fn demo(client: Client, id: i64) -> nightshift::Result<()> {
/// let job = client.job(id).await?;
/// if job.status == JobStatus::Exception {
///     eprintln!("{} #{} failed: {}", job.label, job.id, job.error.as_deref().unwrap_or(""));
/// }
/// if let Some(took) = job.duration(chrono::Utc::now()) {
///     println!("ran for {} ms", took.num_milliseconds());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Job {
    /// Its id.
    pub id: i64,
    /// Its kind's name: the key it is stored under.
    pub job: String,
    /// What the admin shows for its kind: the registered kind's label, else the key.
    pub label: String,
    /// Its kind's group ("" if the kind is not registered here).
    pub group: String,
    /// The queue it was put on.
    pub queue: String,
    /// 0 to 9: among due jobs of its queue, a larger priority starts first.
    pub priority: i32,
    /// Its tags.
    pub tags: Vec<String>,
    /// Where it is in its life.
    pub status: JobStatus,
    /// 0 to 100.
    pub progress: i32,
    /// The short status line under the bar.
    pub progress_text: Option<String>,
    /// Arguments, secrets masked.
    pub args: Value,
    /// The time asked for, if any.
    pub schedule_at: Option<DateTime<Utc>>,
    /// When it may next start (its schedule time, or a retry's time).
    pub run_at: DateTime<Utc>,
    /// The attempt being made or last made (0 before the first).
    pub attempt: i32,
    /// Attempts allowed in all.
    pub max_attempts: i32,
    /// Why it failed (or why its last attempt failed, while a retry waits).
    pub error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Who created it, if known.
    pub created_by: Option<String>,
    /// Who aborted it, if anyone.
    pub aborted_by: Option<String>,
    /// The node running it (or that ran it last).
    pub node: Option<String>,
    /// Log lines dropped from the start of a very long log.
    pub log_dropped: i64,
    /// The job's uniqueness key, if any ([`crate::NewJob::unique_key`]).
    pub unique_key: Option<String>,
    /// Set on what an insert returns when a job of the kind with the same uniqueness key was
    /// already waiting or running: this is that job, and nothing was added.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub already_queued: bool,
}

impl Job {
    /// Builds the view of a stored job; `kind` (when registered) gives the group and secrets.
    pub(crate) fn from_model(m: job::Model, kind: Option<&JobKind>) -> Result<Job> {
        let status: JobStatus = m
            .status
            .parse()
            .map_err(|e| Error::Corrupt(format!("job {}: {e}", m.id)))?;
        let raw: Value = serde_json::from_str(&m.args).unwrap_or(Value::Null);
        let args = match kind {
            Some(k) => k.redact(&raw),
            None => mask_all(&raw),
        };
        Ok(Job {
            id: m.id,
            label: kind
                .map(|k| k.display_label().to_owned())
                .unwrap_or_else(|| m.kind.clone()),
            job: m.kind,
            group: kind.map(|k| k.group.clone()).unwrap_or_default(),
            queue: m.queue,
            priority: m.priority,
            tags: crate::queue::tags_of(m.tags.as_deref()),
            status,
            progress: m.progress,
            progress_text: m.progress_text,
            args,
            schedule_at: m.schedule_at.map(to_datetime),
            run_at: to_datetime(m.run_at),
            attempt: m.attempt,
            max_attempts: m.max_attempts,
            error: m.error,
            created_at: to_datetime(m.created_at),
            started_at: m.started_at.map(to_datetime),
            finished_at: m.finished_at.map(to_datetime),
            created_by: m.created_by,
            aborted_by: m.aborted_by,
            node: m.locked_by,
            log_dropped: m.log_dropped,
            unique_key: m.unique_key,
            already_queued: false,
        })
    }

    /// How long it ran (or has been running), if it started.
    pub fn duration(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        let start = self.started_at?;
        Some(self.finished_at.unwrap_or(now) - start)
    }
}

/// Without the kind we cannot tell which fields are secret: show none of the values.
fn mask_all(args: &Value) -> Value {
    match args {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, _)| (k.clone(), Value::String(SECRET_MASK.into())))
                .collect(),
        ),
        Value::Null => Value::Null,
        _ => Value::String(SECRET_MASK.into()),
    }
}
