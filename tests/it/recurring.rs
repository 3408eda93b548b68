//! Recurring schedules: cron parsing and next runs across daylight-saving changes, exactly-once
//! ticks with two nodes, missed-tick policies, the admin's routes (pause, resume, run now, skip
//! next, edit, delete; 422 naming a bad cron or time zone), and operator edits that survive a
//! restart and are never overwritten by the code.
use std::time::Duration;

use chrono::{DateTime, Utc};
use nightshift::recurring::{CronSchedule, Missed, Recurring, ScheduleEdit};
use nightshift::{Error, JobStatus, Worker};
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::app::{ADMIN_PASSWORD, TestApp, csrf_in, signed_in, spawn_app, spawn_app_on, text_of};
use crate::helpers::{TestDb, both_databases, builder, finished, register};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The next `n` ticks after `from` as RFC 3339 UTC strings.
fn next(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
    CronSchedule::new(expr, tz)
        .unwrap()
        .next_runs(at(from), n)
        .iter()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .collect()
}

fn field_of(e: Error) -> String {
    match e {
        Error::InvalidArgs { field, .. } => field.unwrap_or_default(),
        other => panic!("expected InvalidArgs, got {other:?}"),
    }
}

#[test]
fn cron_expressions_parse_with_or_without_seconds_and_give_next_runs() {
    // Friday 2030-01-04, 10:00 in Paris: the next weekday mornings.
    assert_eq!(
        next("0 9 * * MON-FRI", "Europe/Paris", "2030-01-04T09:00:00Z", 3),
        [
            "2030-01-07T08:00:00Z",
            "2030-01-08T08:00:00Z",
            "2030-01-09T08:00:00Z"
        ]
    );
    // Six fields: seconds first.
    assert_eq!(
        next("*/20 * * * * *", "UTC", "2030-01-01T00:00:05Z", 3),
        [
            "2030-01-01T00:00:20Z",
            "2030-01-01T00:00:40Z",
            "2030-01-01T00:01:00Z"
        ]
    );
    assert_eq!(
        next("@daily", "America/New_York", "2030-01-01T12:00:00Z", 1),
        ["2030-01-02T05:00:00Z"]
    );
    let s = CronSchedule::new("0 9 * * MON-FRI", "Europe/Paris").unwrap();
    assert_eq!(s.describe(), "every weekday at 09:00 Europe/Paris");
    assert_eq!(
        CronSchedule::new("*/15 * * * *", "UTC").unwrap().describe(),
        "every 15 minutes UTC"
    );
    // Refused, naming the field and quoting the value.
    for bad in ["0 0 32 * *", "* * *", "every day", "0 0 30 2 *"] {
        let e = CronSchedule::new(bad, "UTC").unwrap_err();
        assert!(e.to_string().contains(bad), "{e}");
        assert_eq!(field_of(e), "cron", "{bad}");
    }
    let e = CronSchedule::new("0 9 * * *", "Europe/Atlantis").unwrap_err();
    assert!(e.to_string().contains("Europe/Atlantis"), "{e}");
    assert_eq!(field_of(e), "timezone");
}

#[test]
fn a_time_skipped_by_daylight_saving_fires_once_at_the_next_valid_instant() {
    // New York, 2030-03-10: 02:00 EST jumps to 03:00 EDT. 02:30 does not exist that day.
    assert_eq!(
        next(
            "0 30 2 * * *",
            "America/New_York",
            "2030-03-10T05:00:00Z",
            3
        ),
        [
            "2030-03-10T07:00:00Z", // 03:00 EDT, the first instant after the jump
            "2030-03-11T06:30:00Z", // 02:30 EDT the next day
            "2030-03-12T06:30:00Z",
        ]
    );
    // Every 15 minutes: 02:00–02:45 do not exist; they and 03:00 fire once, at 03:00 EDT.
    assert_eq!(
        next(
            "*/15 * * * *",
            "America/New_York",
            "2030-03-10T06:40:00Z",
            3
        ),
        [
            "2030-03-10T06:45:00Z",
            "2030-03-10T07:00:00Z",
            "2030-03-10T07:15:00Z"
        ]
    );
    // Paris, 2030-03-31: 02:00 CET jumps to 03:00 CEST.
    assert_eq!(
        next("0 30 2 * * *", "Europe/Paris", "2030-03-30T23:00:00Z", 2),
        ["2030-03-31T01:00:00Z", "2030-04-01T00:30:00Z"]
    );
    assert_eq!(
        next("0 0 * * * *", "Europe/Paris", "2030-03-30T23:30:00Z", 3),
        [
            "2030-03-31T00:00:00Z",
            "2030-03-31T01:00:00Z",
            "2030-03-31T02:00:00Z"
        ]
    );
}

#[test]
fn a_repeated_hour_fires_once() {
    // New York, 2030-11-03: 02:00 EDT goes back to 01:00 EST; 01:30 happens twice.
    assert_eq!(
        next(
            "0 30 1 * * *",
            "America/New_York",
            "2030-11-03T04:00:00Z",
            2
        ),
        ["2030-11-03T05:30:00Z", "2030-11-04T06:30:00Z"]
    );
    // Asked from inside the second pass, the 01:30 that already fired is not offered again.
    assert_eq!(
        next(
            "0 30 1 * * *",
            "America/New_York",
            "2030-11-03T06:10:00Z",
            1
        ),
        ["2030-11-04T06:30:00Z"]
    );
    // Every 15 minutes: each wall-clock time once; nothing while the hour repeats.
    assert_eq!(
        next(
            "*/15 * * * *",
            "America/New_York",
            "2030-11-03T05:40:00Z",
            3
        ),
        [
            "2030-11-03T05:45:00Z",
            "2030-11-03T07:00:00Z",
            "2030-11-03T07:15:00Z"
        ]
    );
    // Paris, 2030-10-27: 03:00 CEST goes back to 02:00 CET.
    assert_eq!(
        next("0 30 2 * * *", "Europe/Paris", "2030-10-26T22:00:00Z", 2),
        ["2030-10-27T00:30:00Z", "2030-10-28T01:30:00Z"]
    );
    assert_eq!(
        next("0 0 * * * *", "Europe/Paris", "2030-10-26T23:30:00Z", 3),
        [
            "2030-10-27T00:00:00Z",
            "2030-10-27T02:00:00Z",
            "2030-10-27T03:00:00Z"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_schedule_in_code_is_an_error_at_registration_or_start() {
    let db = TestDb::sqlite();
    let worker = builder(&db).build().await.unwrap();
    register(&worker);
    let e = worker
        .recurring(Recurring::new("nightly", "0 0 32 * *", "Work", &json!({})))
        .unwrap_err();
    assert!(e.to_string().contains("nightly"), "names the schedule: {e}");
    assert_eq!(field_of(e), "cron");
    let e = worker
        .recurring(Recurring::new("nightly", "0 3 * * *", "Work", &json!({})).timezone("Paris"))
        .unwrap_err();
    assert_eq!(field_of(e), "timezone");
    worker
        .recurring(Recurring::new("nightly", "0 3 * * *", "Work", &json!({})))
        .unwrap();
    let e = worker
        .recurring(Recurring::new("nightly", "0 4 * * *", "Work", &json!({})))
        .unwrap_err();
    assert_eq!(field_of(e), "name", "names are unique");

    // The kind and the arguments are checked against each other at start.
    let other = builder(&db).build().await.unwrap();
    register(&other);
    other
        .recurring(Recurring::new("x", "0 3 * * *", "Nope", &json!({})))
        .unwrap();
    assert!(matches!(other.start().await, Err(Error::UnknownKind(_))));
    let third = builder(&db).build().await.unwrap();
    register(&third);
    third
        .recurring(Recurring::new(
            "y",
            "0 3 * * *",
            "Work",
            &json!({"ms": "soon"}),
        ))
        .unwrap();
    let e = third.start().await.unwrap_err();
    assert_eq!(field_of(e), "args.ms");
}

/// The recurring runs of schedule `name`: `(tick_at, job_id, reason)`, oldest first.
async fn runs(worker: &Worker, name: &str) -> Vec<(Option<i64>, Option<i64>, String)> {
    let s = worker
        .recurring_schedules()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap();
    let rows = worker
        .store()
        .connection()
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            worker.store().backend(),
            match worker.store().backend() {
                sea_orm::DbBackend::Postgres => {
                    "SELECT tick_at, job_id, reason FROM nightshift_recurring_runs \
                     WHERE recurring_id = $1 ORDER BY id"
                }
                _ => {
                    "SELECT tick_at, job_id, reason FROM nightshift_recurring_runs \
                     WHERE recurring_id = ? ORDER BY id"
                }
            },
            [s.id.into()],
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
                r.try_get_by_index(2).unwrap(),
            )
        })
        .collect()
}

both_databases! {
    /// Two nodes share a schedule that ticks every second: each tick makes exactly one job, and
    /// none is lost.
    async fn every_tick_fires_exactly_once_with_two_nodes(db: TestDb) {
        let mut nodes = Vec::new();
        for _ in 0..2 {
            let w = builder(&db).build().await.unwrap();
            register(&w);
            w.recurring(Recurring::new("every-second", "* * * * * *", "Work", &json!({})))
                .unwrap();
            w.recurring(
                Recurring::new("every-two", "*/2 * * * * *", "Work", &json!({"lines": 1}))
                    .timezone("Europe/Paris"),
            )
            .unwrap();
            nodes.push(w);
        }
        for w in &nodes {
            w.start().await.unwrap();
        }
        // Until both schedules fired a few ticks (however slow this machine is right now).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let a = runs(&nodes[0], "every-second").await.len();
            let b = runs(&nodes[0], "every-two").await.len();
            if a >= 3 && b >= 2 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "ticks fired: {a} and {b}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for w in &nodes {
            w.shutdown().await;
        }
        let w = &nodes[0];
        for (name, step) in [("every-second", 1_000), ("every-two", 2_000)] {
            let runs = runs(w, name).await;
            assert!(runs.len() >= 2, "{name}: {runs:?}");
            let ticks: Vec<i64> = runs.iter().map(|r| r.0.unwrap()).collect();
            for pair in ticks.windows(2) {
                assert_eq!(pair[1] - pair[0], step, "{name}: one run per tick, none lost: {ticks:?}");
            }
            let mut jobs: Vec<i64> = runs.iter().map(|r| r.1.unwrap()).collect();
            jobs.sort_unstable();
            jobs.dedup();
            assert_eq!(jobs.len(), runs.len(), "{name}: one job per run");
            assert!(runs.iter().all(|r| r.2 == "tick"));
            for id in jobs {
                let job = w.job(id).await.unwrap();
                assert_eq!(job.created_by.as_deref(), Some(format!("recurring:{name}").as_str()));
                assert_eq!(job.job, "Work");
            }
        }
        // Nothing else made jobs: every job belongs to a run.
        let total = w
            .store()
            .connection()
            .query_one_raw(sea_orm::Statement::from_string(
                w.store().backend(),
                "SELECT COUNT(*) FROM nightshift_jobs",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap();
        let made = runs(w, "every-second").await.len() + runs(w, "every-two").await.len();
        assert_eq!(total as usize, made);
    }

    /// Ticks missed while no node ran: `skip` drops them, `run_once` runs one job for them; both
    /// go on from the next tick.
    async fn missed_ticks_follow_the_schedule_policy(db: TestDb) {
        let define = |w: &Worker| {
            register(w);
            w.recurring(Recurring::new("yearly-skip", "0 0 0 1 1 *", "Work", &json!({}))).unwrap();
            w.recurring(
                Recurring::new("yearly-once", "0 0 0 1 1 *", "Work", &json!({}))
                    .missed(Missed::RunOnce),
            )
            .unwrap();
        };
        let first = builder(&db).build().await.unwrap();
        define(&first);
        first.start().await.unwrap();
        first.shutdown().await;
        // Everything was down since 2020.
        first
            .store()
            .connection()
            .execute_unprepared("UPDATE nightshift_recurring SET next_run_at = 1577836800000")
            .await
            .unwrap();
        let second = builder(&db).build().await.unwrap();
        define(&second);
        second.start().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let all = second.recurring_schedules().await.unwrap();
            if all.iter().all(|s| !s.last_runs.is_empty()) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{all:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let skipped = runs(&second, "yearly-skip").await;
        assert_eq!(skipped, vec![(Some(1_577_836_800_000), None, "skipped".to_owned())]);
        let once = runs(&second, "yearly-once").await;
        assert_eq!(once.len(), 1, "{once:?}");
        assert_eq!(once[0].2, "missed");
        let job = finished(&second, once[0].1.unwrap()).await;
        assert_eq!(job.status, JobStatus::Done);
        for s in second.recurring_schedules().await.unwrap() {
            let next = s.next_runs[0];
            assert!(next > Utc::now(), "goes on from the next tick: {next}");
            assert_eq!(next.format("%m-%d %H:%M:%S").to_string(), "01-01 00:00:00");
        }
        let shown = second.recurring_schedules().await.unwrap();
        assert_eq!(shown[0].missed, Missed::RunOnce);
        assert_eq!(shown[0].last_runs[0].status, "done");
        assert_eq!(shown[1].last_runs[0].status, "skipped");
        second.shutdown().await;
    }

    /// An operator's edit lives in the database: it survives a restart, and a code definition
    /// that changed meanwhile does not overwrite it (the code's version is shown beside it). A
    /// schedule no operator touched follows the code.
    async fn operator_edits_survive_a_restart_and_code_never_overwrites_them(db: TestDb) {
        let first = builder(&db).build().await.unwrap();
        register(&first);
        first
            .recurring(
                Recurring::new("report", "0 0 3 * * *", "Work", &json!({"lines": 1}))
                    .timezone("Europe/Paris"),
            )
            .unwrap();
        first
            .recurring(Recurring::new("cleanup", "0 0 1 * * *", "Work", &json!({})))
            .unwrap();
        first.start().await.unwrap();
        let all = first.recurring_schedules().await.unwrap();
        let report = all.iter().find(|s| s.name == "report").unwrap().clone();
        assert_eq!((report.source.as_str(), report.code.is_none()), ("code", true));
        let edited = first
            .edit_recurring(
                report.id,
                ScheduleEdit {
                    cron: Some("0 30 4 * * *".into()),
                    args: Some(json!({"lines": 2})),
                    ..Default::default()
                },
                "alice",
            )
            .await
            .unwrap();
        assert_eq!(edited.source, "operator");
        assert_eq!(edited.description, "every day at 04:30 Europe/Paris");
        let code = edited.code.expect("the code's version differs now");
        assert_eq!(code.cron, "0 0 3 * * *");
        first.pause_recurring(report.id, "alice").await.unwrap();
        first.shutdown().await;

        // A new deploy: the code changed both schedules.
        let second = builder(&db).build().await.unwrap();
        register(&second);
        second
            .recurring(
                Recurring::new("report", "0 0 5 * * *", "Work", &json!({"lines": 3}))
                    .timezone("Europe/Paris"),
            )
            .unwrap();
        second
            .recurring(Recurring::new("cleanup", "0 0 2 * * *", "Work", &json!({})))
            .unwrap();
        second.start().await.unwrap();
        let report = second.recurring_schedule(report.id).await.unwrap();
        assert_eq!(report.cron, "0 30 4 * * *", "the operator's edit is kept");
        assert_eq!(report.args, json!({"lines": 2}));
        assert!(report.paused, "so is the pause");
        assert_eq!(report.updated_by.as_deref(), Some("alice"));
        let code = report.code.expect("the page shows what the code says");
        assert_eq!(code.cron, "0 0 5 * * *");
        assert_eq!(code.args, json!({"lines": 3}));
        assert_eq!(code.description, "every day at 05:00 Europe/Paris");
        let cleanup = second
            .recurring_schedules()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.name == "cleanup")
            .unwrap();
        assert_eq!(cleanup.cron, "0 0 2 * * *", "untouched by operators: follows the code");
        assert_eq!(cleanup.source, "code");
        assert!(cleanup.code.is_none());
        assert_eq!(
            cleanup.next_runs[0].format("%H:%M:%S").to_string(),
            "02:00:00",
            "retimed"
        );
        second.shutdown().await;
    }

    /// Every action through the admin's routes: create, pause, skip (refused while paused),
    /// resume, skip next, run now, edit, delete; each audited.
    async fn pause_resume_run_now_and_skip_next_through_the_routes(db: TestDb) {
        let app = spawn_app_on(&db.url).await;
        let (status, created) = app
            .post_json(
                "/recurring",
                &json!({"name": "daily", "job": "Work", "cron": "0 0 3 * * *",
                        "timezone": "Europe/Paris", "args": {"lines": 1, "secret": "hunter2"},
                        "missed": "run_once"}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_i64().unwrap();
        assert_eq!(created["job"], "Work");
        assert_eq!(created["cron"], "0 0 3 * * *");
        assert_eq!(created["timezone"], "Europe/Paris");
        assert_eq!(created["paused"], false);
        assert_eq!(created["missed"], "run_once");
        assert_eq!(created["args"]["secret"], "••••••", "secrets are masked");
        assert_eq!(created["description"], "every day at 03:00 Europe/Paris");
        let next_runs: Vec<String> = serde_json::from_value(created["next_runs"].clone()).unwrap();
        assert_eq!(next_runs.len(), 5);
        assert_eq!(created["last_runs"], json!([]));

        let (status, list) = app.get_json("/recurring").await;
        assert_eq!(status, 200);
        assert_eq!(list["schedules"][0]["id"], id);
        assert!(!list.to_string().contains("hunter2"));

        let post = |verb: &str| format!("/recurring/{id}/{verb}");
        let (status, skipped) = app.post_json(&post("skip"), &json!({})).await;
        assert_eq!(status, 200, "{skipped}");
        assert_eq!(skipped["next_runs"][0], next_runs[1].as_str(), "the next tick is skipped");

        let (status, paused) = app.post_json(&post("pause"), &json!({})).await;
        assert_eq!((status, &paused["paused"]), (200, &json!(true)));
        let (status, refused) = app.post_json(&post("skip"), &json!({})).await;
        assert_eq!(status, 409, "{refused}");
        let (status, resumed) = app.post_json(&post("resume"), &json!({})).await;
        assert_eq!((status, &resumed["paused"]), (200, &json!(false)));
        assert_eq!(resumed["next_runs"][0], next_runs[1].as_str(), "still skipped");

        let (status, job) = app.post_json(&post("run"), &json!({})).await;
        assert_eq!(status, 201, "{job}");
        let job_id = job["id"].as_i64().unwrap();
        assert_eq!(job["job"], "Work");
        assert!(job["created_by"].as_str().unwrap().starts_with("recurring:daily"), "{job}");
        let done = finished(&app.worker, job_id).await;
        assert_eq!(done.status, JobStatus::Done);
        let (_, one) = app.get_json(&format!("/recurring/{id}")).await;
        assert_eq!(one["last_runs"][0]["job_id"], job_id);
        assert_eq!(one["last_runs"][0]["status"], "done");
        assert_eq!(one["next_runs"][0], next_runs[1].as_str(), "run now leaves the ticks alone");

        let res = app
            .client
            .put(app.url(&format!("/recurring/{id}")))
            .header("Accept", "application/json")
            .json(&json!({"cron": "30 4 * * *", "args": {"lines": 2, "secret": "••••••"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let edited: serde_json::Value = res.json().await.unwrap();
        assert_eq!(edited["description"], "every day at 04:30 Europe/Paris");
        assert_eq!(edited["args"], json!({"lines": 2, "secret": "••••••"}));

        // The page: plain English, next runs, the last run linked, the buttons.
        let (status, html) = app.get_html("/recurring").await;
        assert_eq!(status, 200);
        for text in [
            "Recurring",
            "every day at 04:30 Europe/Paris",
            "run once after missed ticks",
            &format!("/workers/{job_id}"),
            "Run now",
            "Pause",
            "Skip next",
            "Edit",
        ] {
            assert!(html.contains(text), "{text} in {html}");
        }
        assert!(!html.contains("hunter2"));
        let res = app
            .client
            .get(app.url("/recurring"))
            .header("HX-Request", "true")
            .send()
            .await
            .unwrap();
        let fragment = res.text().await.unwrap();
        assert!(fragment.contains("schedule-") && !fragment.contains("<html"), "{fragment}");
        let (status, html) = app.get_html(&format!("/recurring/{id}")).await;
        assert_eq!(status, 200);
        assert!(html.contains("30 4 * * *") && html.contains("Save schedule"), "{html}");

        let res = app
            .client
            .delete(app.url(&format!("/recurring/{id}")))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let (status, _) = app.get_json(&format!("/recurring/{id}")).await;
        assert_eq!(status, 404);
        assert_eq!(app.worker.job(job_id).await.unwrap().status, JobStatus::Done, "jobs stay");

        let (_, audit) = app.get_json("/audit").await;
        let actions: Vec<&str> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        for action in [
            "create_recurring",
            "skip_recurring",
            "pause_recurring",
            "resume_recurring",
            "run_recurring",
            "update_recurring",
            "delete_recurring",
        ] {
            assert!(actions.contains(&action), "{action} in {actions:?}");
        }
        app.worker.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_cron_or_time_zone_is_refused_with_422_naming_the_field() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_json(
            "/recurring",
            &json!({"job": "Work", "cron": "0 0 32 * *", "timezone": "UTC", "args": {}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["fields"]["cron"]
            .as_str()
            .unwrap()
            .contains("0 0 32 * *"),
        "{body}"
    );
    let (status, body) = app
        .post_json(
            "/recurring",
            &json!({"job": "Work", "cron": "0 3 * * *", "timezone": "Mars/Olympus"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["fields"]["timezone"]
            .as_str()
            .unwrap()
            .contains("Mars/Olympus"),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().starts_with("timezone:"),
        "{body}"
    );
    // Both at once are both named; so are a missing kind and bad arguments.
    let (status, body) = app
        .post_json(
            "/recurring",
            &json!({"job": "Nope", "cron": "nonsense", "timezone": "Nowhere", "missed": "never"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    for f in ["cron", "timezone", "job", "missed"] {
        assert!(body["fields"][f].is_string(), "{f}: {body}");
    }
    let (status, body) = app
        .post_json(
            "/recurring",
            &json!({"job": "Work", "cron": "0 3 * * *", "args": {"ms": "soon"}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["fields"]["args.ms"].is_string(), "{body}");

    // The form: 422, the message beside the field, the input kept.
    let res = app
        .post_form(
            "/recurring",
            &[
                ("name", "kept-name"),
                ("job", "Work"),
                ("cron", "99 * * * *"),
                ("timezone", "Europe/Paris"),
                ("args", "{}"),
                ("missed", "skip"),
            ],
        )
        .await;
    assert_eq!(res.status().as_u16(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("is not a valid cron expression"), "{html}");
    assert!(
        html.contains("kept-name") && html.contains("99 * * * *"),
        "{html}"
    );

    // Editing: the same.
    let (status, created) = app
        .post_json("/recurring", &json!({"job": "Work", "cron": "0 3 * * *"}))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["timezone"], "UTC");
    let id = created["id"].as_i64().unwrap();
    let res = app
        .client
        .put(app.url(&format!("/recurring/{id}")))
        .header("Accept", "application/json")
        .json(&json!({"timezone": "Europe/Pariss"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 422);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["fields"]["timezone"]
            .as_str()
            .unwrap()
            .contains("Europe/Pariss")
    );
    let (_, same) = app.get_json(&format!("/recurring/{id}")).await;
    assert_eq!(same["timezone"], "UTC", "nothing changed");
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_need_csrf_and_the_operator_role() {
    let app = spawn_app().await;
    let (_, created) = app
        .post_json(
            "/recurring",
            &json!({"name": "n", "job": "Work", "cron": "0 3 * * *"}),
        )
        .await;
    let id = created["id"].as_i64().unwrap();

    // A viewer reads but cannot act.
    let accounts = nightshift::auth::Accounts::new(app.worker.store().connection().clone());
    accounts
        .add("vera", "viewer-password", nightshift::Role::Viewer)
        .await
        .unwrap();
    let (token, _) = accounts.create_token("vera", "read").await.unwrap();
    let as_viewer = |m: reqwest::Method, p: String| {
        app.anonymous
            .request(m, app.url(&p))
            .header("Authorization", format!("Bearer {token}"))
            .header("Accept", "application/json")
    };
    let res = as_viewer(reqwest::Method::GET, "/recurring".into())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    for (m, p) in [
        (reqwest::Method::POST, format!("/recurring/{id}/pause")),
        (reqwest::Method::POST, format!("/recurring/{id}/run")),
        (reqwest::Method::POST, format!("/recurring/{id}/skip")),
        (reqwest::Method::PUT, format!("/recurring/{id}")),
        (reqwest::Method::DELETE, format!("/recurring/{id}")),
        (reqwest::Method::POST, "/recurring".into()),
    ] {
        let res = as_viewer(m.clone(), p.clone())
            .json(&json!({"job": "Work", "cron": "0 3 * * *"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 403, "{m} {p}");
    }

    // A browser session: without the page's token a form is refused, with it accepted.
    let browser = log_in(&app).await;
    let page = text_of(&browser, app.url("/recurring")).await;
    let token = csrf_in(&page);
    let res = browser
        .post(app.url(&format!("/recurring/{id}/pause")))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    assert!(!app.worker.recurring_schedule(id).await.unwrap().paused);
    let res = browser
        .post(app.url(&format!("/recurring/{id}/pause")))
        .form(&[("_csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/recurring")
    );
    assert!(app.worker.recurring_schedule(id).await.unwrap().paused);
    app.worker.shutdown().await;
}

/// A browser-like client signed in as the test app's admin.
async fn log_in(app: &TestApp) -> reqwest::Client {
    signed_in(app, "admin", ADMIN_PASSWORD, "/recurring").await
}
