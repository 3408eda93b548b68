//! Test harness: a fresh SQLite file per test and a worker with fast timings and test job kinds.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nightshift::{Backoff, JobContext, JobKind, ResultCell, Worker, WorkerBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A database file that lives as long as the value.
pub struct TestDb {
    _dir: tempfile::TempDir,
    pub url: String,
}

pub fn temp_db() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display());
    TestDb { _dir: dir, url }
}

/// Builder with test timings: short grace and drain, fast heartbeat.
pub fn builder(db: &TestDb) -> WorkerBuilder {
    Worker::builder()
        .database_url(&db.url)
        .concurrency(4)
        .grace_period(Duration::from_millis(300))
        .drain_timeout(Duration::from_millis(300))
        .heartbeat_interval(Duration::from_millis(200))
        .node_timeout(Duration::from_secs(2))
}

/// Arguments of the test kinds.
#[derive(Debug, Default, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Args {
    /// Milliseconds to work.
    #[serde(default)]
    pub ms: u64,
    /// Fail the first `fail_times` attempts.
    #[serde(default)]
    pub fail_times: u32,
    /// Log lines to write.
    #[serde(default)]
    pub lines: u32,
    /// Milliseconds to work on the first attempt only (a job that crashes its first worker).
    #[serde(default)]
    pub first_ms: u64,
    #[schemars(extend("writeOnly" = true))]
    #[serde(default)]
    pub secret: String,
}

/// How many times each job's handler ran.
#[derive(Clone, Default)]
pub struct Runs(Arc<Mutex<HashMap<i64, u32>>>);

impl Runs {
    pub fn count(&self, id: i64) -> u32 {
        self.0.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
    pub fn total(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn hit(&self, id: i64) {
        *self.0.lock().unwrap().entry(id).or_default() += 1;
    }
}

/// Registers the test kinds:
/// - `Work`: logs `lines` lines, sleeps `ms` (stopping early when cancelled), fails its first
///   `fail_times` attempts; 3 attempts, 50 ms backoff; schedulable.
/// - `Stubborn`: sleeps `ms` and ignores cancellation.
/// - `Fail`: returns an error. `Panic`: panics. `ErrorRows`: reports a row with an error.
/// - `Slow`: like `Work`, with a 200 ms timeout and one attempt.
pub fn register(worker: &Worker) -> Runs {
    let runs = Runs::default();
    let r = runs.clone();
    worker
        .register(
            JobKind::new("Work", move |args: Args, ctx: JobContext| {
                let r = r.clone();
                async move {
                    r.hit(ctx.job_id());
                    work(args, ctx).await
                }
            })
            .schedulable()
            .max_attempts(3)
            .backoff(Backoff::exponential(
                Duration::from_millis(50),
                Duration::from_millis(200),
            )),
        )
        .unwrap();
    worker
        .register(JobKind::new(
            "Stubborn",
            |args: Args, ctx: JobContext| async move {
                ctx.log("ignoring every signal").await?;
                tokio::time::sleep(Duration::from_millis(args.ms)).await;
                ctx.log("finished anyway").await?;
                Ok(())
            },
        ))
        .unwrap();
    worker
        .register(JobKind::new("Fail", |_: Args, _: JobContext| async move {
            anyhow::bail!("the <b>upstream</b> said no")
        }))
        .unwrap();
    worker
        .register(JobKind::new("Panic", |_: Args, _: JobContext| async move {
            if true {
                panic!("kaboom");
            }
            Ok(())
        }))
        .unwrap();
    worker
        .register(JobKind::new(
            "ErrorRows",
            |_: Args, ctx: JobContext| async move {
                ctx.add_result_row(vec![ResultCell::ok("a"), ResultCell::ok("1")])
                    .await?;
                ctx.add_result_row(vec![
                    ResultCell::ok("b"),
                    ResultCell::error("-1", "negative"),
                ])
                .await?;
                Ok(())
            },
        ))
        .unwrap();
    worker
        .register(
            JobKind::new("Slow", work)
                .timeout(Duration::from_millis(200))
                .max_attempts(1),
        )
        .unwrap();
    runs
}

async fn work(args: Args, ctx: JobContext) -> anyhow::Result<()> {
    for i in 0..args.lines {
        ctx.log(format!("line {i}")).await?;
    }
    let ms = if ctx.attempt() == 1 {
        args.ms + args.first_ms
    } else {
        args.ms
    };
    if ms > 0 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = ctx.cancelled() => {
                ctx.log("cancelled, stopping").await?;
                return Ok(());
            }
        }
    }
    if ctx.attempt() <= args.fail_times {
        anyhow::bail!("attempt {} failed on purpose", ctx.attempt());
    }
    ctx.set_progress(100).await?;
    Ok(())
}

/// Waits until `cond` holds for job `id`, polling the database.
pub async fn wait_for(
    worker: &Worker,
    id: i64,
    what: &str,
    cond: impl Fn(&nightshift::Job) -> bool,
) -> nightshift::Job {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let job = worker.job(id).await.unwrap();
        if cond(&job) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for job {id} to be {what}; it is {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn finished(worker: &Worker, id: i64) -> nightshift::Job {
    wait_for(worker, id, "finished", |j| j.status.is_finished()).await
}
