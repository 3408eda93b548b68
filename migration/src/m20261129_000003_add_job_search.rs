//! A searchable copy of each job's arguments with secret fields masked, so that searching the
//! arguments can never reveal a secret.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000003_add_job_search"
    }
}

#[derive(DeriveIden)]
enum NightshiftJobs {
    Table,
    Search,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(NightshiftJobs::Table)
                    .add_column(
                        ColumnDef::new(NightshiftJobs::Search)
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(NightshiftJobs::Table)
                    .drop_column(NightshiftJobs::Search)
                    .to_owned(),
            )
            .await
    }
}
