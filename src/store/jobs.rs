//! Jobs: inserting them (and telling other nodes), reading one, claiming due ones, and the
//! compare-and-set changes of waiting and running jobs (cancel, update, abort).
use std::collections::HashMap;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, TransactionTrait,
};

use super::*;
use crate::entity::{job, job_attempt};
use crate::error::{Error, Result};
use crate::state::JobStatus;

impl Store {
    /// Inserts jobs on `conn` (the pool, a transaction of ours, or the caller's).
    pub(crate) async fn insert_jobs<C: ConnectionTrait>(
        &self,
        conn: &C,
        jobs: Vec<JobInsert>,
        now: i64,
    ) -> Result<Vec<(job::Model, bool)>> {
        let mut out: Vec<Option<(job::Model, bool)>> = vec![None; jobs.len()];
        let mut inserted_any = false;
        // Jobs without a key go in together; SQLite allows 32,766 bound values per statement
        // and a job row binds about 20.
        let plain: Vec<usize> = (0..jobs.len())
            .filter(|&i| jobs[i].unique_key.is_none())
            .collect();
        for chunk in plain.chunks(500) {
            let rows = chunk.iter().map(|&i| row(&jobs[i], now));
            let mut inserted = job::Entity::insert_many(rows)
                .exec_with_returning(conn)
                .await?;
            // Ids grow in insert order: the i-th smallest is the i-th of the chunk.
            inserted.sort_by_key(|j| j.id);
            for (&i, m) in chunk.iter().zip(inserted) {
                out[i] = Some((m, false));
            }
            inserted_any = true;
        }
        // A job with a key: added, or the job already holding that key (waiting or running).
        for (i, j) in jobs.iter().enumerate() {
            let Some(key) = j.unique_key.as_deref() else {
                continue;
            };
            let found = self.insert_unique(conn, j, key, now).await?;
            inserted_any |= !found.1;
            out[i] = Some(found);
        }
        if inserted_any {
            // One per call, in the same transaction: delivered only if it commits.
            self.notify(conn, NOTIFY_JOBS, "").await?;
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Inserts a job with a uniqueness key unless a job of its kind holding that key waits or
    /// runs; then that job is returned (`true`). The database decides, also between two
    /// transactions racing with the same key (the partial unique index
    /// `nightshift_jobs_unique`).
    async fn insert_unique<C: ConnectionTrait>(
        &self,
        conn: &C,
        job: &JobInsert,
        key: &str,
        now: i64,
    ) -> Result<(job::Model, bool)> {
        use sea_orm::sea_query::OnConflict;
        // The holder may finish between our conflict and our look-up: then try again.
        for _ in 0..5 {
            let insert = job::Entity::insert(row(job, now))
                .on_conflict(
                    OnConflict::columns([job::Column::Kind, job::Column::UniqueKey])
                        // Literal, as the index spells it: SQLite matches a conflict target to
                        // a partial index only when it can prove the predicates the same.
                        .target_and_where(Expr::cust(
                            "unique_key IS NOT NULL \
                             AND status IN ('new', 'scheduled', 'running', 'aborting')",
                        ))
                        .do_nothing()
                        .to_owned(),
                )
                .exec_with_returning(conn)
                .await;
            match insert {
                Ok(m) => return Ok((m, false)),
                // Nothing inserted (sea-orm says so in one of two ways).
                Err(sea_orm::DbErr::RecordNotInserted | sea_orm::DbErr::RecordNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let holder = job::Entity::find()
                .filter(job::Column::Kind.eq(job.kind.as_str()))
                .filter(job::Column::UniqueKey.eq(key))
                .filter(job::Column::Status.is_in(HOLDS_KEY))
                .one(conn)
                .await?;
            if let Some(m) = holder {
                return Ok((m, true));
            }
        }
        Err(Error::Corrupt(format!(
            "job key {key:?} of {:?} was neither free nor held",
            job.kind
        )))
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
    pub(super) async fn notify_after(&self, channel: &str, payload: &str) {
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

    /// In one transaction: stages scheduled jobs that came due if `stage` (returned as
    /// `staged`, `id, kind`), then moves up to `limit` due jobs of `kinds` to `running` for `node`, taking
    /// from each queue at most its room (`queues`: name, room here, whether it may have a
    /// global limit) and recording each attempt. A queue with a global limit is locked for the
    /// claim, so claims on several nodes count one after the other.
    pub(crate) async fn claim(
        &self,
        node: &str,
        kinds: &[String],
        queues: &[QueueRoom],
        limit: usize,
        now: i64,
        stage: bool,
    ) -> Result<Claimed> {
        retry_busy(|| async {
            let tx = self.db.begin().await?;
            if let Some(pin) = self.driver.plan_for_claims() {
                tx.execute_unprepared(pin).await?;
            }
            let staged = if stage {
                tx.query_all_raw(self.driver.stage_due(now))
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get_by_index::<i64>(0)?, r.try_get_by_index(1)?)))
                    .collect::<Result<Vec<(i64, String)>>>()?
            } else {
                Vec::new()
            };
            let mut rooms: Vec<(String, u64)> = queues
                .iter()
                .filter(|q| q.room > 0)
                .map(|q| (q.name.clone(), q.room as u64))
                .collect();
            let limited: Vec<&str> = queues
                .iter()
                .filter(|q| q.room > 0 && q.limited)
                .map(|q| q.name.as_str())
                .collect();
            if !limited.is_empty() {
                let limits = tx
                    .query_all_raw(self.driver.lock_limited_queues(&limited))
                    .await?;
                if !limits.is_empty() {
                    let running: HashMap<String, i64> = tx
                        .query_all_raw(self.driver.running_in_queues(&limited))
                        .await?
                        .iter()
                        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
                        .collect::<Result<_>>()?;
                    for row in &limits {
                        let name: String = row.try_get_by_index(0)?;
                        let limit: i32 = row.try_get_by_index(1)?;
                        let free = (limit as i64 - running.get(&name).copied().unwrap_or(0)).max(0);
                        for (queue, room) in rooms.iter_mut() {
                            if *queue == name {
                                *room = (*room).min(free as u64);
                            }
                        }
                    }
                    rooms.retain(|(_, room)| *room > 0);
                }
            }
            let mut jobs = Vec::new();
            if !kinds.is_empty() && limit > 0 && !rooms.is_empty() {
                let rows = tx
                    .query_all_raw(self.driver.claim(node, kinds, &rooms, limit as u64, now))
                    .await?;
                jobs = rows
                    .iter()
                    .map(|r| job::Model::from_query_result(r, ""))
                    .collect::<Result<Vec<_>, _>>()?;
            }
            // Claim order: the best first.
            jobs.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.run_at, j.id));
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
            Ok(Claimed { jobs, staged })
        })
        .await
    }

    /// Whether a job of `kinds` on `queues` is due and its queue not paused.
    pub(crate) async fn any_ready(&self, kinds: &[String], queues: &[String]) -> Result<bool> {
        if kinds.is_empty() || queues.is_empty() {
            return Ok(false);
        }
        Ok(self
            .db
            .query_one_raw(self.driver.ready_one(kinds, queues))
            .await?
            .is_some())
    }

    /// When the earliest scheduled job of `kinds` is due, if any.
    pub(crate) async fn next_due(&self, kinds: &[String]) -> Result<Option<i64>> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let row = match self.driver.plan_for_claims() {
            Some(pin) => {
                let tx = self.db.begin().await?;
                tx.execute_unprepared(pin).await?;
                let row = tx.query_one_raw(self.driver.next_due(kinds)).await?;
                tx.commit().await?;
                row
            }
            None => self.db.query_one_raw(self.driver.next_due(kinds)).await?,
        };
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
        // The row as the compare-and-set left it (RETURNING): a read afterwards could already
        // see the job `killed` by the handler it stopped.
        let changed = self.mark_aborting(&[id], by, now).await?;
        match changed.into_iter().next() {
            Some(job) => {
                self.notify_after(NOTIFY_ABORT, &id.to_string()).await;
                Ok(job)
            }
            None => self.after_cas(id, 0, "abort").await,
        }
    }

    /// Marks those of `ids` still `running` as `aborting` by `by` (compare-and-set); returns
    /// the rows as it left them.
    pub(super) async fn mark_aborting(
        &self,
        ids: &[i64],
        by: &str,
        now: i64,
    ) -> Result<Vec<job::Model>> {
        retry_busy(|| async {
            Ok(job::Entity::update_many()
                .col_expr(
                    job::Column::Status,
                    Expr::value(JobStatus::Aborting.as_str()),
                )
                .col_expr(job::Column::AbortedBy, Expr::value(by))
                .col_expr(job::Column::UpdatedAt, Expr::value(now))
                .filter(job::Column::Id.is_in(ids.iter().copied()))
                .filter(job::Column::Status.eq(JobStatus::Running.as_str()))
                .exec_with_returning(&self.db)
                .await?)
        })
        .await
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
}

/// A queue a claim takes from: how many of its jobs this node may start now, and whether it
/// may have a limit across nodes (then the claim locks its row and counts its running jobs).
#[derive(Debug, Clone)]
pub(crate) struct QueueRoom {
    pub name: String,
    pub room: usize,
    pub limited: bool,
}

/// What a claim did: the jobs it moved to `running` (best first) and the scheduled jobs it
/// found due and moved to `new` (`id, kind`).
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    pub jobs: Vec<job::Model>,
    pub staged: Vec<(i64, String)>,
}

/// The states in which a job holds its uniqueness key (spelled as in the unique index).
const HOLDS_KEY: [&str; 4] = ["new", "scheduled", "running", "aborting"];

/// The row of a new job.
fn row(j: &JobInsert, now: i64) -> job::ActiveModel {
    job::ActiveModel {
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
        unique_key: Set(j.unique_key.clone()),
        priority: Set(j.priority),
        tags: Set(j.tags.clone()),
    }
}
