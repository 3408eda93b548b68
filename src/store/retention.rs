//! Retention's SQL: old finished jobs (with their logs, results and attempts), old audit
//! entries and stale login-throttle rows deleted in small batches, and the pruner's record.
use sea_orm::{ConnectionTrait, TransactionTrait};

use super::{Store, retry_busy};
use crate::error::Result;

/// The pruner's record: who pruned last, when, and what it deleted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PruneRun {
    /// The node that ran it.
    pub node: Option<String>,
    /// When it started and ended (ms since the epoch; `finished_at` is `None` while it runs).
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Rows deleted, by what they were (`done`, `exception`, `killed`, `cancelled`, `audit`,
    /// `throttle`).
    pub deleted: std::collections::BTreeMap<String, u64>,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

impl Store {
    /// Takes the pruner's turn for `node` unless another run started after `since`: true when
    /// this node prunes now. A compare-and-set on the one record row, so at most one node
    /// prunes per interval.
    pub(crate) async fn take_prune_turn(&self, node: &str, now: i64, since: i64) -> Result<bool> {
        retry_busy(|| async {
            let res = self
                .db
                .execute_raw(self.driver.stmt(
                    "UPDATE nightshift_retention SET node = ?, started_at = ?, \
                     finished_at = NULL, error = NULL \
                     WHERE id = 1 AND (started_at IS NULL OR started_at <= ?)",
                    vec![node.into(), now.into(), since.into()],
                ))
                .await?;
            Ok(res.rows_affected() == 1)
        })
        .await
    }

    /// Records the end of this node's run.
    pub(crate) async fn end_prune_turn(
        &self,
        now: i64,
        deleted: &std::collections::BTreeMap<String, u64>,
        error: Option<String>,
    ) -> Result<()> {
        let deleted = serde_json::to_string(deleted).unwrap_or_else(|_| "{}".into());
        retry_busy(|| async {
            self.db
                .execute_raw(self.driver.stmt(
                    "UPDATE nightshift_retention SET finished_at = ?, deleted = ?, error = ? \
                     WHERE id = 1",
                    vec![now.into(), deleted.clone().into(), error.clone().into()],
                ))
                .await?;
            Ok(())
        })
        .await
    }

    /// The pruner's last run, if one ever started.
    pub async fn last_prune(&self) -> Result<Option<PruneRun>> {
        let row = self
            .read
            .query_one_raw(self.driver.stmt(
                "SELECT node, started_at, finished_at, deleted, error \
                 FROM nightshift_retention WHERE id = 1",
                vec![],
            ))
            .await?;
        let Some(r) = row else { return Ok(None) };
        let Some(started_at) = r.try_get_by_index::<Option<i64>>(1)? else {
            return Ok(None);
        };
        let deleted: Option<String> = r.try_get_by_index(3)?;
        Ok(Some(PruneRun {
            node: r.try_get_by_index(0)?,
            started_at,
            finished_at: r.try_get_by_index(2)?,
            deleted: deleted
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or_default(),
            error: r.try_get_by_index(4)?,
        }))
    }

    /// Deletes up to `limit` jobs in state `status` that finished before `before`, oldest
    /// first, with their logs, results and attempts, in one short transaction; returns how many.
    pub(crate) async fn prune_jobs(&self, status: &str, before: i64, limit: u64) -> Result<u64> {
        retry_busy(|| async {
            let tx = self.db.begin().await?;
            let ids: Vec<i64> = tx
                .query_all_raw(self.driver.stmt(
                    // Spelled to match the partial index `nightshift_jobs_finished`.
                    "SELECT id FROM nightshift_jobs WHERE status = ? \
                     AND finished_at IS NOT NULL AND finished_at < ? \
                     ORDER BY finished_at LIMIT ?",
                    vec![status.into(), before.into(), (limit as i64).into()],
                ))
                .await?
                .iter()
                .map(|r| r.try_get_by_index::<i64>(0))
                .collect::<Result<_, _>>()?;
            let n = super::bulk::delete_jobs_in(&tx, &ids).await?;
            tx.commit().await?;
            Ok(n)
        })
        .await
    }

    /// Deletes audit entries older than `before` among the oldest `limit` (ids grow with time:
    /// a read of the first rows by primary key, never a scan); returns how many.
    pub(crate) async fn prune_audit(&self, before: i64, limit: u64) -> Result<u64> {
        retry_busy(|| async {
            let ids: Vec<i64> = self
                .db
                .query_all_raw(self.driver.stmt(
                    "SELECT id, at FROM nightshift_audit ORDER BY id LIMIT ?",
                    vec![(limit as i64).into()],
                ))
                .await?
                .iter()
                .map(|r| Ok((r.try_get_by_index::<i64>(0)?, r.try_get_by_index::<i64>(1)?)))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .filter(|(_, at)| *at < before)
                .map(|(id, _)| id)
                .collect();
            if ids.is_empty() {
                return Ok(0);
            }
            let marks = vec!["?"; ids.len()].join(", ");
            let res = self
                .db
                .execute_raw(self.driver.stmt(
                    &format!("DELETE FROM nightshift_audit WHERE id IN ({marks})"),
                    ids.iter().map(|id| (*id).into()).collect(),
                ))
                .await?;
            Ok(res.rows_affected())
        })
        .await
    }

    /// Deletes up to `limit` login-throttle counters whose window began before `before` and
    /// that lock nothing any more; returns how many.
    pub(crate) async fn prune_throttle(&self, before: i64, now: i64, limit: u64) -> Result<u64> {
        retry_busy(|| async {
            let res = self
                .db
                .execute_raw(self.driver.stmt(
                    "DELETE FROM nightshift_login_throttle WHERE \"key\" IN (\
                       SELECT \"key\" FROM nightshift_login_throttle WHERE window_start < ? \
                       AND (locked_until IS NULL OR locked_until < ?) LIMIT ?)",
                    vec![before.into(), now.into(), (limit as i64).into()],
                ))
                .await?;
            Ok(res.rows_affected())
        })
        .await
    }
}
