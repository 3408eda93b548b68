//! Two nodes sharing one PostgreSQL queue: claims with `SKIP LOCKED`, compare-and-set
//! completions. The rest of the engine suite runs on PostgreSQL too, through `both_databases!`
//! (tests/it/engine.rs, tests/it/crash.rs).
use std::time::Duration;

use nightshift::{JobStatus, NewJob};
use sea_orm::ConnectionTrait;
use serde_json::json;

/// Other files' PostgreSQL tests create their database here; the machinery is shared with
/// `TestDb` (and `both_databases!`) in `helpers`.
pub use crate::helpers::PgDb;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_postgres_queue_and_every_job_runs_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let make = || {
        nightshift::Worker::builder()
            .database_url(&db.url)
            .concurrency(8)
            .grace_period(Duration::from_millis(300))
            .heartbeat_interval(Duration::from_millis(200))
            .build()
    };
    let a = make().await.unwrap();
    let b = make().await.unwrap();
    let runs_a = register(&a);
    let runs_b = register(&b);
    let jobs = (0..300)
        .map(|i| NewJob::new("Work", &json!({"lines": i % 2})).unwrap())
        .collect();
    let ids: Vec<i64> = a
        .insert_many(jobs)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    a.start().await.unwrap();
    b.start().await.unwrap();
    for id in &ids {
        assert_eq!(finished(&a, *id).await.status, JobStatus::Done);
    }
    assert_eq!(runs_a.total() + runs_b.total(), 300);
    assert!(
        ids.iter()
            .all(|id| runs_a.count(*id) + runs_b.count(*id) == 1)
    );

    // Errors, retries, error rows, cancel and abort across nodes behave as on SQLite.
    let retry = a
        .enqueue_dynamic("Work", &json!({"fail_times": 1}))
        .await
        .unwrap();
    let rows = a.enqueue_dynamic("ErrorRows", &json!({})).await.unwrap();
    let long = a
        .enqueue_dynamic("Work", &json!({"ms": 60_000}))
        .await
        .unwrap();
    assert_eq!(finished(&a, retry).await.attempt, 2);
    assert_eq!(finished(&a, rows).await.status, JobStatus::Exception);
    wait_for(&a, long, "running", |j| j.status == JobStatus::Running).await;
    // Abort through node `a`, wherever the job runs: the other node learns it from the database.
    a.abort(long, "alice").await.unwrap();
    assert_eq!(finished(&b, long).await.status, JobStatus::Killed);
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let waiting = b.schedule_dynamic("Work", &json!({}), later).await.unwrap();
    assert_eq!(
        a.cancel(waiting).await.unwrap().status,
        JobStatus::Cancelled
    );

    a.shutdown().await;
    b.shutdown().await;
}

/// Three nodes drain 5,000 jobs while every one of their database connections is killed
/// (`pg_terminate_backend`) mid-run: every job runs exactly once and ends `done`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_drain_five_thousand_jobs_exactly_once_through_killed_connections() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let mut nodes = Vec::new();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let w = builder(&db).concurrency(8).build().await.unwrap();
        runs.push(register(&w));
        nodes.push(w);
    }
    let jobs = (0..5000)
        .map(|_| NewJob::new("Work", &json!({})).unwrap())
        .collect();
    let ids: Vec<i64> = nodes[0]
        .insert_many(jobs)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    for n in &nodes {
        n.start().await.unwrap();
    }
    // Once the drain is under way, kill every connection to this database but our own.
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let admin = sea_orm::Database::connect(crate::helpers::pg_admin_url())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while runs.iter().map(|r| r.total()).sum::<usize>() < 500 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the drain never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..3 {
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = admin.close().await;
    for id in &ids {
        let job = finished(&nodes[0], *id).await;
        assert_eq!(job.status, JobStatus::Done, "{job:?}");
    }
    for id in &ids {
        let n: u32 = runs.iter().map(|r| r.count(*id)).sum();
        assert_eq!(n, 1, "job {id} ran {n} times");
    }
    for n in &nodes {
        n.shutdown().await;
    }
}

/// A prepared statement must not keep a plan made while the queue was short: PostgreSQL's
/// generic plan for the claim, cached after five runs on an empty table, scanned every waiting
/// job (260 ms per claim at 100,000 waiting). Every engine connection plans afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_connections_never_keep_a_plan_made_for_a_short_queue() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let worker = nightshift::Worker::builder()
        .database_url(&db.url)
        .build()
        .await
        .unwrap();
    let conn = worker.store().connection();
    // Every connection of the pool, not just the first.
    let mut txns = Vec::new();
    for _ in 0..3 {
        let txn = sea_orm::TransactionTrait::begin(conn).await.unwrap();
        let row = txn
            .query_one_raw(sea_orm::Statement::from_string(
                conn.get_database_backend(),
                "SHOW plan_cache_mode",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.try_get_by_index::<String>(0).unwrap(),
            "force_custom_plan"
        );
        let jit = txn
            .query_one_raw(sea_orm::Statement::from_string(
                conn.get_database_backend(),
                "SHOW jit",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(jit.try_get_by_index::<String>(0).unwrap(), "off");
        txns.push(txn);
    }
    drop(txns);
    worker.shutdown().await;
}
