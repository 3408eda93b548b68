//! Histograms in the per-minute counts: for each minute, queue and kind, how many finished
//! attempts ran for how long and had waited for how long since they were due (fixed log-scale
//! buckets, one integer column each), and the waits summed. Nodes record the job kinds they
//! handle, so the admin can tell which waiting jobs no node will ever claim.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261230_000001_stats_histograms"
    }
}

/// Buckets per histogram: the library's `insight::histogram::BUCKETS` (15 bounds, 10 ms to
/// 1 h, and the rest).
const BUCKETS: usize = 16;

/// The new columns of `nightshift_stats`: `wait_ms`, `run_b0..`, `wait_b0..`.
fn stat_columns() -> Vec<(String, bool)> {
    let mut cols = vec![("wait_ms".to_owned(), true)];
    for prefix in ["run_b", "wait_b"] {
        cols.extend((0..BUCKETS).map(|i| (format!("{prefix}{i}"), false)));
    }
    cols
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time. A column already there is
        // skipped: on SQLite these statements are not one transaction, and a process killed
        // half-way (the first start of a node, stopped at once) left some added, the migration
        // unrecorded, and every later start failing on "duplicate column".
        for (name, big) in stat_columns() {
            if manager.has_column("nightshift_stats", &name).await? {
                continue;
            }
            let mut col = ColumnDef::new(Alias::new(name));
            if big {
                col.big_integer();
            } else {
                col.integer();
            }
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("nightshift_stats"))
                        .add_column(col.not_null().default(0))
                        .to_owned(),
                )
                .await?;
        }
        if manager.has_column("nightshift_nodes", "kinds").await? {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("nightshift_nodes"))
                    .add_column(ColumnDef::new(Alias::new("kinds")).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("nightshift_nodes"))
                    .drop_column(Alias::new("kinds"))
                    .to_owned(),
            )
            .await?;
        for (name, _) in stat_columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("nightshift_stats"))
                        .drop_column(Alias::new(name))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
