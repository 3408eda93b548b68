//! Opening the database: SQLite tuned for a job queue, or PostgreSQL; migrations applied.
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};

use crate::error::Result;

/// Connects to `url` (`sqlite://…` or `postgres://…`) and applies pending migrations.
///
/// SQLite gets WAL (readers never wait for the writer), `synchronous=NORMAL` (durable against a
/// process crash), a 5 s busy timeout, and a single pooled connection: one writer, so this
/// process never fights itself for the write lock.
pub async fn connect(url: &str) -> Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(60));
    if url.starts_with("sqlite:") {
        opts.max_connections(1)
            .min_connections(1)
            .idle_timeout(None::<Duration>)
            .max_lifetime(None::<Duration>)
            .after_connect(|conn| {
                Box::pin(async move {
                    conn.execute_unprepared(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    Ok(())
                })
            });
    } else {
        opts.max_connections(10).min_connections(1);
    }
    let db = Database::connect(opts).await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        // after_connect already ran; ask once more so a failure is reported here, not later.
        db.execute_unprepared("PRAGMA journal_mode = WAL").await?;
    }
    Migrator::up(&db, None).await?;
    Ok(db)
}
