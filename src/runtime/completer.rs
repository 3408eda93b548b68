//! The completer: writes reports and completions in batches, then publishes them as events.
//!
//! Everything a handler reports goes through one bounded channel, so the order holds: a job's
//! last log lines and result rows are written before (or with) its completion. Reports wait at
//! most `flush_interval` (about 100 ms); a completion at most 2 ms, so that completions arriving
//! together share one transaction (and one statement) with whatever else is queued.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Shared;
use crate::context::ResultCell;
use crate::events::JobEvent;
use crate::state::JobStatus;
use crate::store::{Completion, Run, WriteBatch};

/// How long a completion may wait for others to share its transaction.
const COMPLETION_LINGER: Duration = Duration::from_millis(2);

/// The most operations written in one transaction.
const MAX_BATCH: usize = 2_000;

/// Something to write.
#[derive(Debug)]
pub(crate) enum WriteOp {
    /// Reports carry the run that made them: they land only while the job is still that run
    /// on this node (a stale run's reports are dropped).
    Log {
        job_id: i64,
        run: Run,
        at: i64,
        line: String,
    },
    Progress {
        job_id: i64,
        run: Run,
        progress: Option<i32>,
        text: Option<String>,
    },
    Result {
        job_id: i64,
        run: Run,
        cells: Vec<ResultCell>,
    },
    Complete(Completion),
    /// Write everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
    /// Write everything queued, answer, and stop.
    Stop(oneshot::Sender<()>),
}

pub(crate) async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<WriteOp>) {
    let mut batch = WriteBatch::default();
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let op = match deadline {
            Some(at) => tokio::select! {
                op = rx.recv() => op,
                _ = tokio::time::sleep_until(at) => {
                    flush(&shared, &mut batch).await;
                    deadline = None;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(op) = op else {
            flush(&shared, &mut batch).await;
            return;
        };
        let mut urgent = false;
        let mut soon = false;
        let mut stop = false;
        add(op, &mut batch, &mut acks, &mut urgent, &mut soon, &mut stop);
        // Take whatever else is already queued into the same transaction.
        while batch.len() < MAX_BATCH && !stop {
            match rx.try_recv() {
                Ok(op) => add(op, &mut batch, &mut acks, &mut urgent, &mut soon, &mut stop),
                Err(_) => break,
            }
        }
        if soon {
            // A completion waits a moment for others: under load they arrive together, and one
            // statement for many beats one each. Nobody waits on it but the job's page.
            let at = Instant::now() + COMPLETION_LINGER;
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        if urgent || stop || batch.len() >= MAX_BATCH {
            flush(&shared, &mut batch).await;
            deadline = None;
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
            if stop {
                return;
            }
        } else if deadline.is_none() && !batch.is_empty() {
            deadline = Some(Instant::now() + shared.config.flush_interval);
        }
    }
}

fn add(
    op: WriteOp,
    batch: &mut WriteBatch,
    acks: &mut Vec<oneshot::Sender<()>>,
    urgent: &mut bool,
    soon: &mut bool,
    stop: &mut bool,
) {
    match op {
        WriteOp::Log {
            job_id,
            run,
            at,
            line,
        } => batch.logs.push((job_id, run, at, line)),
        WriteOp::Progress {
            job_id,
            run,
            progress,
            text,
        } => {
            let entry = batch.progress.entry((job_id, run)).or_default();
            if progress.is_some() {
                entry.0 = progress;
            }
            if text.is_some() {
                entry.1 = text;
            }
        }
        WriteOp::Result { job_id, run, cells } => batch.results.push((job_id, run, cells)),
        WriteOp::Complete(c) => {
            batch.completions.push(c);
            *soon = true;
        }
        WriteOp::Flush(ack) => {
            acks.push(ack);
            *urgent = true;
        }
        WriteOp::Stop(ack) => {
            acks.push(ack);
            *stop = true;
        }
    }
}

/// Writes the batch and publishes what landed. While the database is unreachable the batch is
/// retried as a whole; a batch that fails for another reason is split per job, so one poisoned
/// item (a row the database refuses) cannot hold up the others: its reports are dropped with
/// an error, and its completion is left to maintenance, which ends the attempt in a plainer way.
async fn flush(shared: &Shared, batch: &mut WriteBatch) {
    if batch.is_empty() {
        return;
    }
    let taken = std::mem::take(batch);
    let mut delay = Duration::from_millis(100);
    loop {
        match shared
            .store
            .write_batch(&taken, &shared.node.id, shared.clock.now())
            .await
        {
            Ok(w) => return publish(shared, w),
            Err(crate::Error::Database(e)) if crate::store::is_unavailable(&e) => {
                tracing::error!("writing job reports failed, retrying in {delay:?}: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::warn!("a batch of job reports failed ({e}); writing it job by job");
                break;
            }
        }
    }
    for part in split_by_job(taken) {
        let mut tries = 0;
        loop {
            match shared
                .store
                .write_batch(&part, &shared.node.id, shared.clock.now())
                .await
            {
                Ok(w) => {
                    publish(shared, w);
                    break;
                }
                Err(e) => {
                    tries += 1;
                    let down =
                        matches!(&e, crate::Error::Database(d) if crate::store::is_unavailable(d));
                    if down || tries < 3 {
                        tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                        continue;
                    }
                    tracing::error!(
                        "dropping {} log lines, {} result rows and {} progress updates that cannot be written: {e}",
                        part.logs.len(),
                        part.results.len(),
                        part.progress.len()
                    );
                    let mut unwritten = shared.unwritten.lock().unwrap_or_else(|p| p.into_inner());
                    for c in part.completions {
                        tracing::error!(
                            job_id = c.job_id,
                            "the outcome of attempt {} could not be stored; maintenance will end it",
                            c.attempt
                        );
                        unwritten.push((c, e.to_string()));
                    }
                    break;
                }
            }
        }
    }
}

/// One batch per job, in the order their first item came.
fn split_by_job(batch: WriteBatch) -> Vec<WriteBatch> {
    fn part(parts: &mut Vec<(i64, WriteBatch)>, job: i64) -> &mut WriteBatch {
        let i = match parts.iter().position(|(j, _)| *j == job) {
            Some(i) => i,
            None => {
                parts.push((job, WriteBatch::default()));
                parts.len() - 1
            }
        };
        &mut parts[i].1
    }
    let mut parts: Vec<(i64, WriteBatch)> = Vec::new();
    for l in batch.logs {
        part(&mut parts, l.0).logs.push(l);
    }
    for r in batch.results {
        part(&mut parts, r.0).results.push(r);
    }
    for (k, v) in batch.progress {
        part(&mut parts, k.0).progress.insert(k, v);
    }
    for c in batch.completions {
        part(&mut parts, c.job_id).completions.push(c);
    }
    parts.into_iter().map(|(_, b)| b).collect()
}

/// Sends the events of what a flush stored.
fn publish(shared: &Shared, written: crate::store::WrittenBatch) {
    if written.stale > 0 {
        tracing::debug!(
            "{} report(s) of stale attempts refused (their jobs were rescued or finished)",
            written.stale
        );
    }
    for l in written.logs {
        shared.events.send(JobEvent::Log {
            job_id: l.job_id,
            id: l.id,
            at: l.at,
            line: l.line,
        });
    }
    for r in written.results {
        let cells = serde_json::from_str(&r.cells).unwrap_or_default();
        shared.events.send(JobEvent::Result {
            job_id: r.job_id,
            id: r.id,
            cells,
        });
    }
    for (job_id, progress, text) in written.progress {
        shared.events.send(JobEvent::Progress {
            job_id,
            progress,
            text,
        });
    }
    let mut requeued = false;
    for c in written.completed {
        requeued |= c.status.is_waiting();
        shared.events.send(JobEvent::Status {
            job_id: c.job_id,
            kind: c.kind,
            status: c.status,
            from: Some(JobStatus::Running),
        });
    }
    if requeued {
        shared.wake.notify_one();
    }
}
