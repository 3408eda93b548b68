//! The reads behind the dashboard, its health signals and `/metrics`: sums of the per-minute
//! counts and histograms (`nightshift_stats`, by its primary key's minute range), node rows,
//! running jobs, and capped probes of waiting work. Nothing here walks the jobs table.
use std::collections::{BTreeSet, HashMap};

use sea_orm::{ConnectionTrait, QueryResult};

use super::*;
use crate::error::Result;
use crate::insight::health::{self, Facts, NodeFacts};
use crate::insight::histogram::{BUCKETS, Buckets, stat_columns};
use crate::insight::{
    Charts, DAY_POINTS, DAY_STEP_MINUTES, Dashboard, HOUR_POINTS, KindTimes, Percentiles, Series,
};

/// How many running jobs the overdue check looks at (more run at once only on huge clusters).
const RUNNING_CAP: u64 = 10_000;

/// Counts and histograms of finished attempts summed over some minutes, for one queue and kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatSum {
    pub queue: String,
    pub kind: String,
    pub done: i64,
    pub failed: i64,
    pub retried: i64,
    pub cancelled: i64,
    pub run_ms: i64,
    pub wait_ms: i64,
    pub run: Buckets,
    pub wait: Buckets,
}

impl StatSum {
    /// Every attempt counted.
    pub fn attempts(&self) -> i64 {
        self.done + self.failed + self.retried + self.cancelled
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &StatSum) {
        self.done += other.done;
        self.failed += other.failed;
        self.retried += other.retried;
        self.cancelled += other.cancelled;
        self.run_ms += other.run_ms;
        self.wait_ms += other.wait_ms;
        for i in 0..BUCKETS {
            self.run[i] += other.run[i];
            self.wait[i] += other.wait[i];
        }
    }
}

/// `CAST(SUM(c) AS BIGINT)` for each column (PostgreSQL sums a BIGINT as NUMERIC).
fn sums() -> String {
    stat_columns()
        .into_iter()
        .map(|c| format!("CAST(SUM({c}) AS BIGINT)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A row of `SELECT queue, kind, {sums()}`.
fn stat_sum(r: &QueryResult) -> Result<StatSum> {
    let get = |i: usize| -> Result<i64> { Ok(r.try_get_by_index::<Option<i64>>(i)?.unwrap_or(0)) };
    let mut s = StatSum {
        queue: r.try_get_by_index(0)?,
        kind: r.try_get_by_index(1)?,
        done: get(2)?,
        failed: get(3)?,
        retried: get(4)?,
        cancelled: get(5)?,
        run_ms: get(6)?,
        wait_ms: get(7)?,
        ..StatSum::default()
    };
    for i in 0..BUCKETS {
        s.run[i] = get(8 + i)?;
        s.wait[i] = get(8 + BUCKETS + i)?;
    }
    Ok(s)
}

impl Store {
    /// The counts and histograms of the minutes in `[from, to)` (ms), per queue and kind.
    pub async fn stat_sums(&self, from: i64, to: i64) -> Result<Vec<StatSum>> {
        let rows = self
            .read
            .query_all_raw(self.driver.stmt(
                &format!(
                    "SELECT queue, kind, {} FROM nightshift_stats \
                     WHERE minute >= ? AND minute < ? GROUP BY queue, kind ORDER BY queue, kind",
                    sums()
                ),
                vec![from.into(), to.into()],
            ))
            .await?;
        rows.iter().map(stat_sum).collect()
    }

    /// The dashboard at the database's time `now` (ms): nodes silent longer than
    /// `stale_after_ms` count as stale.
    pub(crate) async fn dashboard(&self, now: i64, stale_after_ms: i64) -> Result<Dashboard> {
        let day_ms = DAY_POINTS as i64 * DAY_STEP_MINUTES * 60_000;
        let mut last_hour = Series::empty(now, 60, HOUR_POINTS);
        let mut last_day = Series::empty(now, DAY_STEP_MINUTES * 60, DAY_POINTS);
        let since = last_day.points[0].at.timestamp_millis();
        for r in self
            .read
            .query_all_raw(self.driver.stmt(
                "SELECT minute, CAST(SUM(done) AS BIGINT), CAST(SUM(failed) AS BIGINT), \
                 CAST(SUM(retried) AS BIGINT), CAST(SUM(cancelled) AS BIGINT) \
                 FROM nightshift_stats WHERE minute >= ? GROUP BY minute",
                vec![since.into()],
            ))
            .await?
        {
            let minute: i64 = r.try_get_by_index(0)?;
            let n = |i| -> Result<i64> { Ok(r.try_get_by_index::<Option<i64>>(i)?.unwrap_or(0)) };
            let (done, failed, retried, cancelled) = (n(1)?, n(2)?, n(3)?, n(4)?);
            last_hour.add(minute, done, failed, retried, cancelled);
            last_day.add(minute, done, failed, retried, cancelled);
        }
        let mut per_kind: HashMap<String, StatSum> = HashMap::new();
        for s in self.stat_sums(now - day_ms, i64::MAX).await? {
            per_kind.entry(s.kind.clone()).or_default().add(&s);
        }
        let mut kinds: Vec<KindTimes> = per_kind
            .into_iter()
            .map(|(kind, s)| KindTimes {
                attempts: s.attempts(),
                failed: s.failed + s.retried,
                wait_ms: Percentiles::of(&s.wait),
                run_ms: Percentiles::of(&s.run),
                run_buckets: s.run,
                kind,
            })
            .collect();
        kinds.sort_by(|a, b| b.attempts.cmp(&a.attempts).then(a.kind.cmp(&b.kind)));
        let facts = self.health_facts(now, stale_after_ms, &kinds).await?;
        Ok(Dashboard {
            series: Charts {
                last_hour,
                last_day,
                kinds,
            },
            health: health::judge(&facts),
        })
    }

    /// What the health signals are judged from.
    async fn health_facts(
        &self,
        now: i64,
        stale_after_ms: i64,
        kinds: &[KindTimes],
    ) -> Result<Facts> {
        let nodes = self
            .nodes()
            .await?
            .into_iter()
            .map(|n| NodeFacts {
                queues: n
                    .queues
                    .as_deref()
                    .and_then(|q| serde_json::from_str::<HashMap<String, i64>>(q).ok())
                    .map(|m| m.into_keys().collect())
                    .unwrap_or_default(),
                kinds: n
                    .kinds
                    .as_deref()
                    .and_then(|k| serde_json::from_str::<BTreeSet<String>>(k).ok()),
                id: n.id,
                host: n.host,
                heartbeat_at: n.heartbeat_at,
            })
            .collect();
        let running = self
            .read
            .query_all_raw(self.driver.stmt(
                "SELECT kind, started_at FROM nightshift_jobs \
                 WHERE status IN ('running', 'aborting') AND started_at IS NOT NULL LIMIT ?",
                vec![(RUNNING_CAP as i64).into()],
            ))
            .await?
            .iter()
            .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
            .collect::<Result<Vec<(String, i64)>>>()?;
        let usual = kinds
            .iter()
            .filter_map(|k| {
                let p95 = crate::insight::histogram::percentile(&k.run_buckets, 0.95)?;
                let samples: i64 = k.run_buckets.iter().sum();
                Some((k.kind.clone(), (p95, samples)))
            })
            .collect();
        let mut facts = Facts {
            now,
            stale_after_ms,
            nodes,
            queues: self.queue_overview(now).await?,
            running,
            usual,
            unhandled: Vec::new(),
        };
        // Only the kinds no live node handles are probed (usually none).
        for kind in self.kinds_with_jobs().await? {
            if facts.handled(&kind) {
                continue;
            }
            let (count, oldest) = self.waiting_of_kind(&kind).await?;
            if count > 0 {
                facts.unhandled.push((kind, count, oldest));
            }
        }
        Ok(facts)
    }

    /// Every kind with jobs in the table, read from the `(kind, id)` index one kind at a time
    /// (a loose index scan: as many probes as kinds, whatever the number of jobs).
    async fn kinds_with_jobs(&self) -> Result<Vec<String>> {
        let rows = self
            .read
            .query_all_raw(self.driver.stmt(
                "WITH RECURSIVE k(name) AS ( \
                   SELECT MIN(kind) FROM nightshift_jobs \
                   UNION ALL \
                   SELECT (SELECT MIN(kind) FROM nightshift_jobs WHERE kind > k.name) \
                   FROM k WHERE k.name IS NOT NULL) \
                 SELECT name FROM k WHERE name IS NOT NULL",
                vec![],
            ))
            .await?;
        rows.iter().map(|r| Ok(r.try_get_by_index(0)?)).collect()
    }

    /// How many jobs of `kind` wait (`new` or `scheduled`) among its newest [`COUNT_CAP`] jobs,
    /// and when the first of those was created. Bounded so that a retired kind with a long
    /// history costs a fixed probe of the `(kind, id)` index, not a walk of all its jobs; jobs
    /// left waiting for a missing handler are its newest.
    async fn waiting_of_kind(&self, kind: &str) -> Result<(i64, Option<i64>)> {
        let row = self
            .read
            .query_one_raw(self.driver.stmt(
                "SELECT COUNT(*), MIN(created_at) FROM (SELECT status, created_at \
                 FROM nightshift_jobs WHERE kind = ? ORDER BY id DESC LIMIT ?) AS w \
                 WHERE status IN ('new', 'scheduled')",
                vec![kind.into(), (COUNT_CAP as i64).into()],
            ))
            .await?;
        match row {
            Some(r) => Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)),
            None => Ok((0, None)),
        }
    }
}
