//! Unique jobs: an optional key per job, unique per kind among jobs that wait or run, so a
//! second enqueue of "the import of customer 42" finds the first instead of adding another.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000001_unique_jobs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("nightshift_jobs"))
                    .add_column(ColumnDef::new(Alias::new("unique_key")).string().null())
                    .to_owned(),
            )
            .await?;
        // The predicate is spelled exactly as the insert's conflict target spells it. A job that
        // finished (or was cancelled) frees its key.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS nightshift_jobs_unique \
                 ON nightshift_jobs (kind, unique_key) \
                 WHERE unique_key IS NOT NULL \
                 AND status IN ('new', 'scheduled', 'running', 'aborting')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS nightshift_jobs_unique")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("nightshift_jobs"))
                    .drop_column(Alias::new("unique_key"))
                    .to_owned(),
            )
            .await
    }
}
