//! The only place that talks SQL: every read and write of jobs, logs, results, attempts and nodes.
//!
//! One schema and one set of queries serve SQLite and PostgreSQL; where they differ (the claim's
//! `FOR UPDATE SKIP LOCKED`, placeholders), [`sql`] says how. Every state change is a
//! compare-and-set on the current status (and, for a running job, on its attempt and node), so a
//! late writer changes nothing.
mod connect;
mod list;
mod sql;

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
pub use list::{COUNT_CAP, JobFilter};
pub(crate) use sql::Sql;

/// The newest log lines kept per job; older ones are deleted and counted in `log_dropped`.
pub const MAX_LOG_LINES: i64 = 100_000;

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
    /// Give the attempt back (a shutdown interrupted it through no fault of the job).
    pub refund_attempt: bool,
}

/// What the completer wrote for one completion.
#[derive(Debug, Clone)]
pub(crate) struct Completed {
    pub job_id: i64,
    pub kind: String,
    pub status: JobStatus,
}

/// Handle to the database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    sql: Sql,
}

impl Store {
    /// Wraps a connection that is already migrated.
    pub fn new(db: DatabaseConnection) -> Self {
        let sql = Sql::new(db.get_database_backend());
        Store { db, sql }
    }

    /// The underlying connection, for enqueueing inside the caller's own transactions.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Which database this is.
    pub fn backend(&self) -> DbBackend {
        self.sql.backend()
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
        Ok(out)
    }

    /// One job.
    pub async fn job(&self, id: i64) -> Result<job::Model> {
        job::Entity::find_by_id(id)
            .one(&self.db)
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
                .query_all_raw(self.sql.claim(node, kinds, limit as u64, now))
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
        let row = self.db.query_one_raw(self.sql.next_due(kinds)).await?;
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
    pub(crate) async fn write_batch(&self, batch: &WriteBatch, now: i64) -> Result<WrittenBatch> {
        retry_busy(|| async {
            let tx = self.db.begin().await?;
            let mut written = WrittenBatch::default();
            if !batch.logs.is_empty() {
                for chunk in batch.logs.chunks(1000) {
                    let rows = chunk.iter().map(|(job_id, at, line)| job_log::ActiveModel {
                        id: NotSet,
                        job_id: Set(*job_id),
                        attempt: Set(0),
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
                for (job_id, _, _) in &batch.logs {
                    *per_job.entry(*job_id).or_default() += 1;
                }
                for (job_id, n) in per_job {
                    self.count_log_lines(&tx, job_id, n).await?;
                }
            }
            if !batch.results.is_empty() {
                let rows = batch
                    .results
                    .iter()
                    .map(|(job_id, cells)| job_result::ActiveModel {
                        id: NotSet,
                        job_id: Set(*job_id),
                        attempt: Set(0),
                        cells: Set(serde_json::to_string(cells).unwrap_or_else(|_| "[]".into())),
                        has_error: Set(cells.iter().any(|c| c.error.is_some())),
                    });
                let stored = job_result::Entity::insert_many(rows)
                    .exec_with_returning(&tx)
                    .await?;
                for r in stored.iter().filter(|r| r.has_error) {
                    job::Entity::update_many()
                        .col_expr(
                            job::Column::ErrorRows,
                            Expr::col(job::Column::ErrorRows).add(1),
                        )
                        .filter(job::Column::Id.eq(r.job_id))
                        .exec(&tx)
                        .await?;
                }
                written.results = stored;
            }
            for (job_id, (progress, text)) in &batch.progress {
                let mut q = job::Entity::update_many()
                    .col_expr(job::Column::UpdatedAt, Expr::value(now))
                    .filter(job::Column::Id.eq(*job_id))
                    .filter(job::Column::Status.is_in(JobStatus::ACTIVE.map(JobStatus::as_str)));
                if let Some(p) = progress {
                    q = q.col_expr(job::Column::Progress, Expr::value(*p));
                }
                if let Some(t) = text {
                    q = q.col_expr(job::Column::ProgressText, Expr::value(t.clone()));
                }
                q.exec(&tx).await?;
            }
            for c in &batch.completions {
                if let Some(done) = self.complete(&tx, c, now).await? {
                    written.completed.push(done);
                } else {
                    tracing::warn!(
                        job_id = c.job_id,
                        attempt = c.attempt,
                        "completion dropped: the job was changed by someone else (rescued?)"
                    );
                }
            }
            tx.commit().await?;
            Ok(written)
        })
        .await
    }

    async fn count_log_lines<C: ConnectionTrait>(&self, tx: &C, job_id: i64, n: i64) -> Result<()> {
        let row = tx
            .query_one_raw(self.sql.count_log_lines(job_id, n))
            .await?;
        let total = match row {
            Some(r) => r.try_get_by_index::<i64>(0)?,
            None => return Ok(()),
        };
        let excess = total - MAX_LOG_LINES;
        // Trim in chunks rather than on every line: once over the cap by 1 %, cut back to it.
        if excess > MAX_LOG_LINES / 100 {
            tx.execute_raw(self.sql.trim_logs(job_id, excess)).await?;
            tx.execute_raw(self.sql.count_dropped(job_id, excess))
                .await?;
        }
        Ok(())
    }

    async fn complete<C: ConnectionTrait>(
        &self,
        tx: &C,
        c: &Completion,
        now: i64,
    ) -> Result<Option<Completed>> {
        let row = tx.query_one_raw(self.sql.complete(c, now)).await?;
        let Some(row) = row else { return Ok(None) };
        let status: String = row.try_get_by_index(0)?;
        let kind: String = row.try_get_by_index(1)?;
        let error: Option<String> = row.try_get_by_index(2)?;
        let status: JobStatus = status.parse().map_err(|e| Error::Corrupt(format!("{e}")))?;
        let outcome = match status {
            JobStatus::Killed => "killed",
            JobStatus::Exception if c.status == JobStatus::Done => "error_rows",
            _ => c.outcome,
        };
        job_attempt::Entity::update_many()
            .col_expr(job_attempt::Column::FinishedAt, Expr::value(now))
            .col_expr(job_attempt::Column::Outcome, Expr::value(outcome))
            .col_expr(job_attempt::Column::Error, Expr::value(error))
            .filter(job_attempt::Column::JobId.eq(c.job_id))
            .filter(job_attempt::Column::Attempt.eq(c.attempt))
            // An attempt given back by a shutdown is numbered again: leave the closed row be.
            .filter(job_attempt::Column::FinishedAt.is_null())
            .exec(tx)
            .await?;
        Ok(Some(Completed {
            job_id: c.job_id,
            kind,
            status,
        }))
    }

    /// Records that `node` is alive, inserting its row if it is new or was reaped. Returns whether
    /// the row was there.
    pub(crate) async fn heartbeat(&self, me: &node::Model, now: i64) -> Result<bool> {
        retry_busy(|| async {
            let res = node::Entity::update_many()
                .col_expr(node::Column::HeartbeatAt, Expr::value(now))
                .filter(node::Column::Id.eq(me.id.clone()))
                .exec(&self.db)
                .await?;
            if res.rows_affected == 0 {
                let mut row = me.clone();
                row.heartbeat_at = now;
                node::Entity::insert(node::ActiveModel::from(row))
                    .exec_without_returning(&self.db)
                    .await?;
            }
            Ok(res.rows_affected > 0)
        })
        .await
    }

    /// Removes a node's row (at a clean shutdown, or when it is known dead).
    pub(crate) async fn remove_node(&self, id: &str) -> Result<()> {
        retry_busy(|| async {
            node::Entity::delete_by_id(id.to_owned())
                .exec(&self.db)
                .await?;
            Ok(())
        })
        .await
    }

    /// Every node row.
    pub(crate) async fn nodes(&self) -> Result<Vec<node::Model>> {
        Ok(node::Entity::find().all(&self.db).await?)
    }

    /// Removes nodes whose heartbeat is older than `cutoff`.
    pub(crate) async fn reap_stale_nodes(&self, cutoff: i64) -> Result<u64> {
        retry_busy(|| async {
            let res = node::Entity::delete_many()
                .filter(node::Column::HeartbeatAt.lt(cutoff))
                .exec(&self.db)
                .await?;
            Ok(res.rows_affected)
        })
        .await
    }

    /// Running or aborting jobs whose node has no row any more: their worker is gone.
    pub(crate) async fn orphans(&self) -> Result<Vec<job::Model>> {
        let rows = self.db.query_all_raw(self.sql.orphans()).await?;
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
            .all(&self.db)
            .await?;
        Ok(rows)
    }

    /// A job's newest `limit` log lines, oldest first.
    pub async fn logs(&self, job_id: i64, limit: u64) -> Result<Vec<job_log::Model>> {
        let mut rows = job_log::Entity::find()
            .filter(job_log::Column::JobId.eq(job_id))
            .order_by_desc(job_log::Column::Id)
            .limit(limit)
            .all(&self.db)
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
            .all(&self.db)
            .await?)
    }

    /// A job's result rows, in order.
    pub async fn results(&self, job_id: i64) -> Result<Vec<Vec<ResultCell>>> {
        let rows = job_result::Entity::find()
            .filter(job_result::Column::JobId.eq(job_id))
            .order_by_asc(job_result::Column::Id)
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|r| serde_json::from_str(&r.cells).map_err(|e| Error::Corrupt(e.to_string())))
            .collect()
    }

    /// A job's attempts, first to last.
    pub async fn attempts(&self, job_id: i64) -> Result<Vec<job_attempt::Model>> {
        Ok(job_attempt::Entity::find()
            .filter(job_attempt::Column::JobId.eq(job_id))
            .order_by_asc(job_attempt::Column::Attempt)
            .all(&self.db)
            .await?)
    }
}

/// Reports gathered by the completer since its last flush.
#[derive(Debug, Default)]
pub(crate) struct WriteBatch {
    pub logs: Vec<(i64, i64, String)>,
    /// Latest progress and progress text per job (only the last value of each matters).
    pub progress: HashMap<i64, (Option<i32>, Option<String>)>,
    pub results: Vec<(i64, Vec<ResultCell>)>,
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
    pub completed: Vec<Completed>,
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
