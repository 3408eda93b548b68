//! Maintenance: this node's heartbeat, aborts asked on other nodes, and the rescue of jobs whose
//! worker died.
//!
//! A job is lost when the node that claimed it is gone: its heartbeat is older than
//! `node_timeout`, or (found at once, without waiting for the timeout) it ran on this host under a
//! process id that no longer exists. A lost job is retried if it has attempts left, and otherwise
//! ends in `exception` with "worker lost". Nothing stays `running` for ever.
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Shared;
use super::completer::WriteOp;
use super::registry::StopReason;
use crate::clock::now_ms;
use crate::state::JobStatus;
use crate::store::Completion;

pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(shared.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = once(&shared).await {
            tracing::error!("maintenance failed: {e}");
        }
    }
}

/// One round: heartbeat, aborts, rescue. Also run at start-up, before the first claim.
pub(crate) async fn once(shared: &Shared) -> crate::Result<()> {
    let now = now_ms();
    shared.store.heartbeat(&shared.node, now).await?;
    for (job_id, by) in shared.store.aborting_on(&shared.node.id).await? {
        let by = by.unwrap_or_else(|| "an operator".into());
        shared
            .registry
            .stop(job_id, StopReason::Abort { by, at: now });
    }
    reap_dead_nodes(shared, now).await?;
    rescue(shared).await
}

async fn reap_dead_nodes(shared: &Shared, now: i64) -> crate::Result<()> {
    for node in shared.store.nodes().await? {
        if node.id != shared.node.id
            && node.hostname == shared.node.hostname
            && !process_alive(node.pid)
        {
            tracing::warn!(node = %node.id, pid = node.pid, "worker process is gone");
            shared.store.remove_node(&node.id).await?;
        }
    }
    let cutoff = now - shared.config.node_timeout.as_millis() as i64;
    let reaped = shared.store.reap_stale_nodes(cutoff).await?;
    if reaped > 0 {
        tracing::warn!("{reaped} worker node(s) stopped sending heartbeats");
    }
    Ok(())
}

async fn rescue(shared: &Shared) -> crate::Result<()> {
    for job in shared.store.orphans().await? {
        let node = job.locked_by.clone().unwrap_or_default();
        let error = format!("worker lost (node {node})");
        tracing::warn!(job_id = job.id, %node, "rescuing a job whose worker was lost");
        let (status, run_at) = if job.attempt < job.max_attempts {
            (JobStatus::New, Some(now_ms()))
        } else {
            (JobStatus::Exception, None)
        };
        let line = format!("Worker lost (node {node}) during attempt {}", job.attempt);
        let _ = shared
            .writer
            .send(WriteOp::Log {
                job_id: job.id,
                at: now_ms(),
                line,
            })
            .await;
        let _ = shared
            .writer
            .send(WriteOp::Complete(Completion {
                job_id: job.id,
                attempt: job.attempt,
                node,
                status,
                error: Some(error),
                run_at,
                outcome: "lost",
                refund_attempt: false,
            }))
            .await;
    }
    Ok(())
}

/// Whether a process with this id runs on this host (Linux: `/proc`; elsewhere we cannot tell and
/// rely on the heartbeat timeout).
fn process_alive(pid: i64) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses; `Z` is a zombie: dead.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => false,
    }
}
