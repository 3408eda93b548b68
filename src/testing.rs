//! A testing kit for applications: run one job's handler inline and look at what it reported,
//! check what was enqueued, and drain every pending job in a test.
//!
//! ```
//! use nightshift::testing::{Outcome, perform};
//! use nightshift::{JobArgs, JobContext};
//! # use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, schemars::JsonSchema)]
//! struct Greet { name: String }
//! impl JobArgs for Greet { const KIND: &'static str = "greet"; }
//!
//! async fn greet(args: Greet, ctx: JobContext) -> anyhow::Result<()> {
//!     ctx.log(format!("hello, {}", args.name)).await?;
//!     ctx.set_progress(100).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let run = perform(greet, Greet { name: "Ada".into() }).await;
//! assert_eq!(run.outcome, Outcome::Done);
//! assert_eq!(run.logs, ["hello, Ada"]);
//! assert_eq!(run.progress, Some(100));
//! # }
//! ```
use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::context::{JobContext, ResultCell};
use crate::entity::job;
use crate::error::{Error, Result};
use crate::events::JobEvent;
use crate::job_args::JobArgs;
use crate::kind::{HandlerError, JobKind};
use crate::runtime::completer::WriteOp;
use crate::state::JobStatus;
use crate::worker::Worker;

/// How a handler run by [`perform`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It returned `Ok` and reported no result row with an error (the job would end `done`).
    Done,
    /// It returned `Ok` but reported result rows with errors (the job would end `exception`).
    ErrorRows(usize),
    /// It returned an error (retried while attempts are left, else `exception`).
    Failed(String),
    /// Its arguments could not be read (`exception`, never retried).
    BadArgs(String),
    /// It cancelled its job with [`crate::cancel`].
    Cancelled(String),
    /// It snoozed with [`crate::snooze`].
    Snoozed(Duration),
    /// It panicked.
    Panicked(String),
}

/// What one run of a handler reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Performed {
    /// How it ended.
    pub outcome: Outcome,
    /// Its log lines, in order.
    pub logs: Vec<String>,
    /// The last progress it set, if any.
    pub progress: Option<i32>,
    /// The last progress text it set, if any.
    pub progress_text: Option<String>,
    /// Its result rows.
    pub rows: Vec<Vec<ResultCell>>,
}

/// Runs `handler` once on `args`, inline, with a context that records what it reports (log
/// lines, progress, result rows) instead of writing it: no database, no worker. The arguments
/// go through JSON first, as a stored job's do.
pub async fn perform<J, F, Fut>(handler: F, args: J) -> Performed
where
    J: JobArgs,
    F: Fn(J, JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let value = serde_json::to_value(&args).unwrap_or(Value::Null);
    perform_kind(&JobKind::of(handler), value).await
}

/// Runs the handler of a registered kind once on arguments given as JSON (see [`perform`]).
pub async fn perform_kind(kind: &JobKind, args: Value) -> Performed {
    let mut performed = Performed {
        outcome: Outcome::Done,
        logs: Vec::new(),
        progress: None,
        progress_text: None,
        rows: Vec::new(),
    };
    let Some(handler) = kind.handler.clone() else {
        performed.outcome = Outcome::BadArgs(format!("{:?} has no handler", kind.name));
        return performed;
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let run = crate::store::Run {
        attempt: 1,
        started: None,
    };
    let ctx = JobContext::new(0, run, CancellationToken::new(), tx, kind.redact(&args));
    // Reports are read while the handler runs, so a chatty handler never waits on a full
    // channel.
    let collect = tokio::spawn(async move {
        let mut ops = Vec::new();
        while let Some(op) = rx.recv().await {
            ops.push(op);
        }
        ops
    });
    let run = std::panic::AssertUnwindSafe(handler(args, ctx))
        .catch_unwind()
        .await;
    let ops = collect.await.unwrap_or_default();
    for op in ops {
        match op {
            WriteOp::Log { line, .. } => performed.logs.push(line),
            WriteOp::Progress { progress, text, .. } => {
                if progress.is_some() {
                    performed.progress = progress;
                }
                if text.is_some() {
                    performed.progress_text = text;
                }
            }
            WriteOp::Result { cells, .. } => performed.rows.push(cells),
            _ => {}
        }
    }
    let error_rows = performed
        .rows
        .iter()
        .filter(|r| r.iter().any(|c| c.error.is_some()))
        .count();
    performed.outcome = match run {
        Ok(Ok(())) if error_rows > 0 => Outcome::ErrorRows(error_rows),
        Ok(Ok(())) => Outcome::Done,
        Ok(Err(HandlerError::Failed(e))) => Outcome::Failed(format!("{e:#}")),
        Ok(Err(HandlerError::BadArgs(m))) => Outcome::BadArgs(m),
        Ok(Err(HandlerError::Cancel(reason))) => Outcome::Cancelled(reason),
        Ok(Err(HandlerError::Snooze(after))) => Outcome::Snoozed(after),
        Err(payload) => Outcome::Panicked(
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".into()),
        ),
    };
    performed
}

/// The jobs of type `J` waiting to run (`new` or `scheduled`), oldest first, with their ids
/// and arguments (secret fields decrypted).
pub async fn enqueued<J: JobArgs>(client: &Client) -> Result<Vec<(i64, J)>> {
    let rows = job::Entity::find()
        .filter(job::Column::Kind.eq(J::KIND))
        .filter(job::Column::Status.is_in(JobStatus::WAITING.map(JobStatus::as_str)))
        .order_by_asc(job::Column::Id)
        .all(client.shared.store.reader())
        .await?;
    let secrets = client
        .kind(J::KIND)
        .map(|k| k.secrets.clone())
        .unwrap_or_default();
    rows.into_iter()
        .map(|m| {
            let raw: Value =
                serde_json::from_str(&m.args).map_err(|e| Error::Corrupt(e.to_string()))?;
            let plain = crate::secrets::open(client.shared.keyring.as_ref(), &secrets, raw)
                .map_err(|e| Error::Corrupt(e.to_string()))?;
            let args = serde_json::from_value(plain).map_err(|e| Error::InvalidArgs {
                field: None,
                message: e.to_string(),
            })?;
            Ok((m.id, args))
        })
        .collect()
}

/// Panics unless a job of type `J` matching `matches` is waiting to run; returns its id. The
/// message lists what was enqueued instead.
///
/// ```no_run
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Debug)]
/// # struct Welcome { user_id: i64 }
/// # impl nightshift::JobArgs for Welcome { const KIND: &'static str = "welcome"; }
/// # async fn demo(client: nightshift::Client) {
/// // … the code under test signs user 42 up …
/// nightshift::testing::assert_enqueued::<Welcome>(&client, |w| w.user_id == 42).await;
/// # }
/// ```
pub async fn assert_enqueued<J: JobArgs + std::fmt::Debug>(
    client: &Client,
    matches: impl Fn(&J) -> bool,
) -> i64 {
    let jobs = enqueued::<J>(client)
        .await
        .unwrap_or_else(|e| panic!("could not read the enqueued {} jobs: {e}", J::KIND));
    match jobs.iter().find(|(_, j)| matches(j)) {
        Some((id, _)) => *id,
        None => panic!(
            "no matching {} job is enqueued; enqueued: {:?}",
            J::KIND,
            jobs.iter().map(|(_, j)| j).collect::<Vec<_>>()
        ),
    }
}

/// Panics if a job of type `J` matching `matches` is waiting to run.
pub async fn refute_enqueued<J: JobArgs + std::fmt::Debug>(
    client: &Client,
    matches: impl Fn(&J) -> bool,
) {
    let jobs = enqueued::<J>(client)
        .await
        .unwrap_or_else(|e| panic!("could not read the enqueued {} jobs: {e}", J::KIND));
    if let Some((id, j)) = jobs.iter().find(|(_, j)| matches(j)) {
        panic!("job {id} ({}) is enqueued: {j:?}", J::KIND);
    }
}

/// How the jobs run by [`drain`] ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Ended `done`.
    pub done: u64,
    /// Ended `exception` or `killed`.
    pub failed: u64,
    /// Ended `cancelled` (by their handler).
    pub cancelled: u64,
}

/// Starts `worker` if it is not running and waits until no job it can run is due or running
/// (a retry waiting out its backoff is not due), at most `timeout`; everything is written when
/// it returns. Counts how the jobs that finished meanwhile ended.
pub async fn drain(worker: &Worker, timeout: Duration) -> Result<Drained> {
    let mut events = worker.subscribe();
    worker.start().await?;
    worker.wake();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut drained = Drained::default();
    loop {
        let settled = settled(worker).await?;
        // After the check: a job that ended just before it has sent its event by now.
        while let Some(status) = next_status(&mut events) {
            match status {
                JobStatus::Done => drained.done += 1,
                JobStatus::Exception | JobStatus::Killed => drained.failed += 1,
                JobStatus::Cancelled => drained.cancelled += 1,
                _ => {}
            }
        }
        if settled {
            return Ok(drained);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "jobs were still due or running after {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether nothing this worker can run is due, and nothing is running on it (claimed jobs
/// waiting in its buffer count as running), in the database.
async fn settled(worker: &Worker) -> Result<bool> {
    use sea_orm::PaginatorTrait;
    worker.flush().await;
    let shared = &worker.shared;
    let kinds = shared.kind_names();
    let queues: Vec<String> = shared.served_queues().into_iter().map(|q| q.0).collect();
    if shared.store.any_ready(&kinds, &queues).await? {
        return Ok(false);
    }
    let due = shared.store.next_due(&kinds).await?;
    if due.is_some_and(|at| at <= shared.clock.now()) {
        return Ok(false);
    }
    let running = job::Entity::find()
        .filter(job::Column::LockedBy.eq(shared.node.id.as_str()))
        .filter(job::Column::Status.is_in(JobStatus::ACTIVE.map(JobStatus::as_str)))
        .count(shared.store.connection())
        .await?;
    Ok(running == 0)
}

fn next_status(events: &mut broadcast::Receiver<JobEvent>) -> Option<JobStatus> {
    loop {
        match events.try_recv() {
            Ok(JobEvent::Status { status, .. }) => return Some(status),
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => return None,
        }
    }
}
