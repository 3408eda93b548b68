//! One attempt at a job: which node ran it, when, and how it ended.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_job_attempts`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_job_attempts")]
pub struct Model {
    /// Its id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The job (`nightshift_jobs.id`).
    pub job_id: i64,
    /// Which attempt of the job it is, from 1.
    pub attempt: i32,
    /// The id of the node that ran it (`nightshift_nodes.id`).
    pub node: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at: i64,
    /// When it ended, in milliseconds since the Unix epoch; `None` while it runs.
    pub finished_at: Option<i64>,
    /// `done`, `error`, `panic`, `timeout`, `error_rows`, `bad_args`, `killed`, `interrupted`, `lost`.
    pub outcome: Option<String>,
    /// The error it ended with, if any.
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
}

/// Relations to other tables: none declared (joins are written in the queries).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
