//! A job's results table: one row per reported row, cells as JSON.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_job_results`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_job_results")]
pub struct Model {
    /// Its id, increasing: the order the rows were reported in.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The job (`nightshift_jobs.id`).
    pub job_id: i64,
    /// The attempt that reported the row.
    pub attempt: i32,
    /// `[{"value": "…", "error": null | "…"}, …]`
    #[sea_orm(column_type = "Text")]
    pub cells: String,
    /// Whether any cell has an error: such rows count in the job's `error_rows`.
    pub has_error: bool,
}

/// Relations to other tables: none declared (joins are written in the queries).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
