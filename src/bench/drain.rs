//! Throughput: enqueueing, draining a backlog with the default worker, and the database's own
//! ceiling for the same work in bare SQL.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use tokio::sync::Notify;

use super::{Progress, group, rss_mb, stop, worker};
use crate::{JobContext, JobKind, NewJob, Worker};

/// The no-op kind the drains run.
pub(crate) const NOOP: &str = "Bench No-op";
/// Jobs per `insert_many` call when filling a backlog.
pub(crate) const CHUNK: u64 = 1_000;
/// Jobs the ceiling claims per statement: the scheduler's own largest claim.
pub(crate) const CEILING_BATCH: u64 = 100;

/// `--queues`: the backlog is spread over this many queues, with priorities 0 to 9 …
const MIXED_QUEUES: usize = 4;
/// … beside a paused queue holding a tenth as many jobs again, which the drains step over.
const PAUSED_QUEUE: &str = "bench-paused";

fn mixed_queue(i: u64) -> String {
    format!("bench-{}", i as usize % MIXED_QUEUES)
}

/// The drains' worker: with `mixed`, it serves the bench's queues and the paused one is paused.
async fn drain_worker(url: &str, mixed: bool) -> anyhow::Result<Worker> {
    if !mixed {
        return worker(url).await;
    }
    let mut builder = Worker::builder().database_url(url);
    for i in 0..MIXED_QUEUES as u64 {
        builder = builder.queue(crate::Queue::new(mixed_queue(i)));
    }
    let worker = builder
        .queue(crate::Queue::new(PAUSED_QUEUE))
        .build()
        .await?;
    worker.pause_queue(PAUSED_QUEUE, "bench").await?;
    Ok(worker)
}

/// One drain.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Drain {
    pub per_s: f64,
    /// How fast the backlog went in (`insert_many`, chunks of [`CHUNK`]).
    pub fill_per_s: f64,
    /// Peak resident memory sampled during the drain (only when asked).
    pub rss_peak: Option<f64>,
    /// CPU seconds this process spent during the drain (Linux).
    pub cpu_s: Option<f64>,
}

/// Counts handler runs and says when the last one of a backlog ran.
#[derive(Clone, Default)]
pub(crate) struct Counter {
    ran: Arc<AtomicU64>,
    target: Arc<AtomicU64>,
    all_ran: Arc<Notify>,
}

impl Counter {
    pub fn ran(&self) -> u64 {
        self.ran.load(Ordering::Relaxed)
    }

    /// Waits for `n` runs in all; `tick` is called about every 200 ms meanwhile. Gives up when
    /// no job has run for a minute.
    pub async fn wait(&self, n: u64, mut tick: impl FnMut(u64)) -> anyhow::Result<()> {
        self.target.store(n, Ordering::SeqCst);
        let (mut last, mut moved) = (self.ran(), Instant::now());
        loop {
            let notified = self.all_ran.notified();
            let ran = self.ran();
            if ran >= n {
                return Ok(());
            }
            if ran != last {
                (last, moved) = (ran, Instant::now());
            }
            anyhow::ensure!(
                moved.elapsed() < Duration::from_secs(60),
                "no job ran for a minute; {ran} of {n} ran"
            );
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => tick(self.ran()),
            }
        }
    }

    fn hit(&self) {
        let n = self.ran.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.target.load(Ordering::Relaxed) {
            self.all_ran.notify_one();
        }
    }
}

/// Registers the no-op kind (schedulable), counting its runs.
pub(crate) fn register_noop(worker: &Worker) -> anyhow::Result<Counter> {
    let counter = Counter::default();
    let c = counter.clone();
    worker.register(
        JobKind::new(NOOP, move |_: crate::demo::NoArgs, _: JobContext| {
            c.hit();
            async { Ok(()) }
        })
        .schedulable(),
    )?;
    Ok(counter)
}

/// `n` no-op jobs due now, by `insert_many` in chunks of [`CHUNK`]; returns jobs per second.
/// With `mixed`, spread over the bench's queues with priorities 0 to 9, and a tenth as many
/// again on the paused queue.
pub(crate) async fn fill(
    worker: &Worker,
    n: u64,
    mixed: bool,
    progress: &Progress,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let k = CHUNK.min(n - done);
        let jobs = (done..done + k)
            .map(|i| {
                let job = NewJob::from_value(NOOP, serde_json::json!({}));
                if mixed {
                    job.queue(mixed_queue(i)).priority((i % 10) as i32)
                } else {
                    job
                }
            })
            .collect();
        worker.insert_many(jobs).await?;
        done += k;
        progress.update(format!("filling {} / {}", group(done), group(n)));
    }
    let per_s = n as f64 / t.elapsed().as_secs_f64();
    if mixed {
        let mut held = 0;
        while held < n / 10 {
            let k = CHUNK.min(n / 10 - held);
            let jobs = (0..k)
                .map(|_| NewJob::from_value(NOOP, serde_json::json!({})).queue(PAUSED_QUEUE))
                .collect();
            worker.insert_many(jobs).await?;
            held += k;
        }
    }
    Ok(per_s)
}

/// Waits until no job is waiting or running any more (read through the read pool, polled).
async fn wait_finished(worker: &Worker) -> anyhow::Result<()> {
    let db = worker.store().reader();
    let sql = "SELECT 1 FROM nightshift_jobs \
               WHERE status IN ('new', 'scheduled', 'running', 'aborting') \
               AND queue <> 'bench-paused' LIMIT 1";
    let stmt = Statement::from_string(db.get_database_backend(), sql);
    let deadline = Instant::now() + Duration::from_secs(120);
    while db.query_one_raw(stmt.clone()).await?.is_some() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "jobs still open 2 minutes after the last handler ran"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// `enqueue_one_per_s`: `n` jobs, one `insert` call each (not started: nothing runs them).
/// Also returns the database's version.
pub(crate) async fn enqueue_one(url: String, n: u64) -> anyhow::Result<(f64, String)> {
    let worker = worker(&url).await?;
    register_noop(&worker)?;
    let version = super::database_version(&worker).await;
    let t = Instant::now();
    let mut out = Ok(());
    for _ in 0..n {
        if let Err(e) = worker
            .insert(NewJob::from_value(NOOP, serde_json::json!({})))
            .await
        {
            out = Err(e);
            break;
        }
    }
    let took = t.elapsed();
    stop(worker).await;
    out?;
    Ok((n as f64 / took.as_secs_f64(), version))
}

/// One drain: `depth` no-op jobs queued, then a default worker started and timed until every
/// job is `done`. With `sample_rss`, the process's resident memory is sampled meanwhile.
pub(crate) async fn drain(
    url: String,
    depth: u64,
    sample_rss: bool,
    mixed: bool,
    progress: &Progress,
) -> anyhow::Result<Drain> {
    let worker = drain_worker(&url, mixed).await?;
    let counter = register_noop(&worker)?;
    let fill_per_s = fill(&worker, depth, mixed, progress).await?;
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = tokio_util::sync::CancellationToken::new();
    if sample_rss {
        let (peak, stop) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            loop {
                if let Some(mb) = rss_mb() {
                    peak.fetch_max((mb * 10.0) as u64, Ordering::Relaxed);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    let cpu0 = cpu_s();
    let t = Instant::now();
    let run = async {
        worker.start().await?;
        counter
            .wait(depth, |ran| {
                let s = t.elapsed().as_secs_f64();
                progress.update(format!(
                    "{} / {} done, {}/s",
                    group(ran),
                    group(depth),
                    group((ran as f64 / s) as u64)
                ));
            })
            .await?;
        wait_finished(&worker).await
    };
    let out = run.await;
    let took = t.elapsed();
    let cpu = cpu_s().zip(cpu0).map(|(b, a)| b - a);
    sampling.cancel();
    let out = match out {
        Ok(()) => check_all_done(&worker, depth).await,
        Err(e) => Err(e),
    };
    stop(worker).await;
    out?;
    let peak = peak.load(Ordering::Relaxed);
    Ok(Drain {
        per_s: depth as f64 / took.as_secs_f64(),
        fill_per_s,
        rss_peak: (sample_rss && peak > 0).then_some(peak as f64 / 10.0),
        cpu_s: cpu,
    })
}

/// Checks that the drain ended with every job `done`.
async fn check_all_done(worker: &Worker, depth: u64) -> anyhow::Result<()> {
    let db = worker.store().reader();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM nightshift_jobs WHERE status = 'done'",
        ))
        .await?;
    let done = row.map(|r| r.try_get_by_index::<i64>(0)).transpose()?;
    anyhow::ensure!(
        done == Some(depth as i64),
        "{depth} jobs drained but {done:?} are done"
    );
    Ok(())
}

/// `drain_ceiling_per_s`: the same backlog drained by bare SQL on the same table: claim
/// [`CEILING_BATCH`] with the engine's own claim statement, mark them done with one UPDATE,
/// repeat until none is left.
pub(crate) async fn ceiling(
    url: String,
    depth: u64,
    mixed: bool,
    progress: &Progress,
) -> anyhow::Result<f64> {
    let worker = drain_worker(&url, mixed).await?;
    register_noop(&worker)?;
    fill(&worker, depth, mixed, progress).await?;
    let out = ceiling_loop(&worker, depth, mixed, progress).await;
    stop(worker).await;
    out
}

async fn ceiling_loop(
    worker: &Worker,
    depth: u64,
    mixed: bool,
    progress: &Progress,
) -> anyhow::Result<f64> {
    let store = worker.store();
    let db = store.connection();
    let backend = db.get_database_backend();
    let kinds = vec![NOOP.to_owned()];
    let mut done = 0u64;
    let t = Instant::now();
    loop {
        let now = crate::clock::now_ms();
        let queues: Vec<(String, u64)> = if mixed {
            (0..=MIXED_QUEUES as u64)
                .map(|i| {
                    // The scheduler's shares: the batch split between the queues.
                    let share = CEILING_BATCH / MIXED_QUEUES as u64;
                    match i as usize {
                        MIXED_QUEUES => (PAUSED_QUEUE.to_owned(), share),
                        _ => (mixed_queue(i), share),
                    }
                })
                .collect()
        } else {
            vec![("default".to_owned(), CEILING_BATCH)]
        };
        let claim = store.claim_statement("bench-ceiling", &kinds, &queues, CEILING_BATCH, now);
        let claimed = match store.claim_plan() {
            Some(pin) => {
                let tx = sea_orm::TransactionTrait::begin(db).await?;
                tx.execute_unprepared(pin).await?;
                let rows = tx.query_all_raw(claim).await?;
                tx.commit().await?;
                rows
            }
            None => db.query_all_raw(claim).await?,
        };
        if claimed.is_empty() {
            break;
        }
        let ids = claimed
            .iter()
            .map(|r| r.try_get::<i64>("", "id"))
            .collect::<Result<Vec<_>, _>>()?;
        db.execute_raw(mark_done(backend, &ids, crate::clock::now_ms()))
            .await?;
        done += ids.len() as u64;
        progress.update(format!("{} / {} done", group(done), group(depth)));
    }
    let took = t.elapsed();
    anyhow::ensure!(done == depth, "the ceiling drained {done} of {depth} jobs");
    Ok(depth as f64 / took.as_secs_f64())
}

/// `UPDATE … SET status = 'done' … WHERE id IN (…)`, as a completer would, in one statement.
fn mark_done(backend: DbBackend, ids: &[i64], now: i64) -> Statement {
    let ph = |i: usize| match backend {
        DbBackend::Postgres => format!("${i}"),
        _ => "?".to_owned(),
    };
    let list = (3..3 + ids.len()).map(ph).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "UPDATE nightshift_jobs SET status = 'done', progress = 100, finished_at = {}, \
         updated_at = {} WHERE id IN ({list}) AND status = 'running'",
        ph(1),
        ph(2)
    );
    let mut values: Vec<Value> = vec![now.into(), now.into()];
    values.extend(ids.iter().map(|id| Value::from(*id)));
    Statement::from_sql_and_values(backend, sql, values)
}

/// CPU time this process has used, in seconds (Linux: `/proc/self/stat`, in USER_HZ ticks).
fn cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name in parentheses: state is field 3; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
