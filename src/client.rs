//! The client: register kinds, create, query and manage jobs, subscribe to their events. It
//! needs no handlers and runs nothing; a [`crate::Worker`] started on the same database runs the
//! jobs.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};

use crate::clock::{now_ms, to_ms};
use crate::context::ResultCell;
use crate::entity::{job_attempt, job_log};
use crate::error::{Error, Result};
use crate::events::JobEvent;
use crate::job::Job;
use crate::job_args::JobArgs;
use crate::kind::JobKind;
use crate::new_job::NewJob;
use crate::queue::QueueInfo;
use crate::runtime::completer::WriteOp;
use crate::runtime::registry::StopReason;
use crate::runtime::{Config, Shared};
use crate::state::JobStatus;
use crate::store::{self, JobInsert, Store};

/// How long after an [`Client::insert_in`] this process's own commits wake its scheduler (the
/// caller's transaction may stay open a while).
const OWN_COMMITS_WAKE_MS: i64 = 30_000;

/// The largest arguments accepted, serialized.
pub const MAX_ARGS_BYTES: usize = 1024 * 1024;

/// The handle applications use: enqueue typed or dynamic jobs, cancel, update, abort, rerun,
/// query, subscribe. Cheap to clone; needs no handlers, only the argument types
/// ([`Client::declare`]). The admin router takes one.
///
/// ```no_run
/// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
/// # struct Ping {}
/// # impl nightshift::JobArgs for Ping { const KIND: &'static str = "ping"; }
/// # async fn demo() -> nightshift::Result<()> {
/// // A web process that enqueues and never runs a job:
/// let client = nightshift::Client::connect("postgres://localhost/app").await?;
/// client.declare::<Ping>()?;
/// client.enqueue(Ping {}).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("node", &self.shared.node.id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client on the database at `url` (migrated if needed), with the default configuration.
    /// [`crate::Worker::builder`] sets the rest (secret key, an existing connection).
    pub async fn connect(url: &str) -> Result<Client> {
        Ok(crate::Worker::builder()
            .database_url(url)
            .build()
            .await?
            .client())
    }

    /// Registers a job kind. Names are unique; a kind only declared (no handler) may be given
    /// its handler later, and declaring a kind already registered changes nothing.
    pub fn register(&self, kind: JobKind) -> Result<()> {
        crate::queue::check_name(&kind.queue)?;
        let mut kinds = self.shared.kinds.write().unwrap_or_else(|e| e.into_inner());
        match kinds.get(&kind.name) {
            Some(old) if old.has_handler() && kind.has_handler() => {
                return Err(Error::DuplicateKind(kind.name));
            }
            Some(_) if !kind.has_handler() => return Ok(()),
            _ => {}
        }
        kinds.insert(kind.name.clone(), kind);
        drop(kinds);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Declares a typed job kind without a handler: enough to enqueue it, validate its
    /// arguments and mask its secrets (a web process that never runs jobs).
    pub fn declare<J: JobArgs>(&self) -> Result<()> {
        self.register(JobKind::declared::<J>())
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

    /// The engine's database handle (the admin's queries, the bench, tests).
    #[doc(hidden)]
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The connection to open your own transactions on, to enqueue in them with
    /// [`Client::insert_in`]. On SQLite it is the engine's only writer: keep such transactions
    /// short.
    pub fn connection(&self) -> &DatabaseConnection {
        self.shared.store.connection()
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

    /// Enqueues a typed job to run now; returns its id.
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # struct Ping {}
    /// # impl nightshift::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// # async fn demo(client: nightshift::Client) -> nightshift::Result<()> {
    /// client.declare::<Ping>()?;
    /// let id = client.enqueue(Ping {}).await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue<J: JobArgs>(&self, job: J) -> Result<i64> {
        Ok(self.insert(NewJob::of(&job)?).await?.id)
    }

    /// Schedules a typed job to run at `at` (a time in the past means now); returns its id.
    pub async fn schedule<J: JobArgs>(&self, job: J, at: DateTime<Utc>) -> Result<i64> {
        Ok(self.insert(NewJob::of(&job)?.schedule_at(at)).await?.id)
    }

    /// Enqueues a job of a kind registered by name ([`JobKind::new`]) to run now; returns its
    /// id.
    pub async fn enqueue_dynamic(&self, kind: &str, args: &impl Serialize) -> Result<i64> {
        Ok(self.insert(NewJob::new(kind, args)?).await?.id)
    }

    /// Schedules a job of a kind registered by name to run at `at`; returns its id.
    pub async fn schedule_dynamic(
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
        self.insert_prepared(rows).await
    }

    /// Inserts jobs already checked by [`Client::prepare`], in one transaction.
    pub(crate) async fn insert_prepared(&self, rows: Vec<JobInsert>) -> Result<Vec<Job>> {
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
        self.inserted(inserted, true)
    }

    /// Creates a job inside the caller's transaction (or on any connection): the job exists only
    /// if that transaction commits. Running workers see it as soon as it commits (PostgreSQL:
    /// a notification sent in the transaction, delivered on commit; SQLite: within about 20 ms
    /// of the commit), and within `poll_interval` at the latest.
    ///
    /// ```no_run
    /// # async fn demo(client: nightshift::Client) -> nightshift::Result<()> {
    /// use sea_orm::TransactionTrait;
    /// let tx = client.connection().begin().await?;
    /// // … the app's own writes on `tx` …
    /// client.insert_in(&tx, nightshift::NewJob::new("Ping", &serde_json::json!({}))?).await?;
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
        // The caller's commit, if on the engine's own SQLite connection, is seen by nobody
        // else: let the listener wake the scheduler on this process's commits for a while.
        self.shared.own_commits_wake_until.store(
            now_ms() + OWN_COMMITS_WAKE_MS,
            std::sync::atomic::Ordering::Relaxed,
        );
        // Not announced: the caller's transaction may still roll back.
        let mut jobs = self.inserted(inserted, false)?;
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

    /// Runs `change` (an operator's request) to its end whatever happens to the request; the
    /// worker's shutdown waits for it.
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn run_to_end<F>(&self, change: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared.requests.spawn(change)
    }

    pub(crate) fn prepare(&self, jobs: Vec<NewJob>) -> Result<Vec<JobInsert>> {
        jobs.into_iter()
            .map(|j| {
                let kind = self
                    .kind(&j.kind)
                    .ok_or_else(|| Error::UnknownKind(j.kind.clone()))?;
                if j.schedule_at.is_some() && !kind.schedulable {
                    return Err(Error::NotSchedulable(kind.name));
                }
                let unique_key = match j.unique_key {
                    Some(key) => Some(crate::text::scrub_nul(key)),
                    None => kind.unique_key(&j.args),
                };
                let (args, search) = self.seal_args(&kind, j.args)?;
                let queue = j.queue.unwrap_or_else(|| kind.queue.clone());
                crate::queue::check_name(&queue)?;
                let priority = j.priority.unwrap_or(kind.priority);
                crate::queue::check_priority(priority)?;
                let tags = crate::queue::clean_tags(&j.tags)?;
                Ok(JobInsert {
                    kind: kind.name.clone(),
                    queue,
                    priority,
                    tags: crate::queue::tags_column(&tags),
                    search,
                    args,
                    max_attempts: kind.max_attempts as i32,
                    schedule_at: j.schedule_at.map(to_ms),
                    created_by: j.created_by.map(crate::text::scrub_nul),
                    unique_key,
                })
            })
            .collect()
    }

    /// Validates arguments (secret fields decrypted), then returns them as stored (secret fields
    /// encrypted when a key is configured) and the index text of the masked copy that search looks
    /// in.
    pub(crate) fn seal_args(&self, kind: &JobKind, args: Value) -> Result<(String, String)> {
        let keyring = self.shared.keyring.as_ref();
        let plain = match keyring {
            Some(k) => crate::secrets::open(Some(k), &kind.secrets, args).map_err(secret_error)?,
            None => args,
        };
        refuse_nul(&plain)?;
        kind.validate(&plain)?;
        let search = migration::search_text::index_text(&kind.redact(&plain));
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

    /// Jobs as an insert returns them (`true`: found already queued under its key); the ones it
    /// added are announced if `announce`.
    fn inserted(
        &self,
        rows: Vec<(crate::entity::job::Model, bool)>,
        announce: bool,
    ) -> Result<Vec<Job>> {
        rows.into_iter()
            .map(|(m, existing)| {
                let mut job = self.to_jobs(vec![m])?.remove(0);
                job.already_queued = existing;
                if announce && !existing {
                    self.emit_status(&job, None);
                }
                Ok(job)
            })
            .collect()
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
        let tags = crate::queue::tags_of(m.tags.as_deref());
        let mut job = NewJob::from_value(m.kind, args)
            .queue(m.queue)
            .priority(m.priority)
            .tags(tags);
        job.created_by = by.map(str::to_owned);
        self.insert(job).await
    }

    /// Pauses `queue` on every node: nothing more of it starts (claims on every node see it at
    /// once; jobs a node already holds for a free slot, within half a second); its running jobs
    /// finish. `by` names the operator.
    ///
    /// ```no_run
    /// # async fn demo(client: nightshift::Client) -> nightshift::Result<()> {
    /// client.pause_queue("mail", "alice").await?;
    /// assert!(client.queues().await?.iter().any(|q| q.name == "mail" && q.paused));
    /// client.resume_queue("mail").await?;
    /// # Ok(()) }
    /// ```
    pub async fn pause_queue(&self, queue: &str, by: &str) -> Result<QueueInfo> {
        self.set_paused(queue, true, by).await
    }

    /// Resumes a paused queue on every node.
    pub async fn resume_queue(&self, queue: &str) -> Result<QueueInfo> {
        self.set_paused(queue, false, "").await
    }

    async fn set_paused(&self, queue: &str, paused: bool, by: &str) -> Result<QueueInfo> {
        crate::queue::check_name(queue)?;
        let by = crate::text::scrub_nul(by.to_owned());
        self.shared
            .store
            .set_queue_paused(queue, paused, Some(&by), self.shared.clock.now())
            .await?;
        self.shared.queues_changed();
        self.queues()
            .await?
            .into_iter()
            .find(|q| q.name == queue)
            .ok_or_else(|| Error::Corrupt(format!("queue {queue} vanished")))
    }

    /// Every queue: those with a row (paused, limited), jobs waiting or running, or a node
    /// serving it, by name.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>> {
        self.shared
            .store
            .queue_overview(self.shared.clock.now())
            .await
    }

    /// The dashboard: what finished per minute over the last hour and per 15 minutes over the
    /// last day, wait and run-time percentiles per kind, and the health signals. Read from the
    /// per-minute counts, node rows and capped probes, never by walking the jobs.
    pub async fn dashboard(&self) -> Result<crate::insight::Dashboard> {
        let c = &self.shared.config;
        // A node that missed a couple of heartbeats is worth a look before it is reaped.
        let stale = Ord::max(c.node_timeout / 2, c.heartbeat_interval * 2);
        self.shared
            .store
            .dashboard(self.shared.clock.now(), stale.as_millis() as i64)
            .await
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

    /// Whether [`crate::Worker::shutdown`] has begun (this node claims no more jobs).
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.is_cancelled()
    }

    /// Completes once [`crate::Worker::shutdown`] begins (at once if it has). Long-lived responses —
    /// the admin's event streams — end on it, so an HTTP server can drain.
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.shared.stopping.clone().cancelled_owned()
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
pub(crate) fn keep_secrets(kind: &JobKind, old: &Value, mut new: Value) -> Value {
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

impl Client {
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
