//! Typed jobs: an argument type that names its kind with a stable key and says how its jobs run.
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::kind::JobKind;

/// A job's arguments as a Rust type, with the stable key its jobs are stored under.
///
/// `KIND` is the job's identity in the database: jobs already queued find their handler by it,
/// so never change it while jobs of it may wait. What the admin shows is the kind's label
/// ([`JobKind::label`], set in [`JobArgs::configure`]), free to change at any time.
///
/// Moving a kind registered by name (`JobKind::new("Send Newsletter", …)`) to a typed job:
/// set `KIND` to the stored name (`"Send Newsletter"`); queued jobs keep running, and the label
/// can change from then on.
///
/// Register a handler on the worker that runs the jobs ([`crate::Worker::handle`]); a process
/// that only enqueues declares the type ([`crate::Client::declare`]) and needs no handler.
///
/// ```no_run
/// use nightshift::{JobArgs, JobContext, JobKind, Worker};
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, JsonSchema)]
/// struct SendNewsletter {
///     subject: String,
/// }
///
/// impl JobArgs for SendNewsletter {
///     const KIND: &'static str = "send_newsletter";
///     fn configure(kind: JobKind) -> JobKind {
///         kind.label("Send Newsletter").group("Mail").max_attempts(3)
///     }
/// }
///
/// async fn send(args: SendNewsletter, ctx: JobContext) -> anyhow::Result<()> {
///     ctx.log(format!("sending {}", args.subject)).await?;
///     Ok(())
/// }
///
/// # async fn demo() -> nightshift::Result<()> {
/// let worker = Worker::builder().build().await?;
/// worker.handle(send)?;
/// worker.start().await?;
/// let id = worker.enqueue(SendNewsletter { subject: "Hi".into() }).await?;
/// # Ok(()) }
/// ```
pub trait JobArgs: Serialize + DeserializeOwned + JsonSchema + Send + 'static {
    /// The stable machine key stored with each job (e.g. `"send_newsletter"`).
    const KIND: &'static str;

    /// How jobs of this type run: label, group, queue, attempts, backoff, timeout, role,
    /// schedulable. The default keeps [`JobKind`]'s defaults, labelled by `KIND`.
    fn configure(kind: JobKind) -> JobKind {
        kind
    }
}
