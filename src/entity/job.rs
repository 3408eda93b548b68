//! A job: one run of a registered kind with its arguments, state and progress.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_jobs`. Times are milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_jobs")]
pub struct Model {
    /// Its id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Its kind's name (`JobArgs::KIND`, or the name given to `JobKind::new`).
    pub kind: String,
    /// The queue it was put on.
    pub queue: String,
    /// A [`crate::JobStatus`] name.
    pub status: String,
    /// The arguments as JSON, secrets included: never shown without redaction.
    #[sea_orm(column_type = "Text")]
    pub args: String,
    /// 0 to 100; reset to 0 when an attempt starts, set to 100 when one ends `done`.
    pub progress: i32,
    /// The short status line the handler last set; cleared when an attempt starts.
    #[sea_orm(column_type = "Text", nullable)]
    pub progress_text: Option<String>,
    /// The attempt being made (while running) or last made; 0 before the first start.
    pub attempt: i32,
    /// Attempts allowed in all.
    pub max_attempts: i32,
    /// Why it failed, or why its last attempt failed while a retry waits.
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    /// When the job may next start: its schedule time, its retry time, or its creation.
    pub run_at: i64,
    /// The time an operator or app asked for, if any.
    pub schedule_at: Option<i64>,
    /// When it was inserted.
    pub created_at: i64,
    /// When it last changed: its state, progress, arguments or schedule.
    pub updated_at: i64,
    /// When its latest attempt started; `None` before the first.
    pub started_at: Option<i64>,
    /// When it reached a final state (`done`, `exception`, `cancelled`, `killed`); `None`
    /// until then.
    pub finished_at: Option<i64>,
    /// The node executing it (while running) or that last executed it.
    pub locked_by: Option<String>,
    /// Who created it (an operator's name, or what the app passed to `NewJob::created_by`).
    pub created_by: Option<String>,
    /// Who aborted it (set with `aborting`), if anyone.
    pub aborted_by: Option<String>,
    /// Log lines stored for it in `nightshift_job_logs`.
    pub log_lines: i64,
    /// The oldest log lines deleted to keep the log under its cap.
    pub log_dropped: i64,
    /// Result rows with an error reported by the current attempt (reset when one starts); a
    /// handler that returns `Ok` with any ends `exception`.
    pub error_rows: i32,
    /// Result rows stored for this job (all attempts).
    pub result_rows: i64,
    /// Result rows refused once the cap was reached.
    pub results_dropped: i64,
    /// The index text of the arguments with secrets masked: what a search looks in
    /// (`migration::search_text`; indexed by FTS5 or a GIN index).
    #[sea_orm(column_type = "Text")]
    pub search: String,
    /// The job's uniqueness key, if any: no two jobs of a kind that wait or run share one.
    pub unique_key: Option<String>,
    /// 0 to 9: among due jobs of a queue, a larger priority starts first.
    pub priority: i32,
    /// Short labels (a JSON array of strings) to find it by; `None`: no tags.
    #[sea_orm(column_type = "Text", nullable)]
    pub tags: Option<String>,
}

/// Relations to other tables: none declared (joins are written in the queries).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
