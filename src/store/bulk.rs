//! Bulk changes of many jobs (cancel, retry, rerun, delete): which jobs a selection holds,
//! counted or read in keyset batches, and each batch changed by one compare-and-set statement,
//! so a job that moved on meanwhile is skipped, never overwritten.
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use super::{JobFilter, NOTIFY_ABORT, NOTIFY_JOBS, Store, retry_busy};
use crate::entity::{job, job_attempt, job_log, job_result};
use crate::error::Result;
use crate::state::JobStatus;

/// Jobs changed per statement and transaction: a bulk action over 100,000 jobs never holds a
/// lock long, and claims get the database between batches. SQLite binds at most 32,766 values.
pub const BULK_BATCH: usize = 500;

/// What a bulk action does to each job it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// Waiting jobs (`new`, `scheduled`) end `cancelled`; running ones are aborted (they end
    /// `killed`), like `DELETE /workers/{id}`.
    Cancel,
    /// Failed jobs (`exception`, `killed`) run again as new jobs (like a rerun); a job waiting
    /// out a retry's backoff runs now.
    Retry,
    /// Finished jobs run again as new jobs with the same kind, arguments, queue, priority, tags.
    Rerun,
    /// Finished jobs are deleted with their log, results and attempts.
    Delete,
}

impl BulkAction {
    /// Every action, as named in requests.
    pub const ALL: [BulkAction; 4] = [
        BulkAction::Cancel,
        BulkAction::Retry,
        BulkAction::Rerun,
        BulkAction::Delete,
    ];

    /// Its name in requests and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Cancel => "cancel",
            BulkAction::Retry => "retry",
            BulkAction::Rerun => "rerun",
            BulkAction::Delete => "delete",
        }
    }

    /// The action named `name`, if any.
    pub fn parse(name: &str) -> Option<BulkAction> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The jobs it applies to; any other job of a selection is left alone.
    fn applies(self) -> Condition {
        let finished = [
            JobStatus::Done,
            JobStatus::Exception,
            JobStatus::Killed,
            JobStatus::Cancelled,
        ]
        .map(JobStatus::as_str);
        match self {
            BulkAction::Cancel => Condition::all().add(job::Column::Status.is_in([
                JobStatus::New.as_str(),
                JobStatus::Scheduled.as_str(),
                JobStatus::Running.as_str(),
            ])),
            BulkAction::Retry => Condition::any()
                .add(
                    job::Column::Status
                        .is_in([JobStatus::Exception.as_str(), JobStatus::Killed.as_str()]),
                )
                .add(waiting_retry()),
            BulkAction::Rerun | BulkAction::Delete => {
                Condition::all().add(job::Column::Status.is_in(finished))
            }
        }
    }
}

/// A job waiting out a retry's backoff: scheduled after a failed attempt.
fn waiting_retry() -> Condition {
    Condition::all()
        .add(job::Column::Status.eq(JobStatus::Scheduled.as_str()))
        .add(job::Column::Attempt.gte(1))
        .add(job::Column::Error.is_not_null())
}

/// The jobs a bulk action is about.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The jobs of this list filter…
    pub filter: JobFilter,
    /// …only those with these ids (`None`: every job of the filter).
    pub ids: Option<Vec<i64>>,
    /// …only those of these kinds (`None`: any kind): what the acting operator's role allows.
    pub kinds: Option<Vec<String>>,
}

impl Selection {
    /// Its `WHERE`, for `action`, with or without the kinds the operator may touch.
    fn condition(&self, store: &Store, action: BulkAction, allowed: Option<bool>) -> Condition {
        let mut cond = store.filter_condition(&self.filter).add(action.applies());
        if let Some(ids) = &self.ids {
            cond = cond.add(job::Column::Id.is_in(ids.iter().copied()));
        }
        match (&self.kinds, allowed) {
            (Some(kinds), Some(true)) => cond.add(job::Column::Kind.is_in(kinds.iter().cloned())),
            (Some(kinds), Some(false)) => {
                cond.add(job::Column::Kind.is_not_in(kinds.iter().cloned()))
            }
            _ => cond,
        }
    }
}

/// A job of a batch: its id, kind and state when read.
#[derive(Debug, Clone)]
pub(crate) struct BulkRow {
    pub id: i64,
    pub kind: String,
    pub status: String,
}

impl Store {
    /// How many jobs of `sel` `action` applies to, and how many more it would apply to but
    /// their kind is outside `sel.kinds` (the operator's role does not allow them).
    pub(crate) async fn bulk_count(
        &self,
        sel: &Selection,
        action: BulkAction,
    ) -> Result<(u64, u64)> {
        let allowed = self
            .count_where(sel.condition(self, action, Some(true)))
            .await?;
        let denied = match sel.kinds {
            Some(_) => {
                self.count_where(sel.condition(self, action, Some(false)))
                    .await?
            }
            None => 0,
        };
        Ok((allowed, denied))
    }

    async fn count_where(&self, cond: Condition) -> Result<u64> {
        let q = Query::select()
            .expr(Expr::cust("COUNT(*)"))
            .from(job::Entity)
            .cond_where(cond)
            .to_owned();
        let n = self
            .read
            .query_one(&q)
            .await?
            .map(|r| r.try_get_by_index::<i64>(0))
            .transpose()?
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    /// The next batch of jobs of `sel` that `action` applies to (and the operator may touch),
    /// newest first, below the cursor `before`: a keyset, so jobs a rerun adds (newer ids) are
    /// never visited.
    pub(crate) async fn bulk_rows(
        &self,
        sel: &Selection,
        action: BulkAction,
        before: Option<i64>,
    ) -> Result<Vec<BulkRow>> {
        let mut q = job::Entity::find()
            .select_only()
            .column(job::Column::Id)
            .column(job::Column::Kind)
            .column(job::Column::Status)
            .filter(sel.condition(self, action, Some(true)));
        if let Some(before) = before {
            q = q.filter(job::Column::Id.lt(before));
        }
        let rows: Vec<(i64, String, String)> = q
            .order_by_desc(job::Column::Id)
            .limit(BULK_BATCH as u64)
            // The writer: a batch must see the previous batch's changes.
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, status)| BulkRow { id, kind, status })
            .collect())
    }

    /// Cancels those of `ids` that are still waiting; returns the ids cancelled.
    pub(crate) async fn cancel_many(&self, ids: &[i64], now: i64) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let changed = retry_busy(|| async {
            Ok(job::Entity::update_many()
                .col_expr(
                    job::Column::Status,
                    Expr::value(JobStatus::Cancelled.as_str()),
                )
                .col_expr(job::Column::FinishedAt, Expr::value(now))
                .col_expr(job::Column::UpdatedAt, Expr::value(now))
                .filter(job::Column::Id.is_in(ids.iter().copied()))
                .filter(job::Column::Status.is_in(JobStatus::WAITING.map(JobStatus::as_str)))
                .exec_with_returning(&self.db)
                .await?)
        })
        .await?;
        Ok(changed.into_iter().map(|j| j.id).collect())
    }

    /// Marks those of `ids` that still run `aborting` (as [`Store::request_abort`] does one);
    /// returns the ids marked. Their nodes hear of it at once (one notification per batch).
    pub(crate) async fn abort_many(&self, ids: &[i64], by: &str, now: i64) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let changed = self.mark_aborting(ids, by, now).await?;
        if let Some(first) = changed.first() {
            // Any payload makes a node look up every job marked aborting on it.
            self.notify_after(NOTIFY_ABORT, &first.id.to_string()).await;
        }
        Ok(changed.into_iter().map(|j| j.id).collect())
    }

    /// Makes those of `ids` still waiting out a retry's backoff due now (as "Retry now" does
    /// one: no schedule time, attempts so far kept); returns the ids changed.
    pub(crate) async fn retry_now_many(&self, ids: &[i64], now: i64) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let changed = retry_busy(|| async {
            Ok(job::Entity::update_many()
                .col_expr(job::Column::Status, Expr::value(JobStatus::New.as_str()))
                .col_expr(job::Column::RunAt, Expr::value(now))
                .col_expr(job::Column::ScheduleAt, Expr::value(Option::<i64>::None))
                .col_expr(job::Column::UpdatedAt, Expr::value(now))
                .filter(job::Column::Id.is_in(ids.iter().copied()))
                .filter(waiting_retry())
                .exec_with_returning(&self.db)
                .await?)
        })
        .await?;
        if !changed.is_empty() {
            self.notify_after(NOTIFY_JOBS, "").await;
        }
        Ok(changed.into_iter().map(|j| j.id).collect())
    }

    /// The finished jobs among `ids` (what a rerun copies).
    pub(crate) async fn finished_among(&self, ids: &[i64]) -> Result<Vec<job::Model>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(job::Entity::find()
            .filter(job::Column::Id.is_in(ids.iter().copied()))
            .filter(finished())
            .order_by_desc(job::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Deletes those of `ids` that are finished, with their log lines, result rows and
    /// attempts, in one transaction; returns how many jobs went. A job that is not finished
    /// (it could still write) is never touched.
    pub(crate) async fn delete_finished(&self, ids: &[i64]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        retry_busy(|| async {
            let tx = self.db.begin().await?;
            let n = delete_jobs_in(&tx, ids).await?;
            tx.commit().await?;
            Ok(n)
        })
        .await
    }
}

/// Deletes the finished jobs among `ids` and everything they own, on `conn` (a transaction).
/// A finished job never changes again, so its children go first without a race.
pub(super) async fn delete_jobs_in<C: ConnectionTrait>(conn: &C, ids: &[i64]) -> Result<u64> {
    let owned = Query::select()
        .column(job::Column::Id)
        .from(job::Entity)
        .cond_where(finished().add(job::Column::Id.is_in(ids.iter().copied())))
        .to_owned();
    job_log::Entity::delete_many()
        .filter(job_log::Column::JobId.in_subquery(owned.clone()))
        .exec(conn)
        .await?;
    job_result::Entity::delete_many()
        .filter(job_result::Column::JobId.in_subquery(owned.clone()))
        .exec(conn)
        .await?;
    job_attempt::Entity::delete_many()
        .filter(job_attempt::Column::JobId.in_subquery(owned))
        .exec(conn)
        .await?;
    let res = job::Entity::delete_many()
        .filter(job::Column::Id.is_in(ids.iter().copied()))
        .filter(finished())
        .exec(conn)
        .await?;
    Ok(res.rows_affected)
}

/// Jobs in a final state.
fn finished() -> Condition {
    Condition::all().add(
        job::Column::Status.is_in(
            JobStatus::ALL
                .into_iter()
                .filter(|s| s.is_finished())
                .map(JobStatus::as_str),
        ),
    )
}
