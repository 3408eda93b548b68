//! Queues: their shared state (paused, global limit), and what the Queues page shows of each
//! (waiting, running, the oldest due job's wait, throughput per minute).
use std::collections::{BTreeMap, BTreeSet, HashMap};

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryOrder};

use super::*;
use crate::clock::to_datetime;
use crate::entity::queue;
use crate::error::Result;
use crate::queue::{MAX_PRIORITY, QueueInfo, THROUGHPUT_MINUTES};

impl Store {
    /// Every queue's row (queues never paused nor limited have none).
    pub(crate) async fn queue_rows(&self) -> Result<Vec<queue::Model>> {
        Ok(queue::Entity::find()
            .order_by_asc(queue::Column::Name)
            .all(&self.read)
            .await?)
    }

    /// Pauses or resumes `name` on every node; returns its row. Claims read pauses
    /// themselves; the other nodes are told to read them again (and to claim, after a resume).
    pub(crate) async fn set_queue_paused(
        &self,
        name: &str,
        paused: bool,
        by: Option<&str>,
        now: i64,
    ) -> Result<queue::Model> {
        let row = queue::ActiveModel {
            name: Set(name.to_owned()),
            paused: Set(paused),
            paused_by: Set(paused.then(|| by.unwrap_or("").to_owned())),
            paused_at: Set(paused.then_some(now)),
            global_limit: Set(None),
            updated_at: Set(now),
        };
        let model = retry_busy(|| async {
            Ok(queue::Entity::insert(row.clone())
                .on_conflict(
                    OnConflict::column(queue::Column::Name)
                        .update_columns([
                            queue::Column::Paused,
                            queue::Column::PausedBy,
                            queue::Column::PausedAt,
                            queue::Column::UpdatedAt,
                        ])
                        .to_owned(),
                )
                .exec_with_returning(&self.db)
                .await?)
        })
        .await?;
        self.notify_after(NOTIFY_QUEUES, name).await;
        Ok(model)
    }

    /// Records the global limits a node's code sets (`None` removes one).
    pub(crate) async fn set_global_limits(
        &self,
        limits: &[(String, Option<u32>)],
        now: i64,
    ) -> Result<()> {
        for (name, limit) in limits {
            let row = queue::ActiveModel {
                name: Set(name.clone()),
                paused: Set(false),
                paused_by: Set(None),
                paused_at: Set(None),
                global_limit: Set(limit.map(|n| n.min(i32::MAX as u32) as i32)),
                updated_at: Set(now),
            };
            retry_busy(|| async {
                queue::Entity::insert(row.clone())
                    .on_conflict(
                        OnConflict::column(queue::Column::Name)
                            .update_columns([queue::Column::GlobalLimit, queue::Column::UpdatedAt])
                            .to_owned(),
                    )
                    .exec_without_returning(&self.db)
                    .await?;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Drops the per-minute counts of minutes before `before` (ms).
    pub(crate) async fn prune_stats(&self, before: i64) -> Result<()> {
        retry_busy(|| async {
            self.db
                .execute_raw(self.driver.stmt(
                    "DELETE FROM nightshift_stats WHERE minute < ?",
                    vec![before.into()],
                ))
                .await?;
            Ok(())
        })
        .await
    }

    /// Every queue that has a row, jobs waiting or running, or a node serving it, as the
    /// Queues page shows it. `now`: the database's time, in ms.
    pub(crate) async fn queue_overview(&self, now: i64) -> Result<Vec<QueueInfo>> {
        let db = &self.read;
        let rows: HashMap<String, queue::Model> = self
            .queue_rows()
            .await?
            .into_iter()
            .map(|q| (q.name.clone(), q))
            .collect();
        // Each live node's queues and its limit for each.
        let mut served: HashMap<String, (usize, i64)> = HashMap::new();
        for node in self.nodes().await? {
            let queues: BTreeMap<String, i64> = node
                .queues
                .as_deref()
                .and_then(|q| serde_json::from_str(q).ok())
                .unwrap_or_default();
            for (name, limit) in queues {
                let entry = served.entry(name).or_default();
                entry.0 += 1;
                entry.1 += limit;
            }
        }
        let grouped = |sql: &str| self.driver.stmt(sql, vec![]);
        let counts = |rows: Vec<sea_orm::QueryResult>| -> Result<HashMap<String, i64>> {
            rows.iter()
                .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
                .collect()
        };
        let running = counts(
            db.query_all_raw(grouped(
                "SELECT queue, COUNT(*) FROM nightshift_jobs \
                 WHERE status IN ('running', 'aborting') GROUP BY queue",
            ))
            .await?,
        )?;
        let mut names: BTreeSet<String> = rows.keys().cloned().collect();
        names.extend(served.keys().cloned());
        names.extend(running.keys().cloned());
        names.extend(self.queues_with_due_jobs().await?);
        let since = now - now.rem_euclid(60_000) - (THROUGHPUT_MINUTES as i64 - 1) * 60_000;
        let mut throughput: HashMap<String, Vec<i64>> = HashMap::new();
        for r in db
            .query_all_raw(self.driver.stmt(
                "SELECT queue, minute, SUM(done + failed + cancelled) FROM nightshift_stats \
                 WHERE minute >= ? GROUP BY queue, minute",
                vec![since.into()],
            ))
            .await?
        {
            let queue: String = r.try_get_by_index(0)?;
            let minute: i64 = r.try_get_by_index(1)?;
            let n: i64 = r.try_get_by_index(2)?;
            let slot = ((minute - since) / 60_000) as usize;
            let series = throughput
                .entry(queue)
                .or_insert_with(|| vec![0; THROUGHPUT_MINUTES]);
            if let Some(v) = series.get_mut(slot) {
                *v += n;
            }
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let (due, oldest) = self.due_in_queue(&name).await?;
            let scheduled = self.capped_count("scheduled", &name).await?;
            let row = rows.get(&name);
            let (nodes, per_node) = served.get(&name).copied().unwrap_or((0, 0));
            let global_limit = row.and_then(|r| r.global_limit);
            let concurrency = match global_limit {
                Some(g) if nodes > 0 => per_node.min(g as i64),
                _ => per_node,
            };
            out.push(QueueInfo {
                waiting: due + scheduled,
                due,
                running: running.get(&name).copied().unwrap_or(0),
                paused: row.is_some_and(|r| r.paused),
                paused_by: row.and_then(|r| r.paused_by.clone()),
                paused_at: row.and_then(|r| r.paused_at).map(to_datetime),
                concurrency,
                global_limit,
                nodes,
                oldest_waiting_s: oldest.map(|at| ((now - at) / 1000).max(0)),
                throughput: throughput
                    .remove(&name)
                    .unwrap_or_else(|| vec![0; THROUGHPUT_MINUTES]),
                name,
            });
        }
        Ok(out)
    }

    /// The queues with due jobs, read from the claim index one queue at a time (a loose index
    /// scan: as many probes as queues, whatever the number of jobs).
    async fn queues_with_due_jobs(&self) -> Result<Vec<String>> {
        let rows = self
            .read
            .query_all_raw(self.driver.stmt(
                &format!(
                    "WITH RECURSIVE q(name) AS ( \
                       SELECT MIN(queue) FROM nightshift_jobs{ix} WHERE status = 'new' \
                       UNION ALL \
                       SELECT (SELECT MIN(queue) FROM nightshift_jobs{ix} \
                               WHERE status = 'new' AND queue > q.name) \
                       FROM q WHERE q.name IS NOT NULL) \
                     SELECT name FROM q WHERE name IS NOT NULL",
                    ix = self.driver.ready_index()
                ),
                vec![],
            ))
            .await?;
        rows.iter().map(|r| Ok(r.try_get_by_index(0)?)).collect()
    }

    /// How many jobs of `queue` are due (counted up to [`COUNT_CAP`]), and since when the
    /// oldest has been due: the first entry of each priority's range of the claim index.
    async fn due_in_queue(&self, queue: &str) -> Result<(i64, Option<i64>)> {
        let count = self.capped_count("new", queue).await?;
        if count == 0 {
            return Ok((0, None));
        }
        let heads: Vec<String> = (0..=MAX_PRIORITY)
            .map(|p| {
                format!(
                    "SELECT (SELECT MIN(run_at) FROM nightshift_jobs{ix} \
                     WHERE status = 'new' AND queue = ? AND priority = {p}) AS m",
                    ix = self.driver.ready_index()
                )
            })
            .collect();
        let sql = format!(
            "SELECT MIN(m) FROM ({}) AS heads",
            heads.join(" UNION ALL ")
        );
        let values = (0..=MAX_PRIORITY).map(|_| queue.into()).collect();
        let oldest = self
            .read
            .query_one_raw(self.driver.stmt(&sql, values))
            .await?
            .map(|r| r.try_get_by_index::<Option<i64>>(0))
            .transpose()?
            .flatten();
        Ok((count, oldest))
    }

    /// How many jobs of `queue` are in `status` (`new` or `scheduled`), counted up to
    /// [`COUNT_CAP`]: the page refreshes every 2 s and must not walk a deep backlog.
    async fn capped_count(&self, status: &'static str, queue: &str) -> Result<i64> {
        let index = match status {
            "new" => self.driver.ready_index(),
            _ => "",
        };
        Ok(self
            .read
            .query_one_raw(self.driver.stmt(
                &format!(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM nightshift_jobs{index} \
                     WHERE status = '{status}' AND queue = ? LIMIT ?) AS c"
                ),
                vec![queue.into(), (COUNT_CAP as i64).into()],
            ))
            .await?
            .map(|r| r.try_get_by_index::<i64>(0))
            .transpose()?
            .unwrap_or(0))
    }
}
