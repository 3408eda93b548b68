//! A recurring schedule: a job kind run on a cron expression in a time zone, with fixed
//! arguments (see [`crate::recurring`]).
use sea_orm::entity::prelude::*;

/// A row of `nightshift_recurring`. Times are milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_recurring")]
pub struct Model {
    /// Its id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Its unique name (code schedules are matched to their row by it).
    #[sea_orm(unique)]
    pub name: String,
    /// The kind of the jobs it creates.
    pub kind: String,
    /// The cron expression (5 fields, or 6 with seconds first).
    pub cron: String,
    /// The IANA time zone the expression is read in (`Europe/Paris`, `UTC`).
    pub timezone: String,
    /// The jobs' arguments as JSON, secret fields encrypted like a job's: never shown without
    /// redaction.
    #[sea_orm(column_type = "Text")]
    pub args: String,
    /// What happens to ticks missed while no node ran: `skip` or `run_once`.
    pub missed: String,
    /// A paused schedule fires nothing.
    pub paused: bool,
    /// The next tick to fire; `None` when the expression has no further time.
    pub next_run_at: Option<i64>,
    /// The last tick that fired (or was skipped as missed).
    pub last_tick_at: Option<i64>,
    /// `code` (defined by the application, unchanged by operators) or `operator`.
    pub source: String,
    /// A hash of the definition it has now (kind, cron, time zone, arguments, missed policy).
    pub def_hash: String,
    /// The same hash of the definition in the application's code, if code defines it.
    pub code_hash: Option<String>,
    /// The code's definition as shown (JSON, secret arguments masked), if code defines it.
    #[sea_orm(column_type = "Text", nullable)]
    pub code_def: Option<String>,
    /// When it was created.
    pub created_at: i64,
    /// When its definition or state last changed.
    pub updated_at: i64,
    /// Who changed it last (an operator's name, or `code`).
    pub updated_by: Option<String>,
}

/// Relations to other tables: none declared (joins are written in the queries).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
