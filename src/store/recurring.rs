//! Recurring schedules: their rows, the compare-and-set that claims a tick (on `next_run_at`),
//! and the runs they made, one per schedule and tick (a unique index).
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait, TryInsertResult,
};

use super::*;
use crate::entity::{job, recurring, recurring_run};
use crate::error::Result;

/// A schedule's definition as stored: what an operator edits and code defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecurringDef {
    pub kind: String,
    pub cron: String,
    pub timezone: String,
    /// The arguments as stored (secret fields sealed).
    pub args: String,
    /// `skip` or `run_once`.
    pub missed: String,
    /// A hash of the definition with its arguments in the clear.
    pub def_hash: String,
}

/// A schedule to insert.
#[derive(Debug, Clone)]
pub(crate) struct RecurringInsert {
    pub name: String,
    pub def: RecurringDef,
    pub next_run_at: Option<i64>,
    /// `code` or `operator`.
    pub source: &'static str,
    pub code_hash: Option<String>,
    pub code_def: Option<String>,
    pub by: String,
    pub now: i64,
}

impl Store {
    /// Every schedule, by name.
    pub(crate) async fn recurring_all(&self) -> Result<Vec<recurring::Model>> {
        Ok(recurring::Entity::find()
            .order_by_asc(recurring::Column::Name)
            .order_by_asc(recurring::Column::Id)
            .all(&self.read)
            .await?)
    }

    /// One schedule.
    pub(crate) async fn recurring_one(&self, id: i64) -> Result<Option<recurring::Model>> {
        Ok(recurring::Entity::find_by_id(id).one(&self.read).await?)
    }

    /// One schedule, by name.
    pub(crate) async fn recurring_by_name(&self, name: &str) -> Result<Option<recurring::Model>> {
        Ok(recurring::Entity::find()
            .filter(recurring::Column::Name.eq(name))
            .one(&self.read)
            .await?)
    }

    /// Inserts a schedule unless one of that name exists; returns it if it was inserted.
    pub(crate) async fn recurring_insert(
        &self,
        row: &RecurringInsert,
    ) -> Result<Option<recurring::Model>> {
        let inserted = retry_busy(|| async {
            let am = recurring::ActiveModel {
                id: NotSet,
                name: Set(row.name.clone()),
                kind: Set(row.def.kind.clone()),
                cron: Set(row.def.cron.clone()),
                timezone: Set(row.def.timezone.clone()),
                args: Set(row.def.args.clone()),
                missed: Set(row.def.missed.clone()),
                paused: Set(false),
                next_run_at: Set(row.next_run_at),
                last_tick_at: Set(None),
                source: Set(row.source.to_owned()),
                def_hash: Set(row.def.def_hash.clone()),
                code_hash: Set(row.code_hash.clone()),
                code_def: Set(row.code_def.clone()),
                created_at: Set(row.now),
                updated_at: Set(row.now),
                updated_by: Set(Some(row.by.clone())),
            };
            let res = recurring::Entity::insert(am)
                .on_conflict_do_nothing_on([recurring::Column::Name])
                .exec_without_returning(&self.db)
                .await?;
            Ok(matches!(res, TryInsertResult::Inserted(n) if n > 0))
        })
        .await?;
        if !inserted {
            return Ok(None);
        }
        self.recurring_by_name(&row.name).await
    }

    /// Replaces a schedule's definition if it is still the one hashed `expected` (a
    /// compare-and-set: a concurrent edit wins). `next_run_at`: `Some` to set it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn recurring_redefine(
        &self,
        id: i64,
        expected: &str,
        def: &RecurringDef,
        next_run_at: Option<Option<i64>>,
        source: &str,
        by: &str,
        now: i64,
    ) -> Result<bool> {
        retry_busy(|| async {
            let mut q = recurring::Entity::update_many()
                .col_expr(recurring::Column::Kind, Expr::value(def.kind.clone()))
                .col_expr(recurring::Column::Cron, Expr::value(def.cron.clone()))
                .col_expr(
                    recurring::Column::Timezone,
                    Expr::value(def.timezone.clone()),
                )
                .col_expr(recurring::Column::Args, Expr::value(def.args.clone()))
                .col_expr(recurring::Column::Missed, Expr::value(def.missed.clone()))
                .col_expr(
                    recurring::Column::DefHash,
                    Expr::value(def.def_hash.clone()),
                )
                .col_expr(recurring::Column::Source, Expr::value(source))
                .col_expr(recurring::Column::UpdatedAt, Expr::value(now))
                .col_expr(recurring::Column::UpdatedBy, Expr::value(by));
            if let Some(next) = next_run_at {
                q = q.col_expr(recurring::Column::NextRunAt, Expr::value(next));
            }
            let res = q
                .filter(recurring::Column::Id.eq(id))
                .filter(recurring::Column::DefHash.eq(expected))
                .exec(&self.db)
                .await?;
            Ok(res.rows_affected > 0)
        })
        .await
    }

    /// Records what the application's code defines for a schedule (shown when it differs).
    pub(crate) async fn recurring_set_code(
        &self,
        id: i64,
        code_hash: &str,
        code_def: &str,
    ) -> Result<()> {
        retry_busy(|| async {
            recurring::Entity::update_many()
                .col_expr(recurring::Column::CodeHash, Expr::value(code_hash))
                .col_expr(recurring::Column::CodeDef, Expr::value(code_def))
                .filter(recurring::Column::Id.eq(id))
                .exec(&self.db)
                .await?;
            Ok(())
        })
        .await
    }

    /// Pauses or resumes a schedule (resuming also sets its next tick). Returns whether it
    /// changed.
    pub(crate) async fn recurring_set_paused(
        &self,
        id: i64,
        paused: bool,
        next_run_at: Option<Option<i64>>,
        by: &str,
        now: i64,
    ) -> Result<bool> {
        retry_busy(|| async {
            let mut q = recurring::Entity::update_many()
                .col_expr(recurring::Column::Paused, Expr::value(paused))
                .col_expr(recurring::Column::UpdatedAt, Expr::value(now))
                .col_expr(recurring::Column::UpdatedBy, Expr::value(by));
            if let Some(next) = next_run_at {
                q = q.col_expr(recurring::Column::NextRunAt, Expr::value(next));
            }
            let res = q
                .filter(recurring::Column::Id.eq(id))
                .filter(recurring::Column::Paused.eq(!paused))
                .exec(&self.db)
                .await?;
            Ok(res.rows_affected > 0)
        })
        .await
    }

    /// Moves an active schedule's next tick from `from` to `to`, if it is still `from`: the
    /// compare-and-set that claims tick `from` for whoever makes it (in the caller's
    /// transaction, with the job it creates). `last_tick`: the tick just handled, if any;
    /// `definition`: the definition hash the caller read, if the change depends on it.
    pub(crate) async fn recurring_advance<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: i64,
        from: i64,
        to: Option<i64>,
        last_tick: Option<i64>,
        definition: Option<&str>,
    ) -> Result<bool> {
        let mut q = recurring::Entity::update_many()
            .col_expr(recurring::Column::NextRunAt, Expr::value(to));
        if let Some(t) = last_tick {
            q = q.col_expr(recurring::Column::LastTickAt, Expr::value(t));
        }
        let mut q = q
            .filter(recurring::Column::Id.eq(id))
            .filter(recurring::Column::NextRunAt.eq(from))
            .filter(recurring::Column::Paused.eq(false));
        // Firing: only the definition the job is made from (an edit in between wins).
        if let Some(hash) = definition {
            q = q.filter(recurring::Column::DefHash.eq(hash));
        }
        let res = q.exec(conn).await?;
        Ok(res.rows_affected > 0)
    }

    /// Skips an active schedule's next tick (`from`) to `to`. Returns whether it changed.
    pub(crate) async fn recurring_skip(
        &self,
        id: i64,
        from: i64,
        to: Option<i64>,
        by: &str,
        now: i64,
    ) -> Result<bool> {
        retry_busy(|| async {
            let tx = self.db.begin().await?;
            let moved = self
                .recurring_advance(&tx, id, from, to, None, None)
                .await?;
            if moved {
                recurring::Entity::update_many()
                    .col_expr(recurring::Column::UpdatedAt, Expr::value(now))
                    .col_expr(recurring::Column::UpdatedBy, Expr::value(by))
                    .filter(recurring::Column::Id.eq(id))
                    .exec(&tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(moved)
        })
        .await
    }

    /// Deletes a schedule and the record of its runs (not the jobs). Returns whether it existed.
    pub(crate) async fn recurring_delete(&self, id: i64) -> Result<bool> {
        retry_busy(|| async {
            let tx = self.db.begin().await?;
            recurring_run::Entity::delete_many()
                .filter(recurring_run::Column::RecurringId.eq(id))
                .exec(&tx)
                .await?;
            let res = recurring::Entity::delete_by_id(id).exec(&tx).await?;
            tx.commit().await?;
            Ok(res.rows_affected > 0)
        })
        .await
    }

    /// Active schedules of `kinds` whose next tick is due at `now`, earliest first.
    pub(crate) async fn recurring_due(
        &self,
        now: i64,
        kinds: &[String],
    ) -> Result<Vec<recurring::Model>> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        Ok(recurring::Entity::find()
            .filter(recurring::Column::Paused.eq(false))
            .filter(recurring::Column::NextRunAt.lte(now))
            .filter(recurring::Column::Kind.is_in(kinds.iter().map(String::as_str)))
            .order_by_asc(recurring::Column::NextRunAt)
            .limit(100)
            .all(&self.read)
            .await?)
    }

    /// The earliest next tick among active schedules of `kinds`.
    pub(crate) async fn recurring_next_due(&self, kinds: &[String]) -> Result<Option<i64>> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let next: Option<Option<i64>> = recurring::Entity::find()
            .select_only()
            .column_as(recurring::Column::NextRunAt.min(), "next")
            .filter(recurring::Column::Paused.eq(false))
            .filter(recurring::Column::Kind.is_in(kinds.iter().map(String::as_str)))
            .into_tuple()
            .one(&self.read)
            .await?;
        Ok(next.flatten())
    }

    /// Records a run of schedule `id` (in the caller's transaction). `None`: tick `tick` of
    /// this schedule already has its run (the unique key), so nothing was recorded.
    pub(crate) async fn recurring_add_run<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: i64,
        tick: Option<i64>,
        reason: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        let am = recurring_run::ActiveModel {
            id: NotSet,
            recurring_id: Set(id),
            job_id: Set(None),
            tick_at: Set(tick),
            reason: Set(reason.to_owned()),
            error: Set(None),
            at: Set(now),
        };
        let res = recurring_run::Entity::insert(am)
            .on_conflict_do_nothing_on([
                recurring_run::Column::RecurringId,
                recurring_run::Column::TickAt,
            ])
            .exec(conn)
            .await?;
        Ok(match res {
            TryInsertResult::Inserted(r) => Some(r.last_insert_id),
            _ => None,
        })
    }

    /// Completes a run's record: the job it created, or why none could be.
    pub(crate) async fn recurring_run_result<C: ConnectionTrait>(
        &self,
        conn: &C,
        run_id: i64,
        job_id: Option<i64>,
        error: Option<String>,
    ) -> Result<()> {
        recurring_run::Entity::update_many()
            .col_expr(recurring_run::Column::JobId, Expr::value(job_id))
            .col_expr(recurring_run::Column::Error, Expr::value(error))
            .filter(recurring_run::Column::Id.eq(run_id))
            .exec(conn)
            .await?;
        Ok(())
    }

    /// A schedule's latest `limit` runs, newest first, each with its job's status (`None`:
    /// no job, or the job is gone).
    pub(crate) async fn recurring_runs(
        &self,
        id: i64,
        limit: u64,
    ) -> Result<Vec<(recurring_run::Model, Option<String>)>> {
        let runs = recurring_run::Entity::find()
            .filter(recurring_run::Column::RecurringId.eq(id))
            .order_by_desc(recurring_run::Column::Id)
            .limit(limit)
            .all(&self.read)
            .await?;
        let ids: Vec<i64> = runs.iter().filter_map(|r| r.job_id).collect();
        let statuses: std::collections::HashMap<i64, String> = if ids.is_empty() {
            Default::default()
        } else {
            job::Entity::find()
                .select_only()
                .column(job::Column::Id)
                .column(job::Column::Status)
                .filter(job::Column::Id.is_in(ids))
                .into_tuple::<(i64, String)>()
                .all(&self.read)
                .await?
                .into_iter()
                .collect()
        };
        Ok(runs
            .into_iter()
            .map(|r| {
                let status = r.job_id.and_then(|j| statuses.get(&j).cloned());
                (r, status)
            })
            .collect())
    }
}
