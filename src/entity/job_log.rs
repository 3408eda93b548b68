//! A job's log: one row per line, appended, never rewritten.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_job_logs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_job_logs")]
pub struct Model {
    /// Its id, increasing: the order of the lines, and the cursor live logs resume from.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The job (`nightshift_jobs.id`).
    pub job_id: i64,
    /// The attempt that wrote the line.
    pub attempt: i32,
    /// When the line was written, in milliseconds since the Unix epoch.
    pub at: i64,
    /// The text of the line.
    #[sea_orm(column_type = "Text")]
    pub line: String,
}

/// Relations to other tables: none declared (joins are written in the queries).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
