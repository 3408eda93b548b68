//! What attempts report, written in batches: log lines, result rows and progress, each fenced
//! to the run (attempt and start) that made it, and completions, one statement per batch.
use std::collections::{BTreeMap, HashMap};

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};

use super::driver::StatRow;
use super::*;
use crate::context::ResultCell;
use crate::entity::{job, job_log, job_result};
use crate::error::{Error, Result};
use crate::insight::histogram::bucket_of;
use crate::state::JobStatus;

/// Reports gathered by the completer since its last flush.
#[derive(Debug, Default)]
pub(crate) struct WriteBatch {
    /// `(job, run, at, line)`.
    pub logs: Vec<(i64, Run, i64, String)>,
    /// Latest progress and progress text per job and run (only the last value matters).
    pub progress: HashMap<(i64, Run), (Option<i32>, Option<String>)>,
    /// `(job, run, cells)`.
    pub results: Vec<(i64, Run, Vec<ResultCell>)>,
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

impl Store {
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
            let is_live = |job: i64, run: Run| live.get(&job) == Some(&run);
            let mut written = WrittenBatch::default();
            let logs: Vec<_> = batch
                .logs
                .iter()
                .filter(|(j, a, _, _)| is_live(*j, *a))
                .collect();
            written.stale += batch.logs.len() - logs.len();
            if !logs.is_empty() {
                for chunk in logs.chunks(1000) {
                    let rows = chunk
                        .iter()
                        .map(|(job_id, run, at, line)| job_log::ActiveModel {
                            id: NotSet,
                            job_id: Set(*job_id),
                            attempt: Set(run.attempt),
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
            for ((job_id, run), (progress, text)) in &batch.progress {
                if !is_live(*job_id, *run) {
                    written.stale += 1;
                    continue;
                }
                let mut q = job::Entity::update_many()
                    .col_expr(job::Column::UpdatedAt, Expr::value(now))
                    .filter(job::Column::Id.eq(*job_id))
                    .filter(job::Column::Attempt.eq(run.attempt))
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

    /// The run each job of the batch is running on `node` (jobs not running there are absent).
    /// Locks the rows on PostgreSQL until the transaction ends.
    async fn fences<C: ConnectionTrait>(
        &self,
        tx: &C,
        batch: &WriteBatch,
        node: &str,
    ) -> Result<HashMap<i64, Run>> {
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
                let started: Option<i64> = row.try_get_by_index(4)?;
                let active = matches!(status.as_str(), "running" | "aborting");
                if active && locked_by.as_deref() == Some(node) {
                    live.insert(id, Run { attempt, started });
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
        results: &[&(i64, Run, Vec<ResultCell>)],
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
                .map(|(job_id, run, cells)| job_result::ActiveModel {
                    id: NotSet,
                    job_id: Set(*job_id),
                    attempt: Set(run.attempt),
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
        let mut stats: BTreeMap<(i64, String, String), StatRow> = BTreeMap::new();
        let mut rest: Vec<&Completion> = batch.iter().collect();
        while !rest.is_empty() {
            // One completion per job in a statement; a second one for the same job (a rescue
            // racing the executor) goes in the next round and finds the job changed.
            let mut seen = std::collections::HashSet::new();
            let (round, later): (Vec<&Completion>, Vec<&Completion>) =
                rest.into_iter().partition(|c| seen.insert(c.job_id));
            rest = later;
            let owned: Vec<Completion> = round.iter().map(|c| (*c).clone()).collect();
            let mut changed: HashMap<i64, Changed> = HashMap::new();
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
                    Changed {
                        status,
                        kind: row.try_get_by_index(2)?,
                        error: row.try_get_by_index(3)?,
                        queue: row.try_get_by_index(4)?,
                        started_at: row.try_get_by_index(5)?,
                    },
                );
            }
            let mut attempts = Vec::with_capacity(changed.len());
            for c in round {
                let Some(Changed {
                    status,
                    kind,
                    error,
                    queue,
                    started_at,
                }) = changed.remove(&c.job_id)
                else {
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
                attempts.push((c.job_id, c.attempt, outcome, error, c.at));
                if !c.refund_attempt {
                    count_stat(&mut stats, c, status, &queue, &kind, started_at);
                }
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
                let rows: Vec<(i64, i32, &str, Option<&str>, i64)> = attempts
                    .iter()
                    .map(|(id, a, o, e, at)| (*id, *a, *o, e.as_deref(), *at))
                    .collect();
                tx.execute_raw(self.driver.finish_attempts(&rows)).await?;
            }
        }
        if !stats.is_empty() {
            let rows: Vec<StatRow> = stats.into_values().collect();
            for chunk in rows.chunks(500) {
                tx.execute_raw(self.driver.add_stats(chunk)).await?;
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
}

/// A job as a completion left it.
struct Changed {
    status: JobStatus,
    kind: String,
    error: Option<String>,
    queue: String,
    started_at: Option<i64>,
}

/// Counts a finished attempt in its minute's row (by the completion's time), with how long it
/// ran and how long it had waited since it was due.
fn count_stat(
    stats: &mut BTreeMap<(i64, String, String), StatRow>,
    c: &Completion,
    status: JobStatus,
    queue: &str,
    kind: &str,
    started_at: Option<i64>,
) {
    let minute = c.at - c.at.rem_euclid(60_000);
    let row = stats
        .entry((minute, queue.to_owned(), kind.to_owned()))
        .or_insert_with(|| StatRow {
            minute,
            queue: queue.to_owned(),
            kind: kind.to_owned(),
            ..StatRow::default()
        });
    match status {
        JobStatus::Done => row.done += 1,
        JobStatus::Exception | JobStatus::Killed => row.failed += 1,
        JobStatus::Cancelled => row.cancelled += 1,
        JobStatus::New | JobStatus::Scheduled => row.retried += 1,
        JobStatus::Running | JobStatus::Aborting => {}
    }
    if let Some(start) = started_at {
        let ran = Ord::max(c.at - start, 0);
        row.run_ms += ran;
        row.run[bucket_of(ran)] += 1;
        if let Some(due) = c.due_at {
            let waited = Ord::max(start - due, 0);
            row.wait_ms += waited;
            row.wait[bucket_of(waited)] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait;

    use super::*;

    /// Reports and completions land only on the run that made them: the same attempt number on
    /// the same node, started at another time (the number came back after a snooze), is another
    /// run.
    #[tokio::test]
    async fn reports_and_completions_land_only_on_their_own_run() {
        let (_dir, worker, ids) = crate::store::test_worker(1).await;
        let id = ids[0];
        let store = worker.store();
        store
            .connection()
            .execute_unprepared(&format!(
                "UPDATE nightshift_jobs SET status = 'running', attempt = 1, locked_by = 'n1', \
                 started_at = 2000 WHERE id = {id}"
            ))
            .await
            .unwrap();
        let done = |started| WriteBatch {
            completions: vec![Completion {
                job_id: id,
                attempt: 1,
                node: "n1".into(),
                started_at: Some(started),
                status: JobStatus::Done,
                error: None,
                run_at: None,
                due_at: None,
                outcome: "done",
                refund_attempt: false,
                log: None,
                at: 3000,
            }],
            ..Default::default()
        };
        let report = |started| {
            let run = Run {
                attempt: 1,
                started: Some(started),
            };
            let mut batch = WriteBatch::default();
            batch.logs.push((id, run, 2500, "a line".into()));
            batch
                .results
                .push((id, run, vec![ResultCell::ok("a cell")]));
            batch.progress.insert((id, run), (Some(50), None));
            batch
        };
        let stale = store.write_batch(&report(1000), "n1", 3000).await.unwrap();
        assert_eq!(stale.stale, 3, "an earlier run's log, row and progress");
        assert!(stale.logs.is_empty() && stale.results.is_empty());
        let own = store.write_batch(&report(2000), "n1", 3000).await.unwrap();
        assert_eq!((own.stale, own.logs.len(), own.results.len()), (0, 1, 1));
        let stale = store.write_batch(&done(1000), "n1", 3000).await.unwrap();
        assert!(
            stale.completed.is_empty(),
            "an earlier run's outcome landed"
        );
        assert_eq!(worker.job(id).await.unwrap().status, JobStatus::Running);
        let own = store.write_batch(&done(2000), "n1", 3000).await.unwrap();
        assert_eq!(own.completed.len(), 1);
        assert_eq!(worker.job(id).await.unwrap().status, JobStatus::Done);
    }
}
