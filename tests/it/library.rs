//! The library as an application uses it: typed jobs beside dynamic ones, a client that only
//! enqueues, labels apart from keys, and the cancel and snooze outcomes of a handler.
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nightshift::{Client, Error, JobArgs, JobContext, JobKind, JobStatus, NewJob};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::helpers::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct SendNewsletter {
    subject: String,
    /// Secret: masked everywhere once stored.
    #[schemars(extend("writeOnly" = true))]
    smtp_password: String,
}

impl JobArgs for SendNewsletter {
    const KIND: &'static str = "send_newsletter";
    fn configure(kind: JobKind) -> JobKind {
        kind.label("Send Newsletter").group("Mail")
    }
}

/// What the typed handler saw, to check the arguments arrive whole (secret included).
type Seen = Arc<std::sync::Mutex<Vec<SendNewsletter>>>;

fn newsletter_handler(
    seen: Seen,
) -> impl Fn(SendNewsletter, JobContext) -> futures::future::BoxFuture<'static, anyhow::Result<()>>
+ Send
+ Sync
+ 'static {
    move |args, ctx| {
        let seen = seen.clone();
        Box::pin(async move {
            ctx.log(format!("sending {}", args.subject)).await?;
            seen.lock().unwrap().push(args);
            Ok(())
        })
    }
}

fn newsletter(subject: &str) -> SendNewsletter {
    SendNewsletter {
        subject: subject.into(),
        smtp_password: "hunter2".into(),
    }
}

both_databases! {
    /// A typed kind and a dynamic one in the same worker, each enqueued its own way.
    async fn typed_and_dynamic_kinds_run_side_by_side(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        let seen = Seen::default();
        worker.handle(newsletter_handler(seen.clone())).unwrap();
        register(&worker);
        worker.start().await.unwrap();
        let typed = worker.enqueue(newsletter("Hello")).await.unwrap();
        let dynamic = worker.enqueue_dynamic("Work", &json!({})).await.unwrap();
        let many = worker
            .insert_many(vec![
                NewJob::of(&newsletter("One")).unwrap(),
                NewJob::of(&newsletter("Two")).unwrap(),
            ])
            .await
            .unwrap();
        for id in [typed, dynamic, many[0].id, many[1].id] {
            assert_eq!(finished(&worker, id).await.status, JobStatus::Done);
        }
        let job = worker.job(typed).await.unwrap();
        assert_eq!(job.job, "send_newsletter", "stored under its key");
        assert_eq!(job.label, "Send Newsletter", "shown by its label");
        assert_eq!(job.group, "Mail");
        assert_eq!(job.args["smtp_password"], nightshift::kind::SECRET_MASK);
        let mut subjects: Vec<String> =
            seen.lock().unwrap().iter().map(|a| a.subject.clone()).collect();
        subjects.sort();
        assert_eq!(subjects, ["Hello", "One", "Two"]);
        assert!(seen.lock().unwrap().iter().all(|a| a.smtp_password == "hunter2"));
        worker.shutdown().await;
    }
}

both_databases! {
    /// A web process with no handlers validates, masks secrets and enqueues; its jobs wait for a
    /// node that has the handler, which renamed the kind's label meanwhile: they still run.
    async fn an_enqueue_only_client_and_a_renamed_label(db: TestDb) {
        let client = Client::connect(&db.url).await.unwrap();
        // Unknown until declared: nothing to validate against.
        assert!(matches!(
            client.enqueue(newsletter("x")).await,
            Err(Error::UnknownKind(_))
        ));
        client.declare::<SendNewsletter>().unwrap();
        let err = client
            .enqueue_dynamic("send_newsletter", &json!({"subject": "no password"}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgs { field: Some(f), .. } if f == "smtp_password"),
            "{err:?}"
        );
        let id = client.enqueue(newsletter("Queued")).await.unwrap();
        let job = client.job(id).await.unwrap();
        assert_eq!(job.args["smtp_password"], nightshift::kind::SECRET_MASK);
        assert_eq!(job.label, "Send Newsletter");
        // Declaring again, or after the handler came, changes nothing.
        client.declare::<SendNewsletter>().unwrap();

        // The node that runs it knows the kind by the same key under another label.
        let worker = builder(&db).build().await.unwrap();
        let seen = Seen::default();
        let seen2 = seen.clone();
        worker
            .register(
                JobKind::new(SendNewsletter::KIND, newsletter_handler(seen2))
                    .label("Weekly Newsletter"),
            )
            .unwrap();
        worker.start().await.unwrap();
        let done = finished(&worker, id).await;
        assert_eq!(done.status, JobStatus::Done);
        assert_eq!(done.label, "Weekly Newsletter");
        assert_eq!(seen.lock().unwrap()[0], newsletter("Queued"));
        worker.shutdown().await;
    }
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Outcome {
    how: String,
}

impl JobArgs for Outcome {
    const KIND: &'static str = "outcome";
}

both_databases! {
    /// `nightshift::cancel` ends a job `cancelled` at once, attempts left or not; `snooze` puts
    /// it back for later without spending an attempt.
    async fn a_handler_can_cancel_or_snooze_its_job(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        let snoozes = Arc::new(AtomicU32::new(0));
        let counter = snoozes.clone();
        worker
            .register(
                JobKind::of(move |args: Outcome, _ctx: JobContext| {
                    let counter = counter.clone();
                    async move {
                        match args.how.as_str() {
                            "cancel" => Err(nightshift::cancel("the customer left")
                                .context("while invoicing")),
                            "snooze" if counter.fetch_add(1, Ordering::SeqCst) < 2 => {
                                Err(nightshift::snooze(Duration::from_millis(50)))
                            }
                            _ => Ok(()),
                        }
                    }
                })
                .max_attempts(3),
            )
            .unwrap();
        worker.start().await.unwrap();
        let cancelled = worker.enqueue(Outcome { how: "cancel".into() }).await.unwrap();
        let snoozed = worker.enqueue(Outcome { how: "snooze".into() }).await.unwrap();

        let job = finished(&worker, cancelled).await;
        assert_eq!(job.status, JobStatus::Cancelled);
        assert!(job.error.as_deref().unwrap().contains("the customer left"), "{job:?}");
        assert_eq!(job.attempt, 1, "not retried");

        let job = finished(&worker, snoozed).await;
        assert_eq!(job.status, JobStatus::Done);
        assert_eq!(snoozes.load(Ordering::SeqCst), 3, "ran three times");
        assert_eq!(job.attempt, 1, "snoozes spend no attempt");
        worker.flush().await;
        let outcomes: Vec<String> = worker
            .attempts(snoozed)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|a| a.outcome)
            .collect();
        assert_eq!(outcomes, ["snoozed", "snoozed", "done"]);
        let outcomes: Vec<String> = worker
            .attempts(cancelled)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|a| a.outcome)
            .collect();
        assert_eq!(outcomes, ["cancelled"]);
        worker.shutdown().await;
    }
}
