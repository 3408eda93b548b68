//! Queues and priorities: jobs carry a priority (0–9, larger first) and tags; due jobs wait as
//! `new` in one partial index per claim order (queue, priority, due time), scheduled ones in
//! another by due time; queues can be paused and given a limit across nodes; nodes say which
//! queues they serve; finished jobs are counted per minute, queue and kind.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261208_000001_queues"
    }
}

#[derive(DeriveIden)]
enum NightshiftQueues {
    Table,
    Name,
    Paused,
    PausedBy,
    PausedAt,
    GlobalLimit,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum NightshiftStats {
    Table,
    Minute,
    Queue,
    Kind,
    Done,
    Failed,
    Retried,
    Cancelled,
    RunMs,
}

fn jobs() -> Alias {
    Alias::new("nightshift_jobs")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(jobs())
                    .add_column(
                        ColumnDef::new(Alias::new("priority"))
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(jobs())
                    .add_column(ColumnDef::new(Alias::new("tags")).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("nightshift_nodes"))
                    .add_column(ColumnDef::new(Alias::new("queues")).text().null())
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // Predicates are spelled exactly as the claim and the stager spell them, so both
        // planners match them. `new` jobs are always due: a claim reads the first rows of its
        // queue's range and stops.
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS nightshift_jobs_ready \
             ON nightshift_jobs (queue, priority DESC, run_at, id) WHERE status = 'new'",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS nightshift_jobs_scheduled \
             ON nightshift_jobs (run_at, id) WHERE status = 'scheduled'",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS nightshift_jobs_due")
            .await?;
        use NightshiftQueues as Q;
        manager
            .create_table(
                Table::create()
                    .table(Q::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Q::Name).string().not_null().primary_key())
                    .col(
                        ColumnDef::new(Q::Paused)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(Q::PausedBy).string())
                    .col(ColumnDef::new(Q::PausedAt).big_integer())
                    .col(ColumnDef::new(Q::GlobalLimit).integer())
                    .col(ColumnDef::new(Q::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        use NightshiftStats as S;
        let count = |c: S| ColumnDef::new(c).integer().not_null().default(0).to_owned();
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(S::Minute).big_integer().not_null())
                    .col(ColumnDef::new(S::Queue).string().not_null())
                    .col(ColumnDef::new(S::Kind).string().not_null())
                    .col(count(S::Done))
                    .col(count(S::Failed))
                    .col(count(S::Retried))
                    .col(count(S::Cancelled))
                    .col(ColumnDef::new(S::RunMs).big_integer().not_null().default(0))
                    .primary_key(Index::create().col(S::Minute).col(S::Queue).col(S::Kind))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(NightshiftStats::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(NightshiftQueues::Table).to_owned())
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS nightshift_jobs_due ON nightshift_jobs (run_at, id) \
             WHERE status IN ('new', 'scheduled')",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS nightshift_jobs_scheduled")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS nightshift_jobs_ready")
            .await?;
        for (table, column) in [
            ("nightshift_nodes", "queues"),
            ("nightshift_jobs", "tags"),
            ("nightshift_jobs", "priority"),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
