//! One run of a recurring schedule: the tick it was for and the job it created. A schedule has
//! at most one run per tick (a unique index), whichever node fires it.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_recurring_runs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_recurring_runs")]
pub struct Model {
    /// Its id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The schedule (`nightshift_recurring.id`).
    pub recurring_id: i64,
    /// The job it created (`nightshift_jobs.id`); `None` if none could be created.
    pub job_id: Option<i64>,
    /// The tick it was for, in milliseconds since the Unix epoch; `None` for "run now".
    pub tick_at: Option<i64>,
    /// `tick` (on time), `missed` (the run-once catch-up of missed ticks) or `manual`.
    pub reason: String,
    /// Why no job could be created (e.g. arguments the kind no longer accepts).
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    /// When it was made, in milliseconds since the Unix epoch (the database's clock).
    pub at: i64,
}

/// Relations to other tables: none declared (joins are written in the queries).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
