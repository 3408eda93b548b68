//! A job to create: a kind (or a typed job value), its arguments, when, and who asked.
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::job_args::JobArgs;

/// A job to create: a kind, its arguments, and optionally a time and an author.
///
/// ```
/// # fn demo() -> nightshift::Result<()> {
/// use nightshift::NewJob;
/// let job = NewJob::new("Send Newsletter", &serde_json::json!({"subject": "Hi"}))?
///     .schedule_at(chrono::Utc::now() + chrono::Duration::hours(1))
///     .created_by("alice");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NewJob {
    pub(crate) kind: String,
    pub(crate) args: Value,
    pub(crate) schedule_at: Option<DateTime<Utc>>,
    pub(crate) created_by: Option<String>,
    pub(crate) unique_key: Option<String>,
    pub(crate) queue: Option<String>,
    pub(crate) priority: Option<i32>,
    pub(crate) tags: Vec<String>,
}

impl NewJob {
    /// A job of `kind` with `args` (any `Serialize` value matching the kind's argument type).
    pub fn new(kind: impl Into<String>, args: &impl Serialize) -> Result<Self> {
        let args = serde_json::to_value(args).map_err(|e| Error::InvalidArgs {
            field: None,
            message: e.to_string(),
        })?;
        Ok(Self::from_value(kind, args))
    }

    /// A typed job: its kind is `J::KIND`, its arguments the value itself.
    ///
    /// ```
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # struct Ping {}
    /// # impl nightshift::JobArgs for Ping { const KIND: &'static str = "ping"; }
    /// let job = nightshift::NewJob::of(&Ping {})?;
    /// # Ok::<(), nightshift::Error>(())
    /// ```
    pub fn of<J: JobArgs>(job: &J) -> Result<Self> {
        Self::new(J::KIND, job)
    }

    /// A job of `kind` with arguments already as JSON.
    pub fn from_value(kind: impl Into<String>, args: Value) -> Self {
        NewJob {
            kind: kind.into(),
            args,
            schedule_at: None,
            created_by: None,
            unique_key: None,
            queue: None,
            priority: None,
            tags: Vec::new(),
        }
    }

    /// Run at `at` rather than now (the kind must be schedulable). A time in the past means now.
    pub fn schedule_at(mut self, at: DateTime<Utc>) -> Self {
        self.schedule_at = Some(at);
        self
    }

    /// At most one job of its kind with this key waits or runs at a time: inserting another
    /// returns the one already there ([`crate::Job::already_queued`]) and adds nothing. Overrides
    /// the kind's [`crate::JobKind::unique_by`].
    ///
    /// ```no_run
    /// # async fn demo(client: nightshift::Client) -> nightshift::Result<()> {
    /// use nightshift::NewJob;
    /// let job = NewJob::new("Import", &serde_json::json!({"customer": 42}))?.unique_key("customer-42");
    /// let first = client.insert(job.clone()).await?;
    /// let again = client.insert(job).await?;
    /// assert_eq!(first.id, again.id);
    /// assert!(again.already_queued);
    /// # Ok(()) }
    /// ```
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Put it on `queue` instead of its kind's ([`crate::JobKind::queue`]). Some node must
    /// serve that queue ([`crate::WorkerBuilder::queue`]) for it to run.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Its priority, 0 to 9 (larger starts first) instead of its kind's; outside that range the
    /// insert fails naming `priority`.
    ///
    /// ```no_run
    /// # async fn demo(client: nightshift::Client) -> nightshift::Result<()> {
    /// use nightshift::NewJob;
    /// let urgent = NewJob::new("Send Newsletter", &serde_json::json!({"subject": "Outage"}))?
    ///     .priority(9)
    ///     .tags(["incident", "eu"]);
    /// client.insert(urgent).await?;
    /// # Ok(()) }
    /// ```
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Short labels to find it by in the admin (at most 10, of at most 40 characters, without
    /// quotes, backslashes or commas; blanks and repeats are dropped).
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Record who created it.
    pub fn created_by(mut self, who: impl Into<String>) -> Self {
        self.created_by = Some(who.into());
        self
    }
}
