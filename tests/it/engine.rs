//! The engine on both databases (each test runs as `name::sqlite` on a real SQLite file and as
//! `name::postgres` on a fresh PostgreSQL database): states, transitions, refusals, scheduling,
//! abort, failures, retries, timeouts, shutdown and concurrency.
use std::time::Duration;

use chrono::Utc;
use nightshift::{Error, JobStatus, NewJob};
use sea_orm::TransactionTrait;
use serde_json::json;

use crate::helpers::*;

both_databases! {
    async fn waiting_jobs_update_and_cancel_and_finished_jobs_never_change(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        register(&worker);
        // Not started: jobs wait.
        let id = worker.enqueue_dynamic("Work", &Args::default()).await.unwrap();
        assert_eq!(worker.job(id).await.unwrap().status, JobStatus::New);

        // Abort is only for running jobs.
        let err = worker.abort(id, "alice").await.unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidState {
                status: JobStatus::New,
                action: "abort",
                ..
            }
        ));

        // Update to a future time makes it scheduled; back to no time makes it new.
        let later = Utc::now() + chrono::Duration::hours(1);
        let job = worker
            .update(id, json!({"ms": 5}), Some(later))
            .await
            .unwrap();
        assert_eq!(job.status, JobStatus::Scheduled);
        assert_eq!(job.args["ms"], 5);
        assert_eq!(
            job.schedule_at.unwrap().timestamp_millis(),
            nightshift::clock::to_ms(later)
        );
        let job = worker.update(id, json!({"ms": 6}), None).await.unwrap();
        assert_eq!(job.status, JobStatus::New);

        // Cancel, then every action on the finished job is refused and changes nothing.
        let job = worker.cancel(id).await.unwrap();
        assert_eq!(job.status, JobStatus::Cancelled);
        assert!(job.finished_at.is_some());
        for err in [
            worker.cancel(id).await.unwrap_err(),
            worker.update(id, json!({}), None).await.unwrap_err(),
            worker.abort(id, "alice").await.unwrap_err(),
        ] {
            assert!(
                matches!(
                    err,
                    Error::InvalidState {
                        status: JobStatus::Cancelled,
                        ..
                    }
                ),
                "{err}"
            );
        }
        assert_eq!(worker.job(id).await.unwrap().status, JobStatus::Cancelled);

        // Rerun creates a new job with the same arguments.
        let rerun = worker.rerun(id, Some("bob")).await.unwrap();
        assert_ne!(rerun.id, id);
        assert_eq!(rerun.status, JobStatus::New);
        assert_eq!(rerun.args["ms"], 6);
        assert_eq!(rerun.created_by.as_deref(), Some("bob"));

        assert!(matches!(
            worker.cancel(9999).await.unwrap_err(),
            Error::NotFound(9999)
        ));
    }
}

both_databases! {
    async fn bad_input_is_refused_with_the_field_named(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        register(&worker);
        let err = worker.enqueue_dynamic("Nope", &json!({})).await.unwrap_err();
        assert!(matches!(err, Error::UnknownKind(_)));
        let err = worker
            .enqueue_dynamic("Work", &json!({"ms": "soon"}))
            .await
            .unwrap_err();
        match err {
            Error::InvalidArgs { field, .. } => assert_eq!(field.as_deref(), Some("ms")),
            other => panic!("{other}"),
        }
        let err = worker
            .schedule_dynamic("Fail", &json!({}), Utc::now())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotSchedulable(_)));
        let huge = "x".repeat(1024 * 1024 + 1);
        let err = worker
            .enqueue_dynamic("Work", &json!({"secret": huge}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
    }
}

both_databases! {
    async fn secrets_are_stored_but_never_shown_and_survive_an_update(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        register(&worker);
        let later = Utc::now() + chrono::Duration::hours(1);
        let id = worker
            .schedule_dynamic("Work", &json!({"secret": "hunter2"}), later)
            .await
            .unwrap();
        let job = worker.job(id).await.unwrap();
        assert_eq!(job.args["secret"], "••••••");
        assert!(!serde_json::to_string(&job).unwrap().contains("hunter2"));
        // The form sends the mask back: the stored secret stays.
        worker
            .update(id, json!({"secret": "••••••", "ms": 1}), Some(later))
            .await
            .unwrap();
        let stored = worker.store().job(id).await.unwrap();
        assert!(stored.args.contains("hunter2"));
    }
}

both_databases! {
    async fn a_job_runs_and_its_log_and_progress_are_stored_in_order(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        register(&worker);
        let mut events = worker.subscribe();
        worker.start().await.unwrap();
        let id = worker
            .enqueue_dynamic("Work", &json!({"lines": 500}))
            .await
            .unwrap();
        let job = finished(&worker, id).await;
        assert_eq!(job.status, JobStatus::Done, "{job:?}");
        assert_eq!(job.progress, 100);
        assert_eq!(job.attempt, 1);
        let logs = worker.logs(id, 1000).await.unwrap();
        let lines: Vec<_> = logs.iter().map(|l| l.line.clone()).collect();
        let expected: Vec<_> = (0..500).map(|i| format!("line {i}")).collect();
        assert_eq!(lines, expected);
        // The event channel saw it start, log and finish.
        let mut seen_running = false;
        let mut seen_done = false;
        let mut logged = 0;
        while let Ok(ev) = events.try_recv() {
            match ev {
                nightshift::JobEvent::Status { job_id, status, .. } if job_id == id => {
                    seen_running |= status == JobStatus::Running;
                    seen_done |= status == JobStatus::Done;
                }
                nightshift::JobEvent::Log { job_id, .. } if job_id == id => logged += 1,
                _ => {}
            }
        }
        assert!(seen_running && seen_done);
        assert_eq!(logged, 500);
        worker.shutdown().await;
    }
}

both_databases! {
    async fn a_scheduled_job_starts_at_its_time_not_before(db: TestDb) {
        // With a 30 s poll, only the scheduler's own timer can start the job within a second.
        let worker = builder(&db)
            .poll_interval(Duration::from_secs(30))
            .build()
            .await
            .unwrap();
        register(&worker);
        worker.start().await.unwrap();
        let at = Utc::now() + chrono::Duration::milliseconds(2_700);
        let id = worker.schedule_dynamic("Work", &json!({}), at).await.unwrap();
        assert_eq!(worker.job(id).await.unwrap().status, JobStatus::Scheduled);
        let job = finished(&worker, id).await;
        assert_eq!(job.status, JobStatus::Done);
        let started = job.started_at.unwrap();
        assert!(started >= at, "started {started} before {at}");
        // No polling tick: it starts when it is due (the bound is generous for a loaded CI machine;
        // `nightshift bench` measures the real lateness).
        assert!(
            started - at < chrono::Duration::milliseconds(900),
            "late: {}",
            started - at
        );
        worker.shutdown().await;
    }
}

both_databases! {
    async fn a_past_schedule_runs_at_once_and_an_earlier_update_wakes_the_scheduler(db: TestDb) {
        let worker = builder(&db)
            .poll_interval(Duration::from_secs(30))
            .build()
            .await
            .unwrap();
        register(&worker);
        worker.start().await.unwrap();
        let past = worker
            .schedule_dynamic("Work", &json!({}), Utc::now() - chrono::Duration::hours(3))
            .await
            .unwrap();
        assert_eq!(finished(&worker, past).await.status, JobStatus::Done);

        let id = worker
            .schedule_dynamic("Work", &json!({}), Utc::now() + chrono::Duration::hours(1))
            .await
            .unwrap();
        let soon = Utc::now() + chrono::Duration::milliseconds(300);
        worker.update(id, json!({}), Some(soon)).await.unwrap();
        let job = finished(&worker, id).await;
        assert_eq!(job.status, JobStatus::Done);
        assert!(job.started_at.unwrap() >= soon);

        // A cancelled scheduled job never runs.
        let id = worker
            .schedule_dynamic(
                "Work",
                &json!({}),
                Utc::now() + chrono::Duration::milliseconds(200),
            )
            .await
            .unwrap();
        worker.cancel(id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let job = worker.job(id).await.unwrap();
        assert_eq!(job.status, JobStatus::Cancelled);
        assert_eq!(job.attempt, 0);
        worker.shutdown().await;
    }
}

both_databases! {
    async fn running_jobs_refuse_cancel_and_update_and_abort_kills_a_cooperative_handler(
        db: TestDb,
    ) {
        let worker = builder(&db).build().await.unwrap();
        register(&worker);
        worker.start().await.unwrap();
        let id = worker
            .enqueue_dynamic("Work", &json!({"ms": 30_000}))
            .await
            .unwrap();
        wait_for(&worker, id, "running", |j| j.status == JobStatus::Running).await;

        let err = worker.cancel(id).await.unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidState {
                status: JobStatus::Running,
                action: "cancel",
                ..
            }
        ));
        let err = worker.update(id, json!({}), None).await.unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidState {
                status: JobStatus::Running,
                ..
            }
        ));
        assert_eq!(worker.job(id).await.unwrap().status, JobStatus::Running);

        let job = worker.abort(id, "alice").await.unwrap();
        assert_eq!(job.status, JobStatus::Aborting);
        let job = finished(&worker, id).await;
        assert_eq!(job.status, JobStatus::Killed);
        assert_eq!(job.aborted_by.as_deref(), Some("alice"));
        let log: Vec<String> = worker
            .logs(id, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert!(log.iter().any(|l| l == "cancelled, stopping"), "{log:?}");
        assert!(
            log.iter().any(|l| l.starts_with("Aborted by alice at ")),
            "{log:?}"
        );
        // A second abort is refused: it is finished.
        assert!(worker.abort(id, "alice").await.is_err());
        let attempts = worker.attempts(id).await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome.as_deref(), Some("killed"));
        worker.shutdown().await;
    }
}

both_databases! {
    async fn abort_stops_a_handler_that_ignores_the_signal_after_the_grace_period(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        register(&worker);
        worker.start().await.unwrap();
        let id = worker
            .enqueue_dynamic("Stubborn", &json!({"ms": 60_000}))
            .await
            .unwrap();
        wait_for(&worker, id, "running", |j| j.status == JobStatus::Running).await;
        worker.abort(id, "carol").await.unwrap();
        let job = finished(&worker, id).await;
        assert_eq!(job.status, JobStatus::Killed);
        let log: Vec<String> = worker
            .logs(id, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert!(
            log.iter()
                .any(|l| l.contains("Aborted by carol") && l.contains("by force")),
            "{log:?}"
        );
        assert!(!log.iter().any(|l| l == "finished anyway"));
        assert_eq!(worker.running_here(), 0);
        worker.shutdown().await;
    }
}

both_databases! {
    async fn errors_panics_and_error_rows_end_in_exception_and_the_worker_lives_on(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        register(&worker);
        worker.start().await.unwrap();
        let fail = worker.enqueue_dynamic("Fail", &json!({})).await.unwrap();
        let panic = worker.enqueue_dynamic("Panic", &json!({})).await.unwrap();
        let rows = worker.enqueue_dynamic("ErrorRows", &json!({})).await.unwrap();

        let job = finished(&worker, fail).await;
        assert_eq!(job.status, JobStatus::Exception);
        assert_eq!(job.error.as_deref(), Some("the <b>upstream</b> said no"));
        let job = finished(&worker, panic).await;
        assert_eq!(job.status, JobStatus::Exception);
        assert!(
            job.error.as_deref().unwrap().contains("panicked: kaboom"),
            "{job:?}"
        );
        let job = finished(&worker, rows).await;
        assert_eq!(job.status, JobStatus::Exception);
        assert!(
            job.error.as_deref().unwrap().contains("result row"),
            "{job:?}"
        );
        let results = worker.results(rows).await.unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[1][1].error.as_deref(), Some("negative"));
        assert_eq!(
            worker.attempts(rows).await.unwrap()[0].outcome.as_deref(),
            Some("error_rows")
        );

        // The worker is still fine.
        let ok = worker.enqueue_dynamic("Work", &json!({})).await.unwrap();
        assert_eq!(finished(&worker, ok).await.status, JobStatus::Done);
        worker.shutdown().await;
    }
}

both_databases! {
    async fn failures_are_retried_with_backoff_and_every_attempt_is_recorded(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        register(&worker);
        worker.start().await.unwrap();
        let id = worker
            .enqueue_dynamic("Work", &json!({"fail_times": 2}))
            .await
            .unwrap();
        let job = finished(&worker, id).await;
        assert_eq!(job.status, JobStatus::Done, "{job:?}");
        assert_eq!(job.attempt, 3);
        let attempts = worker.attempts(id).await.unwrap();
        let outcomes: Vec<_> = attempts
            .iter()
            .map(|a| a.outcome.clone().unwrap())
            .collect();
        assert_eq!(outcomes, ["error", "error", "done"]);
        assert_eq!(
            attempts[0].error.as_deref(),
            Some("attempt 1 failed on purpose")
        );
        // Each retry waited at least its backoff (50 ms, then 100 ms).
        let gap1 = attempts[1].started_at - attempts[0].finished_at.unwrap();
        let gap2 = attempts[2].started_at - attempts[1].finished_at.unwrap();
        assert!(gap1 >= 50 && gap2 >= 100, "gaps {gap1} ms, {gap2} ms");

        // Out of attempts: exception with the last error.
        let id = worker
            .enqueue_dynamic("Work", &json!({"fail_times": 5}))
            .await
            .unwrap();
        let job = finished(&worker, id).await;
        assert_eq!(job.status, JobStatus::Exception);
        assert_eq!(job.attempt, 3);
        assert_eq!(job.error.as_deref(), Some("attempt 3 failed on purpose"));
        worker.shutdown().await;
    }
}

both_databases! {
    async fn a_timeout_counts_as_a_failure(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        register(&worker);
        worker.start().await.unwrap();
        let id = worker
            .enqueue_dynamic("Slow", &json!({"ms": 60_000}))
            .await
            .unwrap();
        let job = finished(&worker, id).await;
        assert_eq!(job.status, JobStatus::Exception);
        assert!(
            job.error.as_deref().unwrap().starts_with("timed out after"),
            "{job:?}"
        );
        assert_eq!(
            worker.attempts(id).await.unwrap()[0].outcome.as_deref(),
            Some("timeout")
        );
        worker.shutdown().await;
    }
}

both_databases! {
    async fn graceful_shutdown_finishes_short_jobs_and_gives_long_ones_back(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        register(&worker);
        worker.start().await.unwrap();
        let short = worker.enqueue_dynamic("Work", &json!({"ms": 100})).await.unwrap();
        let long = worker
            .enqueue_dynamic("Work", &json!({"ms": 60_000}))
            .await
            .unwrap();
        let stubborn = worker
            .enqueue_dynamic("Stubborn", &json!({"ms": 60_000}))
            .await
            .unwrap();
        // The short job may be done before a poll sees it running (100 ms): wait for it to
        // have started.
        wait_for(&worker, short, "started", |j| j.attempt >= 1).await;
        for id in [long, stubborn] {
            wait_for(&worker, id, "running", |j| j.status == JobStatus::Running).await;
        }
        worker.shutdown().await;
        // Nothing runs, nothing is stuck.
        assert_eq!(worker.job(short).await.unwrap().status, JobStatus::Done);
        for id in [long, stubborn] {
            let job = worker.job(id).await.unwrap();
            assert_eq!(job.status, JobStatus::New, "{job:?}");
            assert_eq!(job.attempt, 0, "the interrupted attempt is given back");
            let attempts = worker.attempts(id).await.unwrap();
            assert_eq!(attempts[0].outcome.as_deref(), Some("interrupted"));
        }
        // A new worker picks them up.
        let again = builder(&db).build().await.unwrap();
        register(&again);
        again.start().await.unwrap();
        let job = wait_for(&again, long, "running", |j| j.status == JobStatus::Running).await;
        assert_eq!(job.attempt, 1);
        again.shutdown().await;
        // Both interruptions are on record: a renumbered attempt never overwrites a closed one.
        let attempts = again.attempts(long).await.unwrap();
        assert_eq!(attempts.len(), 2);
        assert!(
            attempts
                .iter()
                .all(|a| a.outcome.as_deref() == Some("interrupted") && a.finished_at.is_some())
        );
    }
}

both_databases! {
    async fn a_thousand_concurrent_jobs_each_run_exactly_once(db: TestDb) {
        let worker = builder(&db).concurrency(16).build().await.unwrap();
        let runs = register(&worker);
        let jobs: Vec<NewJob> = (0..1000)
            .map(|i| NewJob::new("Work", &json!({"lines": i % 3})).unwrap())
            .collect();
        let ids: Vec<i64> = worker
            .insert_many(jobs)
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids.len(), 1000);
        worker.start().await.unwrap();
        for id in &ids {
            assert_eq!(finished(&worker, *id).await.status, JobStatus::Done);
        }
        assert_eq!(runs.total(), 1000);
        assert!(ids.iter().all(|id| runs.count(*id) == 1));
        worker.shutdown().await;
    }
}

both_databases! {
    async fn enqueue_inside_the_callers_transaction_exists_only_if_it_commits(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        register(&worker);
        worker.start().await.unwrap();
        let conn = worker.store().connection();

        let tx = conn.begin().await.unwrap();
        let rolled = worker
            .insert_in(&tx, NewJob::new("Work", &json!({})).unwrap())
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        assert!(matches!(
            worker.job(rolled.id).await.unwrap_err(),
            Error::NotFound(_)
        ));

        let tx = conn.begin().await.unwrap();
        let kept = worker
            .insert_in(&tx, NewJob::new("Work", &json!({})).unwrap())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        worker.wake();
        assert_eq!(finished(&worker, kept.id).await.status, JobStatus::Done);
        worker.shutdown().await;
    }
}

/// SQLite only: a second connection holds SQLite's database-wide write lock (`BEGIN IMMEDIATE`)
/// for longer than the busy timeout. PostgreSQL has no such lock: writers lock rows, not the
/// database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_delays_jobs_but_never_fails_them() {
    use sea_orm::ConnectionTrait;
    let db = temp_db();
    let worker = builder(&db).build().await.unwrap();
    register(&worker);
    // Another process-like connection holds the write lock for a while.
    let other = nightshift::store::connect(&db.url).await.unwrap();
    worker.start().await.unwrap();
    let ids: Vec<i64> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(
                worker
                    .enqueue_dynamic("Work", &json!({"lines": 5, "ms": 300}))
                    .await
                    .unwrap(),
            );
        }
        v
    };
    for id in &ids {
        wait_for(&worker, *id, "running", |j| j.status == JobStatus::Running).await;
    }
    other.execute_unprepared("BEGIN IMMEDIATE").await.unwrap();
    // Longer than SQLite's 5 s busy timeout, so the retry path is taken.
    tokio::time::sleep(Duration::from_millis(6_000)).await;
    other.execute_unprepared("COMMIT").await.unwrap();
    for id in ids {
        let job = finished(&worker, id).await;
        assert_eq!(job.status, JobStatus::Done, "{job:?}");
        assert_eq!(worker.logs(id, 100).await.unwrap().len(), 5);
    }
    worker.shutdown().await;
}
