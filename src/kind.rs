//! Job kinds: a name, typed arguments, an async handler, and how to run it (attempts, backoff,
//! timeout, schedulability).
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::context::JobContext;
use crate::error::Error;

/// What a secret argument is shown as, everywhere, once stored.
pub const SECRET_MASK: &str = "••••••";

/// Why a handler did not succeed: its arguments could not be read (never retried), or it failed.
#[derive(Debug)]
pub(crate) enum HandlerError {
    BadArgs(String),
    Failed(anyhow::Error),
    /// The handler cancelled its job for good ([`crate::cancel`]).
    Cancel(String),
    /// The handler asked to run again later, attempt not spent ([`crate::snooze`]).
    Snooze(Duration),
}

impl HandlerError {
    /// A handler's error, with the outcome markers of [`crate::outcome`] recognised (also under
    /// added context).
    fn from_handler(e: anyhow::Error) -> Self {
        if let Some(c) = e.downcast_ref::<crate::outcome::JobCancel>() {
            return HandlerError::Cancel(c.reason.clone());
        }
        if let Some(s) = e.downcast_ref::<crate::outcome::JobSnooze>() {
            return HandlerError::Snooze(s.after);
        }
        HandlerError::Failed(e)
    }
}

type ErasedHandler =
    Arc<dyn Fn(Value, JobContext) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;
type ErasedValidator = Arc<dyn Fn(&Value) -> Result<(), Error> + Send + Sync>;

/// Exponential backoff with jitter between failed attempts: `base · 2^(n-1)`, capped at `max`,
/// plus up to `jitter` of itself at random so that many failing jobs do not retry in lockstep.
///
/// ```
/// use std::time::Duration;
/// use nightshift::Backoff;
/// let b = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(60)).jitter(0.0);
/// assert_eq!(b.delay(1), Duration::from_secs(1));
/// assert_eq!(b.delay(3), Duration::from_secs(4));
/// assert_eq!(b.delay(30), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    /// `base` after the first failure, doubling up to `max`; 25 % jitter.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            jitter: 0.25,
        }
    }

    /// The share of each delay added at random (0.0 to 1.0).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        let extra = raw.mul_f64(self.jitter * fastrand::f64());
        raw + extra
    }
}

impl Default for Backoff {
    /// 10 s, doubling to at most 1 h.
    fn default() -> Self {
        Backoff::exponential(Duration::from_secs(10), Duration::from_secs(3600))
    }
}

/// A kind of job: register it on a [`crate::Worker`], then enqueue jobs of it by name.
///
/// The argument type is any `serde` type that also derives `schemars::JsonSchema`; the admin
/// builds the kind's form from its schema. Mark a secret field with
/// `#[schemars(extend("writeOnly" = true))]`: it is stored, passed to the handler, and shown as
/// `••••••` everywhere else.
///
/// ```
/// use nightshift::{JobContext, JobKind};
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, JsonSchema)]
/// struct Resize { url: String, #[schemars(extend("writeOnly" = true))] token: String }
///
/// async fn resize(args: Resize, ctx: JobContext) -> anyhow::Result<()> {
///     ctx.log(format!("resizing {}", args.url)).await?;
///     Ok(())
/// }
///
/// let kind = JobKind::new("Resize Image", resize).group("Media").max_attempts(3);
/// assert_eq!(kind.name(), "Resize Image");
/// ```
#[derive(Clone)]
pub struct JobKind {
    pub(crate) name: String,
    pub(crate) label: Option<String>,
    pub(crate) group: String,
    pub(crate) queue: String,
    pub(crate) priority: i32,
    pub(crate) schedulable: bool,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) timeout: Option<Duration>,
    pub(crate) role: crate::role::Role,
    pub(crate) schema: Arc<Value>,
    pub(crate) secrets: Arc<BTreeSet<String>>,
    /// `None`: declared only (an enqueue-only process); its jobs are not claimed here.
    pub(crate) handler: Option<ErasedHandler>,
    /// Argument fields whose values make a job's uniqueness key (empty: none).
    pub(crate) unique_by: Arc<Vec<String>>,
    /// The names of its result rows' columns, the results table's header (empty: none).
    pub(crate) result_columns: Arc<Vec<String>>,
    validator: ErasedValidator,
}

impl std::fmt::Debug for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobKind")
            .field("name", &self.name)
            .field("label", &self.label)
            .field("group", &self.group)
            .field("queue", &self.queue)
            .field("priority", &self.priority)
            .field("schedulable", &self.schedulable)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl JobKind {
    /// A kind named `name` whose jobs run `handler`. Defaults: group "Jobs", queue "default",
    /// not schedulable, one attempt (retries are opt-in: most jobs are not idempotent), default
    /// [`Backoff`], no timeout. `name` is the key stored with each job; the admin shows
    /// [`JobKind::label`] if set.
    pub fn new<A, F, Fut>(name: impl Into<String>, handler: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        F: Fn(A, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: ErasedHandler = Arc::new(move |args: Value, ctx: JobContext| {
            let handler = handler.clone();
            async move {
                let args: A = parse_args(args).map_err(|e| HandlerError::BadArgs(e.to_string()))?;
                handler(args, ctx).await.map_err(HandlerError::from_handler)
            }
            .boxed()
        });
        let mut kind = Self::declare::<A>(name);
        kind.handler = Some(erased);
        kind
    }

    /// A kind with arguments `A` and no handler: what a process that only enqueues needs to
    /// validate arguments and mask secrets. Jobs of it are not claimed by this process.
    ///
    /// ```
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct Args { to: String }
    /// let kind = nightshift::JobKind::declare::<Args>("send_mail").label("Send Mail");
    /// assert!(!kind.has_handler());
    /// assert_eq!(kind.display_label(), "Send Mail");
    /// ```
    pub fn declare<A>(name: impl Into<String>) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
    {
        let schema = serde_json::to_value(schemars::schema_for!(A)).unwrap_or(Value::Null);
        let secrets = secret_fields(&schema);
        JobKind {
            name: name.into(),
            label: None,
            group: "Jobs".into(),
            queue: "default".into(),
            priority: 0,
            schedulable: false,
            max_attempts: 1,
            backoff: Backoff::default(),
            timeout: None,
            role: crate::role::Role::Operator,
            schema: Arc::new(schema),
            secrets: Arc::new(secrets),
            handler: None,
            unique_by: Arc::new(Vec::new()),
            result_columns: Arc::new(Vec::new()),
            validator: Arc::new(|v| parse_args::<A>(v.clone()).map(|_| ())),
        }
    }

    /// The kind of a typed job, `J::KIND` configured by `J::configure`, run by `handler`. What
    /// [`crate::Worker::handle`] registers; call it to register the kind with more settings.
    ///
    /// ```
    /// use nightshift::{JobArgs, JobContext, JobKind};
    /// # use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    /// struct Ping {}
    /// impl JobArgs for Ping {
    ///     const KIND: &'static str = "ping";
    ///     fn configure(kind: JobKind) -> JobKind {
    ///         kind.label("Ping").group("Health")
    ///     }
    /// }
    ///
    /// async fn ping(_: Ping, _: JobContext) -> anyhow::Result<()> {
    ///     Ok(())
    /// }
    ///
    /// let kind = JobKind::of(ping);
    /// assert_eq!((kind.name(), kind.display_label(), kind.group_name()), ("ping", "Ping", "Health"));
    /// ```
    pub fn of<J, F, Fut>(handler: F) -> Self
    where
        J: crate::JobArgs,
        F: Fn(J, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        J::configure(Self::new(J::KIND, handler))
    }

    /// The kind of a typed job without a handler (see [`JobKind::declare`]).
    pub fn declared<J: crate::JobArgs>() -> Self {
        J::configure(Self::declare::<J>(J::KIND))
    }

    /// Jobs of this kind are unique by these argument fields: while one with the same values
    /// waits or runs, enqueueing another returns it instead of adding a second ("one import per
    /// customer"). The admin's form says so when it happens.
    ///
    /// ```
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct Import { customer_id: i64 }
    /// # async fn import(_: Import, _: nightshift::JobContext) -> anyhow::Result<()> { Ok(()) }
    /// let kind = nightshift::JobKind::new("import", import).unique_by(&["customer_id"]);
    /// ```
    pub fn unique_by(mut self, fields: &[&str]) -> Self {
        self.unique_by = Arc::new(fields.iter().map(|f| (*f).to_owned()).collect());
        self
    }

    /// The uniqueness key of a job with `args`, from the fields of [`JobKind::unique_by`].
    pub(crate) fn unique_key(&self, args: &Value) -> Option<String> {
        if self.unique_by.is_empty() {
            return None;
        }
        let values: Vec<&Value> = self
            .unique_by
            .iter()
            .map(|f| args.get(f).unwrap_or(&Value::Null))
            .collect();
        // Hashed: the fields may hold anything, a secret included, and the key is stored plain.
        use sha2::Digest;
        let digest = sha2::Sha256::digest(serde_json::to_string(&values).unwrap_or_default());
        Some(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// What the admin shows for this kind (default: its name). Free to change: jobs are stored
    /// under the name.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Names the columns of its result rows ([`JobContext::add_result_row`]): the admin shows
    /// them as the results table's header, so a handler adds data rows only.
    ///
    /// ```
    /// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct Args {}
    /// let kind = nightshift::JobKind::declare::<Args>("import").result_columns(["SKU", "Price"]);
    /// assert_eq!(kind.columns(), ["SKU", "Price"]);
    /// ```
    pub fn result_columns<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.result_columns = Arc::new(columns.into_iter().map(Into::into).collect());
        self
    }

    /// The names of its result columns (empty: none named).
    pub fn columns(&self) -> &[String] {
        &self.result_columns
    }

    /// The label shown in the admin: the one set, else the name.
    pub fn display_label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }

    /// Whether this process can run jobs of this kind.
    pub fn has_handler(&self) -> bool {
        self.handler.is_some()
    }

    /// The group the admin lists this kind under.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// The queue its jobs go to (default "default"): 1 to 64 letters, digits, `-`, `_`, `.`
    /// or `:`, checked when the kind is registered. A job may name another
    /// ([`crate::NewJob::queue`]).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Its jobs' priority, 0 (the default) to 9 (clamped): among due jobs of a queue, a larger
    /// priority starts first. A job may set its own ([`crate::NewJob::priority`]).
    ///
    /// ```
    /// # async fn alert(_: (), _: nightshift::JobContext) -> anyhow::Result<()> { Ok(()) }
    /// let kind = nightshift::JobKind::new("Page On-Call", alert).queue("alerts").priority(9);
    /// ```
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority.clamp(0, crate::queue::MAX_PRIORITY);
        self
    }

    /// Jobs of this kind may be given a time to run at (the admin shows a Schedule Time input).
    pub fn schedulable(mut self) -> Self {
        self.schedulable = true;
        self
    }

    /// How many times a job is tried in all (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The wait between failed attempts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nightshift::{Backoff, JobKind, Role};
    /// # async fn sync(_: (), _: nightshift::JobContext) -> anyhow::Result<()> { Ok(()) }
    ///
    /// // Five tries, 30 s apart at first, doubling to 10 min; each try stopped after 2 min;
    /// // only admins may start one from the admin.
    /// let kind = JobKind::new("Sync Accounts", sync)
    ///     .max_attempts(5)
    ///     .backoff(Backoff::exponential(Duration::from_secs(30), Duration::from_secs(600)))
    ///     .timeout(Duration::from_secs(120))
    ///     .role(Role::Admin);
    /// assert_eq!(kind.required_role(), Role::Admin);
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// An attempt running longer than this is stopped and counts as failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The role an operator needs to create, abort, cancel, update or rerun jobs of this kind
    /// (default: `operator`).
    pub fn role(mut self, role: crate::role::Role) -> Self {
        self.role = role;
        self
    }

    /// The role this kind's actions need.
    pub fn required_role(&self) -> crate::role::Role {
        self.role
    }

    /// The kind's name: the key its jobs are stored under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind's group.
    pub fn group_name(&self) -> &str {
        &self.group
    }

    /// Whether jobs of this kind may be scheduled.
    pub fn is_schedulable(&self) -> bool {
        self.schedulable
    }

    /// The JSON schema of the argument type.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The names of the argument fields that are secret.
    pub fn secret_fields(&self) -> impl Iterator<Item = &str> {
        self.secrets.iter().map(String::as_str)
    }

    /// Checks arguments against the argument type without running anything. The error names
    /// the offending field when it can.
    ///
    /// ```
    /// use nightshift::{Error, JobKind};
    /// use serde_json::json;
    ///
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct Resize { url: String, width: u32 }
    ///
    /// let kind = JobKind::declare::<Resize>("resize");
    /// assert!(kind.validate(&json!({"url": "a.png", "width": 640})).is_ok());
    /// let err = kind.validate(&json!({"url": "a.png", "width": "wide"})).unwrap_err();
    /// assert!(matches!(err, Error::InvalidArgs { field: Some(f), .. } if f == "width"));
    /// ```
    pub fn validate(&self, args: &Value) -> Result<(), Error> {
        (self.validator)(args)
    }

    /// The arguments with every secret field replaced by [`SECRET_MASK`].
    ///
    /// ```
    /// use nightshift::JobKind;
    /// use nightshift::kind::SECRET_MASK;
    /// use serde_json::json;
    ///
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct Login {
    ///     user: String,
    ///     #[schemars(extend("writeOnly" = true))]
    ///     password: String,
    /// }
    ///
    /// let kind = JobKind::declare::<Login>("login");
    /// assert_eq!(kind.secret_fields().collect::<Vec<_>>(), ["password"]);
    /// let shown = kind.redact(&json!({"user": "alice", "password": "hunter2"}));
    /// assert_eq!(shown, json!({"user": "alice", "password": SECRET_MASK}));
    /// ```
    pub fn redact(&self, args: &Value) -> Value {
        redact_with(&self.secrets, args)
    }
}

pub(crate) fn redact_with(secrets: &BTreeSet<String>, args: &Value) -> Value {
    let mut out = args.clone();
    if let Value::Object(map) = &mut out {
        for (key, value) in map.iter_mut() {
            if secrets.contains(key) && !value.is_null() {
                *value = Value::String(SECRET_MASK.into());
            }
        }
    }
    out
}

/// The longest field path or message about arguments; serde quotes input in full.
const MAX_ECHO: usize = 200;

fn parse_args<A: DeserializeOwned>(args: Value) -> Result<A, Error> {
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // A missing field is reported at the parent; name the field itself.
        let field = match missing_field(&message) {
            Some(name) if path == "." => Some(name.to_owned()),
            Some(name) => Some(format!("{path}.{name}")),
            None if path == "." => None,
            None => Some(path),
        };
        // serde quotes the offending value (`invalid type: string "…"`): keep it short.
        Error::InvalidArgs {
            field: field.map(|f| crate::text::clip(&f, MAX_ECHO).into_owned()),
            message: crate::text::clip(&crate::text::shorten_quotes(&message), MAX_ECHO)
                .into_owned(),
        }
    })
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Top-level properties marked `writeOnly` or `format: password`.
fn secret_fields(schema: &Value) -> BTreeSet<String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return BTreeSet::new();
    };
    props
        .iter()
        .filter(|(_, p)| {
            p.get("writeOnly").and_then(Value::as_bool) == Some(true)
                || p.get("format").and_then(Value::as_str) == Some("password")
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Args {
        subject: String,
        count: u32,
        #[schemars(extend("writeOnly" = true))]
        password: String,
    }

    async fn noop(_: Args, _: JobContext) -> anyhow::Result<()> {
        Ok(())
    }

    #[test]
    fn validation_names_the_field() {
        let kind = JobKind::new("t", noop);
        let err = kind
            .validate(&serde_json::json!({"subject": "s", "password": "p"}))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgs { field: Some(ref f), .. } if f == "count"));
        let err = kind
            .validate(&serde_json::json!({"subject": 1, "count": 1, "password": "p"}))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgs { field: Some(ref f), .. } if f == "subject"));
    }

    #[test]
    fn secrets_are_masked() {
        let kind = JobKind::new("t", noop);
        let shown = kind.redact(&serde_json::json!({"subject": "s", "password": "hunter2"}));
        assert_eq!(shown["password"], SECRET_MASK);
        assert_eq!(shown["subject"], "s");
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1));
        for n in 1..40 {
            let d = b.delay(n);
            assert!(
                d >= Duration::from_millis(100) && d <= Duration::from_millis(1250),
                "{d:?}"
            );
        }
    }
}
