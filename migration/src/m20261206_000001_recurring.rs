//! Recurring schedules: a job kind run on a cron expression in a time zone, with fixed
//! arguments, and the runs each schedule made (the unique key that makes a tick fire once).
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000001_recurring"
    }
}

#[derive(DeriveIden)]
enum NightshiftRecurring {
    Table,
    Id,
    Name,
    Kind,
    Cron,
    Timezone,
    Args,
    Missed,
    Paused,
    NextRunAt,
    LastTickAt,
    Source,
    DefHash,
    CodeHash,
    CodeDef,
    CreatedAt,
    UpdatedAt,
    UpdatedBy,
}

#[derive(DeriveIden)]
enum NightshiftRecurringRuns {
    Table,
    Id,
    RecurringId,
    JobId,
    TickAt,
    Reason,
    Error,
    At,
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
        use NightshiftRecurring as R;
        manager
            .create_table(
                Table::create()
                    .table(R::Table)
                    .if_not_exists()
                    .col(id_col(R::Id))
                    .col(ColumnDef::new(R::Name).string().not_null().unique_key())
                    .col(ColumnDef::new(R::Kind).string().not_null())
                    .col(ColumnDef::new(R::Cron).string().not_null())
                    .col(ColumnDef::new(R::Timezone).string().not_null())
                    .col(ColumnDef::new(R::Args).text().not_null())
                    .col(
                        ColumnDef::new(R::Missed)
                            .string()
                            .not_null()
                            .default("skip"),
                    )
                    .col(
                        ColumnDef::new(R::Paused)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(R::NextRunAt).big_integer())
                    .col(ColumnDef::new(R::LastTickAt).big_integer())
                    .col(ColumnDef::new(R::Source).string().not_null())
                    .col(ColumnDef::new(R::DefHash).string().not_null())
                    .col(ColumnDef::new(R::CodeHash).string())
                    .col(ColumnDef::new(R::CodeDef).text())
                    .col(ColumnDef::new(R::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(R::UpdatedAt).big_integer().not_null())
                    .col(ColumnDef::new(R::UpdatedBy).string())
                    .to_owned(),
            )
            .await?;
        // The runtime looks for the earliest tick due.
        manager
            .create_index(
                Index::create()
                    .name("nightshift_recurring_next_run_at")
                    .table(R::Table)
                    .col(R::NextRunAt)
                    .to_owned(),
            )
            .await?;

        use NightshiftRecurringRuns as U;
        manager
            .create_table(
                Table::create()
                    .table(U::Table)
                    .if_not_exists()
                    .col(id_col(U::Id))
                    .col(ColumnDef::new(U::RecurringId).big_integer().not_null())
                    .col(ColumnDef::new(U::JobId).big_integer())
                    .col(ColumnDef::new(U::TickAt).big_integer())
                    .col(ColumnDef::new(U::Reason).string().not_null())
                    .col(ColumnDef::new(U::Error).text())
                    .col(ColumnDef::new(U::At).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        // One run per schedule and tick, whichever node fires it ("run now" has no tick).
        manager
            .create_index(
                Index::create()
                    .name("nightshift_recurring_runs_tick")
                    .table(U::Table)
                    .col(U::RecurringId)
                    .col(U::TickAt)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The page shows each schedule's latest runs.
        manager
            .create_index(
                Index::create()
                    .name("nightshift_recurring_runs_recurring_id")
                    .table(U::Table)
                    .col(U::RecurringId)
                    .col(U::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(NightshiftRecurringRuns::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(NightshiftRecurring::Table).to_owned())
            .await
    }
}
