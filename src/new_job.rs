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

    /// Record who created it.
    pub fn created_by(mut self, who: impl Into<String>) -> Self {
        self.created_by = Some(who.into());
        self
    }
}
