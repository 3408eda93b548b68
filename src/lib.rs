//! Nightshift: background jobs for Rust, with a live admin in the browser.
//!
//! Jobs run in the background, now or at a time, on SQLite (nothing to install) or PostgreSQL
//! (several nodes sharing one database). They are scheduled to the millisecond, retried with
//! backoff, abortable, and recovered after a crash; an admin (an axum router) lets operators
//! create, watch, abort, cancel, reschedule and rerun them.
//!
//! # Concepts
//! - A **job** is a row: a kind, arguments (JSON), a state, attempts, a log, result rows.
//! - A **kind** says how jobs of it run: its arguments' type, its handler, label, group, queue,
//!   attempts, backoff, timeout, the role operators need ([`JobKind`]). A **typed** kind is an
//!   argument type implementing [`JobArgs`]: its `KIND` is the stable key jobs are stored under;
//!   the label the admin shows is separate and free to change.
//! - The [`Client`] enqueues and manages jobs; it needs no handlers, only the argument types. A
//!   [`Worker`] is a client plus the runtime of one node: it registers handlers and, once
//!   started, claims, runs and completes jobs until [`Worker::shutdown`].
//!
//! # Typed jobs
//! ```no_run
//! use nightshift::{JobArgs, JobContext, JobKind, Worker};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! struct SendNewsletter {
//!     /// Doc comments become help text in the admin's form.
//!     subject: String,
//!     /// Stored (encrypted when a key is configured), passed to the handler, masked elsewhere.
//!     #[schemars(extend("writeOnly" = true))]
//!     smtp_password: String,
//! }
//!
//! impl JobArgs for SendNewsletter {
//!     const KIND: &'static str = "send_newsletter";
//!     fn configure(kind: JobKind) -> JobKind {
//!         kind.label("Send Newsletter").group("Mail").schedulable().max_attempts(3)
//!     }
//! }
//!
//! async fn send(args: SendNewsletter, ctx: JobContext) -> anyhow::Result<()> {
//!     ctx.log(format!("Sending {}", args.subject)).await?;
//!     ctx.set_progress(100).await?;
//!     Ok(())
//! }
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let worker = Worker::builder().database_url("sqlite://jobs.db?mode=rwc").build().await?;
//! worker.handle(send)?;
//! worker.start().await?;
//! let args = SendNewsletter { subject: "Hello".into(), smtp_password: "…".into() };
//! worker.enqueue(args).await?;
//! # Ok(()) }
//! ```
//! Kinds known only at run time register by name: `JobKind::new("Resize", handler)`, enqueued
//! with [`Client::enqueue_dynamic`].
//!
//! # States
//! ```text
//! new ⇄ scheduled ──claim──► running ──► done | exception
//!   └──cancel──► cancelled ◄──handler cancels──┘ │
//!                    running ──abort──► aborting ──► killed
//!                    running ──retry / snooze / shutdown──► new | scheduled
//! ```
//! Every state and allowed transition is documented on [`JobStatus`]; every change is a
//! compare-and-set in the database.
//!
//! # Scheduling, retries and outcomes
//! [`Client::schedule`] runs a job at a time (to the millisecond; the kind must be
//! `schedulable`). A handler's `Err` is retried after [`Backoff`] while attempts are left; it
//! can also return [`cancel`] (ends `cancelled`, never retried) or [`snooze`] (runs again later,
//! attempt not spent). A panic is caught and counts as a failure; a `timeout` stops it.
//!
//! # Abort
//! [`Client::abort`] marks a running job `aborting` and signals its handler
//! ([`JobContext::is_cancelled`], [`JobContext::cancelled`]); a handler still running after the
//! grace period is stopped by force. The job ends `killed`, its log says who aborted it.
//!
//! # The admin
//! [`admin::router`] takes a [`Client`] (or a [`Worker`]) and an [`auth::Auth`]; serve it
//! alone or `nest` it under a prefix of your app, behind your own login
//! ([`auth::Auth::custom`]) or its own operator accounts. Server-sent events keep every page
//! live.
//!
//! # Configuration
//! [`WorkerBuilder`]: database URL or an existing sea-orm connection, concurrency, grace period,
//! drain timeout, poll interval, heartbeat and node timeout, secret key. The `nightshift`
//! binary reads the same from flags, environment and `nightshift.toml` (see the README).
//!
//! # Several nodes
//! On PostgreSQL any number of workers share one database: claims use `FOR UPDATE SKIP LOCKED`,
//! nodes heartbeat, and a node silent for `node_timeout` is reaped: its jobs are rescued.
//!
//! # Guarantees, and their limits
//! Claimed once per attempt; an attempt's writes are fenced (a stale attempt's log lines,
//! progress and completion never land); nothing stays `running`; at least once: a job whose
//! node dies runs again, so handlers must be idempotent for their effects outside the database.
//! The details are on [`state`].
//!
//! # Testing
//! [`testing`] runs a handler inline with a recording context, asserts what was enqueued, and
//! drains every due job in a test.
//!
//! # Layout
//! - [`state`]: the job state machine; [`kind`], [`job_args`]: kinds, typed jobs, options;
//!   [`context`]: what a handler gets; [`outcome`]: cancel and snooze;
//! - [`bulk`]: bulk actions on many jobs; [`retention`]: pruning old jobs and records;
//! - [`client`]: enqueue and manage jobs; [`worker`]: the builder and the runtime of a node;
//! - `runtime`: scheduler, executor, completer and maintenance tasks;
//! - `store`: every SQL statement, for SQLite and PostgreSQL; [`entity`]: the tables;
//! - [`events`]: the one broadcast channel of job events;
//! - [`secrets`]: secret job arguments encrypted at rest, key files and key rotation;
//! - [`admin`], [`auth`]: the web admin and its operators.
#[cfg(feature = "admin")]
pub mod admin;
#[cfg(feature = "admin")]
pub mod auth;
#[cfg(feature = "admin")]
pub mod bench;
pub mod bulk;
pub mod client;
pub mod clock;
pub mod context;
pub mod demo;
pub mod entity;
pub mod error;
pub mod events;
pub mod insight;
pub mod job;
pub mod job_args;
pub mod kind;
pub mod new_job;
pub mod outcome;
pub mod queue;
pub mod recurring;
pub mod retention;
pub mod role;
pub(crate) mod runtime;
pub mod secrets;
pub mod state;
#[doc(hidden)]
pub mod store;
pub mod testing;
pub(crate) mod text;
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
pub use queue::{Queue, QueueInfo};
pub use retention::Retention;
pub use role::Role;
pub use runtime::Config;
pub use state::JobStatus;
pub use worker::{Worker, WorkerBuilder};

/// The database used when none is given: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://nightshift.db?mode=rwc";
