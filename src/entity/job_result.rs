//! A job's results table: one row per reported row, cells as JSON.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_job_results`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_job_results")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub job_id: i64,
    /// The attempt that reported the row.
    pub attempt: i32,
    /// `[{"value": "…", "error": null | "…"}, …]`
    #[sea_orm(column_type = "Text")]
    pub cells: String,
    pub has_error: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
