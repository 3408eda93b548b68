//! The completer: writes reports and completions in batches, then publishes them as events.
//!
//! Everything a handler reports goes through one bounded channel, so the order holds: a job's
//! last log lines and result rows are written before (or with) its completion. Reports wait at
//! most `flush_interval` (about 100 ms); a completion is written at once, together with whatever
//! else is queued, in one transaction.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Shared;
use crate::clock::now_ms;
use crate::context::ResultCell;
use crate::events::JobEvent;
use crate::state::JobStatus;
use crate::store::{Completion, WriteBatch};

/// The most operations written in one transaction.
const MAX_BATCH: usize = 2_000;

/// Something to write.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Log {
        job_id: i64,
        at: i64,
        line: String,
    },
    Progress {
        job_id: i64,
        progress: Option<i32>,
        text: Option<String>,
    },
    Result {
        job_id: i64,
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
        let mut stop = false;
        add(op, &mut batch, &mut acks, &mut urgent, &mut stop);
        // Take whatever else is already queued into the same transaction.
        while batch.len() < MAX_BATCH && !stop {
            match rx.try_recv() {
                Ok(op) => add(op, &mut batch, &mut acks, &mut urgent, &mut stop),
                Err(_) => break,
            }
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
    stop: &mut bool,
) {
    match op {
        WriteOp::Log { job_id, at, line } => batch.logs.push((job_id, at, line)),
        WriteOp::Progress {
            job_id,
            progress,
            text,
        } => {
            let entry = batch.progress.entry(job_id).or_default();
            if progress.is_some() {
                entry.0 = progress;
            }
            if text.is_some() {
                entry.1 = text;
            }
        }
        WriteOp::Result { job_id, cells } => batch.results.push((job_id, cells)),
        WriteOp::Complete(c) => {
            batch.completions.push(c);
            *urgent = true;
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

/// Writes the batch, retrying on failure. Reports that keep failing (after about a minute) are
/// dropped so they cannot block the rest; completions are retried until they are written, since
/// dropping one would leave its job `running` on a live node.
async fn flush(shared: &Shared, batch: &mut WriteBatch) {
    if batch.is_empty() {
        return;
    }
    let mut taken = std::mem::take(batch);
    let mut delay = Duration::from_millis(100);
    let mut tries = 0;
    let written = loop {
        match shared.store.write_batch(&taken, now_ms()).await {
            Ok(w) => break w,
            Err(e) => {
                tries += 1;
                if tries == 15
                    && !(taken.logs.is_empty()
                        && taken.results.is_empty()
                        && taken.progress.is_empty())
                {
                    tracing::error!(
                        "dropping {} log lines, {} result rows and {} progress updates that cannot be written: {e}",
                        taken.logs.len(),
                        taken.results.len(),
                        taken.progress.len()
                    );
                    taken = WriteBatch {
                        completions: std::mem::take(&mut taken.completions),
                        ..WriteBatch::default()
                    };
                    if taken.is_empty() {
                        return;
                    }
                } else {
                    tracing::error!("writing job reports failed (try {tries}), retrying: {e}");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    };
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
    for (job_id, (progress, text)) in taken.progress {
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
