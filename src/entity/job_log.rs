//! A job's log: one row per line, appended, never rewritten.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_job_logs`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_job_logs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub job_id: i64,
    /// The attempt that wrote the line.
    pub attempt: i32,
    pub at: i64,
    #[sea_orm(column_type = "Text")]
    pub line: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
