//! A job: one run of a registered kind with its arguments, state and progress.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_jobs`. Times are milliseconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_jobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub kind: String,
    pub queue: String,
    /// A [`crate::JobStatus`] name.
    pub status: String,
    /// The arguments as JSON, secrets included: never shown without redaction.
    #[sea_orm(column_type = "Text")]
    pub args: String,
    pub progress: i32,
    #[sea_orm(column_type = "Text", nullable)]
    pub progress_text: Option<String>,
    /// The attempt being made (while running) or last made; 0 before the first start.
    pub attempt: i32,
    pub max_attempts: i32,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    /// When the job may next start: its schedule time, its retry time, or its creation.
    pub run_at: i64,
    /// The time an operator or app asked for, if any.
    pub schedule_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The node executing it (while running) or that last executed it.
    pub locked_by: Option<String>,
    pub created_by: Option<String>,
    pub aborted_by: Option<String>,
    pub log_lines: i64,
    pub log_dropped: i64,
    pub error_rows: i32,
    /// Result rows stored for this job (all attempts).
    pub result_rows: i64,
    /// Result rows refused once the cap was reached.
    pub results_dropped: i64,
    /// The arguments with secrets masked: what a text search looks in.
    #[sea_orm(column_type = "Text")]
    pub search: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
