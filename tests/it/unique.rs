//! Unique jobs: a uniqueness key per job (or from a kind's argument fields) held while the job
//! waits or runs; a second enqueue returns the first job, decided by the database.
use std::time::Duration;

use nightshift::{JobContext, JobKind, JobStatus, NewJob};
use schemars::JsonSchema;
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::helpers::*;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Import {
    customer_id: i64,
    #[serde(default)]
    ms: u64,
}

async fn import(args: Import, _ctx: JobContext) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(args.ms)).await;
    Ok(())
}

both_databases! {
    /// 64 enqueues racing with one key, each in its own transaction, make one job; every caller
    /// gets it back. Once it finished, the key is free again.
    async fn sixty_four_concurrent_enqueues_with_one_key_make_one_job(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        register(&worker);
        let client = worker.client();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let job = NewJob::new("Work", &json!({})).unwrap().unique_key("nightly");
                    client.insert(job).await
                })
            })
            .collect();
        let mut jobs = Vec::new();
        for t in tasks {
            jobs.push(t.await.unwrap().unwrap());
        }
        let id = jobs[0].id;
        assert!(jobs.iter().all(|j| j.id == id), "one job for all: {:?}",
            jobs.iter().map(|j| j.id).collect::<Vec<_>>());
        assert_eq!(jobs.iter().filter(|j| !j.already_queued).count(), 1, "added once");
        let count = client
            .connection()
            .query_one_raw(sea_orm::Statement::from_string(
                client.connection().get_database_backend(),
                "SELECT COUNT(*) FROM nightshift_jobs",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap();
        assert_eq!(count, 1);

        // Other keys and jobs without one are not affected; order follows the input.
        let mixed = client
            .insert_many(vec![
                NewJob::new("Work", &json!({})).unwrap(),
                NewJob::new("Work", &json!({})).unwrap().unique_key("nightly"),
                NewJob::new("Work", &json!({})).unwrap().unique_key("weekly"),
                NewJob::new("Work", &json!({})).unwrap(),
            ])
            .await
            .unwrap();
        assert_eq!(mixed[1].id, id);
        assert!(mixed[1].already_queued);
        assert!(!mixed[0].already_queued && !mixed[2].already_queued && !mixed[3].already_queued);
        assert!(mixed[0].id < mixed[3].id);
        assert_eq!(mixed[2].unique_key.as_deref(), Some("weekly"));

        worker.start().await.unwrap();
        assert_eq!(finished(&worker, id).await.status, JobStatus::Done);
        let again = client
            .insert(NewJob::new("Work", &json!({})).unwrap().unique_key("nightly"))
            .await
            .unwrap();
        assert_ne!(again.id, id, "a finished job frees its key");
        assert!(!again.already_queued);
        worker.shutdown().await;
    }

    /// A kind unique by argument fields: one import per customer while it waits or runs, also
    /// for a running one; the key reveals nothing of the values.
    async fn a_kind_unique_by_argument_fields(db: TestDb) {
        let worker = builder(&db).build().await.unwrap();
        worker
            .register(JobKind::new("import", import).unique_by(&["customer_id"]))
            .unwrap();
        let first = worker.enqueue_dynamic("import", &json!({"customer_id": 42, "ms": 2000})).await.unwrap();
        let other = worker.enqueue_dynamic("import", &json!({"customer_id": 7})).await.unwrap();
        assert_ne!(first, other);
        let key = worker.job(first).await.unwrap().unique_key.unwrap();
        assert!(!key.contains("42"), "hashed: {key}");
        worker.start().await.unwrap();
        wait_for(&worker, first, "running", |j| j.status == JobStatus::Running).await;
        let again = worker
            .insert(NewJob::new("import", &json!({"customer_id": 42})).unwrap())
            .await
            .unwrap();
        assert_eq!(again.id, first, "still held while it runs");
        assert!(again.already_queued);
        worker.shutdown().await;
    }
}
