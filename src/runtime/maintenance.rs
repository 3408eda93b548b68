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
    let interval = shared.config.heartbeat_interval;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `start` ran the first round just now.
    let mut last_ok = Some(tokio::time::Instant::now());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        // Judge other nodes silent only if we ourselves were connected all along: after an
        // outage everyone's heartbeat is old, and the others need a round to come back.
        let connected = last_ok.is_some_and(|t| t.elapsed() <= interval * 2 + interval / 2);
        match once(
            &shared,
            Round {
                first: false,
                reap_silent: connected,
            },
        )
        .await
        {
            Ok(()) => last_ok = Some(tokio::time::Instant::now()),
            Err(e) => tracing::error!("maintenance failed: {e}"),
        }
    }
}

/// What a maintenance round may do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Round {
    /// The first round of this node (its row is expected to be missing).
    pub first: bool,
    /// Whether nodes with an old heartbeat may be declared dead.
    pub reap_silent: bool,
}

/// One round: heartbeat, aborts, rescue. Also run at start-up, before the first claim.
pub(crate) async fn once(shared: &Shared, round: Round) -> crate::Result<()> {
    let now = now_ms();
    let existed = shared.store.heartbeat(&shared.node, now).await?;
    if !existed && !round.first {
        // Another node took us for dead and rescued our jobs: what runs here now runs twice.
        tracing::error!("this node was declared dead by another; stopping its running jobs");
        shared.registry.stop_all(StopReason::Shutdown);
    }
    for (job_id, by) in shared.store.aborting_on(&shared.node.id).await? {
        let by = by.unwrap_or_else(|| "an operator".into());
        shared
            .registry
            .stop(job_id, StopReason::Abort { by, at: now });
    }
    reap_dead_nodes(shared, now, round.reap_silent).await?;
    rescue(shared).await
}

async fn reap_dead_nodes(shared: &Shared, now: i64, reap_silent: bool) -> crate::Result<()> {
    for node in shared.store.nodes().await? {
        if node.id != shared.node.id
            && node.hostname == shared.node.hostname
            && !process_alive(node.pid)
        {
            tracing::warn!(node = %node.id, pid = node.pid, "worker process is gone");
            shared.store.remove_node(&node.id).await?;
        }
    }
    if !reap_silent {
        return Ok(());
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
        // Never wait on a full channel here: the heartbeat must go on. A rescue that does not
        // fit now is found again next round.
        let _ = shared.writer.try_send(WriteOp::Log {
            job_id: job.id,
            at: now_ms(),
            line,
        });
        let _ = shared.writer.try_send(WriteOp::Complete(Completion {
            job_id: job.id,
            attempt: job.attempt,
            node,
            status,
            error: Some(error),
            run_at,
            outcome: "lost",
            refund_attempt: false,
        }));
    }
    Ok(())
}

/// Where process ids mean the same thing: the host name plus, on Linux, the PID namespace, so
/// that containers sharing a host name never judge each other by `/proc`.
pub(crate) fn process_scope(hostname: &str) -> String {
    match std::fs::read_link("/proc/self/ns/pid") {
        Ok(ns) => format!("{hostname} {}", ns.display()),
        Err(_) => hostname.to_owned(),
    }
}

/// This boot of this host (Linux: the kernel's boot id); empty where it cannot be known.
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Whether a process with this id runs in this scope (Linux: `/proc`; elsewhere we cannot tell
/// and rely on the heartbeat timeout).
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
