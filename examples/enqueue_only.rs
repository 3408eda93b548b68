//! A web process that only enqueues: it connects a [`Client`], declares the job types it
//! creates, and enqueues them. It registers no handler and runs no job: a worker started on the
//! same database (another process, another machine) runs them.
//!
//! ```text
//! cargo run --example enqueue_only
//! NIGHTSHIFT_DATABASE_URL=postgres://user@localhost/app cargo run --example enqueue_only
//! ```
//!
//! Without `NIGHTSHIFT_DATABASE_URL` it uses a throwaway SQLite file.
use nightshift::{Client, Error, JobArgs, JobKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The arguments of the welcome mail; the worker that runs it has the same type and a handler.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct SendWelcomeEmail {
    user_id: i64,
    email: String,
}

impl JobArgs for SendWelcomeEmail {
    const KIND: &'static str = "send_welcome_email";

    fn configure(kind: JobKind) -> JobKind {
        kind.label("Send Welcome Email")
            .group("Mail")
            .max_attempts(3)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (url, _dir) = match std::env::var("NIGHTSHIFT_DATABASE_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display());
            (url, Some(dir))
        }
    };

    // Connects and migrates the database if needed; nothing runs in the background.
    let client = Client::connect(&url).await?;
    // The type is enough to enqueue jobs of it and check their arguments: no handler here.
    client.declare::<SendWelcomeEmail>()?;

    let mut ids = Vec::new();
    for (user_id, email) in [(1, "ada@example.com"), (2, "grace@example.com")] {
        let id = client
            .enqueue(SendWelcomeEmail {
                user_id,
                email: email.into(),
            })
            .await?;
        ids.push(id);
    }
    println!("enqueued jobs {ids:?}");
    for &id in &ids {
        let job = client.job(id).await?;
        println!(
            "job {id}: {} {} ({}), waiting for a worker",
            job.job, job.args, job.status
        );
    }

    // Arguments that arrive as JSON (a form, an API call) are checked against the declared
    // type before anything is written; the error names the field.
    let from_request = serde_json::json!({"user_id": "three", "email": "lin@example.com"});
    match client
        .enqueue_dynamic(SendWelcomeEmail::KIND, &from_request)
        .await
    {
        Err(Error::InvalidArgs { field, message }) => {
            let field = field.as_deref().unwrap_or("(arguments)");
            println!("refused: field `{field}`: {message}");
        }
        Ok(id) => anyhow::bail!("job {id} should have been refused"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
