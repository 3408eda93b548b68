//! The runtime: a few small tasks with one job each, stopped together by one shutdown signal.
//!
//! - [`scheduler`] sleeps until the next job is due (or it is woken), then claims due jobs in a
//!   batch, as many as there are free slots;
//! - [`executor`] runs one claimed job: its handler in its own task, with timeout, abort and
//!   panic handling, and turns the outcome into a completion;
//! - [`completer`] writes reports (log lines, progress, result rows) and completions in batched
//!   transactions, then publishes them as events;
//! - [`maintenance`] keeps this node's heartbeat, passes on aborts asked on other nodes, and
//!   rescues jobs whose worker died;
//! - [`listener`] wakes the scheduler when another process inserts a job, and stops a job
//!   aborted on another node at once (PostgreSQL `LISTEN`, SQLite `data_version`);
//! - [`recurring`] fires the ticks of recurring schedules, once each across all nodes;
//! - the [`lease`] watchdog stops this node's jobs if its heartbeat could not be renewed in
//!   time, before any other node may take them over.
pub(crate) mod completer;
pub(crate) mod executor;
pub(crate) mod lease;
pub(crate) mod listener;
pub(crate) mod maintenance;
pub(crate) mod recurring;
pub(crate) mod registry;
pub(crate) mod scheduler;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::entity::node;
use crate::events::Events;
use crate::kind::JobKind;
use crate::secrets::Keyring;
use crate::store::Store;
use completer::WriteOp;
use registry::Registry;

/// About how much work (the slots' time) the buffer of claimed jobs holds while jobs are short.
const BUFFERED_WORK: Duration = Duration::from_millis(25);

/// The most claimed jobs that wait here for a slot (one claim's worth).
const MAX_BUFFER: usize = 100;

/// How the runtime behaves. Every field has a default suited to production.
#[derive(Debug, Clone)]
pub struct Config {
    /// How many jobs run at once on this node.
    pub concurrency: usize,
    /// How long an aborted (or timed-out) handler has to stop by itself before it is stopped by
    /// force.
    pub grace_period: Duration,
    /// How long a graceful shutdown waits for running jobs before interrupting them.
    pub drain_timeout: Duration,
    /// The longest the scheduler sleeps without looking at the database. Jobs inserted by
    /// another process, or inside a caller's transaction, wake it at once (PostgreSQL
    /// `LISTEN`/`NOTIFY`, SQLite `data_version`); this is the fallback when a wake-up is missed.
    pub poll_interval: Duration,
    /// How often this node proves it is alive and looks for lost jobs.
    pub heartbeat_interval: Duration,
    /// A node silent for this long is considered dead and its jobs are rescued.
    pub node_timeout: Duration,
    /// How long reports may wait before they are written.
    pub flush_interval: Duration,
    /// How long finished jobs and old records are kept (see [`crate::retention`]).
    pub retention: crate::retention::Retention,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            concurrency: 8,
            grace_period: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(25),
            poll_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(5),
            node_timeout: Duration::from_secs(30),
            flush_interval: Duration::from_millis(100),
            retention: crate::retention::Retention::default(),
        }
    }
}

/// What every part of the worker shares.
pub(crate) struct Shared {
    pub store: Store,
    pub events: Events,
    pub config: Config,
    pub node: node::Model,
    pub kinds: RwLock<HashMap<String, JobKind>>,
    /// Encrypts secret argument fields at rest; `None`: they are stored in plain text.
    pub keyring: Option<Keyring>,
    pub registry: Registry,
    /// This node's clock, in step with the database's.
    pub clock: crate::clock::Clock,
    /// This node's lease on the jobs it runs.
    pub lease: lease::Lease,
    /// Completions the completer could not store, with why: maintenance ends them plainly.
    pub unwritten: Mutex<Vec<(crate::store::Completion, String)>>,
    /// How long jobs here take, lately (a moving average, microseconds): the scheduler
    /// buffers claimed jobs only while they are short.
    pub recent_job_us: std::sync::atomic::AtomicU64,
    /// Until when (ms, this process's clock) the SQLite listener wakes the scheduler on this
    /// process's own commits too: a job inserted in a caller's transaction on the engine's
    /// connection ([`crate::Client::insert_in`]) exists only once that commits, which no other
    /// signal reports.
    pub own_commits_wake_until: std::sync::atomic::AtomicI64,
    /// Reports and completions go to the completer through here. Bounded: a handler reporting
    /// faster than the database takes it waits.
    pub writer: mpsc::Sender<WriteOp>,
    pub writer_rx: Mutex<Option<mpsc::Receiver<WriteOp>>>,
    /// Wakes the scheduler: a job was added or changed, or a slot freed.
    pub wake: Notify,
    pub slots: Arc<Semaphore>,
    /// Cancelled when the worker starts shutting down: stop claiming.
    pub stopping: CancellationToken,
    pub tasks: Mutex<Tasks>,
    /// Recurring schedules defined in code, and the task that fires their ticks.
    pub recurring: crate::recurring::State,
    /// Queues configured on this node ([`crate::WorkerBuilder::queue`]).
    pub queues: HashMap<String, crate::Queue>,
    /// Jobs claimed here and not yet completed (running or buffered), per queue.
    pub inflight: Mutex<HashMap<String, usize>>,
    /// What this node last read of the queues' shared state (paused, global limits).
    pub queue_states: RwLock<QueueStates>,
    /// When the claim in flight began (this process's clock), `None` between claims: its jobs
    /// are `running` in the database before they are in the registry, so maintenance does not
    /// take them for stranded.
    pub claiming_since: Mutex<Option<i64>>,
    /// The stamps (`started_at`) of the latest claims that failed here: a job stranded with one
    /// of them never ran, and goes back with its attempt refunded.
    pub failed_claims: Mutex<std::collections::VecDeque<i64>>,
    /// Changes asked through the admin, run to their end even if the request goes away:
    /// shutdown waits for them (at most the drain timeout).
    pub requests: tokio_util::task::TaskTracker,
}

/// The queues' shared state as this node last read it: the claim checks pauses itself; this
/// tells the scheduler which buffered jobs not to start and which queues' claims to lock.
#[derive(Debug, Default)]
pub(crate) struct QueueStates {
    /// When it was read; `None`: read it at the next chance.
    pub read_at: Option<std::time::Instant>,
    pub paused: std::collections::HashSet<String>,
    pub limited: std::collections::HashSet<String>,
}

/// The runtime's tasks, once started.
#[derive(Default)]
pub(crate) struct Tasks {
    pub started: bool,
    pub scheduler: Option<JoinHandle<()>>,
    pub completer: Option<JoinHandle<()>>,
    pub maintenance: Option<JoinHandle<()>>,
    pub lease: Option<JoinHandle<()>>,
    pub listener: Option<JoinHandle<()>>,
    pub maintenance_stop: CancellationToken,
}

impl Shared {
    /// Adds one job's duration to the moving average.
    pub fn note_duration(&self, d: Duration) {
        use std::sync::atomic::Ordering;
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let old = self.recent_job_us.load(Ordering::Relaxed);
        let new = if old == u64::MAX {
            us
        } else {
            old - old / 8 + us / 8
        };
        self.recent_job_us.store(new, Ordering::Relaxed);
    }

    /// Jobs waited `d` in the buffer for a slot: count them as at least that long.
    pub fn note_long_wait(&self, d: Duration) {
        use std::sync::atomic::Ordering;
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.recent_job_us.fetch_max(us, Ordering::Relaxed);
    }

    /// How many claimed jobs may wait here for a slot: none while jobs are long (they would
    /// be better started by another node); while they take under 50 ms, about what the slots
    /// finish in [`BUFFERED_WORK`] (at least `concurrency` or 16, at most [`MAX_BUFFER`]): the
    /// shorter the jobs, the larger the claims, so a deep backlog of short jobs costs few
    /// statements per job, and no buffered job waits long.
    pub fn buffer_size(&self) -> usize {
        let us = self
            .recent_job_us
            .load(std::sync::atomic::Ordering::Relaxed);
        if us >= 50_000 {
            return 0;
        }
        let concurrency = self.config.concurrency;
        let floor = concurrency.max(16);
        let fits =
            concurrency.saturating_mul(BUFFERED_WORK.as_micros() as usize) / (us.max(1) as usize);
        fits.clamp(floor, MAX_BUFFER.max(floor))
    }

    pub fn kind(&self, name: &str) -> Option<JobKind> {
        self.kinds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The queues this node serves, with how many of each may be held here at once (running
    /// or waiting for a slot; `None`: no limit of its own, it shares the node's slots): the
    /// ones configured, and those of the kinds it has handlers for.
    pub fn served_queues(&self) -> Vec<(String, Option<usize>)> {
        let mut out: Vec<(String, Option<usize>)> = self
            .queues
            .values()
            .map(|q| (q.name.clone(), q.concurrency))
            .collect();
        let kinds = self.kinds.read().unwrap_or_else(|e| e.into_inner());
        for kind in kinds.values().filter(|k| k.has_handler()) {
            if !out.iter().any(|(name, _)| *name == kind.queue) {
                out.push((kind.queue.clone(), None));
            }
        }
        out.sort();
        out
    }

    /// The kinds this node has handlers for, as the node's row records them (a JSON array):
    /// the admin tells from it which waiting jobs no node claims.
    pub fn kinds_json(&self) -> String {
        serde_json::Value::from(self.kind_names()).to_string()
    }

    /// The queues served here as the node's row records them: `{"name": how many run here at
    /// once}`.
    pub fn queues_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .served_queues()
            .into_iter()
            .map(|(name, n)| {
                let n = n
                    .unwrap_or(self.config.concurrency)
                    .min(self.config.concurrency);
                (name, n.into())
            })
            .collect();
        serde_json::Value::Object(map).to_string()
    }

    /// How many jobs of `queue` are claimed here and not completed.
    pub fn inflight(&self, queue: &str) -> usize {
        let map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        map.get(queue).copied().unwrap_or(0)
    }

    /// A job of `queue` was claimed here.
    pub fn take_slot(&self, queue: &str) {
        let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(queue.to_owned()).or_default() += 1;
    }

    /// Marks a claim in flight since `now` (`None`: its jobs, if any, are registered).
    pub fn set_claiming(&self, now: Option<i64>) {
        *self
            .claiming_since
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = now;
    }

    /// The claim stamped `now` failed here: whatever it took never reached this node.
    pub fn claim_failed(&self, now: i64) {
        let mut failed = self.failed_claims.lock().unwrap_or_else(|e| e.into_inner());
        if failed.len() == 64 {
            failed.pop_front();
        }
        failed.push_back(now);
    }

    /// A job of `queue` claimed here was completed or given back.
    pub fn release_slot(&self, queue: &str) {
        let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(queue) {
            *n = n.saturating_sub(1);
        }
    }

    /// Whether `queue` was paused when this node last looked.
    pub fn queue_paused(&self, queue: &str) -> bool {
        let states = self.queue_states.read().unwrap_or_else(|e| e.into_inner());
        states.paused.contains(queue)
    }

    /// Makes the scheduler read the queues' state again before it next starts a job.
    pub fn queues_changed(&self) {
        let mut states = self.queue_states.write().unwrap_or_else(|e| e.into_inner());
        states.read_at = None;
        drop(states);
        self.wake.notify_one();
    }

    pub fn kind_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .kinds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|k| k.has_handler())
            .map(|k| k.name.clone())
            .collect();
        names.sort();
        names
    }
}
