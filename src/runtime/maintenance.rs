//! Maintenance: this node's heartbeat (which renews its lease), aborts asked on other nodes,
//! the rescue of jobs whose worker died, and of jobs this node holds in the database but not in
//! memory (stranded).
//!
//! A node is dead when its heartbeat has been older than `node_timeout` (on the database's
//! clock) for two rounds running, seen by a node that was itself connected all along — or, to
//! find a crashed process sooner, when it ran on this very host and boot under a process id
//! that no longer exists and it has missed a heartbeat. A live node that is merely slow has
//! stopped its own jobs before that (see `lease`), so its late writes change nothing. One node
//! per round does the rescuing. A lost job is retried if it has attempts left, and otherwise
//! ends in `exception` with "worker lost". Nothing stays `running` for ever.
//!
//! Stranded: a claim whose commit succeeded but whose answer was lost (a dropped connection)
//! leaves jobs `running` under this live node that nothing here runs; so does a panic between
//! claim and completion. Each round compares the jobs the database says run here with the
//! registry, which holds every job from its claim until its completion is queued; a job in the
//! database alone, claimed before any claim still in flight, is rescued like a dead node's. Its
//! completion queues behind any completion of that attempt, so a late real outcome lands
//! first and the rescue then changes nothing (compare-and-set on the attempt).
use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::completer::WriteOp;
use super::registry::StopReason;
use crate::state::JobStatus;
use crate::store::Completion;

/// A job claimed this recently is never taken for stranded: room for this node's clock being
/// corrected between the claim (which stamps `started_at`) and the check.
const STRANDED_GRACE_MS: i64 = 10_000;

/// A heartbeat slower than this does not correct the clock's offset.
const MAX_CLOCK_SAMPLE: std::time::Duration = std::time::Duration::from_millis(250);

pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let interval = shared.config.heartbeat_interval;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `start` ran the first round just now.
    let mut last_ok = Some(Instant::now());
    let mut suspects = Suspects::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        // Judge other nodes silent only if we ourselves were connected all along: after an
        // outage everyone's heartbeat is old, and the others need a round to come back.
        let connected = last_ok.is_some_and(|t| t.elapsed() <= interval * 2 + interval / 2);
        // A hung connection must not hang maintenance: the round is cut off (the lease then
        // runs out and this node stops its jobs, which is the safe side).
        let round = once(
            &shared,
            Round {
                first: false,
                reap_silent: connected,
            },
            &mut suspects,
        );
        match tokio::time::timeout(shared.config.node_timeout, round).await {
            Ok(Ok(())) => last_ok = Some(Instant::now()),
            Ok(Err(e)) => tracing::error!("maintenance failed: {e}"),
            Err(_) => tracing::error!(
                "a maintenance round took longer than {:?}; cut off",
                shared.config.node_timeout
            ),
        }
    }
}

/// Watches this node's lease; when it runs out unrenewed, stops the jobs running here (they go
/// back to the queue, if the database still lets them) and holds claims until it is renewed.
pub(crate) async fn watch_lease(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = shared.lease.expired() => {}
            _ = stop.cancelled() => return,
        }
        let n = shared.registry.len();
        tracing::error!(
            "this node could not renew its lease in time; stopping its {n} running job(s) \
             before another node may take them over"
        );
        shared.registry.stop_all(StopReason::LeaseLost);
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

/// Silent nodes seen in the previous round, with the heartbeat they had then: a node is reaped
/// only if it is still silent, with the same heartbeat, a round later.
#[derive(Debug, Default)]
pub(crate) struct Suspects(HashMap<String, i64>);

/// One round: heartbeat, aborts, rescue. Also run at start-up, before the first claim.
pub(crate) async fn once(
    shared: &Shared,
    round: Round,
    suspects: &mut Suspects,
) -> crate::Result<()> {
    let sent = Instant::now();
    let sent_local = shared.clock.local();
    let (existed, db_now) = shared
        .store
        .heartbeat(&shared.node, &shared.queues_json(), &shared.kinds_json())
        .await?;
    // A heartbeat that waited (a busy database, a retry) says little about the offset.
    if sent.elapsed() < MAX_CLOCK_SAMPLE {
        shared.clock.learn(db_now, sent_local, shared.clock.local());
    }
    if shared.lease.renew(sent) {
        tracing::info!("lease renewed; this node claims jobs again");
        shared.wake.notify_one();
    }
    if !existed && !round.first {
        // Another node took us for dead and rescued our jobs: what runs here now runs twice.
        tracing::error!("this node was declared dead by another; stopping its running jobs");
        shared.registry.stop_all(StopReason::LeaseLost);
    }
    let now = shared.clock.now();
    for (job_id, by) in shared.store.aborting_on(&shared.node.id).await? {
        let by = by.unwrap_or_else(|| "an operator".into());
        shared
            .registry
            .stop(job_id, StopReason::Abort { by, at: now });
    }
    end_unwritten(shared).await;
    rescue_stranded(shared).await?;
    let Some(turn) = shared.store.rescue_turn().await? else {
        // Another node does this round's rescue.
        return Ok(());
    };
    reap_dead_nodes(shared, db_now, round.reap_silent, suspects).await?;
    let orphans = shared.store.orphans(&turn).await?;
    turn.commit().await?;
    rescue(shared, orphans, "worker lost");
    // Per-minute counts are kept for the charts' longest span. A failure here must not stop
    // the rounds (the reaping of dead nodes waits for rounds that succeed).
    if let Err(e) = shared
        .store
        .prune_stats(db_now - crate::queue::STATS_KEPT_MS)
        .await
    {
        tracing::warn!("pruning the per-minute counts failed: {e}");
    }
    Ok(())
}

async fn reap_dead_nodes(
    shared: &Shared,
    db_now: i64,
    reap_silent: bool,
    suspects: &mut Suspects,
) -> crate::Result<()> {
    let me = &shared.node;
    // A node silent this long has stopped its own handlers whatever happened to it (its lease
    // ran out a heartbeat interval earlier, and force followed): reaping it now is safe even if
    // the process check below is wrong. The check only spares waiting for two silent rounds.
    let fenced = db_now
        - (shared.config.node_timeout.as_millis() as i64
            - shared.config.heartbeat_interval.as_millis() as i64);
    for node in shared.store.nodes().await? {
        // Same host, same boot, same PID namespace: its pid means what ours would.
        let comparable =
            node.hostname == me.hostname && !me.boot_id.is_empty() && node.boot_id == me.boot_id;
        if node.id != me.id
            && comparable
            && node.heartbeat_at < fenced
            && !process_alive(node.pid)
            && shared.store.reap_node(&node.id, node.heartbeat_at).await?
        {
            tracing::warn!(node = %node.id, pid = node.pid, "worker process is gone");
        }
    }
    if !reap_silent {
        suspects.0.clear();
        return Ok(());
    }
    let timeout = shared.config.node_timeout.as_millis() as i64;
    let mut still = HashMap::new();
    for (id, heartbeat_at) in shared.store.silent_nodes(timeout).await? {
        if id == me.id {
            continue;
        }
        if suspects.0.get(&id) == Some(&heartbeat_at) {
            if shared.store.reap_node(&id, heartbeat_at).await? {
                tracing::warn!(node = %id, "worker node stopped sending heartbeats");
            }
        } else {
            still.insert(id, heartbeat_at);
        }
    }
    suspects.0 = still;
    Ok(())
}

/// Rescues the jobs the database says run here that this node does not hold (see the module
/// doc).
async fn rescue_stranded(shared: &Shared) -> crate::Result<()> {
    // Read before the jobs: a claim in flight now has stamped (or will stamp) its jobs no
    // earlier than it began, so they fall outside the cut-off.
    let in_flight = *shared
        .claiming_since
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut before = shared.clock.now() - STRANDED_GRACE_MS;
    if let Some(since) = in_flight {
        before = before.min(since);
    }
    let held: Vec<_> = shared
        .store
        .running_on(&shared.node.id, before)
        .await?
        .into_iter()
        // Looked up after the read: a job that left the registry since has its completion
        // queued ahead of the rescue's.
        .filter(|job| !shared.registry.holds(job.id))
        .collect();
    // Outcomes the completer could not store are ended by `end_unwritten`, with their error.
    let unwritten: std::collections::HashSet<i64> = shared
        .unwritten
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(c, _)| c.job_id)
        .collect();
    let held: Vec<_> = held
        .into_iter()
        .filter(|job| !unwritten.contains(&job.id))
        .collect();
    if !held.is_empty() {
        tracing::warn!(
            count = held.len(),
            "jobs marked running on this node that it does not run (a claim's answer lost?)"
        );
    }
    // Taken by a claim that failed here: they never ran, and go back untouched.
    let (never_ran, lost): (Vec<_>, Vec<_>) = {
        let failed = shared
            .failed_claims
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        held.into_iter()
            .partition(|job| job.started_at.is_some_and(|s| failed.contains(&s)))
    };
    for job in never_ran {
        let back = Completion::given_back(&job, &shared.node.id, shared.clock.now());
        let _ = shared.writer.try_send(WriteOp::Complete(back));
    }
    rescue(shared, lost, "lost by its node");
    Ok(())
}

/// Ends the attempts of `orphans` (retried if attempts are left), saying `why` ("worker
/// lost"), through the completer.
fn rescue(shared: &Shared, orphans: Vec<crate::entity::job::Model>, why: &str) {
    for job in orphans {
        let node = job.locked_by.clone().unwrap_or_default();
        tracing::warn!(job_id = job.id, %node, "rescuing a job: {why}");
        let (status, run_at) = if job.attempt < job.max_attempts {
            (JobStatus::New, Some(shared.clock.now()))
        } else {
            (JobStatus::Exception, None)
        };
        // Never wait on a full channel here: the heartbeat must go on. A rescue that does not
        // fit now is found again next round.
        let _ = shared.writer.try_send(WriteOp::Complete(Completion {
            job_id: job.id,
            attempt: job.attempt,
            started_at: job.started_at,
            status,
            error: Some(format!("{why} (node {node})")),
            run_at,
            due_at: Some(job.run_at),
            outcome: "lost",
            refund_attempt: false,
            log: Some(format!(
                "{}{} (node {node}) during attempt {}",
                why[..1].to_uppercase(),
                &why[1..],
                job.attempt
            )),
            at: shared.clock.now(),
            node,
        }));
    }
}

/// Ends the attempts whose completion the completer could not store: plainly (retry if
/// attempts are left, else `exception`), with what went wrong.
async fn end_unwritten(shared: &Shared) {
    let pending: Vec<_> =
        std::mem::take(&mut *shared.unwritten.lock().unwrap_or_else(|e| e.into_inner()));
    let mut again = Vec::new();
    for (c, err) in pending {
        let job = match shared.store.job(c.job_id).await {
            Ok(job) => job,
            Err(crate::Error::NotFound(_)) => continue,
            Err(_) => {
                again.push((c, err));
                continue;
            }
        };
        let (status, run_at) = if job.attempt < job.max_attempts {
            (JobStatus::New, Some(shared.clock.now()))
        } else {
            (JobStatus::Exception, None)
        };
        let error = crate::context::truncate(
            format!(
                "the outcome of attempt {} could not be stored: {err}",
                c.attempt
            ),
            1000,
        );
        let plain = Completion {
            status,
            run_at,
            error: Some(error),
            outcome: "lost",
            refund_attempt: false,
            log: None,
            at: shared.clock.now(),
            ..c.clone()
        };
        if shared.writer.try_send(WriteOp::Complete(plain)).is_err() {
            // The queue is full: try again next round rather than lose it.
            again.push((c, err));
        }
    }
    if !again.is_empty() {
        shared
            .unwritten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(again);
    }
}

/// This boot of this host (Linux: the kernel's boot id); empty where it cannot be known.
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Where process ids mean the same thing: the host name plus, on Linux, the PID namespace, so
/// that containers sharing a host name never judge each other by `/proc`.
pub(crate) fn process_scope(hostname: &str) -> String {
    match std::fs::read_link("/proc/self/ns/pid") {
        Ok(ns) => format!("{hostname} {}", ns.display()),
        // Unknown namespace: no other process can be judged by its pid (a scope of its own).
        Err(_) => format!("{hostname} unknown-{:016x}", fastrand::u64(..)),
    }
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
        // Gone. Anything else (no permission: `hidepid`) cannot tell, so it counts as alive.
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait;

    use super::*;

    /// Jobs this node is marked running but does not hold: one taken by a claim that failed
    /// here goes back untouched (its attempt refunded), one lost some other way ends its
    /// attempt as lost, and one it holds is left alone.
    #[tokio::test]
    async fn stranded_jobs_go_back_refunded_only_if_their_claim_failed() {
        let (_dir, worker, ids) = crate::store::test_worker(3).await;
        let (failed, lost, held) = (ids[0], ids[1], ids[2]);
        let shared = worker.shared.clone();
        let mut rx = shared.writer_rx.lock().unwrap().take().unwrap();
        let stamp = shared.clock.now() - 60_000;
        for (id, started) in [(failed, stamp), (lost, stamp - 1), (held, stamp - 1)] {
            worker
                .store()
                .connection()
                .execute_unprepared(&format!(
                    "UPDATE nightshift_jobs SET status = 'running', attempt = 1, \
                     locked_by = '{}', started_at = {started} WHERE id = {id}",
                    shared.node.id
                ))
                .await
                .unwrap();
        }
        shared.claim_failed(stamp);
        shared.registry.register(held);
        rescue_stranded(&shared).await.unwrap();
        let mut sent = HashMap::new();
        while let Ok(WriteOp::Complete(c)) = rx.try_recv() {
            sent.insert(c.job_id, c);
        }
        let f = &sent[&failed];
        assert!(f.refund_attempt && f.status == JobStatus::New, "{f:?}");
        assert_eq!((f.outcome, f.started_at), ("interrupted", Some(stamp)));
        let l = &sent[&lost];
        assert!(!l.refund_attempt && l.outcome == "lost", "{l:?}");
        assert!(l.error.as_deref().unwrap().contains("lost by its node"));
        assert!(!sent.contains_key(&held), "a job it holds was rescued");
    }
}
