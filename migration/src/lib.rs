//! Database migrations for Nightshift: one file per migration, never edited once released.
//!
//! The same schema serves SQLite and PostgreSQL. Every time is stored as milliseconds since the
//! Unix epoch in a `BIGINT`, so ordering and comparisons behave the same on both databases.
pub use sea_orm_migration::prelude::*;

mod m20261129_000001_create_jobs;
mod m20261129_000002_create_operators;
mod m20261129_000003_add_job_search;
mod m20261129_000004_engine_v2;
mod m20261129_000005_claim_index;
mod m20261206_000001_recurring;
mod m20261207_000001_unique_jobs;
mod m20261208_000001_queues;
mod m20261230_000001_stats_histograms;
mod m20261230_000002_search_index;
mod m20261230_000003_retention;
pub mod search_text;

/// Applies every Nightshift migration in order.
///
/// ```no_run
/// # async fn demo(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), sea_orm_migration::DbErr> {
/// use nightshift_migration::{Migrator, MigratorTrait};
/// Migrator::up(db, None).await?;
/// # Ok(()) }
/// ```
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_create_jobs::Migration),
            Box::new(m20261129_000002_create_operators::Migration),
            Box::new(m20261129_000003_add_job_search::Migration),
            Box::new(m20261129_000004_engine_v2::Migration),
            Box::new(m20261129_000005_claim_index::Migration),
            Box::new(m20261206_000001_recurring::Migration),
            Box::new(m20261207_000001_unique_jobs::Migration),
            Box::new(m20261208_000001_queues::Migration),
            Box::new(m20261230_000001_stats_histograms::Migration),
            Box::new(m20261230_000003_retention::Migration),
            Box::new(m20261230_000002_search_index::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "nightshift_migrations".into_iden()
    }
}
