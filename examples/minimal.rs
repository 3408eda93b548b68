//! The smallest program that runs a job: one typed job, a worker on a SQLite file, the job
//! scheduled one second from now, run, and reported.
//!
//! ```text
//! cargo run --example minimal
//! ```
use std::time::Duration;

use chrono::Utc;
use nightshift::{JobArgs, JobContext, JobKind, JobStatus, Worker};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The job's arguments. `KIND` is the key its jobs are stored under: never change it while jobs
/// of it may wait.
#[derive(Serialize, Deserialize, JsonSchema)]
struct SayHello {
    name: String,
}

impl JobArgs for SayHello {
    const KIND: &'static str = "say_hello";

    fn configure(kind: JobKind) -> JobKind {
        // Jobs of a kind may be given a time to run at only when it says so.
        kind.label("Say Hello").schedulable()
    }
}

/// The handler: what runs in the background.
async fn say_hello(args: SayHello, ctx: JobContext) -> anyhow::Result<()> {
    ctx.log(format!("Hello, {}!", args.name)).await?;
    println!("job {}: Hello, {}!", ctx.job_id(), args.name);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A throwaway SQLite file (removed at the end); an app passes its own database URL, e.g.
    // "sqlite://jobs.db?mode=rwc" or "postgres://user@host/app".
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display());

    let worker = Worker::builder().database_url(&url).build().await?;
    worker.handle(say_hello)?;
    worker.start().await?;

    let at = Utc::now() + chrono::Duration::seconds(1);
    let id = worker
        .schedule(
            SayHello {
                name: "world".into(),
            },
            at,
        )
        .await?;
    println!("job {id}: scheduled for {}", at.format("%H:%M:%S%.3f"));

    let job = worker.wait_finished(id, Duration::from_secs(10)).await?;
    println!("job {id}: {}", job.status);

    worker.shutdown().await;
    anyhow::ensure!(
        job.status == JobStatus::Done,
        "job {id} ended {}",
        job.status
    );
    Ok(())
}
