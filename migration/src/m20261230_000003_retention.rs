//! Retention: the pruner's record (one row: which node pruned last, when, and how many rows of
//! each kind it deleted) and an index of finished jobs by state and finish time, so the pruner
//! finds old jobs without scanning the table (waiting and running jobs are not in it).
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261230_000003_retention"
    }
}

#[derive(DeriveIden)]
enum NightshiftRetention {
    Table,
    Id,
    Node,
    StartedAt,
    FinishedAt,
    Deleted,
    Error,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use NightshiftRetention as R;
        manager
            .create_table(
                Table::create()
                    .table(R::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(R::Id).integer().not_null().primary_key())
                    .col(ColumnDef::new(R::Node).string())
                    .col(ColumnDef::new(R::StartedAt).big_integer())
                    .col(ColumnDef::new(R::FinishedAt).big_integer())
                    .col(ColumnDef::new(R::Deleted).text())
                    .col(ColumnDef::new(R::Error).text())
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // The one row every node's pruner takes its turn on (a compare-and-set of started_at).
        db.execute_unprepared("INSERT INTO nightshift_retention (id) VALUES (1)")
            .await?;
        // `finished_at IS NOT NULL` spelled as the pruner spells it, so SQLite's planner uses it.
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS nightshift_jobs_finished \
             ON nightshift_jobs (status, finished_at) WHERE finished_at IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS nightshift_jobs_finished")
            .await?;
        manager
            .drop_table(Table::drop().table(NightshiftRetention::Table).to_owned())
            .await
    }
}
