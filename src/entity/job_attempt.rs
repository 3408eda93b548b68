//! One attempt at a job: which node ran it, when, and how it ended.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_job_attempts`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_job_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub job_id: i64,
    pub attempt: i32,
    pub node: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// `done`, `error`, `panic`, `timeout`, `error_rows`, `bad_args`, `killed`, `interrupted`, `lost`.
    pub outcome: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
