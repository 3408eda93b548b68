//! Engine v2: log lines and result rows carry the attempt that wrote them (so a stale attempt's
//! writes can be told apart and each attempt's results shown on their own), a job counts the
//! result rows it stored and dropped, and a node records what the Nodes page shows and what
//! the same-host liveness check needs (plain host name, boot id, version).
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000004_engine_v2"
    }
}

#[derive(DeriveIden)]
enum NightshiftJobLogs {
    Table,
    Attempt,
}

#[derive(DeriveIden)]
enum NightshiftJobResults {
    Table,
    Attempt,
    JobId,
}

#[derive(DeriveIden)]
enum NightshiftJobs {
    Table,
    ResultRows,
    ResultsDropped,
}

#[derive(DeriveIden)]
enum NightshiftNodes {
    Table,
    Host,
    BootId,
    Version,
}

/// SQLite takes one column per `ALTER TABLE`: one statement each.
async fn add(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    col: &mut ColumnDef,
) -> Result<(), DbErr> {
    manager
        .alter_table(Table::alter().table(table).add_column(col).to_owned())
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ColumnDef as C;
        add(
            manager,
            NightshiftJobLogs::Table,
            C::new(NightshiftJobLogs::Attempt)
                .integer()
                .not_null()
                .default(0),
        )
        .await?;
        add(
            manager,
            NightshiftJobResults::Table,
            C::new(NightshiftJobResults::Attempt)
                .integer()
                .not_null()
                .default(0),
        )
        .await?;
        add(
            manager,
            NightshiftJobs::Table,
            C::new(NightshiftJobs::ResultRows)
                .big_integer()
                .not_null()
                .default(0),
        )
        .await?;
        add(
            manager,
            NightshiftJobs::Table,
            C::new(NightshiftJobs::ResultsDropped)
                .big_integer()
                .not_null()
                .default(0),
        )
        .await?;
        for col in [
            NightshiftNodes::Host,
            NightshiftNodes::BootId,
            NightshiftNodes::Version,
        ] {
            add(
                manager,
                NightshiftNodes::Table,
                C::new(col).string().not_null().default(""),
            )
            .await?;
        }
        // Results are read per job and attempt (the latest attempt's rows on the job page).
        manager
            .create_index(
                Index::create()
                    .name("idx_nightshift_job_results_job_attempt")
                    .table(NightshiftJobResults::Table)
                    .col(NightshiftJobResults::JobId)
                    .col(NightshiftJobResults::Attempt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_nightshift_job_results_job_attempt")
                    .table(NightshiftJobResults::Table)
                    .to_owned(),
            )
            .await?;
        let drops: Vec<(DynIden, DynIden)> = vec![
            (
                NightshiftJobLogs::Table.into_iden(),
                NightshiftJobLogs::Attempt.into_iden(),
            ),
            (
                NightshiftJobResults::Table.into_iden(),
                NightshiftJobResults::Attempt.into_iden(),
            ),
            (
                NightshiftJobs::Table.into_iden(),
                NightshiftJobs::ResultRows.into_iden(),
            ),
            (
                NightshiftJobs::Table.into_iden(),
                NightshiftJobs::ResultsDropped.into_iden(),
            ),
            (
                NightshiftNodes::Table.into_iden(),
                NightshiftNodes::Host.into_iden(),
            ),
            (
                NightshiftNodes::Table.into_iden(),
                NightshiftNodes::BootId.into_iden(),
            ),
            (
                NightshiftNodes::Table.into_iden(),
                NightshiftNodes::Version.into_iden(),
            ),
        ];
        for (table, col) in drops {
            manager
                .alter_table(Table::alter().table(table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}
