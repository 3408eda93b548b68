//! Engine v2's guarantees: every write of an attempt is fenced, a frozen node's late writes land
//! nowhere, a node whose clock is wrong is neither reaped nor early, a slow node is not taken
//! for dead, attempts keep their own results, and one completion that cannot be written does
//! not hold up the others. On both databases.
use std::process::{Command, Stdio};
use std::time::Duration;

use nightshift::{JobContext, JobKind, JobStatus, ResultCell, Worker};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::helpers::*;

const CHILD_DB: &str = "NIGHTSHIFT_TEST_FROZEN_DB";

/// `Ticker`: logs a line, a result row and a progress step every 50 ms, `ticks` times;
/// attempt 1 ticks for a minute (the attempt that gets frozen), later ones `ticks` times.
fn register_ticker(worker: &Worker) {
    worker
        .register(
            JobKind::new("Ticker", |args: Args, ctx: JobContext| async move {
                let ticks = if ctx.attempt() == 1 { 1200 } else { args.lines };
                for i in 0..ticks {
                    if ctx.is_cancelled() {
                        return Ok(());
                    }
                    let a = ctx.attempt();
                    ctx.log(format!("attempt {a} tick {i}")).await?;
                    ctx.add_result_row(vec![
                        ResultCell::ok(format!("{a}")),
                        ResultCell::ok(format!("{i}")),
                    ])
                    .await?;
                    ctx.set_progress((i % 100) as i64).await?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(())
            })
            .max_attempts(3),
        )
        .unwrap();
}

/// Not a test of its own: the node the freeze test stops with SIGSTOP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by a_frozen_node as a child process"]
async fn frozen_child_node() {
    let Ok(url) = std::env::var(CHILD_DB) else {
        return;
    };
    let worker = Worker::builder()
        .database_url(url)
        .heartbeat_interval(Duration::from_millis(200))
        .node_timeout(Duration::from_secs(2))
        .grace_period(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    register_ticker(&worker);
    worker.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
}

async fn count(worker: &Worker, sql: &str) -> i64 {
    let db = worker.store().connection();
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

both_databases! {
    async fn a_frozen_node_is_replaced_and_its_late_writes_land_nowhere(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        register_ticker(&worker);
        let id = worker.enqueue_dynamic("Ticker", &json!({"lines": 5})).await.unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "leases::frozen_child_node", "--ignored", "--nocapture"])
            .env(CHILD_DB, &db.url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(&worker, id, "running in the child", |j| j.status == JobStatus::Running).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while worker.logs(id, 10).await.unwrap().len() < 3 {
            assert!(tokio::time::Instant::now() < deadline, "the child never ticked");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal(child.id(), "-STOP");
        // This node reaps the frozen one, rescues the job, and runs attempt 2 to the end.
        worker.start().await.unwrap();
        let job = finished(&worker, id).await;
        assert_eq!(job.status, JobStatus::Done, "{job:?}");
        assert_eq!(job.attempt, 2);
        let before = (
            count(&worker, &format!("SELECT COUNT(*) FROM nightshift_job_logs WHERE job_id = {id}")).await,
            count(&worker, &format!("SELECT COUNT(*) FROM nightshift_job_results WHERE job_id = {id}")).await,
        );
        // The frozen node wakes up with its lease long gone: nothing it still sends may land.
        signal(child.id(), "-CONT");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = (
            count(&worker, &format!("SELECT COUNT(*) FROM nightshift_job_logs WHERE job_id = {id}")).await,
            count(&worker, &format!("SELECT COUNT(*) FROM nightshift_job_results WHERE job_id = {id}")).await,
        );
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(before, after, "late logs or results of the stale attempt landed");
        let again = worker.job(id).await.unwrap();
        assert_eq!(again.status, JobStatus::Done);
        assert_eq!(again.attempt, 2);
        assert_eq!(again.finished_at, job.finished_at, "the stale completion changed nothing");
        assert_eq!(again.progress, 100, "the stale progress changed nothing");
        // The page shows attempt 2's rows only.
        let rows = worker.results(id).await.unwrap();
        assert_eq!(rows.len(), 5, "{rows:?}");
        assert!(rows.iter().all(|r| r[0].value == "2"));
        worker.shutdown().await;
    }

    async fn a_node_whose_clock_is_a_minute_off_is_not_reaped_and_starts_nothing_early(db: TestDb) {
        let slow = builder(&db).clock_skew_for_tests(-60_000).build().await.unwrap();
        register(&slow);
        slow.start().await.unwrap();
        // Longer than the node timeout, on the slow node: a clock a minute slow would make it
        // look dead to the other node, which would rescue the job.
        let long = slow.enqueue_dynamic("Work", &json!({"ms": 3000})).await.unwrap();
        wait_for(&slow, long, "running on the slow node", |j| j.status == JobStatus::Running).await;
        let fast = builder(&db).clock_skew_for_tests(60_000).build().await.unwrap();
        register(&fast);
        fast.start().await.unwrap();
        // A job for 1.5 s from now: the fast node must not start it a minute early.
        let at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
        let scheduled = fast.schedule_dynamic("Work", &json!({}), at).await.unwrap();
        let job = finished(&fast, scheduled).await;
        assert_eq!(job.status, JobStatus::Done);
        let started = job.started_at.unwrap();
        assert!(started >= at - chrono::Duration::milliseconds(5), "started {started}, due {at}");
        let job = finished(&slow, long).await;
        assert_eq!(job.status, JobStatus::Done, "{job:?}");
        assert_eq!(job.attempt, 1, "never rescued: {job:?}");
        slow.shutdown().await;
        fast.shutdown().await;
    }

    async fn a_retry_after_error_rows_ends_done_and_shows_its_own_rows(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        worker
            .register(
                JobKind::new("Flaky Rows", |_: Args, ctx: JobContext| async move {
                    if ctx.attempt() == 1 {
                        ctx.add_result_row(vec![ResultCell::error("x", "bad row")]).await?;
                        anyhow::bail!("first attempt fails");
                    }
                    ctx.add_result_row(vec![ResultCell::ok("fine")]).await?;
                    Ok(())
                })
                .max_attempts(2)
                .backoff(nightshift::Backoff::exponential(Duration::from_millis(10), Duration::from_millis(10))),
            )
            .unwrap();
        worker.start().await.unwrap();
        let id = worker.enqueue_dynamic("Flaky Rows", &json!({})).await.unwrap();
        let job = finished(&worker, id).await;
        assert_eq!(job.status, JobStatus::Done, "{job:?}");
        assert_eq!(job.attempt, 2);
        let rows = worker.results(id).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][0].value, "fine");
        worker.shutdown().await;
    }

    async fn a_job_given_back_by_a_shutdown_shows_one_attempts_results(db: TestDb) {
        let first = builder(&db).build().await.unwrap();
        register_ticker(&first);
        first.start().await.unwrap();
        // Attempt 1 ticks for a minute: the shutdown (300 ms drain) interrupts it.
        let id = first.enqueue_dynamic("Ticker", &json!({"lines": 5})).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while first.results(id).await.unwrap().len() < 3 {
            assert!(tokio::time::Instant::now() < deadline, "it never reported");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        first.shutdown().await;
        let job = first.job(id).await.unwrap();
        assert_eq!(job.status, JobStatus::New, "given back: {job:?}");
        assert_eq!(job.attempt, 0, "the attempt was refunded");
        assert_eq!(
            count(&first, &format!("SELECT COUNT(*) FROM nightshift_job_results WHERE job_id = {id}")).await,
            0,
            "the interrupted run's rows are gone: it runs again under the same number"
        );
    }

    async fn a_completion_that_cannot_be_written_does_not_hold_up_the_others(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        register(&worker);
        worker
            .register(JobKind::new("Once", |_: Args, _: JobContext| async { Ok(()) }).max_attempts(1))
            .unwrap();
        let poisoned = worker.schedule_dynamic("Work", &json!({}), chrono::Utc::now() + chrono::Duration::hours(1)).await.unwrap();
        let conn = worker.store().connection();
        let trigger = match conn.get_database_backend() {
            sea_orm::DbBackend::Postgres => vec![
                format!(
                    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
                     IF NEW.id = {poisoned} AND NEW.status = 'done' THEN RAISE EXCEPTION 'poisoned'; END IF; \
                     RETURN NEW; END $$ LANGUAGE plpgsql"
                ),
                "CREATE TRIGGER poison BEFORE UPDATE ON nightshift_jobs FOR EACH ROW EXECUTE FUNCTION poison()".to_owned(),
            ],
            _ => vec![format!(
                "CREATE TRIGGER poison BEFORE UPDATE OF status ON nightshift_jobs \
                 WHEN NEW.id = {poisoned} AND NEW.status = 'done' \
                 BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
            )],
        };
        for sql in trigger {
            conn.execute_unprepared(&sql).await.unwrap();
        }
        worker.update(poisoned, json!({}), None).await.unwrap();
        let others: Vec<i64> = {
            let mut v = vec![];
            for _ in 0..20 {
                v.push(worker.enqueue_dynamic("Once", &json!({})).await.unwrap());
            }
            v
        };
        worker.start().await.unwrap();
        for id in others {
            assert_eq!(finished(&worker, id).await.status, JobStatus::Done);
        }
        // The poisoned one is not left running: maintenance ends it plainly (a retry here).
        wait_for(&worker, poisoned, "ended without its completion", |j| {
            j.status != JobStatus::Running && j.error.as_deref().is_some_and(|e| e.contains("could not be stored"))
        })
        .await;
        worker.shutdown().await;
    }

    async fn a_job_left_running_under_a_live_node_that_does_not_run_it_is_run_again(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        let runs = register(&worker);
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        let lost = worker.schedule_dynamic("Work", &json!({}), later).await.unwrap();
        worker.start().await.unwrap();
        // A job that runs here past the 10 s a claim is given: it is held, so it is left alone
        // however many rounds see it.
        let held = worker.enqueue_dynamic("Work", &json!({"ms": 12_000})).await.unwrap();
        wait_for(&worker, held, "running", |j| j.status == JobStatus::Running).await;
        let node = worker.node_id().to_owned();
        let minute_ago = chrono::Utc::now().timestamp_millis() - 60_000;
        let conn = worker.store().connection();
        // What a claim whose commit succeeded but whose answer was lost leaves behind: the job
        // `running` under this live node, which never heard of it.
        conn.execute_unprepared(&format!(
            "UPDATE nightshift_jobs SET status = 'running', attempt = 1, locked_by = '{node}', \
             started_at = {minute_ago} WHERE id = {lost}"
        ))
        .await
        .unwrap();
        conn.execute_unprepared(&format!(
            "INSERT INTO nightshift_job_attempts (job_id, attempt, node, started_at) \
             VALUES ({lost}, 1, '{node}', {minute_ago})"
        ))
        .await
        .unwrap();
        let job = finished(&worker, lost).await;
        assert_eq!(job.status, JobStatus::Done, "{job:?}");
        assert_eq!(job.attempt, 2, "attempt 1 was lost, attempt 2 ran");
        assert_eq!(runs.count(lost), 1);
        let attempts = worker.attempts(lost).await.unwrap();
        let first = attempts.iter().find(|a| a.attempt == 1).expect("attempt 1 recorded");
        assert_eq!(first.outcome.as_deref(), Some("lost"));
        assert!(
            first.error.as_deref().is_some_and(|e| e.contains("lost by its node")),
            "{first:?}"
        );
        // Many rounds saw the held job meanwhile: it ran once, to its end, as attempt 1.
        let job = finished(&worker, held).await;
        assert_eq!((job.status, job.attempt), (JobStatus::Done, 1), "{job:?}");
        assert_eq!(runs.count(held), 1);
        worker.shutdown().await;
    }
}

/// SQLite only: a caller's transaction holding the database's write lock for longer than the
/// node timeout. Nobody can write meanwhile; once it ends, the node's heartbeat is back before
/// anyone may reap it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_long_sqlite_transaction_does_not_get_the_node_reaped() {
    use sea_orm::TransactionTrait;
    let db = TestDb::sqlite();
    let a = builder(&db).build().await.unwrap();
    let b = builder(&db).build().await.unwrap();
    register(&a);
    register(&b);
    a.start().await.unwrap();
    b.start().await.unwrap();
    let node_of_a = count(&a, "SELECT COUNT(*) FROM nightshift_nodes").await;
    assert_eq!(node_of_a, 2);
    let tx = a.store().connection().begin().await.unwrap();
    a.insert_in(&tx, nightshift::NewJob::new("Work", &json!({})).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tx.commit().await.unwrap();
    // Several rounds for the other node to judge.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            count(&b, "SELECT COUNT(*) FROM nightshift_nodes").await,
            2,
            "a node was reaped"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// The job page shows the latest attempt's results a page at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_page_pages_through_the_latest_attempts_results() {
    let app = crate::app::spawn_app().await;
    app.worker
        .register(JobKind::new(
            "Many Rows",
            |_: Args, ctx: JobContext| async move {
                for i in 0..1200 {
                    ctx.add_result_row(vec![ResultCell::ok(format!("row-{i}-end"))])
                        .await?;
                }
                Ok(())
            },
        ))
        .unwrap();
    let id = app
        .worker
        .enqueue_dynamic("Many Rows", &json!({}))
        .await
        .unwrap();
    assert_eq!(finished(&app.worker, id).await.status, JobStatus::Done);
    let (status, page) = app.get_html(&format!("/workers/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("-end<").count(), 500, "one page of rows");
    assert!(page.contains("Page 1 of 3"));
    let (_, last) = app.get_html(&format!("/workers/{id}?results_page=3")).await;
    assert_eq!(last.matches("-end<").count(), 200);
    assert!(last.contains("row-1199-end"));
    let (status, _) = app
        .get_html(&format!("/workers/{id}?results_page=zero"))
        .await;
    assert_eq!(status, 400);
}

/// SQLite only: a call that needs the engine's one write connection, made inside a caller's
/// transaction on it, says why it cannot go on instead of waiting for itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_inside_a_held_sqlite_transaction_says_why() {
    use sea_orm::TransactionTrait;
    let db = TestDb::sqlite();
    let worker = builder(&db).build().await.unwrap();
    register(&worker);
    let tx = worker.store().connection().begin().await.unwrap();
    let err = worker
        .enqueue_dynamic("Work", &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, nightshift::Error::ConnectionHeld), "{err}");
    assert!(err.to_string().contains("insert_in"), "{err}");
    // The way that works: inside the transaction, on it.
    worker
        .insert_in(&tx, nightshift::NewJob::new("Work", &json!({})).unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}
