//! The same engine on PostgreSQL: claims with `SKIP LOCKED`, compare-and-set completions, two
//! nodes sharing one queue.
use std::time::Duration;

use nightshift::{JobStatus, NewJob};
use sea_orm::{ConnectionTrait, Database};
use serde_json::json;

use crate::helpers::*;

/// The server CI starts; override with `NIGHTSHIFT_TEST_POSTGRES`.
pub fn admin_url() -> String {
    std::env::var("NIGHTSHIFT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh database for one test, dropped at the end.
pub struct PgDb {
    pub name: String,
    pub url: String,
}

impl PgDb {
    /// A fresh database, or `None` (the test is skipped, and says so) when no server answers,
    /// unless `NIGHTSHIFT_REQUIRE_POSTGRES=1` (set by `.ci/run`).
    pub async fn create() -> Option<PgDb> {
        let mut opts = sea_orm::ConnectOptions::new(admin_url());
        opts.connect_timeout(Duration::from_secs(3))
            .acquire_timeout(Duration::from_secs(3));
        let admin = match Database::connect(opts).await {
            Ok(db) => db,
            Err(e) if std::env::var("NIGHTSHIFT_REQUIRE_POSTGRES").as_deref() != Ok("1") => {
                eprintln!(
                    "skipping PostgreSQL test: no server at {} ({e})",
                    admin_url()
                );
                return None;
            }
            Err(e) => panic!("PostgreSQL is required but not reachable: {e}"),
        };
        let name = format!("nightshift_t_{:08x}", fastrand::u32(..));
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = admin_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        Some(PgDb { name, url })
    }

    pub async fn drop_db(self) {
        let admin = Database::connect(admin_url()).await.unwrap();
        let _ = admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_postgres_queue_and_every_job_runs_once() {
    let Some(pg) = PgDb::create().await else {
        return;
    };
    let make = || {
        nightshift::Worker::builder()
            .database_url(&pg.url)
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
    let retry = a.enqueue("Work", &json!({"fail_times": 1})).await.unwrap();
    let rows = a.enqueue("ErrorRows", &json!({})).await.unwrap();
    let long = a.enqueue("Work", &json!({"ms": 60_000})).await.unwrap();
    assert_eq!(finished(&a, retry).await.attempt, 2);
    assert_eq!(finished(&a, rows).await.status, JobStatus::Exception);
    wait_for(&a, long, "running", |j| j.status == JobStatus::Running).await;
    // Abort through node `a`, wherever the job runs: the other node learns it from the database.
    a.abort(long, "alice").await.unwrap();
    assert_eq!(finished(&b, long).await.status, JobStatus::Killed);
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let waiting = b.schedule("Work", &json!({}), later).await.unwrap();
    assert_eq!(
        a.cancel(waiting).await.unwrap().status,
        JobStatus::Cancelled
    );

    a.shutdown().await;
    b.shutdown().await;
    pg.drop_db().await;
}
