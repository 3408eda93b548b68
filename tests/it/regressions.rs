//! Regressions found by review: each once let a stale run's writes land, started an aborted
//! job, stranded long jobs, lost an aborted job's rows, or let a host clock delay jobs.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use nightshift::{JobContext, JobKind, JobStatus, ResultCell, Worker};
use sea_orm::sqlx::{self, Connection as _};
use serde_json::json;

use crate::helpers::*;

fn stale_kind(worker: &Worker, calls: Arc<AtomicU32>) {
    worker
        .register(
            JobKind::new("Stale", move |_: Args, ctx: JobContext| {
                let c = calls.clone();
                async move {
                    let n = c.fetch_add(1, SeqCst) + 1;
                    if n == 1 {
                        ctx.log("first run started").await?;
                        // Sub-work on a task of its own, with a clone of the context (documented
                        // as "clones report for the same job").
                        let sub = ctx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(8)).await;
                            let _ = sub
                                .add_result_row(vec![ResultCell::error(
                                    "stale",
                                    "from the first run",
                                )])
                                .await;
                            let _ = sub.log("first run: stale line").await;
                        });
                        // A well-behaved handler: returns as soon as it is told to stop.
                        ctx.cancelled().await;
                        return Ok(());
                    }
                    ctx.log("second run started").await?;
                    tokio::time::sleep(Duration::from_secs(6)).await;
                    Ok(())
                }
            })
            .max_attempts(2),
        )
        .unwrap();
}

async fn check_stale(worker: &Worker, id: i64, calls: &AtomicU32) {
    let t = std::time::Instant::now();
    let job = loop {
        let j = worker.job(id).await.unwrap();
        if j.status.is_finished() {
            break j;
        }
        assert!(t.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let logs = worker.logs(id, 100).await.unwrap();
    assert_eq!(calls.load(SeqCst), 2, "the job was reclaimed");
    assert!(
        !logs.iter().any(|l| l.line.contains("stale line")),
        "a stale attempt's log line landed in the reclaimed attempt"
    );
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    assert_eq!(job.attempt, 2, "the lost lease spent attempt 1");
    let rows = worker.results(id).await.unwrap();
    assert!(
        rows.is_empty(),
        "the stale run's result row landed: {rows:?}"
    );
}

/// A lost lease spends the attempt: when the same node claims the job again, what the stopped
/// run still sends (from a task it spawned) does not pass for the new attempt's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_lease_spends_the_attempt_sqlite() {
    let db = TestDb::sqlite();
    let worker = Worker::builder()
        .database_url(&db.url)
        .concurrency(2)
        .grace_period(Duration::from_millis(300))
        .heartbeat_interval(Duration::from_millis(200))
        .node_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    stale_kind(&worker, calls.clone());
    worker.start().await.unwrap();
    let id = worker.enqueue_dynamic("Stale", &json!({})).await.unwrap();
    while calls.load(SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another process holds SQLite's write lock for 3 s: the heartbeat cannot renew the lease.
    let path = db
        .url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    check_stale(&worker, id, &calls).await;
    worker.shutdown().await;
}

/// The same on PostgreSQL: the node's row is locked for 3 s, so its heartbeat waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_lease_spends_the_attempt_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let worker = Worker::builder()
        .database_url(&db.url)
        .concurrency(2)
        .grace_period(Duration::from_millis(300))
        .heartbeat_interval(Duration::from_millis(200))
        .node_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    stale_kind(&worker, calls.clone());
    worker.start().await.unwrap();
    let id = worker.enqueue_dynamic("Stale", &json!({})).await.unwrap();
    while calls.load(SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("SELECT 1 FROM nightshift_nodes WHERE id = $1 FOR UPDATE")
        .bind(worker.node_id())
        .execute(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    check_stale(&worker, id, &calls).await;
    worker.shutdown().await;
}

/// A job aborted while it waits in the node's buffer for a slot never starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_buffered_job_never_starts() {
    let db = TestDb::sqlite();
    let worker = builder(&db).concurrency(1).build().await.unwrap();
    register(&worker);
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    worker
        .register(JobKind::new("Flag", move |_: Args, ctx: JobContext| {
            let s = s.clone();
            async move {
                s.store(true, SeqCst);
                tokio::select! {
                    _ = ctx.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                Ok(())
            }
        }))
        .unwrap();
    worker.start().await.unwrap();
    // A quick job first: jobs are short lately, so the scheduler buffers.
    let quick = worker.enqueue_dynamic("Work", &json!({})).await.unwrap();
    finished(&worker, quick).await;
    let hold = worker
        .enqueue_dynamic("Work", &json!({"ms": 1500}))
        .await
        .unwrap();
    wait_for(&worker, hold, "running", |j| j.status == JobStatus::Running).await;
    let flag = worker.enqueue_dynamic("Flag", &json!({})).await.unwrap();
    wait_for(&worker, flag, "claimed into the buffer", |j| {
        j.status == JobStatus::Running
    })
    .await;
    assert!(!started.load(SeqCst));
    worker.abort(flag, "op").await.unwrap();
    let job = finished(&worker, flag).await;
    assert_eq!(job.status, JobStatus::Killed);
    assert!(
        !started.load(SeqCst),
        "the handler of an aborted job was started"
    );
    worker.shutdown().await;
}

/// Long jobs do not wait in a busy node's buffer while another node has free slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_jobs_are_not_stranded_in_a_buffer() {
    let db = TestDb::sqlite();
    let a = builder(&db).concurrency(1).build().await.unwrap();
    register(&a);
    a.start().await.unwrap();
    let quick = a.enqueue_dynamic("Work", &json!({})).await.unwrap();
    finished(&a, quick).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            a.enqueue_dynamic("Work", &json!({"ms": 2000}))
                .await
                .unwrap(),
        );
    }
    for id in &ids {
        wait_for(&a, *id, "claimed by A", |j| j.status == JobStatus::Running).await;
    }
    let b = builder(&db).concurrency(4).build().await.unwrap();
    register(&b);
    b.start().await.unwrap();
    let t = std::time::Instant::now();
    for id in &ids {
        finished(&a, *id).await;
    }
    assert!(
        t.elapsed() < Duration::from_millis(3500),
        "3 long jobs with 5 free slots took {:?}",
        t.elapsed()
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A job aborted during a shutdown's grace period ends `killed` with its result rows kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_during_shutdown_keeps_the_rows() {
    let db = TestDb::sqlite();
    let worker = builder(&db)
        .concurrency(1)
        .drain_timeout(Duration::from_millis(200))
        .grace_period(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    worker
        .register(JobKind::new(
            "Rows",
            |_: Args, ctx: JobContext| async move {
                for i in 0..3 {
                    ctx.add_result_row(vec![ResultCell::ok(format!("{i}"))])
                        .await?;
                }
                // Ignores its stop signal.
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(())
            },
        ))
        .unwrap();
    worker.start().await.unwrap();
    let id = worker.enqueue_dynamic("Rows", &json!({})).await.unwrap();
    while worker.results(id).await.unwrap().len() < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let w = worker.clone();
    let down = tokio::spawn(async move { w.shutdown().await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    worker.abort(id, "op").await.unwrap();
    down.await.unwrap();
    let job = worker.job(id).await.unwrap();
    let rows = worker.results(id).await.unwrap();
    assert_eq!(job.status, JobStatus::Killed);
    assert_eq!(
        rows.len(),
        3,
        "the killed attempt's result rows were deleted"
    );
}

/// A process that only enqueues learns the database's clock: a host clock 5 s fast does not
/// delay the jobs it enqueues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_only_process_learns_the_clock() {
    let db = TestDb::sqlite();
    let runner = builder(&db).build().await.unwrap();
    register(&runner);
    runner.start().await.unwrap();
    let web = builder(&db)
        .clock_skew_for_tests(5_000)
        .build()
        .await
        .unwrap();
    register(&web);
    let t = std::time::Instant::now();
    let id = web.enqueue_dynamic("Work", &json!({})).await.unwrap();
    finished(&runner, id).await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "ran after {:?}",
        t.elapsed()
    );
    runner.shutdown().await;
}

/// A node killed during its first start's migrations (SQLite runs a migration's statements
/// outside one transaction) left the histogram columns added but the migration unrecorded; every
/// later start then failed on "duplicate column name". Such a migration is now applied again
/// over what is there.
#[tokio::test]
async fn a_migration_half_applied_by_a_killed_process_completes_on_the_next_start() {
    use sea_orm::ConnectionTrait;
    let db = temp_db();
    let conn = nightshift::store::connect(&db.url).await.unwrap();
    conn.execute_unprepared(
        "DELETE FROM nightshift_migrations WHERE version = 'm20261230_000001_stats_histograms'",
    )
    .await
    .unwrap();
    conn.close().await.unwrap();
    let again = nightshift::store::connect(&db.url).await;
    assert!(again.is_ok(), "{:?}", again.err());
}
