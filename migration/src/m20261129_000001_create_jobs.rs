//! The first schema: jobs, their log lines, result rows and attempts, and the worker nodes.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000001_create_jobs"
    }
}

#[derive(DeriveIden)]
enum NightshiftJobs {
    Table,
    Id,
    Kind,
    Queue,
    Status,
    Args,
    Progress,
    ProgressText,
    Attempt,
    MaxAttempts,
    Error,
    RunAt,
    ScheduleAt,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
    LockedBy,
    CreatedBy,
    AbortedBy,
    LogLines,
    LogDropped,
    ErrorRows,
}

#[derive(DeriveIden)]
enum NightshiftJobLogs {
    Table,
    Id,
    JobId,
    At,
    Line,
}

#[derive(DeriveIden)]
enum NightshiftJobResults {
    Table,
    Id,
    JobId,
    Cells,
    HasError,
}

#[derive(DeriveIden)]
enum NightshiftJobAttempts {
    Table,
    Id,
    JobId,
    Attempt,
    Node,
    StartedAt,
    FinishedAt,
    Outcome,
    Error,
}

#[derive(DeriveIden)]
enum NightshiftNodes {
    Table,
    Id,
    Hostname,
    Pid,
    StartedAt,
    HeartbeatAt,
}

fn id_col<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use NightshiftJobs as J;
        manager
            .create_table(
                Table::create()
                    .table(J::Table)
                    .if_not_exists()
                    .col(id_col(J::Id))
                    .col(ColumnDef::new(J::Kind).string().not_null())
                    .col(ColumnDef::new(J::Queue).string().not_null())
                    .col(ColumnDef::new(J::Status).string().not_null())
                    .col(ColumnDef::new(J::Args).text().not_null())
                    .col(ColumnDef::new(J::Progress).integer().not_null().default(0))
                    .col(ColumnDef::new(J::ProgressText).text())
                    .col(ColumnDef::new(J::Attempt).integer().not_null().default(0))
                    .col(
                        ColumnDef::new(J::MaxAttempts)
                            .integer()
                            .not_null()
                            .default(1),
                    )
                    .col(ColumnDef::new(J::Error).text())
                    .col(ColumnDef::new(J::RunAt).big_integer().not_null())
                    .col(ColumnDef::new(J::ScheduleAt).big_integer())
                    .col(ColumnDef::new(J::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(J::UpdatedAt).big_integer().not_null())
                    .col(ColumnDef::new(J::StartedAt).big_integer())
                    .col(ColumnDef::new(J::FinishedAt).big_integer())
                    .col(ColumnDef::new(J::LockedBy).string())
                    .col(ColumnDef::new(J::CreatedBy).string())
                    .col(ColumnDef::new(J::AbortedBy).string())
                    .col(
                        ColumnDef::new(J::LogLines)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(J::LogDropped)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(J::ErrorRows).integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        // Claims and the scheduler's "next due" look-up walk waiting jobs by time.
        manager
            .create_index(
                Index::create()
                    .name("nightshift_jobs_status_run_at")
                    .table(J::Table)
                    .col(J::Status)
                    .col(J::RunAt)
                    .to_owned(),
            )
            .await?;
        // List tabs are "status, newest first" with keyset pagination on id.
        manager
            .create_index(
                Index::create()
                    .name("nightshift_jobs_status_id")
                    .table(J::Table)
                    .col(J::Status)
                    .col(J::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("nightshift_jobs_kind_id")
                    .table(J::Table)
                    .col(J::Kind)
                    .col(J::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("nightshift_jobs_locked_by")
                    .table(J::Table)
                    .col(J::LockedBy)
                    .to_owned(),
            )
            .await?;

        use NightshiftJobLogs as L;
        manager
            .create_table(
                Table::create()
                    .table(L::Table)
                    .if_not_exists()
                    .col(id_col(L::Id))
                    .col(ColumnDef::new(L::JobId).big_integer().not_null())
                    .col(ColumnDef::new(L::At).big_integer().not_null())
                    .col(ColumnDef::new(L::Line).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("nightshift_job_logs_job_id")
                    .table(L::Table)
                    .col(L::JobId)
                    .col(L::Id)
                    .to_owned(),
            )
            .await?;

        use NightshiftJobResults as R;
        manager
            .create_table(
                Table::create()
                    .table(R::Table)
                    .if_not_exists()
                    .col(id_col(R::Id))
                    .col(ColumnDef::new(R::JobId).big_integer().not_null())
                    .col(ColumnDef::new(R::Cells).text().not_null())
                    .col(
                        ColumnDef::new(R::HasError)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("nightshift_job_results_job_id")
                    .table(R::Table)
                    .col(R::JobId)
                    .col(R::Id)
                    .to_owned(),
            )
            .await?;

        use NightshiftJobAttempts as A;
        manager
            .create_table(
                Table::create()
                    .table(A::Table)
                    .if_not_exists()
                    .col(id_col(A::Id))
                    .col(ColumnDef::new(A::JobId).big_integer().not_null())
                    .col(ColumnDef::new(A::Attempt).integer().not_null())
                    .col(ColumnDef::new(A::Node).string().not_null())
                    .col(ColumnDef::new(A::StartedAt).big_integer().not_null())
                    .col(ColumnDef::new(A::FinishedAt).big_integer())
                    .col(ColumnDef::new(A::Outcome).string())
                    .col(ColumnDef::new(A::Error).text())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("nightshift_job_attempts_job_id")
                    .table(A::Table)
                    .col(A::JobId)
                    .col(A::Attempt)
                    .to_owned(),
            )
            .await?;

        use NightshiftNodes as N;
        manager
            .create_table(
                Table::create()
                    .table(N::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(N::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(N::Hostname).string().not_null())
                    .col(ColumnDef::new(N::Pid).big_integer().not_null())
                    .col(ColumnDef::new(N::StartedAt).big_integer().not_null())
                    .col(ColumnDef::new(N::HeartbeatAt).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(NightshiftNodes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(NightshiftJobAttempts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(NightshiftJobResults::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(NightshiftJobLogs::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(NightshiftJobs::Table).to_owned())
            .await
    }
}
