//! What a handler can return besides success and failure: cancel the job for good, or snooze it
//! to run again later without spending an attempt.
use std::fmt;
use std::time::Duration;

/// Ends the job `cancelled`, never retried, with a reason. Return it from a handler through
/// [`cancel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCancel {
    /// Why, shown as the job's error.
    pub reason: String,
}

impl fmt::Display for JobCancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cancelled: {}", self.reason)
    }
}

impl std::error::Error for JobCancel {}

/// Puts the job back to wait `after`, its attempt not spent. Return it from a handler through
/// [`snooze`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSnooze {
    /// How long to wait before the job runs again.
    pub after: Duration,
}

impl fmt::Display for JobSnooze {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snoozed for {:?}", self.after)
    }
}

impl std::error::Error for JobSnooze {}

/// A handler's way to end its job `cancelled` for good (no retry), with a reason.
///
/// ```
/// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct Args { customer: Option<i64> }
/// async fn invoice(args: Args, _: nightshift::JobContext) -> anyhow::Result<()> {
///     let Some(customer) = args.customer else {
///         return Err(nightshift::cancel("the customer was deleted"));
///     };
///     // …
///     Ok(())
/// }
/// ```
pub fn cancel(reason: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(JobCancel {
        reason: reason.into(),
    })
}

/// A handler's way to say "not now": the job waits `after`, then runs again; the attempt is not
/// spent.
///
/// ```
/// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct Args {}
/// # fn rate_limited() -> bool { false }
/// use std::time::Duration;
/// async fn sync(_: Args, _: nightshift::JobContext) -> anyhow::Result<()> {
///     if rate_limited() {
///         return Err(nightshift::snooze(Duration::from_secs(300)));
///     }
///     Ok(())
/// }
/// ```
pub fn snooze(after: Duration) -> anyhow::Error {
    anyhow::Error::new(JobSnooze { after })
}
