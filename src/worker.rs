//! The public façade: build a worker, register job kinds, enqueue and manage jobs, start and stop
//! the runtime.
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::clock::{now_ms, to_ms};
use crate::context::ResultCell;
use crate::entity::{job_attempt, job_log, node};
use crate::error::{Error, Result};
use crate::events::{Events, JobEvent};
use crate::job::Job;
use crate::kind::JobKind;
use crate::runtime::completer::WriteOp;
use crate::runtime::registry::{Registry, StopReason};
use crate::runtime::{self, Config, Shared, Tasks};
use crate::secrets::Keyring;
use crate::state::JobStatus;
use crate::store::{self, JobInsert, Store};

/// The largest arguments accepted, serialized.
pub const MAX_ARGS_BYTES: usize = 1024 * 1024;

/// A job to create: a kind, its arguments, and optionally a time and an author.
///
/// ```
/// # fn demo() -> nightshift::Result<()> {
/// use nightshift::NewJob;
/// let job = NewJob::new("Send Newsletter", &serde_json::json!({"subject": "Hi"}))?
///     .schedule_at(chrono::Utc::now() + chrono::Duration::hours(1))
///     .created_by("alice");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NewJob {
    kind: String,
    args: Value,
    schedule_at: Option<DateTime<Utc>>,
    created_by: Option<String>,
}

impl NewJob {
    /// A job of `kind` with `args` (any `Serialize` value matching the kind's argument type).
    pub fn new(kind: impl Into<String>, args: &impl Serialize) -> Result<Self> {
        let args = serde_json::to_value(args).map_err(|e| Error::InvalidArgs {
            field: None,
            message: e.to_string(),
        })?;
        Ok(Self::from_value(kind, args))
    }

    /// A job of `kind` with arguments already as JSON.
    pub fn from_value(kind: impl Into<String>, args: Value) -> Self {
        NewJob {
            kind: kind.into(),
            args,
            schedule_at: None,
            created_by: None,
        }
    }

    /// Run at `at` rather than now (the kind must be schedulable). A time in the past means now.
    pub fn schedule_at(mut self, at: DateTime<Utc>) -> Self {
        self.schedule_at = Some(at);
        self
    }

    /// Record who created it.
    pub fn created_by(mut self, who: impl Into<String>) -> Self {
        self.created_by = Some(who.into());
        self
    }
}

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
            writer: tx,
            writer_rx: Mutex::new(Some(rx)),
            wake: Notify::new(),
            stopping: CancellationToken::new(),
            tasks: Mutex::new(Tasks::default()),
        };
        Ok(Worker {
            shared: Arc::new(shared),
        })
    }
}

/// The handle to Nightshift: register kinds, create and manage jobs, run the runtime. Cheap to
/// clone; every clone is the same worker.
///
/// ```no_run
/// use nightshift::{JobContext, JobKind, Worker};
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)] struct Args {}
/// # async fn handler(_: Args, _: JobContext) -> anyhow::Result<()> { Ok(()) }
/// # async fn demo() -> nightshift::Result<()> {
/// let worker = Worker::builder().build().await?;
/// worker.register(JobKind::new("Nightly Report", handler))?;
/// worker.start().await?;
/// let id = worker.enqueue("Nightly Report", &Args {}).await?;
/// // …
/// worker.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Worker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("node", &self.shared.node.id)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts building a worker.
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder::default()
    }

    /// Registers a job kind. Names are unique.
    pub fn register(&self, kind: JobKind) -> Result<()> {
        let mut kinds = self.shared.kinds.write().unwrap_or_else(|e| e.into_inner());
        if kinds.contains_key(&kind.name) {
            return Err(Error::DuplicateKind(kind.name));
        }
        kinds.insert(kind.name.clone(), kind);
        drop(kinds);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Every registered kind, sorted by group then name.
    pub fn kinds(&self) -> Vec<JobKind> {
        let mut kinds: Vec<JobKind> = self
            .shared
            .kinds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        kinds.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
        kinds
    }

    /// One registered kind.
    pub fn kind(&self, name: &str) -> Option<JobKind> {
        self.shared.kind(name)
    }

    /// The database handle (for the admin's queries and the caller's own transactions).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.shared.node.id
    }

    /// Subscribes to every job event (state changes, progress, log lines, result rows).
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.shared.events.subscribe()
    }

    /// Enqueues a job to run now; returns its id.
    pub async fn enqueue(&self, kind: &str, args: &impl Serialize) -> Result<i64> {
        Ok(self.insert(NewJob::new(kind, args)?).await?.id)
    }

    /// Schedules a job to run at `at` (a time in the past means now); returns its id.
    pub async fn schedule(
        &self,
        kind: &str,
        args: &impl Serialize,
        at: DateTime<Utc>,
    ) -> Result<i64> {
        Ok(self
            .insert(NewJob::new(kind, args)?.schedule_at(at))
            .await?
            .id)
    }

    /// Creates one job.
    pub async fn insert(&self, job: NewJob) -> Result<Job> {
        let mut jobs = self.insert_many(vec![job]).await?;
        Ok(jobs.remove(0))
    }

    /// Creates many jobs in one transaction: all or none.
    pub async fn insert_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Job>> {
        let rows = self.prepare(jobs)?;
        self.sync_clock().await;
        let db = self.shared.store.connection();
        let inserted = store::retry_busy(|| async {
            let tx = db.begin().await?;
            let out = self
                .shared
                .store
                .insert_jobs(&tx, rows.clone(), self.shared.clock.now())
                .await?;
            tx.commit().await?;
            Ok(out)
        })
        .await
        .map_err(|e| self.explain(e))?;
        self.shared.wake.notify_one();
        self.announce(inserted)
    }

    /// Creates a job inside the caller's transaction (or on any connection): the job exists only
    /// if that transaction commits. Running workers see it as soon as it commits (PostgreSQL:
    /// a notification sent in the transaction, delivered on commit; SQLite: within about 20 ms
    /// of the commit), and within `poll_interval` at the latest.
    ///
    /// ```no_run
    /// # async fn demo(worker: nightshift::Worker) -> nightshift::Result<()> {
    /// use sea_orm::TransactionTrait;
    /// let tx = worker.store().connection().begin().await?;
    /// // … the app's own writes on `tx` …
    /// worker.insert_in(&tx, nightshift::NewJob::new("Ping", &serde_json::json!({}))?).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn insert_in<C: ConnectionTrait>(&self, conn: &C, job: NewJob) -> Result<Job> {
        let rows = self.prepare(vec![job])?;
        self.sync_clock().await;
        let inserted = self
            .shared
            .store
            .insert_jobs(conn, rows, self.shared.clock.now())
            .await?;
        let mut jobs = self.to_jobs(inserted)?;
        Ok(jobs.remove(0))
    }

    /// Wakes the scheduler to look for due jobs now.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// On SQLite the engine writes through one connection: a caller's transaction open on it
    /// makes a call that needs it wait for itself. Say so rather than "pool timed out".
    fn explain(&self, e: Error) -> Error {
        match e {
            Error::Database(sea_orm::DbErr::ConnectionAcquire(_))
                if self.shared.store.backend() == sea_orm::DbBackend::Sqlite =>
            {
                Error::ConnectionHeld
            }
            other => other,
        }
    }

    /// Keeps this process's clock in step with the database's even when it only enqueues (a
    /// started runtime does it at every heartbeat): a host clock that is off would otherwise
    /// delay or advance every job it inserts to run "now".
    async fn sync_clock(&self) {
        if self.shared.clock.is_fresh(60_000) {
            return;
        }
        let sent = self.shared.clock.local();
        match self.shared.store.db_now().await {
            Ok(db_now) => {
                let received = self.shared.clock.local();
                if received - sent < 250 {
                    self.shared.clock.learn(db_now, sent, received);
                }
            }
            Err(e) => tracing::debug!("could not read the database's clock: {e}"),
        }
    }

    fn prepare(&self, jobs: Vec<NewJob>) -> Result<Vec<JobInsert>> {
        jobs.into_iter()
            .map(|j| {
                let kind = self
                    .kind(&j.kind)
                    .ok_or_else(|| Error::UnknownKind(j.kind.clone()))?;
                if j.schedule_at.is_some() && !kind.schedulable {
                    return Err(Error::NotSchedulable(kind.name));
                }
                let (args, search) = self.seal_args(&kind, j.args)?;
                Ok(JobInsert {
                    kind: kind.name.clone(),
                    queue: kind.queue.clone(),
                    search,
                    args,
                    max_attempts: kind.max_attempts as i32,
                    schedule_at: j.schedule_at.map(to_ms),
                    created_by: j.created_by.map(crate::text::scrub_nul),
                })
            })
            .collect()
    }

    /// Validates arguments (secret fields decrypted), then returns them as stored (secret fields
    /// encrypted when a key is configured) and the masked copy that search looks in.
    fn seal_args(&self, kind: &JobKind, args: Value) -> Result<(String, String)> {
        let keyring = self.shared.keyring.as_ref();
        let plain = match keyring {
            Some(k) => crate::secrets::open(Some(k), &kind.secrets, args).map_err(secret_error)?,
            None => args,
        };
        refuse_nul(&plain)?;
        kind.validate(&plain)?;
        let search = kind.redact(&plain).to_string();
        let stored = match keyring {
            Some(k) => k
                .encrypt_secrets(&plain, &kind.secrets)
                .map_err(secret_error)?,
            None => plain,
        };
        Ok((check_size(&stored)?, search))
    }

    fn to_jobs(&self, models: Vec<crate::entity::job::Model>) -> Result<Vec<Job>> {
        models
            .into_iter()
            .map(|m| {
                let kind = self.kind(&m.kind);
                Job::from_model(m, kind.as_ref())
            })
            .collect()
    }

    fn announce(&self, models: Vec<crate::entity::job::Model>) -> Result<Vec<Job>> {
        let jobs = self.to_jobs(models)?;
        for j in &jobs {
            self.emit_status(j, None);
        }
        Ok(jobs)
    }

    fn emit_status(&self, job: &Job, from: Option<JobStatus>) {
        self.shared.events.send(JobEvent::Status {
            job_id: job.id,
            kind: job.job.clone(),
            status: job.status,
            from,
        });
    }

    /// One job.
    pub async fn job(&self, id: i64) -> Result<Job> {
        let m = self.shared.store.job(id).await?;
        let kind = self.kind(&m.kind);
        Job::from_model(m, kind.as_ref())
    }

    /// A job's newest `limit` log lines, oldest first.
    pub async fn logs(&self, id: i64, limit: u64) -> Result<Vec<job_log::Model>> {
        self.shared.store.logs(id, limit).await
    }

    /// A job's results table.
    pub async fn results(&self, id: i64) -> Result<Vec<Vec<ResultCell>>> {
        self.shared.store.results(id).await
    }

    /// One page of the results of a job's latest reporting attempt (`page` from 0).
    pub async fn results_page(
        &self,
        id: i64,
        page: u64,
        per_page: u64,
    ) -> Result<Vec<Vec<ResultCell>>> {
        self.shared
            .store
            .results_page(id, page * per_page, per_page)
            .await
    }

    /// How a job's result rows divide among its attempts.
    pub async fn result_summary(&self, id: i64) -> Result<store::ResultSummary> {
        self.shared.store.result_summary(id).await
    }

    /// A job's attempts.
    pub async fn attempts(&self, id: i64) -> Result<Vec<job_attempt::Model>> {
        self.shared.store.attempts(id).await
    }

    /// Cancels a `new` or `scheduled` job. Anything else is refused with
    /// [`Error::InvalidState`] and left unchanged.
    pub async fn cancel(&self, id: i64) -> Result<Job> {
        let m = self
            .shared
            .store
            .cancel(id, self.shared.clock.now())
            .await?;
        let job = self.to_jobs(vec![m])?.remove(0);
        self.emit_status(&job, Some(JobStatus::New));
        self.shared.wake.notify_one();
        Ok(job)
    }

    /// Replaces a waiting job's arguments and schedule time (`None`: run now). Secret fields
    /// left as the mask (or empty) keep their stored value.
    pub async fn update(
        &self,
        id: i64,
        args: Value,
        schedule_at: Option<DateTime<Utc>>,
    ) -> Result<Job> {
        let current = self.shared.store.job(id).await?;
        let kind = self
            .kind(&current.kind)
            .ok_or_else(|| Error::UnknownKind(current.kind.clone()))?;
        if schedule_at.is_some() && !kind.schedulable {
            return Err(Error::NotSchedulable(kind.name));
        }
        let old: Value = serde_json::from_str(&current.args).unwrap_or(Value::Null);
        let args = keep_secrets(&kind, &old, args);
        let (args, search) = self.seal_args(&kind, args)?;
        let m = self
            .shared
            .store
            .update_waiting(
                id,
                args,
                search,
                schedule_at.map(to_ms),
                self.shared.clock.now(),
            )
            .await?;
        let job = self.to_jobs(vec![m])?.remove(0);
        self.emit_status(&job, current.status.parse().ok());
        self.shared.wake.notify_one();
        Ok(job)
    }

    /// Aborts a running job: marks it `aborting` and tells its handler to stop; a handler that
    /// has not stopped after the grace period is stopped by force. The job ends `killed` and its
    /// log says who aborted it and when. `by` names the operator.
    pub async fn abort(&self, id: i64, by: &str) -> Result<Job> {
        let by = &crate::text::scrub_nul(by.to_owned());
        let now = now_ms();
        let m = self.shared.store.request_abort(id, by, now).await?;
        // Running here: tell it now. Elsewhere: its node's maintenance sees `aborting`.
        self.shared.registry.stop(
            id,
            StopReason::Abort {
                by: by.to_owned(),
                at: now,
            },
        );
        let job = self.to_jobs(vec![m])?.remove(0);
        self.emit_status(&job, Some(JobStatus::Running));
        Ok(job)
    }

    /// Creates a new job with the same kind and arguments as `id`.
    pub async fn rerun(&self, id: i64, by: Option<&str>) -> Result<Job> {
        let m = self.shared.store.job(id).await?;
        let args: Value =
            serde_json::from_str(&m.args).map_err(|e| Error::Corrupt(e.to_string()))?;
        let mut job = NewJob::from_value(m.kind, args);
        job.created_by = by.map(str::to_owned);
        self.insert(job).await
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
        let lease = tokio::spawn(runtime::maintenance::watch_lease(
            self.shared.clone(),
            stop.clone(),
        ));
        let scheduler = tokio::spawn(runtime::scheduler::run(self.shared.clone()));
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

    /// Waits until everything reported so far is written (at once if the runtime is not started).
    pub async fn flush(&self) {
        let started = {
            let tasks = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
            tasks.started && tasks.completer.is_some()
        };
        if !started {
            return;
        }
        let (tx, rx) = oneshot::channel();
        if self.shared.writer.send(WriteOp::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// How many jobs this node is executing.
    pub fn running_here(&self) -> usize {
        self.shared.registry.len()
    }

    /// Whether [`Worker::shutdown`] has begun (this node claims no more jobs).
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.is_cancelled()
    }

    /// Completes once [`Worker::shutdown`] begins (at once if it has). Long-lived responses —
    /// the admin's event streams — end on it, so an HTTP server can drain.
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.shared.stopping.clone().cancelled_owned()
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
        let all = self.shared.config.concurrency as u32;
        let slots = self.shared.slots.clone();
        let drained =
            tokio::time::timeout(self.shared.config.drain_timeout, slots.acquire_many(all))
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

/// A secret field that cannot be decrypted or encrypted, as bad arguments naming the field.
fn secret_error(e: crate::secrets::SecretError) -> Error {
    Error::InvalidArgs {
        field: e.field().map(str::to_owned),
        message: e.to_string(),
    }
}

/// Refuses arguments holding a NUL character (PostgreSQL cannot store it in text), naming the
/// field: `subject`, `items[2].sku`.
fn refuse_nul(args: &Value) -> Result<()> {
    match crate::text::nul_path(args, "") {
        None => Ok(()),
        Some(path) => Err(Error::InvalidArgs {
            field: Some(path).filter(|p| !p.is_empty()),
            message: crate::text::NUL_REFUSED.to_owned(),
        }),
    }
}

/// Serializes arguments as stored, refusing more than [`MAX_ARGS_BYTES`].
fn check_size(args: &Value) -> Result<String> {
    let s = serde_json::to_string(args).map_err(|e| Error::InvalidArgs {
        field: None,
        message: e.to_string(),
    })?;
    if s.len() > MAX_ARGS_BYTES {
        return Err(Error::InvalidArgs {
            field: None,
            message: format!(
                "arguments are {} bytes; at most {MAX_ARGS_BYTES} are accepted",
                s.len()
            ),
        });
    }
    Ok(s)
}

/// A secret field sent back as the mask, or empty, keeps its stored value: the form never shows
/// the secret, so it cannot send it back.
fn keep_secrets(kind: &JobKind, old: &Value, mut new: Value) -> Value {
    if let (Value::Object(new_map), Value::Object(old_map)) = (&mut new, old) {
        for name in kind.secrets.iter() {
            let unchanged = match new_map.get(name) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty() || s == crate::kind::SECRET_MASK,
                _ => false,
            };
            if unchanged && let Some(v) = old_map.get(name) {
                new_map.insert(name.clone(), v.clone());
            }
        }
    }
    new
}

impl Worker {
    /// Whether a job is finished (a helper for tests and scripts).
    pub async fn is_finished(&self, id: i64) -> Result<bool> {
        Ok(self.job(id).await?.status.is_finished())
    }

    /// Waits until job `id` is finished or `timeout` passes; returns the job as last seen.
    pub async fn wait_finished(&self, id: i64, timeout: Duration) -> Result<Job> {
        let mut events = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = self.job(id).await?;
            if job.status.is_finished() {
                return Ok(job);
            }
            let wait = tokio::time::timeout_at(deadline, async {
                loop {
                    match events.recv().await {
                        Ok(JobEvent::Status { job_id, status, .. })
                            if job_id == id && status.is_finished() =>
                        {
                            return;
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
            if wait.await.is_err() {
                return self.job(id).await;
            }
        }
    }

    /// Statuses of many jobs (a helper for tests and scripts).
    pub async fn statuses(&self, ids: &[i64]) -> Result<Vec<JobStatus>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.job(*id).await?.status);
        }
        Ok(out)
    }
}
