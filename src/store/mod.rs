//! The only place that talks SQL: every read and write of jobs, logs, results, attempts and nodes.
//!
//! One schema and one set of queries serve SQLite and PostgreSQL; where they differ (the claim's
//! `FOR UPDATE SKIP LOCKED`, placeholders), [`sql`] says how. Every state change is a
//! compare-and-set on the current status (and, for a running job, on its attempt and node), so a
//! late writer changes nothing.
mod connect;
mod driver;
mod list;

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use crate::context::ResultCell;
use crate::entity::{job, job_attempt, job_log, job_result, node};
use crate::error::{Error, Result};
use crate::state::JobStatus;

pub use connect::{connect, is_unavailable};
use driver::Driver;
pub use list::{COUNT_CAP, JobFilter};

/// The newest log lines kept per job; older ones are deleted and counted in `log_dropped`.
pub const MAX_LOG_LINES: i64 = 100_000;
/// The result rows kept per job (all attempts); rows beyond are counted in `results_dropped`.
pub const MAX_RESULT_ROWS: i64 = 10_000;

/// PostgreSQL channel: jobs may be due now (empty payload). One notification per insert call.
pub(crate) const NOTIFY_JOBS: &str = "nightshift_jobs";
/// PostgreSQL channel: a running job was marked `aborting` (payload: its id).
pub(crate) const NOTIFY_ABORT: &str = "nightshift_abort";

/// A job to insert.
#[derive(Debug, Clone)]
pub(crate) struct JobInsert {
    pub kind: String,
    pub queue: String,
    pub args: String,
    /// The arguments with secrets masked.
    pub search: String,
    pub max_attempts: i32,
    pub schedule_at: Option<i64>,
    pub created_by: Option<String>,
}

/// How an attempt ended, as the completer writes it.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub job_id: i64,
    pub attempt: i32,
    pub node: String,
    /// The state to move to (unless the job is `aborting`, which always ends `killed`).
    pub status: JobStatus,
    /// The job's error text (`None` clears it).
    pub error: Option<String>,
    /// When a requeued job may run again.
    pub run_at: Option<i64>,
    /// `done`, `error`, `panic`, `timeout`, `error_rows`, `bad_args`, `killed`, `interrupted`.
    pub outcome: &'static str,
    /// Give the attempt back (a shutdown interrupted it through no fault of the job); its
    /// result rows are removed, since the attempt runs again under the same number.
    pub refund_attempt: bool,
    /// A log line written with the completion, only if it lands (a rescue says why).
    pub log: Option<String>,
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

    /// Inserts jobs on `conn` (the pool, a transaction of ours, or the caller's).
    pub(crate) async fn insert_jobs<C: ConnectionTrait>(
        &self,
        conn: &C,
        jobs: Vec<JobInsert>,
        now: i64,
    ) -> Result<Vec<job::Model>> {
        let mut out = Vec::with_capacity(jobs.len());
        // SQLite allows 32,766 bound values per statement; a job row binds about 20.
        for chunk in jobs.chunks(500) {
            let rows = chunk.iter().map(|j| job::ActiveModel {
                id: NotSet,
                kind: Set(j.kind.clone()),
                queue: Set(j.queue.clone()),
                status: Set(match j.schedule_at {
                    Some(at) if at > now => JobStatus::Scheduled,
                    _ => JobStatus::New,
                }
                .as_str()
                .to_owned()),
                args: Set(j.args.clone()),
                progress: Set(0),
                progress_text: Set(None),
                attempt: Set(0),
                max_attempts: Set(j.max_attempts),
                error: Set(None),
                // A time in the past means now.
                run_at: Set(Ord::max(j.schedule_at.unwrap_or(now), now)),
                schedule_at: Set(j.schedule_at),
                created_at: Set(now),
                updated_at: Set(now),
                started_at: Set(None),
                finished_at: Set(None),
                locked_by: Set(None),
                created_by: Set(j.created_by.clone()),
                aborted_by: Set(None),
                log_lines: Set(0),
                log_dropped: Set(0),
                error_rows: Set(0),
                result_rows: Set(0),
                results_dropped: Set(0),
                search: Set(j.search.clone()),
            });
            let mut inserted = job::Entity::insert_many(rows)
                .exec_with_returning(conn)
                .await?;
            inserted.sort_by_key(|j| j.id);
            out.extend(inserted);
        }
        if !out.is_empty() {
            // One per call, in the same transaction: delivered only if it commits.
            self.notify(conn, NOTIFY_JOBS, "").await?;
        }
        Ok(out)
    }

    /// PostgreSQL: sends one notification on `channel` through `conn`, so that it is delivered
    /// only when `conn`'s transaction commits (to `runtime::listener`). SQLite nodes
    /// watch the file instead: nothing to send.
    async fn notify<C: ConnectionTrait>(
        &self,
        conn: &C,
        channel: &str,
        payload: &str,
    ) -> Result<()> {
        if let Some(stmt) = self.driver.notify(channel, payload) {
            conn.execute_raw(stmt).await?;
        }
        Ok(())
    }

    /// [`Store::notify`] after a change already committed: a failure only delays the other
    /// nodes until their next poll.
    async fn notify_after(&self, channel: &str, payload: &str) {
        if let Err(e) = self.notify(&self.db, channel, payload).await {
            tracing::warn!("could not notify other nodes on {channel}: {e}");
        }
    }

    /// One job.
    pub async fn job(&self, id: i64) -> Result<job::Model> {
        job::Entity::find_by_id(id)
            .one(&self.read)
            .await?
            .ok_or(Error::NotFound(id))
    }

    /// Claims up to `limit` due jobs of `kinds` for `node`: each moves to `running` with its
    /// attempt counted and an attempt row opened, in one transaction.
    pub(crate) async fn claim(
        &self,
        node: &str,
        kinds: &[String],
        limit: usize,
        now: i64,
    ) -> Result<Vec<job::Model>> {
        if kinds.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        retry_busy(|| async {
            let tx = self.db.begin().await?;
            let rows = tx
                .query_all_raw(self.driver.claim(node, kinds, limit as u64, now))
                .await?;
            let mut jobs = rows
                .iter()
                .map(|r| job::Model::from_query_result(r, ""))
                .collect::<Result<Vec<_>, _>>()?;
            jobs.sort_by_key(|j| (j.run_at, j.id));
            if !jobs.is_empty() {
                let attempts = jobs.iter().map(|j| job_attempt::ActiveModel {
                    id: NotSet,
                    job_id: Set(j.id),
                    attempt: Set(j.attempt),
                    node: Set(node.to_owned()),
                    started_at: Set(now),
                    finished_at: Set(None),
                    outcome: Set(None),
                    error: Set(None),
                });
                job_attempt::Entity::insert_many(attempts)
                    .exec_without_returning(&tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(jobs)
        })
        .await
    }

    /// When the earliest waiting job of `kinds` is due, if any.
    pub(crate) async fn next_due(&self, kinds: &[String]) -> Result<Option<i64>> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let row = self.db.query_one_raw(self.driver.next_due(kinds)).await?;
        Ok(match row {
            Some(r) => r.try_get_by_index::<Option<i64>>(0)?,
            None => None,
        })
    }

    /// Cancels a waiting job.
    pub(crate) async fn cancel(&self, id: i64, now: i64) -> Result<job::Model> {
        let done = retry_busy(|| async {
            let res = job::Entity::update_many()
                .col_expr(
                    job::Column::Status,
                    Expr::value(JobStatus::Cancelled.as_str()),
                )
                .col_expr(job::Column::FinishedAt, Expr::value(now))
                .col_expr(job::Column::UpdatedAt, Expr::value(now))
                .filter(job::Column::Id.eq(id))
                .filter(job::Column::Status.is_in(JobStatus::WAITING.map(JobStatus::as_str)))
                .exec(&self.db)
                .await?;
            Ok(res.rows_affected)
        })
        .await?;
        self.after_cas(id, done, "cancel").await
    }

    /// Replaces a waiting job's arguments and schedule.
    pub(crate) async fn update_waiting(
        &self,
        id: i64,
        args: String,
        search: String,
        schedule_at: Option<i64>,
        now: i64,
    ) -> Result<job::Model> {
        let status = match schedule_at {
            Some(at) if at > now => JobStatus::Scheduled,
            _ => JobStatus::New,
        };
        let run_at = Ord::max(schedule_at.unwrap_or(now), now);
        let done = retry_busy(|| async {
            let res = job::Entity::update_many()
                .col_expr(job::Column::Status, Expr::value(status.as_str()))
                .col_expr(job::Column::Args, Expr::value(args.clone()))
                .col_expr(job::Column::Search, Expr::value(search.clone()))
                .col_expr(job::Column::ScheduleAt, Expr::value(schedule_at))
                .col_expr(job::Column::RunAt, Expr::value(run_at))
                .col_expr(job::Column::UpdatedAt, Expr::value(now))
                .filter(job::Column::Id.eq(id))
                .filter(job::Column::Status.is_in(JobStatus::WAITING.map(JobStatus::as_str)))
                .exec(&self.db)
                .await?;
            Ok(res.rows_affected)
        })
        .await?;
        if done > 0 {
            // It may be due sooner than other nodes think.
            self.notify_after(NOTIFY_JOBS, "").await;
        }
        self.after_cas(id, done, "update").await
    }

    /// Marks a running job `aborting`, recording who asked.
    pub(crate) async fn request_abort(&self, id: i64, by: &str, now: i64) -> Result<job::Model> {
        let done = retry_busy(|| async {
            let res = job::Entity::update_many()
                .col_expr(
                    job::Column::Status,
                    Expr::value(JobStatus::Aborting.as_str()),
                )
                .col_expr(job::Column::AbortedBy, Expr::value(by))
                .col_expr(job::Column::UpdatedAt, Expr::value(now))
                .filter(job::Column::Id.eq(id))
                .filter(job::Column::Status.eq(JobStatus::Running.as_str()))
                .exec(&self.db)
                .await?;
            Ok(res.rows_affected)
        })
        .await?;
        if done > 0 {
            self.notify_after(NOTIFY_ABORT, &id.to_string()).await;
        }
        self.after_cas(id, done, "abort").await
    }

    /// After a compare-and-set: the new row, or why nothing changed.
    async fn after_cas(&self, id: i64, rows: u64, action: &'static str) -> Result<job::Model> {
        let job = self.job(id).await?;
        if rows == 0 {
            let status = job
                .status
                .parse()
                .map_err(|e| Error::Corrupt(format!("{e}")))?;
            return Err(Error::InvalidState { id, status, action });
        }
        Ok(job)
    }

    /// Writes a batch of reports and completions in one transaction. Returns the stored log
    /// lines and result rows (with their ids) and what each completion did.
    ///
    /// Every report is fenced: it lands only while its job is still running the attempt that
    /// made it, on `node`. The jobs concerned are read (and on PostgreSQL locked, in id order,
    /// so completers never deadlock each other) once, at the start of the transaction.
    pub(crate) async fn write_batch(
        &self,
        batch: &WriteBatch,
        node: &str,
        now: i64,
    ) -> Result<WrittenBatch> {
        retry_busy(|| async {
            let tx = self.db.begin().await?;
            let live = self.fences(&tx, batch, node).await?;
            let is_live = |job: i64, attempt: i32| live.get(&job).is_some_and(|a| *a == attempt);
            let mut written = WrittenBatch::default();
            let logs: Vec<_> = batch
                .logs
                .iter()
                .filter(|(j, a, _, _)| is_live(*j, *a))
                .collect();
            written.stale += batch.logs.len() - logs.len();
            if !logs.is_empty() {
                for chunk in logs.chunks(1000) {
                    let rows =
                        chunk
                            .iter()
                            .map(|(job_id, attempt, at, line)| job_log::ActiveModel {
                                id: NotSet,
                                job_id: Set(*job_id),
                                attempt: Set(*attempt),
                                at: Set(*at),
                                line: Set(line.clone()),
                            });
                    written.logs.extend(
                        job_log::Entity::insert_many(rows)
                            .exec_with_returning(&tx)
                            .await?,
                    );
                }
                let mut per_job: HashMap<i64, i64> = HashMap::new();
                for (job_id, _, _, _) in &logs {
                    *per_job.entry(*job_id).or_default() += 1;
                }
                for (job_id, n) in per_job {
                    self.count_log_lines(&tx, job_id, n).await?;
                }
            }
            let results: Vec<_> = batch
                .results
                .iter()
                .filter(|(j, a, _)| is_live(*j, *a))
                .collect();
            written.stale += batch.results.len() - results.len();
            written.results = self.write_results(&tx, &results).await?;
            for ((job_id, attempt), (progress, text)) in &batch.progress {
                if !is_live(*job_id, *attempt) {
                    written.stale += 1;
                    continue;
                }
                let mut q = job::Entity::update_many()
                    .col_expr(job::Column::UpdatedAt, Expr::value(now))
                    .filter(job::Column::Id.eq(*job_id))
                    .filter(job::Column::Attempt.eq(*attempt))
                    .filter(job::Column::LockedBy.eq(node))
                    .filter(job::Column::Status.is_in(JobStatus::ACTIVE.map(JobStatus::as_str)));
                if let Some(p) = progress {
                    q = q.col_expr(job::Column::Progress, Expr::value(*p));
                }
                if let Some(t) = text {
                    q = q.col_expr(job::Column::ProgressText, Expr::value(t.clone()));
                }
                q.exec(&tx).await?;
                written.progress.push((*job_id, *progress, text.clone()));
            }
            let completed = self.complete_many(&tx, &batch.completions, now).await?;
            let mut lines = Vec::new();
            for (c, done) in completed {
                if let Some(line) = &c.log {
                    lines.push(job_log::ActiveModel {
                        id: NotSet,
                        job_id: Set(c.job_id),
                        attempt: Set(c.attempt),
                        at: Set(now),
                        line: Set(line.clone()),
                    });
                }
                written.completed.push(done);
            }
            if !lines.is_empty() {
                let ids: Vec<i64> = lines.iter().map(|l| *l.job_id.as_ref()).collect();
                written.logs.extend(
                    job_log::Entity::insert_many(lines)
                        .exec_with_returning(&tx)
                        .await?,
                );
                for id in ids {
                    self.count_log_lines(&tx, id, 1).await?;
                }
            }
            tx.commit().await?;
            Ok(written)
        })
        .await
    }

    /// The attempt each job of the batch is running on `node` (jobs not running there are
    /// absent). Locks the rows on PostgreSQL until the transaction ends.
    async fn fences<C: ConnectionTrait>(
        &self,
        tx: &C,
        batch: &WriteBatch,
        node: &str,
    ) -> Result<HashMap<i64, i32>> {
        let mut ids: Vec<i64> = batch
            .logs
            .iter()
            .map(|l| l.0)
            .chain(batch.results.iter().map(|r| r.0))
            .chain(batch.progress.keys().map(|k| k.0))
            .chain(batch.completions.iter().map(|c| c.job_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut live = HashMap::new();
        for chunk in ids.chunks(1000) {
            for row in tx.query_all_raw(self.driver.fences(chunk)).await? {
                let id: i64 = row.try_get_by_index(0)?;
                let attempt: i32 = row.try_get_by_index(1)?;
                let locked_by: Option<String> = row.try_get_by_index(2)?;
                let status: String = row.try_get_by_index(3)?;
                let active = matches!(status.as_str(), "running" | "aborting");
                if active && locked_by.as_deref() == Some(node) {
                    live.insert(id, attempt);
                }
            }
        }
        Ok(live)
    }

    /// Stores result rows (already fenced), up to [`MAX_RESULT_ROWS`] per job; the rest are
    /// counted as dropped. Error rows are counted for the completion's verdict.
    async fn write_results<C: ConnectionTrait>(
        &self,
        tx: &C,
        results: &[&(i64, i32, Vec<ResultCell>)],
    ) -> Result<Vec<job_result::Model>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let mut per_job: Vec<i64> = results.iter().map(|r| r.0).collect();
        per_job.sort_unstable();
        per_job.dedup();
        let mut room: HashMap<i64, i64> = HashMap::new();
        for (id, stored) in job::Entity::find()
            .select_only()
            .column(job::Column::Id)
            .column(job::Column::ResultRows)
            .filter(job::Column::Id.is_in(per_job))
            .into_tuple::<(i64, i64)>()
            .all(tx)
            .await?
        {
            room.insert(id, Ord::max(MAX_RESULT_ROWS - stored, 0));
        }
        let mut kept = Vec::with_capacity(results.len());
        let mut dropped: HashMap<i64, i64> = HashMap::new();
        for r in results {
            let left = room.entry(r.0).or_default();
            if *left > 0 {
                *left -= 1;
                kept.push(*r);
            } else {
                *dropped.entry(r.0).or_default() += 1;
            }
        }
        let mut stored = Vec::with_capacity(kept.len());
        for chunk in kept.chunks(1000) {
            let rows = chunk
                .iter()
                .map(|(job_id, attempt, cells)| job_result::ActiveModel {
                    id: NotSet,
                    job_id: Set(*job_id),
                    attempt: Set(*attempt),
                    cells: Set(serde_json::to_string(cells).unwrap_or_else(|_| "[]".into())),
                    has_error: Set(cells.iter().any(|c| c.error.is_some())),
                });
            stored.extend(
                job_result::Entity::insert_many(rows)
                    .exec_with_returning(tx)
                    .await?,
            );
        }
        let mut counts: HashMap<i64, (i64, i32, i64)> = HashMap::new();
        for r in &stored {
            let c = counts.entry(r.job_id).or_default();
            c.0 += 1;
            c.1 += r.has_error as i32;
        }
        for (id, n) in dropped {
            counts.entry(id).or_default().2 += n;
        }
        for (id, (rows, errors, dropped)) in counts {
            job::Entity::update_many()
                .col_expr(
                    job::Column::ResultRows,
                    Expr::col(job::Column::ResultRows).add(rows),
                )
                .col_expr(
                    job::Column::ErrorRows,
                    Expr::col(job::Column::ErrorRows).add(errors),
                )
                .col_expr(
                    job::Column::ResultsDropped,
                    Expr::col(job::Column::ResultsDropped).add(dropped),
                )
                .filter(job::Column::Id.eq(id))
                .exec(tx)
                .await?;
        }
        Ok(stored)
    }

    async fn count_log_lines<C: ConnectionTrait>(&self, tx: &C, job_id: i64, n: i64) -> Result<()> {
        let row = tx
            .query_one_raw(self.driver.count_log_lines(job_id, n))
            .await?;
        let total = match row {
            Some(r) => r.try_get_by_index::<i64>(0)?,
            None => return Ok(()),
        };
        let excess = total - MAX_LOG_LINES;
        // Trim in chunks rather than on every line: once over the cap by 1 %, cut back to it.
        if excess > MAX_LOG_LINES / 100 {
            tx.execute_raw(self.driver.trim_logs(job_id, excess))
                .await?;
            tx.execute_raw(self.driver.count_dropped(job_id, excess))
                .await?;
        }
        Ok(())
    }

    /// Ends a batch of attempts: one statement for the jobs, one for their attempt records
    /// (per round: a job appears at most once in each). Returns each completion that landed.
    async fn complete_many<'c, C: ConnectionTrait>(
        &self,
        tx: &C,
        batch: &'c [Completion],
        now: i64,
    ) -> Result<Vec<(&'c Completion, Completed)>> {
        let mut landed = Vec::with_capacity(batch.len());
        let mut rest: Vec<&Completion> = batch.iter().collect();
        while !rest.is_empty() {
            // One completion per job in a statement; a second one for the same job (a rescue
            // racing the executor) goes in the next round and finds the job changed.
            let mut seen = std::collections::HashSet::new();
            let (round, later): (Vec<&Completion>, Vec<&Completion>) =
                rest.into_iter().partition(|c| seen.insert(c.job_id));
            rest = later;
            let owned: Vec<Completion> = round.iter().map(|c| (*c).clone()).collect();
            let mut changed: HashMap<i64, (JobStatus, String, Option<String>)> = HashMap::new();
            for row in tx
                .query_all_raw(self.driver.complete_many(&owned, now))
                .await?
            {
                let id: i64 = row.try_get_by_index(0)?;
                let status: String = row.try_get_by_index(1)?;
                let status: JobStatus =
                    status.parse().map_err(|e| Error::Corrupt(format!("{e}")))?;
                changed.insert(
                    id,
                    (status, row.try_get_by_index(2)?, row.try_get_by_index(3)?),
                );
            }
            let mut attempts = Vec::with_capacity(changed.len());
            for c in round {
                let Some((status, kind, error)) = changed.remove(&c.job_id) else {
                    tracing::warn!(
                        job_id = c.job_id,
                        attempt = c.attempt,
                        "completion dropped: the job was changed by someone else (rescued?)"
                    );
                    continue;
                };
                let outcome = match status {
                    JobStatus::Killed => "killed",
                    JobStatus::Exception if c.status == JobStatus::Done => "error_rows",
                    _ => c.outcome,
                };
                // Given back to run again under the same number: what it reported goes. (An
                // abort that came first ends it `killed`, attempt and rows kept.)
                if c.refund_attempt && status.is_waiting() {
                    self.forget_results(tx, c.job_id, c.attempt).await?;
                }
                attempts.push((c.job_id, c.attempt, outcome, error));
                landed.push((
                    c,
                    Completed {
                        job_id: c.job_id,
                        kind,
                        status,
                    },
                ));
            }
            if !attempts.is_empty() {
                let rows: Vec<(i64, i32, &str, Option<&str>)> = attempts
                    .iter()
                    .map(|(id, a, o, e)| (*id, *a, *o, e.as_deref()))
                    .collect();
                tx.execute_raw(self.driver.finish_attempts(&rows, now))
                    .await?;
            }
        }
        Ok(landed)
    }

    /// Removes what an attempt reported (it was given back and runs again under its number).
    async fn forget_results<C: ConnectionTrait>(
        &self,
        tx: &C,
        job_id: i64,
        attempt: i32,
    ) -> Result<()> {
        let gone = job_result::Entity::delete_many()
            .filter(job_result::Column::JobId.eq(job_id))
            .filter(job_result::Column::Attempt.eq(attempt))
            .exec(tx)
            .await?;
        if gone.rows_affected > 0 {
            job::Entity::update_many()
                .col_expr(
                    job::Column::ResultRows,
                    Expr::col(job::Column::ResultRows).sub(gone.rows_affected as i64),
                )
                .filter(job::Column::Id.eq(job_id))
                .exec(tx)
                .await?;
        }
        Ok(())
    }

    /// Records that `node` is alive (on its own connection), inserting its row if it is new or
    /// was reaped. The time stored is the database's. Returns whether the row was there, and
    /// the database's time.
    pub(crate) async fn heartbeat(&self, me: &node::Model) -> Result<(bool, i64)> {
        retry_busy(|| async {
            let row = self
                .beat
                .query_one_raw(self.driver.heartbeat(&me.id))
                .await?;
            if let Some(row) = row {
                return Ok((true, row.try_get_by_index::<i64>(0)?));
            }
            let row = self
                .beat
                .query_one_raw(self.driver.insert_node(me))
                .await?
                .ok_or_else(|| Error::Corrupt("heartbeat insert returned nothing".into()))?;
            Ok((false, row.try_get_by_index::<i64>(0)?))
        })
        .await
    }

    /// Removes a node's row (at a clean shutdown, or when it is known dead).
    pub(crate) async fn remove_node(&self, id: &str) -> Result<()> {
        retry_busy(|| async {
            node::Entity::delete_by_id(id.to_owned())
                .exec(&self.beat)
                .await?;
            Ok(())
        })
        .await
    }

    /// Every node row.
    pub(crate) async fn nodes(&self) -> Result<Vec<node::Model>> {
        Ok(node::Entity::find().all(&self.beat).await?)
    }

    /// Nodes whose heartbeat is older than `timeout` on the database's clock: `(id, heartbeat_at)`.
    pub(crate) async fn silent_nodes(&self, timeout_ms: i64) -> Result<Vec<(String, i64)>> {
        let rows = self
            .beat
            .query_all_raw(self.driver.silent_nodes(timeout_ms))
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
            .collect()
    }

    /// Removes a node if its heartbeat is still the one seen (compare-and-set: a node that
    /// came back in between is left alone).
    pub(crate) async fn reap_node(&self, id: &str, heartbeat_at: i64) -> Result<bool> {
        retry_busy(|| async {
            let res = node::Entity::delete_many()
                .filter(node::Column::Id.eq(id))
                .filter(node::Column::HeartbeatAt.eq(heartbeat_at))
                .exec(&self.beat)
                .await?;
            Ok(res.rows_affected > 0)
        })
        .await
    }

    /// Whether this node takes this round's rescue: on PostgreSQL one node per round (a
    /// transaction-scoped advisory lock held while it looks); SQLite has one writer anyway.
    pub(crate) async fn rescue_turn(&self) -> Result<Option<sea_orm::DatabaseTransaction>> {
        // On the main pool: the heartbeat's own connection stays free for the reaping.
        let tx = self.db.begin().await?;
        if let Some(lock) = self.driver.rescue_lock() {
            let row = tx.query_one_raw(lock).await?;
            let got = match row {
                Some(r) => r.try_get_by_index::<bool>(0)?,
                None => false,
            };
            if !got {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        Ok(Some(tx))
    }

    /// Running or aborting jobs whose node has no row any more: their worker is gone.
    pub(crate) async fn orphans<C: ConnectionTrait>(&self, conn: &C) -> Result<Vec<job::Model>> {
        let rows = conn.query_all_raw(self.driver.orphans()).await?;
        Ok(rows
            .iter()
            .map(|r| job::Model::from_query_result(r, ""))
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Jobs marked `aborting` that `node` runs (an abort may be asked on another node).
    pub(crate) async fn aborting_on(&self, node: &str) -> Result<Vec<(i64, Option<String>)>> {
        let rows = job::Entity::find()
            .select_only()
            .column(job::Column::Id)
            .column(job::Column::AbortedBy)
            .filter(job::Column::Status.eq(JobStatus::Aborting.as_str()))
            .filter(job::Column::LockedBy.eq(node))
            .into_tuple::<(i64, Option<String>)>()
            .all(&self.beat)
            .await?;
        Ok(rows)
    }

    /// [`Store::aborting_on`] through the read pool: the listener's look-ups never queue on the
    /// heartbeat's connection.
    pub(crate) async fn aborting_on_read(&self, node: &str) -> Result<Vec<(i64, Option<String>)>> {
        let rows = job::Entity::find()
            .select_only()
            .column(job::Column::Id)
            .column(job::Column::AbortedBy)
            .filter(job::Column::Status.eq(JobStatus::Aborting.as_str()))
            .filter(job::Column::LockedBy.eq(node))
            .into_tuple::<(i64, Option<String>)>()
            .all(&self.read)
            .await?;
        Ok(rows)
    }

    /// A job's newest `limit` log lines, oldest first.
    pub async fn logs(&self, job_id: i64, limit: u64) -> Result<Vec<job_log::Model>> {
        let mut rows = job_log::Entity::find()
            .filter(job_log::Column::JobId.eq(job_id))
            .order_by_desc(job_log::Column::Id)
            .limit(limit)
            .all(&self.read)
            .await?;
        rows.reverse();
        Ok(rows)
    }

    /// A job's log lines after `after_id`, oldest first (catch-up for a reconnecting viewer).
    pub async fn logs_after(
        &self,
        job_id: i64,
        after_id: i64,
        limit: u64,
    ) -> Result<Vec<job_log::Model>> {
        Ok(job_log::Entity::find()
            .filter(job_log::Column::JobId.eq(job_id))
            .filter(job_log::Column::Id.gt(after_id))
            .order_by_asc(job_log::Column::Id)
            .limit(limit)
            .all(&self.read)
            .await?)
    }

    /// The result rows of a job's latest reporting attempt, in order, at most `limit` from
    /// `offset`. Earlier attempts' rows are kept in the table for the record.
    pub async fn results_page(
        &self,
        job_id: i64,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<Vec<ResultCell>>> {
        let latest = job_result::Entity::find()
            .select_only()
            .column_as(job_result::Column::Attempt.max(), "latest")
            .filter(job_result::Column::JobId.eq(job_id))
            .into_tuple::<Option<i32>>()
            .one(&self.read)
            .await?
            .flatten();
        let Some(latest) = latest else {
            return Ok(Vec::new());
        };
        let rows = job_result::Entity::find()
            .filter(job_result::Column::JobId.eq(job_id))
            .filter(job_result::Column::Attempt.eq(latest))
            .order_by_asc(job_result::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.read)
            .await?;
        rows.into_iter()
            .map(|r| serde_json::from_str(&r.cells).map_err(|e| Error::Corrupt(e.to_string())))
            .collect()
    }

    /// How many result rows each attempt of a job stored, latest attempt first, and how many
    /// were dropped at the cap.
    pub async fn result_summary(&self, job_id: i64) -> Result<ResultSummary> {
        let per_attempt = job_result::Entity::find()
            .select_only()
            .column(job_result::Column::Attempt)
            .column_as(job_result::Column::Id.count(), "n")
            .filter(job_result::Column::JobId.eq(job_id))
            .group_by(job_result::Column::Attempt)
            .order_by_desc(job_result::Column::Attempt)
            .into_tuple::<(i32, i64)>()
            .all(&self.read)
            .await?;
        let dropped = job::Entity::find_by_id(job_id)
            .select_only()
            .column(job::Column::ResultsDropped)
            .into_tuple::<i64>()
            .one(&self.read)
            .await?
            .unwrap_or(0);
        Ok(ResultSummary {
            per_attempt,
            dropped,
        })
    }

    /// A job's result rows (of its latest reporting attempt), in order: the first 1,000.
    pub async fn results(&self, job_id: i64) -> Result<Vec<Vec<ResultCell>>> {
        self.results_page(job_id, 0, 1000).await
    }

    /// A job's attempts, first to last.
    pub async fn attempts(&self, job_id: i64) -> Result<Vec<job_attempt::Model>> {
        Ok(job_attempt::Entity::find()
            .filter(job_attempt::Column::JobId.eq(job_id))
            .order_by_asc(job_attempt::Column::Attempt)
            .all(&self.read)
            .await?)
    }

    /// Every node (first started first) with the jobs it runs — `running` or `aborting` and
    /// locked by it: how many, and the first `list` of them as `(id, kind, status)`, oldest first.
    pub(crate) async fn nodes_running(
        &self,
        list: u64,
    ) -> Result<Vec<(node::Model, u64, Vec<(i64, String, String)>)>> {
        use sea_orm::sea_query::Func;
        let db = &self.read;
        let active = || job::Column::Status.is_in(JobStatus::ACTIVE.map(JobStatus::as_str));
        let nodes = node::Entity::find()
            .order_by_asc(node::Column::StartedAt)
            .order_by_asc(node::Column::Id)
            .all(db)
            .await?;
        let counts: HashMap<String, i64> = job::Entity::find()
            .select_only()
            .column(job::Column::LockedBy)
            .column_as(Expr::from(Func::count(Expr::col(job::Column::Id))), "n")
            .filter(active())
            .filter(job::Column::LockedBy.is_not_null())
            .group_by(job::Column::LockedBy)
            .into_tuple::<(String, i64)>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            let running = u64::try_from(counts.get(&n.id).copied().unwrap_or(0)).unwrap_or(0);
            let jobs = if running == 0 {
                Vec::new()
            } else {
                job::Entity::find()
                    .select_only()
                    .column(job::Column::Id)
                    .column(job::Column::Kind)
                    .column(job::Column::Status)
                    .filter(active())
                    .filter(job::Column::LockedBy.eq(n.id.clone()))
                    .order_by_asc(job::Column::Id)
                    .limit(list)
                    .into_tuple::<(i64, String, String)>()
                    .all(db)
                    .await?
            };
            out.push((n, running, jobs));
        }
        Ok(out)
    }
}

/// How a job's result rows divide among its attempts.
#[derive(Debug, Clone, Default)]
pub struct ResultSummary {
    /// `(attempt, rows)`, latest attempt first.
    pub per_attempt: Vec<(i32, i64)>,
    /// Rows refused once the job reached [`MAX_RESULT_ROWS`].
    pub dropped: i64,
}

/// Reports gathered by the completer since its last flush.
#[derive(Debug, Default)]
pub(crate) struct WriteBatch {
    /// `(job, attempt, at, line)`.
    pub logs: Vec<(i64, i32, i64, String)>,
    /// Latest progress and progress text per job and attempt (only the last value matters).
    pub progress: HashMap<(i64, i32), (Option<i32>, Option<String>)>,
    /// `(job, attempt, cells)`.
    pub results: Vec<(i64, i32, Vec<ResultCell>)>,
    pub completions: Vec<Completion>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
            && self.progress.is_empty()
            && self.results.is_empty()
            && self.completions.is_empty()
    }

    pub fn len(&self) -> usize {
        self.logs.len() + self.progress.len() + self.results.len() + self.completions.len()
    }
}

/// What a flushed batch stored, for the events that follow it.
#[derive(Debug, Default)]
pub(crate) struct WrittenBatch {
    pub logs: Vec<job_log::Model>,
    pub results: Vec<job_result::Model>,
    /// Progress that landed, per job.
    pub progress: Vec<(i64, Option<i32>, Option<String>)>,
    pub completed: Vec<Completed>,
    /// Reports refused because their attempt is no longer the job's (rescued, finished).
    pub stale: usize,
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
    pub(crate) fn claim_statement(
        &self,
        node: &str,
        kinds: &[String],
        limit: u64,
        now: i64,
    ) -> sea_orm::Statement {
        self.driver.claim(node, kinds, limit, now)
    }
}
