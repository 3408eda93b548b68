//! `nightshift bench`: how fast this machine enqueues, runs and starts jobs, measured end to end
//! through the public API (a fresh SQLite file unless a database URL is given).
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::Serialize;

use crate::demo::NoArgs;
use crate::entity::{job, job_attempt, job_log};
use crate::{JobContext, JobKind, NewJob, Worker};

const NOOP: &str = "Bench No-op";
const LOGGER: &str = "Bench Logger";

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub detail: String,
}

/// Runs the suite against `url` (a temporary SQLite file when `None`).
pub async fn run(url: Option<&str>) -> crate::Result<Vec<Figure>> {
    let dir = std::env::temp_dir().join(format!("nightshift-bench-{}", std::process::id()));
    let url = match url {
        Some(u) => u.to_owned(),
        None => {
            std::fs::create_dir_all(&dir).map_err(|e| crate::Error::Corrupt(e.to_string()))?;
            format!("sqlite://{}?mode=rwc", dir.join("bench.db").display())
        }
    };
    let worker = Worker::builder()
        .database_url(&url)
        .concurrency(32)
        .poll_interval(Duration::from_millis(200))
        .build()
        .await?;
    worker
        .register(JobKind::new(NOOP, |_: NoArgs, _: JobContext| async { Ok(()) }).schedulable())?;
    worker.register(JobKind::new(
        LOGGER,
        |_: NoArgs, ctx: JobContext| async move {
            for i in 0..100 {
                ctx.log(format!("line {i}")).await?;
            }
            Ok(())
        },
    ))?;
    let mut figures = Vec::new();

    // Enqueue: one job per transaction, then batches of 1,000 in one transaction each.
    let n = 2_000;
    let t = Instant::now();
    for _ in 0..n {
        worker
            .insert(NewJob::new(NOOP, &NoArgs {})?.schedule_at(far_future()))
            .await?;
    }
    figures.push(rate(
        "enqueue, one per transaction",
        n,
        t.elapsed(),
        "jobs/s",
    ));
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n / 1000 {
        let batch = (0..1000)
            .map(|_| NewJob::new(NOOP, &NoArgs {}).map(|j| j.schedule_at(far_future())))
            .collect::<crate::Result<Vec<_>>>()?;
        worker.insert_many(batch).await?;
    }
    figures.push(rate("enqueue, batches of 1,000", n, t.elapsed(), "jobs/s"));
    clean(&worker).await?;

    // Throughput: claim, run and complete no-op jobs, 32 at a time.
    let n = 10_000;
    let ids = insert_now(&worker, NOOP, n).await?;
    let t = Instant::now();
    worker.start().await?;
    wait_all(&worker, &ids).await?;
    figures.push(rate(
        "run no-op jobs (claim + run + complete)",
        n,
        t.elapsed(),
        "jobs/s",
    ));
    clean(&worker).await?;

    // Log lines: 100 jobs writing 100 lines each, timed from their insert.
    let t = Instant::now();
    let ids = insert_now(&worker, LOGGER, 100).await?;
    wait_all(&worker, &ids).await?;
    figures.push(rate("log lines stored", 10_000, t.elapsed(), "lines/s"));
    clean(&worker).await?;

    // Scheduling precision: how late after its time a scheduled job starts.
    let mut lateness = Vec::new();
    for i in 0..20 {
        let at = chrono::Utc::now() + chrono::Duration::milliseconds(50 + 10 * i);
        let id = worker
            .insert(NewJob::new(NOOP, &NoArgs {})?.schedule_at(at))
            .await?
            .id;
        let job = worker.wait_finished(id, Duration::from_secs(10)).await?;
        if let Some(started) = job.started_at {
            lateness.push((started - at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    lateness.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lateness
            .get(((lateness.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    figures.push(Figure {
        name: "scheduled job start, after its time (p50)",
        value: pct(0.5),
        unit: "ms",
        detail: format!("20 jobs; p95 {:.1} ms, max {:.1} ms", pct(0.95), pct(1.0)),
    });
    clean(&worker).await?;
    worker.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(figures)
}

fn far_future() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::days(3650)
}

fn rate(name: &'static str, n: usize, took: Duration, unit: &'static str) -> Figure {
    Figure {
        name,
        value: n as f64 / took.as_secs_f64(),
        unit,
        detail: format!("{n} in {:.2} s", took.as_secs_f64()),
    }
}

/// Inserts `n` jobs of `kind` to run now, in one transaction.
async fn insert_now(worker: &Worker, kind: &str, n: usize) -> crate::Result<Vec<i64>> {
    let jobs = (0..n)
        .map(|_| NewJob::new(kind, &NoArgs {}))
        .collect::<crate::Result<Vec<_>>>()?;
    Ok(worker
        .insert_many(jobs)
        .await?
        .into_iter()
        .map(|j| j.id)
        .collect())
}

/// Waits until every job in `ids` is finished.
async fn wait_all(worker: &Worker, ids: &[i64]) -> crate::Result<()> {
    let Some(last) = ids.last() else {
        return Ok(());
    };
    // Jobs are claimed oldest first: once the last is finished, few (if any) are still open.
    worker
        .wait_finished(*last, Duration::from_secs(600))
        .await?;
    loop {
        let open = job::Entity::find()
            .filter(job::Column::Id.between(ids[0], *last))
            .filter(job::Column::FinishedAt.is_null())
            .one(worker.store().connection())
            .await?;
        if open.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Removes what the benchmark created (it may run against a real database).
async fn clean(worker: &Worker) -> crate::Result<()> {
    let db = worker.store().connection();
    let ids: Vec<i64> = job::Entity::find()
        .filter(job::Column::Kind.is_in([NOOP, LOGGER]))
        .all(db)
        .await?
        .into_iter()
        .map(|j| j.id)
        .collect();
    for chunk in ids.chunks(500) {
        job_log::Entity::delete_many()
            .filter(job_log::Column::JobId.is_in(chunk.to_vec()))
            .exec(db)
            .await?;
        job_attempt::Entity::delete_many()
            .filter(job_attempt::Column::JobId.is_in(chunk.to_vec()))
            .exec(db)
            .await?;
        job::Entity::delete_many()
            .filter(job::Column::Id.is_in(chunk.to_vec()))
            .exec(db)
            .await?;
    }
    Ok(())
}
