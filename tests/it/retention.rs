//! Retention: the pruner deletes finished jobs (with their logs, results and attempts) only
//! once old enough for their state, never a waiting or running job, old audit entries and
//! throttle counters too, records its run (shown on the Nodes page and in its JSON), and the
//! queue keeps running while it prunes many rows.
use std::time::Duration;

use nightshift::{JobStatus, NewJob, Retention};
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::helpers::{both_databases, builder, finished, register, wait_for};

const DAY_MS: i64 = 24 * 3600 * 1000;

fn policy() -> Retention {
    Retention {
        done: Retention::days(1),
        errors: Retention::days(3),
        cancelled: Retention::days(2),
        audit: Retention::days(30),
        throttle: Retention::days(1),
        // The background pruner runs once at start; the tests prune by hand.
        interval: Duration::from_secs(3600),
        ..Retention::default()
    }
}

/// Moves a job's finish (and creation) `days_ago` days into the past.
async fn age(w: &nightshift::Worker, id: i64, days_ago: i64) {
    let at = nightshift::clock::now_ms() - days_ago * DAY_MS;
    w.store()
        .connection()
        .execute_unprepared(&format!(
            "UPDATE nightshift_jobs SET created_at = {at}, updated_at = {at}, \
             finished_at = CASE WHEN finished_at IS NULL THEN NULL ELSE {at} END WHERE id = {id}"
        ))
        .await
        .unwrap();
}

async fn exists(w: &nightshift::Worker, id: i64) -> bool {
    match w.job(id).await {
        Ok(_) => true,
        Err(nightshift::Error::NotFound(_)) => false,
        Err(e) => panic!("{e}"),
    }
}

both_databases! {
    /// Each state by its own age; waiting and running jobs whatever their age; logs go with
    /// their job; audit and throttle rows by theirs; the run is recorded.
    async fn prunes_only_what_is_old_enough(db: TestDb) {
        let w = builder(&db).retention(policy()).build().await.unwrap();
        register(&w);
        w.start().await.unwrap();
        let run = |args: serde_json::Value, kind: &'static str| {
            let w = w.clone();
            async move {
                let id = w.enqueue_dynamic(kind, &args).await.unwrap();
                finished(&w, id).await;
                id
            }
        };
        let done_old = run(json!({"lines": 2}), "Work").await;
        let done_new = run(json!({"lines": 2}), "Work").await;
        let failed_2d = run(json!({}), "Fail").await;
        let failed_4d = run(json!({}), "Fail").await;
        let waiting = w
            .insert(NewJob::new("Work", &json!({})).unwrap().queue("held"))
            .await
            .unwrap()
            .id;
        let cancelled = w
            .insert(NewJob::new("Work", &json!({})).unwrap().queue("held"))
            .await
            .unwrap()
            .id;
        w.cancel(cancelled).await.unwrap();
        let running = w.enqueue_dynamic("Work", &json!({"ms": 60_000})).await.unwrap();
        wait_for(&w, running, "running", |j| j.status == JobStatus::Running).await;
        age(&w, done_old, 2).await;
        age(&w, done_new, 0).await;
        age(&w, failed_2d, 2).await;
        age(&w, failed_4d, 4).await;
        age(&w, cancelled, 3).await;
        age(&w, waiting, 400).await;
        age(&w, running, 400).await;
        let conn = w.store().connection();
        let old = nightshift::clock::now_ms() - 40 * DAY_MS;
        let new = nightshift::clock::now_ms();
        for (at, action) in [(old, "old_entry"), (new, "new_entry")] {
            conn.execute_unprepared(&format!(
                "INSERT INTO nightshift_audit (at, actor, address, action, outcome) \
                 VALUES ({at}, 'test', 'here', '{action}', 'ok')"
            ))
            .await
            .unwrap();
        }
        let locked = new + DAY_MS;
        for (key, start, until) in [
            ("addr:old", old.to_string(), "NULL".to_owned()),
            ("addr:new", new.to_string(), "NULL".to_owned()),
            ("user:locked", old.to_string(), locked.to_string()),
        ] {
            conn.execute_unprepared(&format!(
                "INSERT INTO nightshift_login_throttle (\"key\", failures, window_start, locked_until) \
                 VALUES ('{key}', 3, {start}, {until})"
            ))
            .await
            .unwrap();
        }

        let deleted = w.prune().await.unwrap();
        assert_eq!(deleted["done"], 1, "{deleted:?}");
        assert_eq!(deleted["exception"], 1, "{deleted:?}");
        assert_eq!(deleted["cancelled"], 1, "{deleted:?}");
        assert_eq!(deleted["killed"], 0, "{deleted:?}");
        assert_eq!(deleted["audit"], 1, "{deleted:?}");
        assert_eq!(deleted["throttle"], 1, "the expired counter, not the lock: {deleted:?}");

        assert!(!exists(&w, done_old).await);
        assert!(w.logs(done_old, 10).await.unwrap().is_empty(), "its log went too");
        assert!(w.attempts(done_old).await.unwrap().is_empty(), "its attempts too");
        assert!(exists(&w, done_new).await);
        assert_eq!(w.logs(done_new, 10).await.unwrap().len(), 2, "a kept job keeps its log");
        assert!(exists(&w, failed_2d).await, "failed jobs are kept longer");
        assert!(!exists(&w, failed_4d).await);
        assert!(!exists(&w, cancelled).await);
        assert_eq!(w.job(waiting).await.unwrap().status, JobStatus::New, "waiting: kept");
        assert_eq!(w.job(running).await.unwrap().status, JobStatus::Running, "running: kept");

        let last = w.last_prune().await.unwrap().expect("a recorded run");
        assert_eq!(last.node.as_deref(), Some(w.node_id()));
        assert!(last.finished_at.is_some(), "{last:?}");
        assert_eq!(last.deleted, deleted);
        assert_eq!(last.error, None);

        // Once more: nothing is old enough any more.
        let again = w.prune().await.unwrap();
        assert!(again.values().all(|n| *n == 0), "{again:?}");
        w.abort(running, "test").await.unwrap();
        w.shutdown().await;
    }

    /// A prune of many rows in small batches with pauses: jobs enqueued meanwhile run and
    /// finish while it is still going.
    async fn the_queue_keeps_running_while_pruning(db: TestDb) {
        let r = Retention {
            batch: 100,
            pause: Duration::from_millis(200),
            ..policy()
        };
        let w = builder(&db).retention(r).build().await.unwrap();
        register(&w);
        w.start().await.unwrap();
        let old: Vec<NewJob> = (0..2_000)
            .map(|_| NewJob::new("Work", &json!({})).unwrap().queue("held"))
            .collect();
        w.insert_many(old).await.unwrap();
        let at = nightshift::clock::now_ms() - 10 * DAY_MS;
        w.store()
            .connection()
            .execute_unprepared(&format!(
                "UPDATE nightshift_jobs SET status = 'done', finished_at = {at} WHERE queue = 'held'"
            ))
            .await
            .unwrap();

        let pruning = tokio::spawn({
            let w = w.clone();
            async move { w.prune().await.unwrap() }
        });
        let mut ids = Vec::new();
        for _ in 0..20 {
            ids.push(w.enqueue_dynamic("Work", &json!({})).await.unwrap());
        }
        let mut last_finish = 0;
        for id in &ids {
            let job = finished(&w, *id).await;
            assert_eq!(job.status, JobStatus::Done);
            last_finish = last_finish.max(job.finished_at.unwrap().timestamp_millis());
        }
        let deleted = pruning.await.unwrap();
        assert_eq!(deleted["done"], 2_000, "{deleted:?}");
        for id in &ids {
            assert!(exists(&w, *id).await, "new jobs are not old enough");
        }
        let run = w.last_prune().await.unwrap().unwrap();
        assert!(
            run.finished_at.unwrap() > last_finish,
            "the jobs finished while the prune was still going: {run:?}, last job at {last_finish}"
        );
        w.shutdown().await;
    }
}

/// The Nodes page and its JSON show the pruner's last run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_page_shows_the_last_prune() {
    let app = crate::app::spawn_app().await;
    app.worker.prune().await.unwrap();
    let (status, body) = app.get_json("/nodes").await;
    assert_eq!(status, 200, "{body}");
    let pruner = &body["pruner"];
    assert_eq!(pruner["node"], app.worker.node_id(), "{body}");
    assert!(pruner["finished_at"].is_string(), "{body}");
    assert_eq!(pruner["deleted"]["done"], 0, "{body}");
    let (_, html) = app.get_html("/nodes").await;
    assert!(
        html.contains("<h2 id=\"pruner-title\">Retention</h2>"),
        "{html}"
    );
    assert!(html.contains("Last run "), "{html}");
    assert!(html.contains("nothing (nothing was old enough)"), "{html}");
    assert!(
        html.contains("done 14 days, failed or killed 90 days"),
        "{html}"
    );
    app.worker.shutdown().await;
}
