//! The scheduler: sleeps until the next job is due, to the millisecond, and claims due jobs.
//!
//! There is no fixed polling tick. After each claim it asks the database when the earliest
//! waiting job is due and sleeps until then, unless woken first: by a job inserted, updated or
//! cancelled here, by a slot freeing up, by the [`super::listener`] when another process
//! inserted one, or by the `poll_interval` fallback that catches what the listener missed.
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Shared;
use super::executor;
use crate::events::JobEvent;
use crate::state::JobStatus;

/// Claims at most this many jobs per statement.
const CLAIM_BATCH: usize = 100;

pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        if shared.stopping.is_cancelled() {
            return;
        }
        // Without a held lease this node claims nothing: its claims could be taken over.
        let free = if shared.lease.is_held() {
            shared.slots.available_permits()
        } else {
            0
        };
        let kinds = shared.kind_names();
        let mut claimed = 0;
        if free > 0 {
            match shared
                .store
                .claim(
                    &shared.node.id,
                    &kinds,
                    free.min(CLAIM_BATCH),
                    shared.clock.now(),
                )
                .await
            {
                Ok(jobs) => {
                    claimed = jobs.len();
                    for job in jobs {
                        // Claimed only up to the free slots, and only this task takes them.
                        let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
                            tracing::error!(job_id = job.id, "claimed a job without a free slot");
                            break;
                        };
                        shared.events.send(JobEvent::Status {
                            job_id: job.id,
                            kind: job.kind.clone(),
                            status: JobStatus::Running,
                            // New or scheduled: claims do not tell which; both are "waiting".
                            from: Some(JobStatus::New),
                        });
                        tokio::spawn(executor::run(shared.clone(), job, permit));
                    }
                }
                Err(e) => {
                    tracing::error!("claiming jobs failed: {e}");
                    sleep_or_stop(&shared, Instant::now() + Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        if claimed > 0 && claimed == free.min(CLAIM_BATCH) {
            // There may be more due right now.
            continue;
        }
        let poll = Instant::now() + shared.config.poll_interval;
        let until = if shared.slots.available_permits() == 0 {
            // Full: a finishing job wakes us.
            poll
        } else {
            match shared.store.next_due(&kinds).await {
                Ok(Some(due)) => {
                    let wait = due - shared.clock.now();
                    if wait <= 0 {
                        if claimed > 0 {
                            continue;
                        }
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

async fn sleep_or_stop(shared: &Shared, until: Instant) {
    tokio::select! {
        _ = tokio::time::sleep_until(until) => {}
        _ = shared.wake.notified() => {}
        _ = shared.stopping.cancelled() => {}
    }
}
