//! Queues and priorities: claims take the highest priority first, then due order; a paused
//! queue starts nothing on any node while its running jobs finish; per-node and global limits
//! hold under load; the Queues overview counts what waits, runs and finished.
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use nightshift::{Error, JobContext, JobKind, JobStatus, NewJob, Queue, Worker};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::helpers::*;

#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
struct Gauged {
    #[serde(default)]
    ms: u64,
}

/// What the gauged kinds saw: the order jobs started in, and the most running at once (in
/// all, and per node).
#[derive(Clone, Default)]
struct Gauge {
    order: Arc<Mutex<Vec<i64>>>,
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl Gauge {
    fn max(&self) -> usize {
        self.max.load(SeqCst)
    }
    fn order(&self) -> Vec<i64> {
        self.order.lock().unwrap().clone()
    }
}

/// Registers kind `name` on `queue`; each start is counted by every gauge in `gauges`.
fn gauged(worker: &Worker, name: &'static str, queue: &str, gauges: Vec<Gauge>) {
    worker
        .register(
            JobKind::new(name, move |args: Gauged, ctx: JobContext| {
                let gauges = gauges.clone();
                async move {
                    for g in &gauges {
                        g.order.lock().unwrap().push(ctx.job_id());
                        let n = g.now.fetch_add(1, SeqCst) + 1;
                        g.max.fetch_max(n, SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(args.ms)).await;
                    for g in &gauges {
                        g.now.fetch_sub(1, SeqCst);
                    }
                    Ok(())
                }
            })
            .queue(queue)
            .schedulable(),
        )
        .unwrap();
}

async fn all_finished(worker: &Worker, ids: &[i64]) {
    for id in ids {
        let job = finished(worker, *id).await;
        assert_eq!(job.status, JobStatus::Done, "{job:?}");
    }
}

both_databases! {
    /// Among due jobs the highest priority starts first; equal priorities start in due order,
    /// also a scheduled job that came due while nothing ran.
    async fn priorities_order_claims_and_equal_priorities_keep_due_order(db: TestDb) {
        let worker = builder(&db).concurrency(1).build().await.unwrap();
        let gauge = Gauge::default();
        gauged(&worker, "Ordered", "default", vec![gauge.clone()]);
        let insert = |p: i32| {
            let job = NewJob::new("Ordered", &json!({})).unwrap().priority(p);
            let worker = worker.clone();
            async move {
                let id = worker.insert(job).await.unwrap().id;
                // Distinct due times.
                tokio::time::sleep(Duration::from_millis(5)).await;
                id
            }
        };
        let a = insert(0).await;
        let b = insert(5).await;
        let c = insert(9).await;
        let due_later = worker
            .insert(
                NewJob::new("Ordered", &json!({}))
                    .unwrap()
                    .priority(9)
                    .schedule_at(chrono::Utc::now() + chrono::Duration::milliseconds(150)),
            )
            .await
            .unwrap();
        assert_eq!(due_later.status, JobStatus::Scheduled);
        let d = insert(5).await;
        let e = insert(0).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        worker.start().await.unwrap();
        all_finished(&worker, &[a, b, c, due_later.id, d, e]).await;
        assert_eq!(gauge.order(), vec![c, due_later.id, b, d, a, e]);
        let job = worker.job(c).await.unwrap();
        assert_eq!(job.priority, 9);
        worker.shutdown().await;
    }

    /// A pause stops new starts on every node at once (a job enqueued right after it never
    /// starts), the running job finishes, the overview says who paused it and what waits;
    /// a resume starts the rest.
    async fn a_paused_queue_starts_nothing_on_any_node_while_its_running_jobs_finish(db: TestDb) {
        let a = builder(&db).build().await.unwrap();
        let b = builder(&db).build().await.unwrap();
        let gauge = Gauge::default();
        gauged(&a, "Mail", "mail", vec![gauge.clone()]);
        gauged(&b, "Mail", "mail", vec![gauge.clone()]);
        a.start().await.unwrap();
        b.start().await.unwrap();
        let long = a.enqueue_dynamic("Mail", &json!({"ms": 600})).await.unwrap();
        wait_for(&a, long, "running", |j| j.status == JobStatus::Running).await;
        let info = a.pause_queue("mail", "alice").await.unwrap();
        assert!(info.paused);
        assert_eq!(info.paused_by.as_deref(), Some("alice"));
        let mut waiting = Vec::new();
        for _ in 0..3 {
            waiting.push(b.enqueue_dynamic("Mail", &json!({})).await.unwrap());
        }
        let job = finished(&a, long).await;
        assert_eq!(job.status, JobStatus::Done, "the running job finishes");
        tokio::time::sleep(Duration::from_millis(700)).await;
        for id in &waiting {
            assert_eq!(b.job(*id).await.unwrap().status, JobStatus::New, "job {id} started");
        }
        assert_eq!(gauge.order(), vec![long]);
        let mail = b.queues().await.unwrap().into_iter().find(|q| q.name == "mail").unwrap();
        assert!(mail.paused, "{mail:?}");
        assert_eq!((mail.waiting, mail.due, mail.running), (3, 3, 0), "{mail:?}");
        assert_eq!(mail.nodes, 2, "{mail:?}");
        assert!(mail.oldest_waiting_s.is_some(), "{mail:?}");
        assert_eq!(mail.throughput.iter().sum::<i64>(), 1, "{mail:?}");
        b.resume_queue("mail").await.unwrap();
        all_finished(&a, &waiting).await;
        let mail = a.queues().await.unwrap().into_iter().find(|q| q.name == "mail").unwrap();
        assert!(!mail.paused);
        assert_eq!((mail.waiting, mail.running), (0, 0));
        assert_eq!(mail.throughput.iter().sum::<i64>(), 4, "{mail:?}");
        a.shutdown().await;
        b.shutdown().await;
    }

    /// Two nodes, a queue limited to 3 at once per node and 4 across both, beside a queue
    /// without limits: under load the limits hold and everything runs.
    async fn per_node_and_global_limits_hold_under_load(db: TestDb) {
        let limited = Gauge::default();
        let mut nodes = Vec::new();
        let mut per_node = Vec::new();
        for _ in 0..2 {
            let node = builder(&db)
                .concurrency(8)
                .queue(Queue::new("limited").concurrency(3).global_limit(4))
                .build()
                .await
                .unwrap();
            let here = Gauge::default();
            gauged(&node, "Limited", "limited", vec![limited.clone(), here.clone()]);
            gauged(&node, "Free", "default", vec![Gauge::default()]);
            node.start().await.unwrap();
            per_node.push(here);
            nodes.push(node);
        }
        let mut ids = Vec::new();
        for i in 0..60 {
            let (kind, ms) = if i % 2 == 0 { ("Limited", 40) } else { ("Free", 10) };
            ids.push(nodes[i % 2].enqueue_dynamic(kind, &json!({"ms": ms})).await.unwrap());
        }
        all_finished(&nodes[0], &ids).await;
        assert!(limited.max() <= 4, "{} ran at once across nodes", limited.max());
        for (i, here) in per_node.iter().enumerate() {
            assert!(here.max() <= 3, "{} ran at once on node {i}", here.max());
        }
        assert_eq!(limited.order().len(), 30);
        let info = nodes[0].queues().await.unwrap();
        let q = info.iter().find(|q| q.name == "limited").unwrap();
        assert_eq!((q.global_limit, q.concurrency, q.nodes), (Some(4), 4, 2), "{q:?}");
        for node in nodes {
            node.shutdown().await;
        }
    }
}

/// A queue name, a priority or tags that break the rules are refused, naming the field; good
/// tags are kept (trimmed, without repeats) and a job of a rerun keeps queue, priority, tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queue_priority_and_tags_are_refused_naming_the_field() {
    let db = TestDb::sqlite();
    let worker = builder(&db).build().await.unwrap();
    register(&worker);
    let field = |e: Error| match e {
        Error::InvalidArgs { field, .. } => field.unwrap_or_default(),
        other => panic!("{other:?}"),
    };
    let job = || NewJob::new("Work", &json!({})).unwrap();
    let e = worker.insert(job().priority(10)).await.unwrap_err();
    assert_eq!(field(e), "priority");
    let e = worker.insert(job().queue("no spaces")).await.unwrap_err();
    assert_eq!(field(e), "queue");
    let e = worker.insert(job().tags(["a,b"])).await.unwrap_err();
    assert_eq!(field(e), "tags");
    let e = worker
        .register(JobKind::new("Bad", |_: Args, _: JobContext| async { Ok(()) }).queue(""))
        .unwrap_err();
    assert_eq!(field(e), "queue");
    let made = worker
        .insert(
            job()
                .queue("reports")
                .priority(7)
                .tags([" eu ", "vip", "eu"]),
        )
        .await
        .unwrap();
    assert_eq!(made.queue, "reports");
    assert_eq!(made.priority, 7);
    assert_eq!(made.tags, vec!["eu", "vip"]);
    let again = worker.rerun(made.id, None).await.unwrap();
    assert_eq!((again.queue.as_str(), again.priority), ("reports", 7));
    assert_eq!(again.tags, vec!["eu", "vip"]);
    // A queue no node serves: its jobs wait, and the overview says no node serves it.
    let reports = worker
        .queues()
        .await
        .unwrap()
        .into_iter()
        .find(|q| q.name == "reports")
        .unwrap();
    assert_eq!(
        (reports.waiting, reports.nodes, reports.concurrency),
        (2, 0, 0)
    );
}
