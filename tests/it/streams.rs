//! The admin's event streams: a long log catches up page by page, and a `serve` process told to
//! stop (SIGTERM) closes its streams, stops claiming at once and gives running jobs back.
use std::process::Command;
use std::time::Duration;

use nightshift::JobStatus;
use serde_json::{Value, json};

use crate::app::{ADMIN_PASSWORD, spawn_app};
use crate::helpers::finished;
use crate::process::{Server, cli};

/// The `data` of every `log` event of an SSE text, in order, with its event id.
fn log_events(text: &str) -> Vec<(i64, String)> {
    text.split("\n\n")
        .filter(|block| block.lines().any(|l| l == "event: log"))
        .map(|block| {
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("a log event has an id: {block}"));
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("a log event has data: {block}"));
            let v: Value = serde_json::from_str(data).unwrap();
            assert_eq!(v["id"], id, "{block}");
            (id, v["line"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_longer_than_a_page_catches_up_completely_and_in_order() {
    let app = spawn_app().await;
    let lines = 1234; // more than two pages of catch-up
    let id = app.create("Work", json!({"lines": lines})).await;
    assert_eq!(finished(&app.worker, id).await.status, JobStatus::Done);
    app.worker.flush().await;

    let expect: Vec<String> = (0..lines).map(|i| format!("line {i}")).collect();
    let text = app
        .client
        .get(app.url(&format!("/workers/{id}/events?format=json&after=0")))
        .send()
        .await
        .unwrap()
        .text() // a finished job: the stream ends by itself
        .await
        .unwrap();
    let got = log_events(&text);
    let ids: Vec<i64> = got.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids ascend");
    let work: Vec<String> = got
        .iter()
        .map(|(_, l)| l.clone())
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(work, expect, "every line once, in order");
    // The state follows the log, and a finished job's stream ends.
    let last_log = text.rfind("event: log").unwrap();
    assert!(text.rfind("event: status").unwrap() > last_log);
    assert!(text.contains("event: end"));

    // Reconnecting after line 99 (Last-Event-ID): the rest, across pages, nothing twice.
    let after = got
        .iter()
        .find(|(_, l)| l == "line 99")
        .map(|(id, _)| *id)
        .unwrap();
    let text = app
        .client
        .get(app.url(&format!("/workers/{id}/events?format=json")))
        .header("Last-Event-ID", after.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rest: Vec<String> = log_events(&text)
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(rest, expect[100..]);

    // HTML frames too.
    let text = app
        .client
        .get(app.url(&format!("/workers/{id}/events?after={after}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.matches("event: log").count(), lines as usize - 100);
}

/// Reads an event stream until it ends: `Ok(text)` when it was closed properly, `Err` when the
/// connection broke off (or nothing ended it within 60 s).
async fn read_to_close(mut res: reqwest::Response) -> Result<String, String> {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, res.chunk()).await {
            Err(_) => return Err(format!("still open after 60 s: {text}")),
            Ok(Err(e)) => return Err(format!("broken off ({e}) after: {text}")),
            Ok(Ok(None)) => return Ok(text),
            Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_the_streams_stops_claiming_and_gives_running_jobs_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display());
    cli(
        dir.path(),
        &[
            "operator",
            "add",
            "alice",
            "--role",
            "admin",
            "--database-url",
            &url,
        ],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    let token = cli(
        dir.path(),
        &["token", "create", "alice", "--database-url", &url],
        "",
    );
    let token = token.trim();
    // Two slots: one for the long job, one free (so a due job would be claimed at once).
    let mut server = Server::start(
        dir.path(),
        &[
            "--database-url",
            &url,
            "--concurrency",
            "2",
            "--drain-timeout",
            "2",
        ],
    );
    let base = server.base.clone();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    headers.insert("accept", "application/json".parse().unwrap());
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let post = |body: Value| {
        let c = client.clone();
        let url = format!("{base}/workers");
        async move {
            let res = c.post(url).json(&body).send().await.unwrap();
            assert_eq!(res.status().as_u16(), 201);
            res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
        }
    };
    let get = |path: String| {
        let c = client.clone();
        let url = format!("{base}{path}");
        async move {
            c.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };

    let long = post(json!({"job": "Long Export", "args": {"minutes": 5}})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get(format!("/workers/{long}")).await["status"] != "running" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the long job starts: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Two pages are watching: the list and the long job.
    let list = client
        .get(format!("{base}/workers/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status().as_u16(), 200);
    let mut job = client
        .get(format!("{base}/workers/{long}/events?format=json"))
        .send()
        .await
        .unwrap();
    assert_eq!(job.status().as_u16(), 200);
    // The job stream has started: its state frames arrive.
    let first = tokio::time::timeout(Duration::from_secs(10), job.chunk())
        .await
        .expect("the job stream sends its state")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: "));
    let list = tokio::spawn(read_to_close(list));
    let job = tokio::spawn(read_to_close(job));

    // A job due in a few seconds, with a free slot for it: only a node still claiming after the
    // signal would start it.
    let due = chrono::Utc::now() + chrono::Duration::seconds(3);
    let later = post(json!({
        "job": "Send Newsletter",
        "args": {"subject": "Hi", "content": "…", "send_password": "pw"},
        "schedule_at": due,
    }))
    .await;

    let signalled = chrono::Utc::now();
    let kill = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = server
        .wait_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("serve exits after SIGTERM: {}", server.log()));
    assert!(status.success(), "exit status {status}: {}", server.log());
    let exited = chrono::Utc::now();

    // Both streams were closed by the server, not cut off when it gave up waiting.
    let list = list.await.unwrap();
    assert!(list.is_ok(), "the list stream: {list:?}\n{}", server.log());
    let job = job.await.unwrap();
    assert!(job.is_ok(), "the job stream: {job:?}\n{}", server.log());
    assert!(
        !server.log().contains("did not finish within"),
        "the HTTP drain did not wait for the streams: {}",
        server.log()
    );

    // Nothing lost: the long job is back in the queue with its attempt given back; the later
    // job never started; no attempt started after the signal.
    let worker = nightshift::Worker::builder()
        .database_url(&url)
        .build()
        .await
        .unwrap();
    let j = worker.job(long).await.unwrap();
    assert_eq!(j.status, JobStatus::New, "{j:?}");
    assert_eq!(j.attempt, 0, "the interrupted attempt is given back: {j:?}");
    let attempts = worker.attempts(long).await.unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].outcome.as_deref(), Some("interrupted"));
    let finished_at = attempts[0].finished_at.expect("the attempt is closed");
    assert!(finished_at >= signalled.timestamp_millis());
    assert!(finished_at <= exited.timestamp_millis());
    let l = worker.job(later).await.unwrap();
    assert!(
        matches!(l.status, JobStatus::Scheduled | JobStatus::New) && l.attempt == 0,
        "the due job was not claimed after the signal: {l:?}"
    );
    assert!(worker.attempts(later).await.unwrap().is_empty());
    let logs = worker.logs(long, 100).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.line.contains("Interrupted by a worker shutdown")),
        "{logs:?}"
    );
    assert!(attempts[0].started_at < signalled.timestamp_millis());
}
