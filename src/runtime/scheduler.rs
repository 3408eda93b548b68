//! The scheduler: sleeps until the next job is due, to the millisecond, claims due jobs in
//! batches, and hands them to free slots.
//!
//! There is no fixed polling tick. After each claim it asks the database when the earliest
//! waiting job is due and sleeps until then, unless woken first: by a job inserted, updated or
//! cancelled here, by a slot freeing up, by the [`super::listener`] when another process
//! inserted one, or by the `poll_interval` fallback that catches what the listener missed.
//!
//! While jobs are short (under 50 ms lately), claimed jobs wait in a small local buffer (about
//! 25 ms of the slots' work: from `concurrency` or 16 up to 100 jobs), so a slot that frees up
//! starts the next job at once instead of waiting for a claim, and claims come in batches
//! rather than one job per freed slot: the shorter the jobs, the larger the batch. Long
//! jobs are never buffered: another node with a free slot should start them. Jobs in the
//! buffer are `running` in the database under this node's lease; on shutdown, or when the
//! lease is lost, they are given back untouched (attempt refunded).
//!
//! Queues: a claim takes from each queue this node serves at most its share of the free room
//! (a queue with a limit here, at most what the limit leaves), highest priority first within a
//! queue and the best heads overall; a queue that came back short gets only a probe share until
//! it gives its full share again. Paused queues are left out (the claim checks pauses itself);
//! jobs of a queue paused while they waited in the buffer are given back.
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Shared;
use super::completer::WriteOp;
use super::executor;
use crate::entity::job;
use crate::events::JobEvent;
use crate::state::JobStatus;
use crate::store::{Completion, QueueRoom};

/// The longest a claimed job waits in the buffer for a slot before it is given back.
const MAX_BUFFERED: Duration = Duration::from_millis(500);

/// Claims at most this many jobs per statement.
const CLAIM_BATCH: usize = 100;

/// Scheduled jobs that came due are staged by the claim when one is known due, else at most
/// this often: a claim without staging is one statement less. While jobs wait for a free slot,
/// a scheduled job that comes due joins them at most this late (an idle node sleeps until
/// the exact time and stages then).
const STAGE_EVERY: Duration = Duration::from_millis(10);

/// How old this node's view of paused queues and global limits may get: a pause made on
/// another node stops buffered jobs here within this (claims see it at once).
const QUEUE_STATE_TTL: Duration = Duration::from_millis(500);

pub(crate) async fn run(shared: Arc<Shared>) {
    let concurrency = shared.config.concurrency;
    let mut ready: VecDeque<(Instant, job::Model)> = VecDeque::new();
    // Queues whose last claim came back short.
    let mut dry: HashSet<String> = HashSet::new();
    // When scheduled jobs were last staged, and when the next one is due (if looked up since).
    let mut last_staged: Option<Instant> = None;
    let mut known_due: Option<i64> = None;
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
        refresh_queue_states(&shared).await;
        // Jobs of a queue paused since they were claimed do not start.
        if ready.iter().any(|(_, j)| shared.queue_paused(&j.queue)) {
            let (mut paused, keep): (VecDeque<_>, VecDeque<_>) = ready
                .drain(..)
                .partition(|(_, j)| shared.queue_paused(&j.queue));
            ready = keep;
            give_back(&shared, &mut paused).await;
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
            let queues = queue_rooms(&shared, asked, &dry);
            let now = shared.clock.now();
            shared.set_claiming(Some(now));
            let stage = known_due.is_some_and(|due| due <= now)
                || last_staged.is_none_or(|at| at.elapsed() >= STAGE_EVERY);
            match shared
                .store
                .claim(&shared.node.id, &kinds, &queues, asked, now, stage)
                .await
            {
                Ok(claimed) => {
                    if stage {
                        last_staged = Some(Instant::now());
                        known_due = None;
                    }
                    note_dry(&mut dry, &queues, &claimed.jobs);
                    for (job_id, kind) in claimed.staged {
                        shared.events.send(JobEvent::Status {
                            job_id,
                            kind,
                            status: JobStatus::New,
                            from: Some(JobStatus::Scheduled),
                        });
                    }
                    let any = !claimed.jobs.is_empty();
                    for job in claimed.jobs {
                        shared.take_slot(&job.queue);
                        shared.events.send(JobEvent::Status {
                            job_id: job.id,
                            kind: job.kind.clone(),
                            status: JobStatus::Running,
                            from: Some(JobStatus::New),
                        });
                        // Reachable by aborts and stops while it waits for a slot.
                        shared.registry.register(job.id);
                        ready.push_back((Instant::now(), job));
                    }
                    shared.set_claiming(None);
                    if any {
                        // Start them; refill if the buffer runs low.
                        continue;
                    }
                }
                Err(e) => {
                    // Its jobs, if it took any, are stranded: maintenance gives them back.
                    shared.claim_failed(now);
                    shared.set_claiming(None);
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
                    known_due = Some(due);
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

/// How many jobs of each queue served here this claim may take (the claim takes at most
/// `asked` in all, the best of the queues' heads). `asked` is shared between the
/// queues that had jobs at their last claim ("wet"); a queue that came back short ("dry")
/// gets a small share, enough to notice new jobs, so a node serving many queues claims as much
/// for its one busy queue as a node serving only it. A queue with a limit of its own here gets
/// at most that limit less what is claimed here already.
fn queue_rooms(shared: &Shared, asked: usize, dry: &HashSet<String>) -> Vec<QueueRoom> {
    let states = shared
        .queue_states
        .read()
        .unwrap_or_else(|e| e.into_inner());
    let served: Vec<(String, usize)> = shared
        .served_queues()
        .into_iter()
        .map(|(name, limit)| {
            let room = match limit {
                Some(limit) => limit.saturating_sub(shared.inflight(&name)),
                None => asked,
            };
            (name, room)
        })
        // A queue paused when last read is left out (the claim checks pauses itself; this
        // spares it the look). A resume makes every node read them again at once.
        .filter(|(name, room)| *room > 0 && !states.paused.contains(name))
        .collect();
    let all_dry = served.iter().all(|(name, _)| dry.contains(name));
    let is_dry = |name: &str| !all_dry && dry.contains(name);
    let probe = (asked / 10).max(1);
    let dry_total: usize = served
        .iter()
        .filter(|(name, _)| is_dry(name))
        .map(|(_, room)| (*room).min(probe))
        .sum();
    let wet = served.iter().filter(|(name, _)| !is_dry(name)).count();
    let share = asked.saturating_sub(dry_total).max(1).div_ceil(wet.max(1));
    served
        .into_iter()
        .map(|(name, room)| QueueRoom {
            room: room.min(if is_dry(&name) { probe } else { share }),
            limited: states.limited.contains(&name),
            name,
        })
        .collect()
}

/// After a claim: a queue that gave fewer jobs than asked of it is dry until it gives its
/// full share again.
fn note_dry(dry: &mut HashSet<String>, asked: &[QueueRoom], got: &[job::Model]) {
    for q in asked {
        let n = got.iter().filter(|j| j.queue == q.name).count();
        if n < q.room {
            dry.insert(q.name.clone());
        } else {
            dry.remove(&q.name);
        }
    }
}

/// Reads the queues' shared state when it is half a second old (or was marked changed). A
/// queue whose global limit appeared since is claimed without its lock for at most that long.
async fn refresh_queue_states(shared: &Shared) {
    let fresh = {
        let states = shared
            .queue_states
            .read()
            .unwrap_or_else(|e| e.into_inner());
        states
            .read_at
            .is_some_and(|at| at.elapsed() < QUEUE_STATE_TTL)
    };
    if fresh {
        return;
    }
    match shared.store.queue_rows().await {
        Ok(rows) => {
            let mut states = shared
                .queue_states
                .write()
                .unwrap_or_else(|e| e.into_inner());
            states.read_at = Some(std::time::Instant::now());
            states.paused = rows
                .iter()
                .filter(|q| q.paused)
                .map(|q| q.name.clone())
                .collect();
            states.limited = rows
                .iter()
                .filter(|q| q.global_limit.is_some())
                .map(|q| q.name.clone())
                .collect();
        }
        Err(e) => tracing::warn!("reading the queues' state failed: {e}"),
    }
}

/// Gives claimed jobs that never started back to the queue, their attempt refunded. Each
/// leaves the registry only once its completion is queued (maintenance takes a `running` job
/// of this node that is in neither for stranded).
async fn give_back(shared: &Shared, ready: &mut VecDeque<(Instant, job::Model)>) {
    for (_, job) in ready.drain(..) {
        let completion = Completion::given_back(&job, &shared.node.id, shared.clock.now());
        if shared
            .writer
            .send(WriteOp::Complete(completion))
            .await
            .is_err()
        {
            tracing::error!(job_id = job.id, "completer gone; the job will be rescued");
        }
        shared.registry.remove(job.id);
        shared.release_slot(&job.queue);
    }
}

async fn sleep_or_stop(shared: &Shared, until: Instant) {
    tokio::select! {
        _ = tokio::time::sleep_until(until) => {}
        _ = shared.wake.notified() => {}
        _ = shared.stopping.cancelled() => {}
    }
}
