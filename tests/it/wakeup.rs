//! Wake-ups across processes: a job inserted, or an abort asked, through another `Worker` on the
//! same database (a stand-in for another process: an admin that only enqueues, a web app) reaches
//! a running node at once, not at its next poll (30 s here) or heartbeat (30 s here).
use std::time::Duration;

use nightshift::{Job, JobStatus, NewJob, Worker};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use tokio::time::Instant;

use crate::helpers::*;

/// Generous for a loaded machine (the whole suite runs beside it on 2 cores: 2 s was missed
/// once), and far under the 30 s the node would otherwise wait. The figure users see is the
/// bench's `pickup_other_process_ms`.
const QUICK: Duration = Duration::from_secs(5);

/// The node under test: it polls and beats every 30 s, so only a wake-up can start or stop its
/// jobs within [`QUICK`].
async fn sleepy_node(db: &TestDb) -> (Worker, Runs) {
    let worker = Worker::builder()
        .database_url(&db.url)
        .concurrency(4)
        .grace_period(Duration::from_millis(300))
        .drain_timeout(Duration::from_millis(300))
        .poll_interval(Duration::from_secs(30))
        .heartbeat_interval(Duration::from_secs(30))
        .node_timeout(Duration::from_secs(120))
        .build()
        .await
        .unwrap();
    let runs = register(&worker);
    worker.start().await.unwrap();
    // Let its scheduler go to sleep: nothing is due.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (worker, runs)
}

/// Another process: a second worker on the same database that only enqueues (never started).
async fn other_process(db: &TestDb) -> Worker {
    let worker = builder(db).build().await.unwrap();
    register(&worker);
    worker
}

/// Waits until job `id`'s handler has started on the node counting `runs`, at most `bound`.
async fn started_within(runs: &Runs, id: i64, bound: Duration) -> Duration {
    let t = Instant::now();
    while runs.count(id) == 0 {
        assert!(
            t.elapsed() < bound,
            "job {id} did not start within {bound:?} (the node polls every 30 s)"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.elapsed()
}

/// Waits until job `id` is finished, at most `bound`.
async fn finished_within(worker: &Worker, id: i64, bound: Duration) -> Job {
    let t = Instant::now();
    loop {
        let job = worker.job(id).await.unwrap();
        if job.status.is_finished() {
            return job;
        }
        assert!(
            t.elapsed() < bound,
            "job {id} did not finish within {bound:?}; it is {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn quick_job() -> NewJob {
    NewJob::new("Work", &Args::default()).unwrap()
}

both_databases! {
    /// `insert`, `insert_many` and `enqueue` on another worker start at once here.
    async fn a_job_inserted_by_another_process_starts_at_once(db: TestDb) {
        let (node, runs) = sleepy_node(&db).await;
        let other = other_process(&db).await;

        let job = other.insert(quick_job()).await.unwrap();
        let took = started_within(&runs, job.id, QUICK).await;
        eprintln!("insert: started after {took:?}");

        let jobs = other
            .insert_many(vec![quick_job(), quick_job(), quick_job()])
            .await
            .unwrap();
        for job in &jobs {
            started_within(&runs, job.id, QUICK).await;
        }

        let id = other.enqueue_dynamic("Work", &Args::default()).await.unwrap();
        started_within(&runs, id, QUICK).await;
        assert_eq!(finished(&node, id).await.status, JobStatus::Done);
        node.shutdown().await;
    }

    /// A job inserted inside another process's transaction starts only after the commit, and
    /// then at once.
    async fn a_job_inserted_in_a_transaction_starts_at_once_after_the_commit(db: TestDb) {
        let (node, runs) = sleepy_node(&db).await;
        let other = other_process(&db).await;

        let tx = other.store().connection().begin().await.unwrap();
        let job = other.insert_in(&tx, quick_job()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            runs.count(job.id),
            0,
            "started before its transaction committed"
        );
        tx.commit().await.unwrap();
        let took = started_within(&runs, job.id, QUICK).await;
        eprintln!("insert_in: started {took:?} after the commit");

        // On a plain connection: committed at once.
        let job = other
            .insert_in(other.store().connection(), quick_job())
            .await
            .unwrap();
        started_within(&runs, job.id, QUICK).await;

        // A rolled-back insert starts nothing, and the node keeps working.
        let tx = other.store().connection().begin().await.unwrap();
        other.insert_in(&tx, quick_job()).await.unwrap();
        tx.rollback().await.unwrap();
        let job = other.insert(quick_job()).await.unwrap();
        started_within(&runs, job.id, QUICK).await;
        finished(&node, job.id).await;
        // (SQLite may give the rolled-back id to the next job: count the jobs that ran.)
        assert_eq!(runs.total(), 3, "only the committed jobs ran");
        node.shutdown().await;
    }

    /// The same in the node's own process, on its own connection (a web app that runs its
    /// worker in-process): no other process sees that commit, yet the job starts at once.
    async fn a_job_inserted_in_a_transaction_of_the_same_process_starts_at_once(db: TestDb) {
        let (node, runs) = sleepy_node(&db).await;
        let tx = node.connection().begin().await.unwrap();
        let job = node.insert_in(&tx, quick_job()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(runs.count(job.id), 0, "started before its transaction committed");
        tx.commit().await.unwrap();
        let took = started_within(&runs, job.id, QUICK).await;
        eprintln!("insert_in, same process: started {took:?} after the commit");
        node.shutdown().await;
    }

    /// A waiting job moved to "now" by another process starts at once.
    async fn a_job_rescheduled_to_now_by_another_process_starts_at_once(db: TestDb) {
        let (node, runs) = sleepy_node(&db).await;
        let other = other_process(&db).await;
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        let job = other.insert(quick_job().schedule_at(later)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(runs.count(job.id), 0);
        other
            .update(job.id, serde_json::json!({}), None)
            .await
            .unwrap();
        started_within(&runs, job.id, QUICK).await;
        node.shutdown().await;
    }

    /// An abort asked through another process stops the job running here at once, naming who
    /// asked.
    async fn an_abort_asked_by_another_process_stops_the_job_at_once(db: TestDb) {
        let (node, runs) = sleepy_node(&db).await;
        let other = other_process(&db).await;
        // Enqueued on the node itself: it starts without any cross-process wake-up.
        let id = node
            .enqueue_dynamic(
                "Work",
                &Args {
                    ms: 60_000,
                    ..Args::default()
                },
            )
            .await
            .unwrap();
        started_within(&runs, id, QUICK).await;
        assert_eq!(node.running_here(), 1);

        let t = Instant::now();
        other.abort(id, "x").await.unwrap();
        let job = finished_within(&node, id, QUICK).await;
        eprintln!("abort: stopped after {:?}", t.elapsed());
        assert_eq!(job.status, JobStatus::Killed, "{job:?}");
        node.flush().await;
        let logs = node.logs(id, 100).await.unwrap();
        assert!(
            logs.iter().any(|l| l.line.starts_with("Aborted by x")),
            "{logs:?}"
        );
        node.shutdown().await;
    }
}

/// PostgreSQL: when the listening connection is killed, the node listens again, and catches up
/// on what it missed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_listener_reconnects_and_catches_up() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (node, runs) = sleepy_node(&db).await;
    let other = other_process(&db).await;
    let conn = other.store().connection();

    let pid = listening_backend(conn, None).await;
    conn.execute_unprepared(&format!("SELECT pg_terminate_backend({pid})"))
        .await
        .unwrap();
    // Inserted while the listener is down (or just back): the wake-up after reconnecting finds
    // it.
    let job = other.insert(quick_job()).await.unwrap();
    started_within(&runs, job.id, QUICK + Duration::from_secs(1)).await;

    listening_backend(conn, Some(pid)).await;
    let job = other.insert(quick_job()).await.unwrap();
    started_within(&runs, job.id, QUICK).await;
    node.shutdown().await;
}

/// The backend of the node's `LISTEN` connection (another than `not`), waiting for it.
async fn listening_backend(conn: &sea_orm::DatabaseConnection, not: Option<i32>) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = conn
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()",
            ))
            .await
            .unwrap();
        let pids: Vec<i32> = rows
            .iter()
            .map(|r| r.try_get_by_index(0).unwrap())
            .filter(|p| Some(*p) != not)
            .collect();
        if let [pid] = pids[..] {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "expected one listening connection, found {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SQLite: watching `data_version` keeps no read transaction open, so a checkpoint can copy the
/// whole WAL back and truncate it while the node runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_watch_does_not_hold_back_checkpoints() {
    let db = TestDb::sqlite();
    let (node, runs) = sleepy_node(&db).await;
    let other = other_process(&db).await;
    let jobs = other
        .insert_many((0..5).map(|_| quick_job()).collect())
        .await
        .unwrap();
    for job in &jobs {
        started_within(&runs, job.id, QUICK).await;
        finished(&node, job.id).await;
    }
    node.flush().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rows = other
        .store()
        .connection()
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA wal_checkpoint(TRUNCATE)",
        ))
        .await
        .unwrap();
    let busy: i32 = rows[0].try_get_by_index(0).unwrap();
    assert_eq!(busy, 0, "a reader held the checkpoint back");
    // And the node still sees what others write.
    let job = other.insert(quick_job()).await.unwrap();
    started_within(&runs, job.id, QUICK).await;
    node.shutdown().await;
}
