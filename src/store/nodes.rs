//! Nodes: heartbeats on the database's clock, reaping the silent ones, and finding the jobs
//! of the dead (rescue) and the aborts meant for a node.
use std::collections::HashMap;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use super::*;
use crate::entity::{job, node};
use crate::error::{Error, Result};
use crate::state::JobStatus;

impl Store {
    /// Records that `node` is alive (on its own connection), inserting its row if it is new or
    /// was reaped, with the queues it serves (`queues`, a JSON object) and the kinds it handles
    /// (`kinds`, a JSON array). The time stored is the database's. Returns whether the row was
    /// there, and the database's time.
    pub(crate) async fn heartbeat(
        &self,
        me: &node::Model,
        queues: &str,
        kinds: &str,
    ) -> Result<(bool, i64)> {
        retry_busy(|| async {
            let row = self
                .beat
                .query_one_raw(self.driver.heartbeat(&me.id, queues, kinds))
                .await?;
            if let Some(row) = row {
                return Ok((true, row.try_get_by_index::<i64>(0)?));
            }
            let row = self
                .beat
                .query_one_raw(self.driver.insert_node(&node::Model {
                    queues: Some(queues.to_owned()),
                    kinds: Some(kinds.to_owned()),
                    ..me.clone()
                }))
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

    /// Jobs `running` or `aborting` under `node` that started before `before`: what this node
    /// holds, to compare with what it knows it holds (see `maintenance`).
    pub(crate) async fn running_on(&self, node: &str, before: i64) -> Result<Vec<job::Model>> {
        Ok(job::Entity::find()
            .filter(job::Column::LockedBy.eq(node))
            .filter(
                job::Column::Status
                    .is_in([JobStatus::Running.as_str(), JobStatus::Aborting.as_str()]),
            )
            .filter(job::Column::StartedAt.lt(before))
            .all(&self.read)
            .await?)
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
            // A read: never queued on the heartbeat's own connection (maintenance and the
            // listener both ask).
            .all(&self.read)
            .await?;
        Ok(rows)
    }

    /// Every node (first started first) with the jobs it runs — `running` or `aborting` and
    /// locked by it: how many, and the first `list` of them as `(id, kind, status)`, oldest first.
    // Used by the admin and the bench only.
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
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
