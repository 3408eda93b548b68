//! The worker: the runtime of one node. Built from the database, it registers handlers and, once
//! started, claims, runs and completes jobs until shut down. Everything else a worker can do is
//! its [`Client`]'s (it dereferences to it).
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::clock::now_ms;
use crate::context::JobContext;
use crate::entity::node;
use crate::error::Result;
use crate::events::Events;
use crate::job_args::JobArgs;
use crate::kind::JobKind;
use crate::runtime::completer::WriteOp;
use crate::runtime::registry::{Registry, StopReason};
use crate::runtime::{self, Config, Shared, Tasks};
use crate::secrets::Keyring;
use crate::store::{self, Store};

/// Builds a [`Worker`].
///
/// ```no_run
/// # async fn demo() -> nightshift::Result<()> {
/// let worker = nightshift::Worker::builder()
///     .database_url("sqlite://nightshift.db?mode=rwc")
///     .concurrency(8)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct WorkerBuilder {
    url: Option<String>,
    connection: Option<DatabaseConnection>,
    config: Config,
    clock_skew: i64,
    keyring: Option<Keyring>,
    queues: std::collections::HashMap<String, crate::Queue>,
}

impl WorkerBuilder {
    /// The database to use: `sqlite://…` or `postgres://…`. Default:
    /// `sqlite://nightshift.db?mode=rwc`.
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Use a connection the host app already has (it must allow the migrations to run).
    pub fn connection(mut self, db: DatabaseConnection) -> Self {
        self.connection = Some(db);
        self
    }

    /// How many jobs run at once on this node (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// How long an aborted handler may take to stop before it is stopped by force.
    pub fn grace_period(mut self, d: Duration) -> Self {
        self.config.grace_period = d;
        self
    }

    /// How long a graceful shutdown waits for running jobs.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.config.drain_timeout = d;
        self
    }

    /// The longest the scheduler sleeps without looking at the database.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.config.poll_interval = d;
        self
    }

    /// How often the node sends its heartbeat and looks for lost jobs.
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.config.heartbeat_interval = d;
        self
    }

    /// How long finished jobs, audit entries and throttle counters are kept (default: done
    /// and cancelled jobs 14 days, failed 90, audit a year); [`crate::Retention::forever`]
    /// keeps everything.
    pub fn retention(mut self, r: crate::retention::Retention) -> Self {
        self.config.retention = r;
        self
    }

    /// After how long without a heartbeat a node is dead and its jobs are rescued.
    pub fn node_timeout(mut self, d: Duration) -> Self {
        self.config.node_timeout = d;
        self
    }

    /// Test hook: pretend this host's clock is `ms` milliseconds off (negative: slow). The
    /// node corrects for it from the database's clock at its first heartbeat, which is the
    /// point.
    #[doc(hidden)]
    pub fn clock_skew_for_tests(mut self, ms: i64) -> Self {
        self.clock_skew = ms;
        self
    }

    /// Serves `queue` on this node with its limits ([`crate::Queue`]); given twice, the
    /// second wins. Queues of the kinds registered here are served without this, their jobs
    /// sharing the node's slots.
    ///
    /// ```no_run
    /// # async fn demo() -> nightshift::Result<()> {
    /// use nightshift::Queue;
    /// let worker = nightshift::Worker::builder()
    ///     .queue(Queue::new("reports").concurrency(2))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn queue(mut self, queue: crate::Queue) -> Self {
        self.queues.insert(queue.name.clone(), queue);
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Encrypts kinds' secret argument fields at rest with `keyring` (a [`Keyring`], or one
    /// [`crate::secrets::SecretKey`]): its primary key encrypts new values, its older keys still
    /// decrypt. Handlers get the plain values; every node of one database needs the same keys.
    /// Without a key, secrets are stored in plain text (and masked wherever they are shown).
    ///
    /// ```no_run
    /// # async fn demo() -> anyhow::Result<()> {
    /// use nightshift::secrets::Keyring;
    /// let keyring = Keyring::from_file("/etc/nightshift/secret.key")?;
    /// let worker = nightshift::Worker::builder()
    ///     .database_url("sqlite://nightshift.db?mode=rwc")
    ///     .secret_key(keyring)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn secret_key(mut self, keyring: impl Into<Keyring>) -> Self {
        self.keyring = Some(keyring.into());
        self
    }

    /// Connects, applies migrations, and returns a worker that is not yet running jobs (see
    /// [`Worker::start`]).
    pub async fn build(self) -> Result<Worker> {
        for name in self.queues.keys() {
            crate::queue::check_name(name)?;
        }
        let db = match self.connection {
            Some(db) => {
                use migration::MigratorTrait;
                migration::Migrator::up(&db, None).await?;
                db
            }
            None => {
                let url = self
                    .url
                    .unwrap_or_else(|| crate::DEFAULT_DATABASE_URL.to_owned());
                store::connect(&url).await?
            }
        };
        if self.keyring.is_none() {
            tracing::warn!(
                "no secret key configured: secret job arguments are stored in plain text; \
                 configure one with WorkerBuilder::secret_key (nightshift binary: \
                 NIGHTSHIFT_SECRET_KEY or --secret-key-file)"
            );
        }
        let (tx, rx) = mpsc::channel(10_000);
        let hostname = gethostname::gethostname().to_string_lossy().into_owned();
        let pid = std::process::id() as i64;
        let now = now_ms();
        let node = node::Model {
            id: format!("{hostname}-{pid}-{:04x}", fastrand::u16(..)),
            hostname: runtime::maintenance::process_scope(&hostname),
            pid,
            started_at: now,
            heartbeat_at: now,
            host: hostname.clone(),
            boot_id: runtime::maintenance::boot_id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            queues: None,
            kinds: None,
        };
        let lease =
            runtime::lease::Lease::new(self.config.node_timeout, self.config.heartbeat_interval);
        let shared = Shared {
            store: Store::new(db),
            events: Events::new(4096),
            slots: Arc::new(Semaphore::new(self.config.concurrency)),
            config: self.config,
            node,
            kinds: RwLock::default(),
            keyring: self.keyring,
            registry: Registry::default(),
            clock: crate::clock::Clock::new(self.clock_skew),
            lease,
            unwritten: Mutex::new(Vec::new()),
            // Unknown until jobs have run: no buffering before then.
            recent_job_us: std::sync::atomic::AtomicU64::new(u64::MAX),
            own_commits_wake_until: std::sync::atomic::AtomicI64::new(0),
            writer: tx,
            writer_rx: Mutex::new(Some(rx)),
            wake: Notify::new(),
            stopping: CancellationToken::new(),
            tasks: Mutex::new(Tasks::default()),
            recurring: Default::default(),
            queues: self.queues,
            inflight: Mutex::default(),
            queue_states: RwLock::default(),
            claiming_since: Mutex::new(None),
            failed_claims: Mutex::default(),
            requests: tokio_util::task::TaskTracker::new(),
        };
        Ok(Worker {
            client: Client {
                shared: Arc::new(shared),
            },
        })
    }
}

/// The runtime of one node: registers handlers, then [`Worker::start`] claims and runs jobs
/// until [`Worker::shutdown`]. It dereferences to its [`Client`] (enqueue, cancel, query …);
/// [`Worker::client`] hands out a clone for the rest of the app. Cheap to clone; every clone
/// is the same worker.
///
/// ```no_run
/// use nightshift::{JobArgs, JobContext, Worker};
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)] struct NightlyReport {}
/// # impl JobArgs for NightlyReport { const KIND: &'static str = "nightly_report"; }
/// # async fn handler(_: NightlyReport, _: JobContext) -> anyhow::Result<()> { Ok(()) }
/// # async fn demo() -> nightshift::Result<()> {
/// let worker = Worker::builder().build().await?;
/// worker.handle(handler)?;
/// worker.start().await?;
/// let id = worker.enqueue(NightlyReport {}).await?;
/// // …
/// worker.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Worker {
    client: Client,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("node", &self.shared.node.id)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Worker {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl From<Worker> for Client {
    fn from(w: Worker) -> Client {
        w.client
    }
}

impl Worker {
    /// Starts building a worker.
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder::default()
    }

    /// The client of this worker, for the rest of the app (the admin router takes one).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Registers the handler of a typed job (its kind is `J::KIND`, configured by
    /// `J::configure`).
    pub fn handle<J, F, Fut>(&self, handler: F) -> Result<()>
    where
        J: JobArgs,
        F: Fn(J, JobContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.register(JobKind::of(handler))
    }

    /// Starts the runtime on this node: rescues lost jobs, then schedules and runs jobs until
    /// [`Worker::shutdown`]. Calling it twice does nothing.
    pub async fn start(&self) -> Result<()> {
        if self
            .shared
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .started
        {
            return Ok(());
        }
        // Heartbeat and rescue before anything runs, so jobs a crashed process left behind are
        // found at this start. A failure here leaves the worker startable again.
        runtime::maintenance::once(
            &self.shared,
            runtime::maintenance::Round {
                first: true,
                reap_silent: true,
            },
            &mut Default::default(),
        )
        .await?;
        // Schedules defined in code: created if missing, checked against their kinds.
        crate::recurring::sync_code(&self.client).await?;
        // Global limits set in code: the last node started sets them.
        let limits: Vec<(String, Option<u32>)> = self
            .shared
            .queues
            .values()
            .map(|q| (q.name.clone(), q.global_limit))
            .collect();
        self.shared
            .store
            .set_global_limits(&limits, self.shared.clock.now())
            .await?;
        let rx = {
            let mut tasks = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
            if tasks.started {
                return Ok(());
            }
            tasks.started = true;
            self.shared
                .writer_rx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
        };
        let Some(rx) = rx else { return Ok(()) };
        let completer = tokio::spawn(runtime::completer::run(self.shared.clone(), rx));
        let stop = CancellationToken::new();
        let maintenance =
            tokio::spawn(runtime::maintenance::run(self.shared.clone(), stop.clone()));
        // Its own task, not a maintenance round: a long prune must not delay the heartbeat.
        // It ends with maintenance (between two batches at the latest).
        tokio::spawn(crate::retention::run(self.shared.clone(), stop.clone()));
        let lease = tokio::spawn(runtime::maintenance::watch_lease(
            self.shared.clone(),
            stop.clone(),
        ));
        let scheduler = tokio::spawn(runtime::scheduler::run(self.shared.clone()));
        crate::recurring::spawn(&self.shared);
        // Stopped with maintenance: aborts asked during the drain still reach the jobs here.
        let listener = tokio::spawn(runtime::listener::run(self.shared.clone(), stop.clone()));
        let mut tasks = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.listener = Some(listener);
        tasks.lease = Some(lease);
        tasks.completer = Some(completer);
        tasks.maintenance = Some(maintenance);
        tasks.scheduler = Some(scheduler);
        tasks.maintenance_stop = stop;
        tracing::info!(node = %self.shared.node.id, concurrency = self.shared.config.concurrency, "worker started");
        Ok(())
    }

    /// Stops gracefully: stop claiming; let running jobs finish within the drain timeout; then
    /// tell the rest to stop, wait the grace period, stop them by force, and put them back to
    /// `new` without using an attempt; write everything; leave.
    pub async fn shutdown(&self) {
        let (scheduler, completer, maintenance, stop) = {
            let mut tasks = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
            (
                tasks.scheduler.take(),
                tasks.completer.take(),
                tasks.maintenance.take(),
                tasks.maintenance_stop.clone(),
            )
        };
        self.shared.stopping.cancel();
        if let Some(s) = scheduler {
            let _ = s.await;
        }
        crate::recurring::stopped(&self.shared).await;
        // One drain for both: what operators asked for (a bulk action between batches) and the
        // running jobs, which end meanwhile; a container's stop timeout counts once.
        let deadline = tokio::time::Instant::now() + self.shared.config.drain_timeout;
        self.shared.requests.close();
        if tokio::time::timeout_at(deadline, self.shared.requests.wait())
            .await
            .is_err()
        {
            tracing::warn!("changes asked through the admin still running after the drain timeout");
        }
        let all = self.shared.config.concurrency as u32;
        let slots = self.shared.slots.clone();
        let drained = tokio::time::timeout_at(deadline, slots.acquire_many(all))
            .await
            .is_ok();
        if !drained {
            let n = self.shared.registry.len();
            tracing::warn!("{n} job(s) still running after the drain timeout; interrupting them");
            self.shared.registry.stop_all(StopReason::Shutdown);
            let wait = self.shared.config.grace_period + Duration::from_secs(1);
            let _ = tokio::time::timeout(wait, slots.acquire_many(all)).await;
        }
        stop.cancel();
        if let Some(m) = maintenance {
            let _ = m.await;
        }
        let lease = self
            .shared
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lease
            .take();
        if let Some(l) = lease {
            let _ = l.await;
        }
        let listener = self
            .shared
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .listener
            .take();
        if let Some(l) = listener {
            let _ = l.await;
        }
        if let Some(c) = completer {
            let (tx, rx) = oneshot::channel();
            if self.shared.writer.send(WriteOp::Stop(tx)).await.is_ok() {
                let _ = rx.await;
            }
            let _ = c.await;
        }
        if let Err(e) = self.shared.store.remove_node(&self.shared.node.id).await {
            tracing::warn!("could not remove this node's row: {e}");
        }
        tracing::info!(node = %self.shared.node.id, "worker stopped");
    }
}
