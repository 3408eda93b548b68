//! The scheduler: sleeps until the next job is due, to the millisecond, claims due jobs in
//! batches, and hands them to free slots.
//!
//! There is no fixed polling tick. After each claim it asks the database when the earliest
//! waiting job is due and sleeps until then, unless woken first: by a job inserted, updated or
//! cancelled here, by a slot freeing up, by the [`super::listener`] when another process
//! inserted one, or by the `poll_interval` fallback that catches what the listener missed.
//!
//! While jobs are short (under 50 ms lately), claimed jobs wait in a small local buffer (up to
//! `concurrency`, at least 16), so a slot that frees up starts the next job at once instead of
//! waiting for a claim, and claims come in batches rather than one job per freed slot. Long
//! jobs are never buffered: another node with a free slot should start them. Jobs in the
//! buffer are `running` in the database under this node's lease; on shutdown, or when the
//! lease is lost, they are given back untouched (attempt refunded).
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Shared;
use super::completer::WriteOp;
use super::executor;
use crate::entity::job;
use crate::events::JobEvent;
use crate::state::JobStatus;
use crate::store::Completion;

/// The longest a claimed job waits in the buffer for a slot before it is given back.
const MAX_BUFFERED: Duration = Duration::from_millis(500);

/// Claims at most this many jobs per statement.
const CLAIM_BATCH: usize = 100;

pub(crate) async fn run(shared: Arc<Shared>) {
    let concurrency = shared.config.concurrency;
    let mut ready: VecDeque<(Instant, job::Model)> = VecDeque::new();
    loop {
        let buffer = shared.buffer_size();
        // Running plus waiting in the buffer, at most.
        let capacity = concurrency + buffer;
        // Refill the buffer when it holds this many or fewer.
        let low_water = buffer / 2;
        if shared.stopping.is_cancelled() {
            give_back(&shared, &mut ready).await;
            return;
        }
        let held = shared.lease.is_held();
        if !held {
            // Not ours to start any more: they may be taken over.
            give_back(&shared, &mut ready).await;
        }
        while !ready.is_empty() {
            let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
                break;
            };
            if let Some((_, job)) = ready.pop_front() {
                tokio::spawn(executor::run(shared.clone(), job, permit));
            }
        }
        // A job that waited here longer than a short while is better started by another node
        // with a free slot (the jobs turned long): give it back.
        if ready
            .front()
            .is_some_and(|(since, _)| since.elapsed() > MAX_BUFFERED)
        {
            give_back(&shared, &mut ready).await;
            // And buffer nothing until jobs are seen to be short again.
            shared.note_long_wait(MAX_BUFFERED);
        }
        let running = concurrency - shared.slots.available_permits();
        let room = capacity.saturating_sub(running + ready.len());
        let kinds = shared.kind_names();
        if held && ready.len() <= low_water && room > 0 {
            let asked = room.min(CLAIM_BATCH);
            match shared
                .store
                .claim(&shared.node.id, &kinds, asked, shared.clock.now())
                .await
            {
                Ok(jobs) => {
                    let claimed = !jobs.is_empty();
                    for job in jobs {
                        shared.events.send(JobEvent::Status {
                            job_id: job.id,
                            kind: job.kind.clone(),
                            status: JobStatus::Running,
                            // New or scheduled: claims do not tell which; both are "waiting".
                            from: Some(JobStatus::New),
                        });
                        // Reachable by aborts and stops while it waits for a slot.
                        shared.registry.signal(job.id);
                        ready.push_back((Instant::now(), job));
                    }
                    if claimed {
                        // Start them; refill if the buffer runs low.
                        continue;
                    }
                }
                Err(e) => {
                    tracing::error!("claiming jobs failed: {e}");
                    sleep_or_stop(&shared, Instant::now() + Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let poll = Instant::now() + shared.config.poll_interval;
        let until = if !ready.is_empty() {
            // Full: a finishing job wakes us; buffered jobs are not kept waiting long.
            (Instant::now() + MAX_BUFFERED).min(poll)
        } else if !held || shared.slots.available_permits() == 0 {
            // Full (a finishing job wakes us), or fenced (a renewal wakes us).
            poll
        } else {
            match shared.store.next_due(&kinds).await {
                Ok(Some(due)) => {
                    let wait = due - shared.clock.now();
                    if wait <= 0 {
                        // Due but not claimed: another node took it in between. Look again soon.
                        Instant::now() + Duration::from_millis(10)
                    } else {
                        (Instant::now() + Duration::from_millis(wait as u64)).min(poll)
                    }
                }
                Ok(None) => poll,
                Err(e) => {
                    tracing::error!("looking up the next due job failed: {e}");
                    poll
                }
            }
        };
        sleep_or_stop(&shared, until).await;
    }
}

/// Gives claimed jobs that never started back to the queue, their attempt refunded.
async fn give_back(shared: &Shared, ready: &mut VecDeque<(Instant, job::Model)>) {
    for (_, job) in ready.drain(..) {
        shared.registry.remove(job.id);
        let completion = Completion {
            job_id: job.id,
            attempt: job.attempt,
            node: shared.node.id.clone(),
            status: JobStatus::New,
            error: None,
            run_at: Some(shared.clock.now()),
            outcome: "interrupted",
            refund_attempt: true,
            log: None,
            at: shared.clock.now(),
        };
        if shared
            .writer
            .send(WriteOp::Complete(completion))
            .await
            .is_err()
        {
            tracing::error!(job_id = job.id, "completer gone; the job will be rescued");
        }
    }
}

async fn sleep_or_stop(shared: &Shared, until: Instant) {
    tokio::select! {
        _ = tokio::time::sleep_until(until) => {}
        _ = shared.wake.notified() => {}
        _ = shared.stopping.cancelled() => {}
    }
}
