//! A partial index in claim order over waiting jobs only: claims and "when is the next job
//! due" read it from the front, so their cost no longer grows with the number of waiting jobs
//! (at 100,000 waiting, the old plan sorted every one of them for each claim).
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000005_claim_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The predicate is spelled exactly as the claim spells it, so both planners match it.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS nightshift_jobs_due ON nightshift_jobs (run_at, id) \
                 WHERE status IN ('new', 'scheduled')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS nightshift_jobs_due")
            .await?;
        Ok(())
    }
}
