//! Crash recovery: a real worker process killed with SIGKILL mid-job, then a new one finishing
//! the work, on both databases.
use std::process::{Command, Stdio};
use std::time::Duration;

use nightshift::JobStatus;
use serde_json::json;

use crate::helpers::*;

const CHILD_DB: &str = "NIGHTSHIFT_TEST_CHILD_DB";

/// Not a test of its own: the worker process the crash test starts (this test binary, run again
/// with `CHILD_DB` set) and kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by crash_recovery as a child process"]
async fn child_worker_process() {
    let Ok(url) = std::env::var(CHILD_DB) else {
        return;
    };
    let worker = nightshift::Worker::builder()
        .database_url(url)
        .build()
        .await
        .unwrap();
    register(&worker);
    worker.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
}

both_databases! {
    async fn a_job_whose_process_was_killed_is_recovered_and_finished_by_the_next_process(
        db: TestDb,
    ) {
        let worker = builder(&db).build().await.unwrap();
        let runs = register(&worker);
        // Attempt 1 hangs for a minute (the process dies during it); attempt 2 is quick.
        let id = worker
            .enqueue_dynamic("Work", &json!({"lines": 3, "first_ms": 60_000}))
            .await
            .unwrap();
        // One attempt only: it cannot be retried, so it ends in exception.
        let one_shot = worker
            .enqueue_dynamic("Stubborn", &json!({"ms": 60_000}))
            .await
            .unwrap();

        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::child_worker_process",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_DB, &db.url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for job in [id, one_shot] {
            wait_for(&worker, job, "running in the child", |j| {
                j.status == JobStatus::Running
            })
            .await;
        }
        // Its log lines reached the database before the crash.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while worker.logs(id, 10).await.unwrap().len() < 3 {
            assert!(tokio::time::Instant::now() < deadline, "child never logged");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().unwrap(); // SIGKILL: no shutdown code runs.
        child.wait().unwrap();
        assert_eq!(
            worker.job(id).await.unwrap().status,
            JobStatus::Running,
            "left running by the crash"
        );

        // The next process finds both at start, without waiting for a heartbeat timeout.
        worker.start().await.unwrap();
        let job = finished(&worker, id).await;
        assert_eq!(job.status, JobStatus::Done, "{job:?}");
        assert_eq!(job.attempt, 2);
        assert_eq!(runs.count(id), 1, "ran once here, once in the killed child");
        let attempts = worker.attempts(id).await.unwrap();
        assert_eq!(attempts[0].outcome.as_deref(), Some("lost"));
        assert!(
            attempts[0]
                .error
                .as_deref()
                .unwrap()
                .starts_with("worker lost")
        );
        assert_eq!(attempts[1].outcome.as_deref(), Some("done"));
        let log: Vec<String> = worker
            .logs(id, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert!(log.iter().any(|l| l.starts_with("Worker lost")), "{log:?}");
        assert_eq!(
            log.iter().filter(|l| *l == "line 0").count(),
            2,
            "both attempts' logs kept: {log:?}"
        );

        let job = finished(&worker, one_shot).await;
        assert_eq!(job.status, JobStatus::Exception);
        assert!(
            job.error.as_deref().unwrap().starts_with("worker lost"),
            "{job:?}"
        );
        worker.shutdown().await;
    }
}
