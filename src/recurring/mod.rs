//! Recurring jobs: a job kind run on a cron schedule in a time zone, with fixed arguments.
//!
//! Schedules live in the database (`nightshift_recurring`), so an operator's change in the
//! admin's **Recurring** page survives a deploy. The application defines schedules in code with
//! [`Worker::recurring`]; [`Worker::start`] creates each one that is missing and brings one that
//! no operator has edited up to date with the code. One an operator edited keeps the
//! operator's version: the page then shows what the code says instead.
//!
//! ```no_run
//! use nightshift::recurring::{Missed, Recurring};
//! use nightshift::{JobArgs, JobContext, Worker};
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! # struct NightlyReport { days: u32 }
//! # impl JobArgs for NightlyReport { const KIND: &'static str = "nightly_report"; }
//! # async fn report(_: NightlyReport, _: JobContext) -> anyhow::Result<()> { Ok(()) }
//!
//! # async fn demo() -> nightshift::Result<()> {
//! let worker = Worker::builder().build().await?;
//! worker.handle(report)?;
//! // Every day at 03:00 in Paris (6 fields: seconds first; 5 fields start at the minute).
//! worker.recurring(
//!     Recurring::of("nightly-report", "0 0 3 * * *", &NightlyReport { days: 1 })
//!         .timezone("Europe/Paris")
//!         .missed(Missed::RunOnce),
//! )?;
//! // A kind registered by name, every 15 minutes on weekdays (UTC).
//! worker.recurring(Recurring::new("poll", "*/15 * * * MON-FRI", "Poll Feeds", &serde_json::json!({})))?;
//! worker.start().await?; // creates or updates the schedules, then fires their ticks
//! # Ok(()) }
//! ```
//!
//! # Exactly once
//! A tick is claimed by a compare-and-set on the schedule's `next_run_at` in the transaction
//! that inserts its job (through the ordinary insert path: validation, secrets, wake-ups), and
//! each schedule has at most one run per tick (a unique index): with any number of nodes, each
//! tick makes one job. Daylight-saving rules are on [`CronSchedule`].
//!
//! # Missed ticks
//! A tick more than [`MISSED_AFTER`] late when a node gets to it (every node was down, or
//! none knew its kind) was missed: [`Missed::Skip`] drops the missed ticks, [`Missed::RunOnce`]
//! runs one job for all of them. Either way the schedule goes on from the next tick.
mod cron;

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use cron::{CronSchedule, parse_cron, parse_timezone};

use crate::client::Client;
use crate::clock::to_datetime;
use crate::entity::recurring;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::job_args::JobArgs;
use crate::kind::{JobKind, SECRET_MASK};
use crate::new_job::NewJob;
use crate::store::{RecurringDef, RecurringInsert};
use crate::worker::Worker;

/// A tick later than this when a node gets to it counts as missed (see [`Missed`]).
pub const MISSED_AFTER: Duration = Duration::from_secs(60);

/// How many upcoming ticks a [`Schedule`] lists.
pub const NEXT_RUNS: usize = 5;

/// How many of its latest runs a [`Schedule`] lists.
pub const LAST_RUNS: u64 = 10;

/// The longest schedule name accepted.
pub const MAX_NAME: usize = 100;

/// What happens to the ticks a schedule missed while no node could fire them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Drop them; go on from the next tick (the default).
    #[default]
    Skip,
    /// Run one job for all of them as soon as a node is back, then go on.
    RunOnce,
}

impl Missed {
    /// `skip` or `run_once`, as stored and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Skip => "skip",
            Missed::RunOnce => "run_once",
        }
    }

    /// For people: "skip missed ticks", "run once after missed ticks".
    pub fn label(self) -> &'static str {
        match self {
            Missed::Skip => "skip missed ticks",
            Missed::RunOnce => "run once after missed ticks",
        }
    }
}

impl FromStr for Missed {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "skip" => Ok(Missed::Skip),
            "run_once" => Ok(Missed::RunOnce),
            other => Err(Error::InvalidArgs {
                field: Some("missed".into()),
                message: format!("{} is not one of skip, run_once", crate::text::quote(other)),
            }),
        }
    }
}

impl std::fmt::Display for Missed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recurring schedule as the application defines it: a unique name, a cron expression, a time
/// zone (UTC unless given), a job kind and its arguments, and what to do with missed ticks.
/// Register it with [`Worker::recurring`] (see the [module](self) for an example), or create one
/// at run time with [`Client::add_recurring`].
#[derive(Debug, Clone)]
pub struct Recurring {
    name: String,
    cron: String,
    timezone: String,
    kind: String,
    args: std::result::Result<Value, String>,
    missed: Missed,
}

impl Recurring {
    /// A schedule named `name` that runs jobs of `kind` with `args` at the ticks of `cron` (5
    /// fields, or 6 with seconds first; read in UTC unless [`Recurring::timezone`] says
    /// otherwise).
    pub fn new(
        name: impl Into<String>,
        cron: impl Into<String>,
        kind: impl Into<String>,
        args: &impl Serialize,
    ) -> Self {
        Recurring {
            name: name.into(),
            cron: cron.into(),
            timezone: "UTC".into(),
            kind: kind.into(),
            args: serde_json::to_value(args).map_err(|e| e.to_string()),
            missed: Missed::Skip,
        }
    }

    /// A schedule of typed jobs: its kind is `J::KIND`, its arguments `args`.
    pub fn of<J: JobArgs>(name: impl Into<String>, cron: impl Into<String>, args: &J) -> Self {
        Self::new(name, cron, J::KIND, args)
    }

    /// The IANA time zone the expression is read in (`Europe/Paris`, `America/New_York`).
    pub fn timezone(mut self, timezone: impl Into<String>) -> Self {
        self.timezone = timezone.into();
        self
    }

    /// What to do with ticks missed while no node ran (default: [`Missed::Skip`]).
    pub fn missed(mut self, missed: Missed) -> Self {
        self.missed = missed;
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the name, the expression, the zone and the arguments' form (not yet against the
    /// kind, which may be registered later).
    fn check(&self) -> Result<CronSchedule> {
        check_name(&self.name)?;
        let schedule = CronSchedule::new(&self.cron, &self.timezone)?;
        if let Err(e) = &self.args {
            return Err(Error::InvalidArgs {
                field: Some("args".into()),
                message: e.clone(),
            });
        }
        Ok(schedule)
    }
}

fn check_name(name: &str) -> Result<()> {
    let problem = if name.trim().is_empty() {
        Some("must not be empty".to_owned())
    } else if name.trim() != name {
        Some("must not start or end with spaces".to_owned())
    } else if name.chars().count() > MAX_NAME {
        Some(format!("is longer than {MAX_NAME} characters"))
    } else if name.chars().any(char::is_control) {
        Some("must not hold control characters".to_owned())
    } else {
        None
    };
    match problem {
        Some(message) => Err(Error::InvalidArgs {
            field: Some("name".into()),
            message,
        }),
        None => Ok(()),
    }
}

/// A change to a schedule: each field given replaces the stored one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleEdit {
    /// The job kind.
    pub job: Option<String>,
    /// The cron expression.
    pub cron: Option<String>,
    /// The time zone.
    pub timezone: Option<String>,
    /// The arguments; a secret field sent as the mask (or empty) keeps its stored value.
    pub args: Option<Value>,
    /// The missed-ticks policy.
    pub missed: Option<Missed>,
}

/// A recurring schedule as stored, ready to show: arguments have their secret fields masked.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Schedule {
    /// Its id.
    pub id: i64,
    /// Its unique name.
    pub name: String,
    /// The kind of the jobs it creates.
    pub job: String,
    /// The kind's label (the key when the kind is not registered here).
    pub label: String,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone.
    pub timezone: String,
    /// In plain English: "every weekday at 09:00 Europe/Paris".
    pub description: String,
    /// The jobs' arguments, secrets masked.
    pub args: Value,
    /// A paused schedule fires nothing (its `next_runs` are what resuming would give).
    pub paused: bool,
    /// The missed-ticks policy.
    pub missed: Missed,
    /// The next ticks, at most [`NEXT_RUNS`].
    pub next_runs: Vec<DateTime<Utc>>,
    /// The latest runs, newest first, at most [`LAST_RUNS`].
    pub last_runs: Vec<LastRun>,
    /// `code` (as the application defines it) or `operator` (created or edited in the admin).
    pub source: String,
    /// Whether the application's code defines a schedule of this name.
    pub in_code: bool,
    /// What the code says, when it differs from the schedule as it is.
    pub code: Option<CodeDefinition>,
    /// Whether its kind is registered in this process (nodes that do not know it never fire
    /// it).
    pub kind_known: bool,
    /// The last tick handled.
    pub last_tick_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Who changed it last (an operator, or `code`).
    pub updated_by: Option<String>,
}

/// A schedule's definition in the application's code (secret arguments masked).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CodeDefinition {
    /// The job kind.
    pub job: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone.
    pub timezone: String,
    /// The arguments, secrets masked.
    pub args: Value,
    /// The missed-ticks policy.
    pub missed: Missed,
    /// In plain English.
    pub description: String,
}

/// One run of a schedule.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LastRun {
    /// The job it created, if any.
    pub job_id: Option<i64>,
    /// The job's status; `skipped` (missed ticks dropped), `failed` (no job could be created,
    /// see `error`) or `deleted` (the job is gone).
    pub status: String,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The tick it was for; `None` for "run now".
    pub tick_at: Option<DateTime<Utc>>,
    /// `tick`, `missed` (the run-once catch-up), `skipped` or `manual` (run now).
    pub reason: String,
    /// Why no job could be created.
    pub error: Option<String>,
}

/// The recurring part of a worker: the schedules its code defines, the task that fires ticks.
#[derive(Default)]
pub(crate) struct State {
    defs: Mutex<Vec<Recurring>>,
    /// Wakes the firing task: a schedule changed here.
    pub wake: Notify,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl State {
    fn code_def(&self, name: &str) -> Option<Recurring> {
        self.defs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|d| d.name == name)
            .cloned()
    }
}

impl Worker {
    /// Registers a recurring schedule defined in code. The name, cron expression, time zone and
    /// argument form are checked here (an [`Error::InvalidArgs`] naming `name`, `cron`,
    /// `timezone` or `args`); the kind and the arguments against it at [`Worker::start`], which
    /// creates the schedule if it is missing. A schedule an operator edited is left as they
    /// made it (the admin shows what the code says instead).
    pub fn recurring(&self, def: Recurring) -> Result<()> {
        def.check().map_err(|e| in_schedule(&def.name, e))?;
        let mut defs = self
            .shared
            .recurring
            .defs
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if defs.iter().any(|d| d.name == def.name) {
            return Err(Error::InvalidArgs {
                field: Some("name".into()),
                message: format!(
                    "a recurring schedule named {} is already registered",
                    crate::text::quote(&def.name)
                ),
            });
        }
        defs.push(def);
        Ok(())
    }
}

/// Says which schedule an error is about (for errors at registration and start-up).
fn in_schedule(name: &str, e: Error) -> Error {
    match e {
        Error::InvalidArgs { field, message } => Error::InvalidArgs {
            field,
            message: format!(
                "{message} (recurring schedule {})",
                crate::text::quote(name)
            ),
        },
        other => other,
    }
}

/// Creates the schedules the code defines that are missing, brings those no operator has
/// edited up to date, and records the code's version on all of them. Run by `Worker::start`.
pub(crate) async fn sync_code(client: &Client) -> Result<()> {
    let defs = client
        .shared
        .recurring
        .defs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for def in defs {
        sync_one(client, &def)
            .await
            .map_err(|e| in_schedule(&def.name, e))?;
    }
    Ok(())
}

async fn sync_one(client: &Client, def: &Recurring) -> Result<()> {
    let schedule = def.check()?;
    let args = def.args.clone().map_err(|message| Error::InvalidArgs {
        field: Some("args".into()),
        message,
    })?;
    let kind = client
        .kind(&def.kind)
        .ok_or_else(|| Error::UnknownKind(def.kind.clone()))?;
    let sealed = seal(client, &kind, &schedule, &def.kind, args, def.missed)?;
    let code_def = serde_json::to_string(&sealed.shown).unwrap_or_default();
    let store = client.store();
    let now = client.shared.clock.now();
    let row = RecurringInsert {
        name: def.name.clone(),
        def: sealed.def.clone(),
        next_run_at: schedule.next_after_ms(now),
        source: "code",
        code_hash: Some(sealed.def.def_hash.clone()),
        code_def: Some(code_def.clone()),
        by: "code".into(),
        now,
    };
    if store.recurring_insert(&row).await?.is_some() {
        tracing::info!(schedule = %def.name, "recurring schedule created from code");
        return Ok(());
    }
    let Some(current) = store.recurring_by_name(&def.name).await? else {
        return Ok(());
    };
    if current.source == "code" && current.def_hash != sealed.def.def_hash {
        // No operator touched it: the code's new version replaces the old.
        let retimed = current.cron != sealed.def.cron || current.timezone != sealed.def.timezone;
        let next = retimed.then(|| schedule.next_after_ms(now));
        if store
            .recurring_redefine(
                current.id,
                &current.def_hash,
                &sealed.def,
                next,
                "code",
                "code",
                now,
            )
            .await?
        {
            tracing::info!(schedule = %def.name, "recurring schedule updated from code");
        }
    } else if current.source != "code" && current.def_hash != sealed.def.def_hash {
        tracing::info!(
            schedule = %def.name,
            "recurring schedule edited by an operator differs from the code; keeping the operator's"
        );
    }
    store
        .recurring_set_code(current.id, &sealed.def.def_hash, &code_def)
        .await
}

/// A definition ready to store: arguments validated and sealed, its hash, how it shows.
struct Sealed {
    def: RecurringDef,
    shown: CodeDefinition,
}

/// Validates `args` against `kind` (secret fields given as envelopes are opened first) and
/// seals them as stored; hashes the definition with its arguments in the clear.
fn seal(
    client: &Client,
    kind: &JobKind,
    schedule: &CronSchedule,
    kind_name: &str,
    args: Value,
    missed: Missed,
) -> Result<Sealed> {
    let plain =
        crate::secrets::open(client.shared.keyring.as_ref(), &kind.secrets, args).map_err(|e| {
            Error::InvalidArgs {
                field: e.field().map(|f| format!("args.{f}")),
                message: e.to_string(),
            }
        })?;
    let (stored, _) = client.seal_args(kind, plain.clone()).map_err(args_field)?;
    let hash = def_hash(
        client.shared.keyring.as_ref(),
        kind_name,
        schedule.expression(),
        schedule.timezone().name(),
        &plain,
        missed,
    );
    Ok(Sealed {
        def: RecurringDef {
            kind: kind_name.to_owned(),
            cron: schedule.expression().to_owned(),
            timezone: schedule.timezone().name().to_owned(),
            args: stored,
            missed: missed.as_str().to_owned(),
            def_hash: hash,
        },
        shown: CodeDefinition {
            job: kind_name.to_owned(),
            cron: schedule.expression().to_owned(),
            timezone: schedule.timezone().name().to_owned(),
            args: kind.redact(&plain),
            missed,
            description: schedule.describe(),
        },
    })
}

/// An arguments error names its field under `args.` (the schedule's own fields are `cron`,
/// `timezone`, …).
fn args_field(e: Error) -> Error {
    match e {
        Error::InvalidArgs { field, message } => Error::InvalidArgs {
            field: Some(match field {
                Some(f) => format!("args.{f}"),
                None => "args".to_owned(),
            }),
            message,
        },
        other => other,
    }
}

/// A hash of a definition: kind, expression, zone, arguments (keys sorted) and policy. The
/// arguments hold secrets in the clear, so with a secret key configured (secrets encrypted at
/// rest) it is an HMAC under that key: a reader of the database cannot test guesses against it.
fn def_hash(
    keyring: Option<&crate::secrets::Keyring>,
    kind: &str,
    cron: &str,
    timezone: &str,
    args: &Value,
    missed: Missed,
) -> String {
    let canonical = serde_json::json!({
        "job": kind,
        "cron": cron,
        "timezone": timezone,
        "args": sorted(args),
        "missed": missed.as_str(),
    })
    .to_string();
    let digest = match keyring {
        Some(k) => hmac_sha256(k.primary().to_hex().as_bytes(), canonical.as_bytes()),
        None => Sha256::digest(canonical.as_bytes()).into(),
    };
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// `v` with every object's keys in order, so equal arguments hash alike.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Without the kind we cannot tell which fields are secret: show none of the values.
fn mask_all(args: &Value) -> Value {
    match args {
        Value::Object(map) => Value::Object(
            map.keys()
                .map(|k| (k.clone(), Value::String(SECRET_MASK.into())))
                .collect(),
        ),
        Value::Null => Value::Null,
        _ => Value::String(SECRET_MASK.into()),
    }
}

impl Client {
    /// Every recurring schedule, by name.
    pub async fn recurring_schedules(&self) -> Result<Vec<Schedule>> {
        let rows = self.store().recurring_all().await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.schedule_view(row).await?);
        }
        Ok(out)
    }

    /// One recurring schedule.
    pub async fn recurring_schedule(&self, id: i64) -> Result<Schedule> {
        let row = self.schedule_row(id).await?;
        self.schedule_view(row).await
    }

    /// Creates a recurring schedule (as an operator's: code never changes it). Its name must be
    /// new; the kind must be registered here and accept the arguments. `by` names who asked.
    pub async fn add_recurring(&self, def: Recurring, by: &str) -> Result<Schedule> {
        let schedule = def.check()?;
        let args = def.args.clone().map_err(|message| Error::InvalidArgs {
            field: Some("args".into()),
            message,
        })?;
        let kind = self.known_kind(&def.kind)?;
        let sealed = seal(self, &kind, &schedule, &def.kind, args, def.missed)?;
        let now = self.shared.clock.now();
        let row = RecurringInsert {
            name: def.name.clone(),
            def: sealed.def,
            next_run_at: schedule.next_after_ms(now),
            source: "operator",
            code_hash: None,
            code_def: None,
            by: crate::text::scrub_nul(by.to_owned()),
            now,
        };
        let Some(created) = self.store().recurring_insert(&row).await? else {
            return Err(Error::InvalidArgs {
                field: Some("name".into()),
                message: format!(
                    "a recurring schedule named {} already exists",
                    crate::text::quote(&def.name)
                ),
            });
        };
        // Code may define a schedule of this name after all.
        if let Some(code) = self.shared.recurring.code_def(&def.name)
            && let (Ok(cs), Ok(args), Some(k)) =
                (code.check(), code.args.clone(), self.kind(&code.kind))
            && let Ok(s) = seal(self, &k, &cs, &code.kind, args, code.missed)
        {
            let shown = serde_json::to_string(&s.shown).unwrap_or_default();
            self.store()
                .recurring_set_code(created.id, &s.def.def_hash, &shown)
                .await?;
        }
        self.shared.recurring.wake.notify_one();
        self.recurring_schedule(created.id).await
    }

    /// Changes a schedule's definition. It becomes the operator's: code no longer updates it
    /// (the admin shows what the code says when it differs). A new expression or time zone
    /// starts again from the next tick after now.
    pub async fn edit_recurring(&self, id: i64, edit: ScheduleEdit, by: &str) -> Result<Schedule> {
        let row = self.schedule_row(id).await?;
        let kind_name = edit.job.clone().unwrap_or_else(|| row.kind.clone());
        let cron = edit.cron.clone().unwrap_or_else(|| row.cron.clone());
        let timezone = edit
            .timezone
            .clone()
            .unwrap_or_else(|| row.timezone.clone());
        let missed = match edit.missed {
            Some(m) => m,
            None => row.missed.parse().unwrap_or_default(),
        };
        let schedule = CronSchedule::new(&cron, &timezone)?;
        let kind = self.known_kind(&kind_name)?;
        let stored: Value = serde_json::from_str(&row.args).unwrap_or(Value::Null);
        let args = match edit.args {
            Some(new) => crate::client::keep_secrets(&kind, &stored, new),
            None => stored,
        };
        let sealed = seal(self, &kind, &schedule, &kind_name, args, missed)?;
        let now = self.shared.clock.now();
        let retimed =
            schedule.expression() != row.cron || schedule.timezone().name() != row.timezone;
        let next = retimed.then(|| schedule.next_after_ms(now));
        let by = crate::text::scrub_nul(by.to_owned());
        let changed = sealed.def.def_hash != row.def_hash || retimed;
        if changed
            && !self
                .store()
                .recurring_redefine(id, &row.def_hash, &sealed.def, next, "operator", &by, now)
                .await?
        {
            return Err(Error::ScheduleConflict(format!(
                "recurring schedule {id} was changed by someone else meanwhile; reload and try again"
            )));
        }
        self.shared.recurring.wake.notify_one();
        self.recurring_schedule(id).await
    }

    /// Pauses a schedule: it fires nothing until resumed. Pausing a paused schedule changes
    /// nothing.
    pub async fn pause_recurring(&self, id: i64, by: &str) -> Result<Schedule> {
        self.schedule_row(id).await?;
        let now = self.shared.clock.now();
        self.store()
            .recurring_set_paused(id, true, None, &crate::text::scrub_nul(by.to_owned()), now)
            .await?;
        self.recurring_schedule(id).await
    }

    /// Resumes a paused schedule from its next tick after now (ticks passed while it was paused
    /// are not missed ones: they do not run). A skipped tick still ahead stays skipped.
    pub async fn resume_recurring(&self, id: i64, by: &str) -> Result<Schedule> {
        let row = self.schedule_row(id).await?;
        let now = self.shared.clock.now();
        let next = match row.next_run_at {
            Some(next) if next > now => Some(next),
            _ => CronSchedule::new(&row.cron, &row.timezone)?.next_after_ms(now),
        };
        self.store()
            .recurring_set_paused(
                id,
                false,
                Some(next),
                &crate::text::scrub_nul(by.to_owned()),
                now,
            )
            .await?;
        self.shared.recurring.wake.notify_one();
        self.recurring_schedule(id).await
    }

    /// Skips a schedule's next tick: it goes on from the one after.
    pub async fn skip_recurring(&self, id: i64, by: &str) -> Result<Schedule> {
        let row = self.schedule_row(id).await?;
        if row.paused {
            return Err(Error::ScheduleConflict(format!(
                "recurring schedule {} is paused: resume it first",
                crate::text::quote(&row.name)
            )));
        }
        let Some(next) = row.next_run_at else {
            return Err(Error::ScheduleConflict(format!(
                "recurring schedule {} has no next run to skip",
                crate::text::quote(&row.name)
            )));
        };
        let schedule = CronSchedule::new(&row.cron, &row.timezone)?;
        let after = schedule.next_after_ms(next);
        let now = self.shared.clock.now();
        if !self
            .store()
            .recurring_skip(id, next, after, &crate::text::scrub_nul(by.to_owned()), now)
            .await?
        {
            return Err(Error::ScheduleConflict(format!(
                "the next run of recurring schedule {} changed meanwhile (it fired, or was \
                 skipped or edited); reload and try again",
                crate::text::quote(&row.name)
            )));
        }
        self.shared.recurring.wake.notify_one();
        self.recurring_schedule(id).await
    }

    /// Runs a schedule's job now, outside its ticks (its next tick is unchanged). The job is
    /// attributed to the schedule and `by`.
    pub async fn run_recurring(&self, id: i64, by: &str) -> Result<Job> {
        let row = self.schedule_row(id).await?;
        let args: Value =
            serde_json::from_str(&row.args).map_err(|e| Error::Corrupt(e.to_string()))?;
        let job = NewJob::from_value(row.kind.clone(), args)
            .created_by(format!("recurring:{} (run by {by})", row.name));
        let store = self.store();
        let db = store.connection();
        let job = crate::store::retry_busy(|| async {
            use sea_orm::TransactionTrait;
            let tx = db.begin().await?;
            let now = self.shared.clock.now();
            let job = self.insert_in(&tx, job.clone()).await?;
            if let Some(run) = store
                .recurring_add_run(&tx, id, None, "manual", now)
                .await?
            {
                store
                    .recurring_run_result(&tx, run, Some(job.id), None)
                    .await?;
            }
            tx.commit().await?;
            Ok(job)
        })
        .await?;
        crate::runtime::recurring::announce(&self.shared, &job);
        Ok(job)
    }

    /// Deletes a schedule (its jobs stay). A schedule the code defines is created again at the
    /// next start: pause it instead to stop it for good.
    pub async fn delete_recurring(&self, id: i64) -> Result<Schedule> {
        let shown = self.recurring_schedule(id).await?;
        if !self.store().recurring_delete(id).await? {
            return Err(Error::ScheduleNotFound(id));
        }
        Ok(shown)
    }

    fn known_kind(&self, name: &str) -> Result<JobKind> {
        self.kind(name)
            .ok_or_else(|| Error::UnknownKind(name.to_owned()))
    }

    async fn schedule_row(&self, id: i64) -> Result<recurring::Model> {
        self.store()
            .recurring_one(id)
            .await?
            .ok_or(Error::ScheduleNotFound(id))
    }

    async fn schedule_view(&self, row: recurring::Model) -> Result<Schedule> {
        let kind = self.kind(&row.kind);
        let raw: Value = serde_json::from_str(&row.args).unwrap_or(Value::Null);
        let args = match &kind {
            Some(k) => k.redact(&raw),
            None => mask_all(&raw),
        };
        let missed: Missed = row.missed.parse().unwrap_or_default();
        let parsed = CronSchedule::new(&row.cron, &row.timezone).ok();
        let now = self.shared.clock.now();
        let next_runs = match (&parsed, row.next_run_at) {
            (Some(s), _) if row.paused => s.next_runs(to_datetime(now), NEXT_RUNS),
            (Some(s), Some(next)) => {
                let first = to_datetime(next);
                let mut runs = vec![first];
                runs.extend(s.next_runs(first, NEXT_RUNS - 1));
                runs
            }
            _ => Vec::new(),
        };
        let description = match &parsed {
            Some(s) => s.describe(),
            None => format!("{} {}", row.cron, row.timezone),
        };
        let last_runs = self
            .store()
            .recurring_runs(row.id, LAST_RUNS)
            .await?
            .into_iter()
            .map(|(run, status)| LastRun {
                status: match (&status, run.job_id, &run.error) {
                    (Some(s), _, _) => s.clone(),
                    (None, Some(_), _) => "deleted".into(),
                    (None, None, Some(_)) => "failed".into(),
                    (None, None, None) => run.reason.clone(),
                },
                job_id: run.job_id,
                at: to_datetime(run.at),
                tick_at: run.tick_at.map(to_datetime),
                reason: run.reason,
                error: run.error,
            })
            .collect();
        let code = match (&row.code_hash, &row.code_def) {
            (Some(hash), Some(def)) if *hash != row.def_hash => serde_json::from_str(def).ok(),
            _ => None,
        };
        let in_code =
            row.code_hash.is_some() || self.shared.recurring.code_def(&row.name).is_some();
        Ok(Schedule {
            id: row.id,
            label: kind
                .as_ref()
                .map(|k| k.display_label().to_owned())
                .unwrap_or_else(|| row.kind.clone()),
            kind_known: kind.is_some(),
            name: row.name,
            job: row.kind,
            cron: row.cron,
            timezone: row.timezone,
            description,
            args,
            paused: row.paused,
            missed,
            next_runs,
            last_runs,
            source: row.source,
            in_code,
            code,
            last_tick_at: row.last_tick_at.map(to_datetime),
            created_at: to_datetime(row.created_at),
            updated_at: to_datetime(row.updated_at),
            updated_by: row.updated_by,
        })
    }
}

/// Starts the task that fires ticks (at `Worker::start`).
pub(crate) fn spawn(shared: &std::sync::Arc<crate::runtime::Shared>) {
    let task = tokio::spawn(crate::runtime::recurring::run(shared.clone()));
    *shared
        .recurring
        .task
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(task);
}

/// Waits for the firing task to stop (it stops when shutdown begins).
pub(crate) async fn stopped(shared: &crate::runtime::Shared) {
    let task = shared
        .recurring
        .task
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(t) = task {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hashes_ignore_key_order_but_see_every_field() {
        let a = serde_json::json!({"a": 1, "b": {"y": 2, "x": 3}});
        let b = serde_json::json!({"b": {"x": 3, "y": 2}, "a": 1});
        let h = |args: &Value, m| def_hash(None, "K", "0 * * * *", "UTC", args, m);
        assert_eq!(h(&a, Missed::Skip), h(&b, Missed::Skip));
        assert_ne!(h(&a, Missed::Skip), h(&a, Missed::RunOnce));
        assert_ne!(
            h(&a, Missed::Skip),
            def_hash(None, "K", "0 * * * *", "Europe/Paris", &a, Missed::Skip)
        );
    }

    #[test]
    fn names_and_definitions_are_checked_at_registration() {
        let ok = Recurring::new("n", "0 3 * * *", "K", &serde_json::json!({}));
        assert!(ok.check().is_ok());
        let field = |r: Recurring| match r.check() {
            Err(Error::InvalidArgs { field, .. }) => field.unwrap_or_default(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(ok.clone().timezone("Nowhere/City")), "timezone");
        assert_eq!(
            field(Recurring::new("n", "0 3 * *", "K", &serde_json::json!({}))),
            "cron"
        );
        assert_eq!(
            field(Recurring::new(
                " ",
                "0 3 * * *",
                "K",
                &serde_json::json!({})
            )),
            "name"
        );
        assert_eq!("run_once".parse::<Missed>().unwrap(), Missed::RunOnce);
        assert!("sometimes".parse::<Missed>().is_err());
    }
}
