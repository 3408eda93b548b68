//! Nightshift: background jobs for Rust, with a live admin in the browser.
//!
//! Register job kinds (a name, typed arguments, an async handler), enqueue jobs to run now or at
//! a time, and let the runtime run them: scheduled to the millisecond, retried with backoff,
//! abortable, and recovered after a crash.
//!
//! # Layout
//! - [`state`]: the job state machine, every state and transition in one enum;
//! - [`kind`]: job kinds and their options; [`context`]: what a handler gets;
//! - [`worker`]: the public façade ([`Worker`]): enqueue, cancel, update, abort, rerun, start,
//!   shutdown;
//! - `runtime`: scheduler, executor, completer and maintenance tasks;
//! - [`store`]: every SQL statement, for SQLite and PostgreSQL; [`entity`]: the tables;
//! - [`events`]: the one broadcast channel of job events;
//! - [`secrets`]: secret job arguments encrypted at rest, key files and key rotation.
//!
//! ```no_run
//! use nightshift::{JobContext, JobKind, Worker};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! struct SendNewsletter { subject: String }
//!
//! async fn send_newsletter(args: SendNewsletter, ctx: JobContext) -> anyhow::Result<()> {
//!     ctx.log(format!("Sending {}", args.subject)).await?;
//!     ctx.set_progress(100).await?;
//!     Ok(())
//! }
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let worker = Worker::builder().database_url("sqlite://jobs.db?mode=rwc").build().await?;
//! worker.register(JobKind::new("Send Newsletter", send_newsletter).group("Mail").schedulable())?;
//! worker.start().await?;
//! worker.enqueue_dynamic("Send Newsletter", &SendNewsletter { subject: "Hello".into() }).await?;
//! # Ok(()) }
//! ```
pub mod admin;
pub mod auth;
pub mod bench;
pub mod client;
pub mod clock;
pub mod context;
pub mod demo;
pub mod entity;
pub mod error;
pub mod events;
pub mod job;
pub mod job_args;
pub mod kind;
pub mod new_job;
pub mod outcome;
pub mod role;
pub(crate) mod runtime;
pub mod secrets;
pub mod state;
#[doc(hidden)]
pub mod store;
pub mod testing;
pub mod text;
pub mod worker;

pub use client::Client;
pub use context::{JobContext, ResultCell};
pub use error::{Error, Result};
pub use events::JobEvent;
pub use job::Job;
pub use job_args::JobArgs;
pub use kind::{Backoff, JobKind};
pub use new_job::NewJob;
pub use outcome::{JobCancel, JobSnooze, cancel, snooze};
pub use role::Role;
pub use runtime::Config;
pub use state::JobStatus;
pub use worker::{Worker, WorkerBuilder};

/// The database used when none is given: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://nightshift.db?mode=rwc";
