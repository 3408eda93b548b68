//! The only place that talks SQL: every read and write of jobs, logs, results, attempts and nodes.
//!
//! One schema and one set of queries serve SQLite and PostgreSQL; where they differ (the claim's
//! `FOR UPDATE SKIP LOCKED`, placeholders), a `driver` says how. Every state change is a
//! compare-and-set on the current status (and, for a running job, on its attempt and node), so a
//! late writer changes nothing.
mod bulk;
mod connect;
mod driver;
mod insight;
mod jobs;
mod list;
mod nodes;
mod queues;
mod reads;
mod recurring;
mod reports;
mod retention;
mod search;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr};

use crate::error::{Error, Result};
use crate::state::JobStatus;

pub(crate) use bulk::BulkRow;
pub use bulk::{BULK_BATCH, BulkAction, Selection};
pub use connect::{connect, is_unavailable};
use driver::Driver;
pub use insight::StatSum;
pub(crate) use jobs::QueueRoom;
pub use list::{COUNT_CAP, JobFilter};
pub use reads::ResultSummary;
pub(crate) use recurring::{RecurringDef, RecurringInsert};
pub(crate) use reports::{WriteBatch, WrittenBatch};
pub use retention::PruneRun;
pub use search::{SearchContext, SearchError, SearchQuery, TextTerm};

/// The newest log lines kept per job; older ones are deleted and counted in `log_dropped`.
pub const MAX_LOG_LINES: i64 = 100_000;
/// The result rows kept per job (all attempts); rows beyond are counted in `results_dropped`.
pub const MAX_RESULT_ROWS: i64 = 10_000;

/// PostgreSQL channel: jobs may be due now (empty payload). One notification per insert call.
pub(crate) const NOTIFY_JOBS: &str = "nightshift_jobs";
/// PostgreSQL channel: a running job was marked `aborting` (payload: its id).
pub(crate) const NOTIFY_ABORT: &str = "nightshift_abort";
/// PostgreSQL channel: a queue was paused or resumed (payload: its name).
pub(crate) const NOTIFY_QUEUES: &str = "nightshift_queues";

/// A job to insert.
#[derive(Debug, Clone)]
pub(crate) struct JobInsert {
    pub kind: String,
    pub queue: String,
    pub args: String,
    /// The index text of the arguments with secrets masked ([`migration::search_text`]).
    pub search: String,
    pub max_attempts: i32,
    pub schedule_at: Option<i64>,
    pub created_by: Option<String>,
    /// At most one job of the kind with this key waits or runs.
    pub unique_key: Option<String>,
    /// 0 to 9, larger first.
    pub priority: i32,
    /// As stored: a JSON array, or `None`.
    pub tags: Option<String>,
}

/// One run of a job: its attempt number, and when its claim stamped it (`started_at`). What a
/// handler reports lands only on the run that made it: a number comes back after a snooze or a
/// give-back, and the same node may claim the job again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Run {
    pub attempt: i32,
    pub started: Option<i64>,
}

/// How an attempt ended, as the completer writes it.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub job_id: i64,
    pub attempt: i32,
    pub node: String,
    /// When the run started (its claim's stamp, the job's `started_at`): the completion lands
    /// only on that run. An attempt's number can come back (a snooze or a give-back refunds
    /// it), and an outcome meant for one run must never end a later one with the same number
    /// on the same node (a rescue read a moment before the job was completed and claimed again).
    pub started_at: Option<i64>,
    /// The state to move to (unless the job is `aborting`, which always ends `killed`).
    pub status: JobStatus,
    /// The job's error text (`None` clears it).
    pub error: Option<String>,
    /// When a requeued job may run again.
    pub run_at: Option<i64>,
    /// When the attempt was due (the job's `run_at` when it was claimed): its wait, due to
    /// start, is counted in the per-minute histograms.
    pub due_at: Option<i64>,
    /// `done`, `error`, `panic`, `timeout`, `error_rows`, `bad_args`, `killed`, `interrupted`.
    pub outcome: &'static str,
    /// Give the attempt back (a shutdown interrupted it through no fault of the job); its
    /// result rows are removed, since the attempt runs again under the same number.
    pub refund_attempt: bool,
    /// A log line written with the completion, only if it lands (a rescue says why).
    pub log: Option<String>,
    /// When the attempt ended (the database's clock): its `finished_at`, and where a retry's
    /// backoff counts from — not when the completer got round to writing it.
    pub at: i64,
}

/// For unit tests: a worker (not started) on a fresh SQLite file, with the declared kind `K`
/// and `jobs` jobs of it waiting; the directory lives as long as the guard.
#[cfg(test)]
pub(crate) async fn test_worker(jobs: usize) -> (tempfile::TempDir, crate::Worker, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let worker = crate::Worker::builder()
        .database_url(url)
        .build()
        .await
        .unwrap();
    worker
        .register(crate::JobKind::declare::<crate::demo::NoArgs>("K"))
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..jobs {
        ids.push(
            worker
                .enqueue_dynamic("K", &serde_json::json!({}))
                .await
                .unwrap(),
        );
    }
    (dir, worker, ids)
}

impl Completion {
    /// `job`, claimed by `node` and never started, back to the queue untouched: its attempt
    /// refunded, its place in its queue kept.
    pub(crate) fn given_back(job: &crate::entity::job::Model, node: &str, at: i64) -> Self {
        Completion {
            job_id: job.id,
            attempt: job.attempt,
            started_at: job.started_at,
            node: node.to_owned(),
            status: JobStatus::New,
            error: None,
            run_at: None,
            due_at: None,
            outcome: "interrupted",
            refund_attempt: true,
            log: None,
            at,
        }
    }
}

/// What the completer wrote for one completion.
#[derive(Debug, Clone)]
pub(crate) struct Completed {
    pub job_id: i64,
    pub kind: String,
    pub status: JobStatus,
}

/// Handle to the database. Cheap to clone.
///
/// Three ways in: `db`, the pool the engine writes through (and callers' transactions use);
/// `read`, for pages and queries (on SQLite a small pool of its own: in WAL, readers never wait
/// for the writer); and `beat`, one connection of the heartbeat's own, so renewing the lease
/// never waits behind application work holding the pool.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    read: DatabaseConnection,
    beat: DatabaseConnection,
    driver: std::sync::Arc<dyn Driver>,
}

impl Store {
    /// Wraps a connection that is already migrated.
    pub fn new(db: DatabaseConnection) -> Self {
        let driver = driver::for_backend(db.get_database_backend());
        let (read, beat) = match db.get_database_backend() {
            DbBackend::Sqlite => {
                use sea_orm::sqlx::sqlite::SqlitePoolOptions;
                let opts = (*db.get_sqlite_connection_pool().connect_options()).clone();
                let read = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_lazy_with(opts.clone().read_only(true));
                let beat = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_lazy_with(opts);
                (
                    sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(read),
                    sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(beat),
                )
            }
            _ => {
                use sea_orm::sqlx::postgres::PgPoolOptions;
                let opts = (*db.get_postgres_connection_pool().connect_options()).clone();
                let beat = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(std::time::Duration::from_secs(5))
                    .connect_lazy_with(opts);
                (
                    db.clone(),
                    sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(beat),
                )
            }
        };
        Store {
            db,
            read,
            beat,
            driver,
        }
    }

    /// The database's clock, now (milliseconds since the epoch).
    pub(crate) async fn db_now(&self) -> Result<i64> {
        let row = self
            .read
            .query_one_raw(
                self.driver
                    .stmt(&format!("SELECT {}", self.driver.now_sql()), vec![]),
            )
            .await?
            .ok_or_else(|| Error::Corrupt("the database has no clock".into()))?;
        Ok(row.try_get_by_index::<i64>(0)?)
    }

    /// The connection pages and queries read through.
    pub(crate) fn reader(&self) -> &DatabaseConnection {
        &self.read
    }

    /// The underlying connection, for enqueueing inside the caller's own transactions.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Which database this is.
    pub fn backend(&self) -> DbBackend {
        self.driver.backend()
    }
}

/// Runs a write, retrying while SQLite reports the database locked by another process: a busy
/// database is a wait, never a job failure.
pub(crate) async fn retry_busy<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut delay = std::time::Duration::from_millis(5);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match op().await {
            Err(Error::Database(e)) if is_busy(&e) && tokio::time::Instant::now() < deadline => {
                tracing::debug!("database busy, retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

fn is_busy(e: &DbErr) -> bool {
    let s = e.to_string();
    s.contains("database is locked") || s.contains("SQLITE_BUSY") || s.contains("(code: 5)")
}

impl Store {
    /// The statement the scheduler claims with (for `nightshift bench`: its bare-SQL ceiling
    /// claims with exactly this shape).
    #[doc(hidden)]
    // Used by the admin and the bench only.
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn claim_statement(
        &self,
        node: &str,
        kinds: &[String],
        queues: &[(String, u64)],
        limit: u64,
        now: i64,
    ) -> sea_orm::Statement {
        self.driver.claim(node, kinds, queues, limit, now)
    }

    /// What the claim's transaction runs first to pin its plan (PostgreSQL), for the bench's
    /// ceiling to claim exactly as the scheduler does.
    #[doc(hidden)]
    // Used by the admin and the bench only.
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn claim_plan(&self) -> Option<&'static str> {
        self.driver.plan_for_claims()
    }
}
