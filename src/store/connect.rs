//! Opening the database: SQLite tuned for a job queue, or PostgreSQL; migrations applied.
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnAcquireErr, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend,
    DbErr, RuntimeErr,
};

use crate::error::{Error, Result};

/// Connects to `url` (`sqlite://…` or `postgres://…`) and applies pending migrations.
///
/// SQLite gets WAL (readers never wait for the writer), `synchronous=NORMAL` (durable against a
/// process crash), a 5 s busy timeout, a page cache of up to 64 MiB (claims in priority order
/// visit pages all over the table; the default 2 MiB sent most of those reads to the OS), and
/// a single pooled connection: one writer, so this process never fights itself for the write
/// lock.
///
/// A database that cannot be reached fails here at once, naming the cause (connection refused,
/// unknown host, wrong password) and where it tried — not after a pool's long timeout.
pub async fn connect(url: &str) -> Result<DatabaseConnection> {
    if !url.starts_with("sqlite:") {
        probe(url).await?;
    }
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(5))
        // During an outage a request waits this long for a connection, then gets a plain
        // "database unavailable" rather than hanging.
        .acquire_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        // One writer: a caller's transaction holding it makes other writes wait, so the wait is
        // short and then explained (`Error::ConnectionHeld`) rather than endless.
        opts.max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .idle_timeout(None::<Duration>)
            .max_lifetime(None::<Duration>)
            .after_connect(|conn| {
                Box::pin(async move {
                    conn.execute_unprepared(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
                         PRAGMA cache_size = -65536;",
                    )
                    .await?;
                    Ok(())
                })
            });
    } else {
        opts.max_connections(10)
            .min_connections(1)
            .map_sqlx_postgres_opts(|o| o.options([PG_PLANS, PG_NO_JIT]));
    }
    let db = Database::connect(opts).await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        // after_connect already ran; ask once more so a failure is reported here, not later.
        db.execute_unprepared("PRAGMA journal_mode = WAL").await?;
    }
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// Every PostgreSQL connection of the engine plans each statement for its parameters and the
/// table as it is now. Left to itself, PostgreSQL switches a prepared statement to a generic plan
/// after five runs and keeps it: a plan made while the queue was short (a nested loop over every
/// waiting job) then served a claim 260 ms at 100,000 waiting instead of 0.5 ms.
/// Set in each connection's start-up packet, so every connection of every pool gets it.
const PG_PLANS: (&str, &str) = ("plan_cache_mode", "force_custom_plan");

/// And never compiles one to machine code: the engine's statements touch a handful of rows, but
/// a claim over several queues pins its plan with `enable_sort = off`, whose penalty cost
/// crosses `jit_above_cost` — JIT then took 160 ms of a 0.5 ms claim, every claim.
const PG_NO_JIT: (&str, &str) = ("jit", "off");

/// One direct connection before the pool is built, so a bad address or password is reported
/// with its real cause and within seconds.
async fn probe(url: &str) -> Result<()> {
    use sea_orm::sqlx::ConnectOptions as _;
    use sea_orm::sqlx::postgres::PgConnectOptions;
    let where_ = where_of(url);
    let opts: PgConnectOptions = url.parse().map_err(|e| Error::Unreachable {
        place: where_.clone(),
        cause: format!("the URL is not valid ({e}); expected postgres://user@host:port/database"),
    })?;
    let attempt = tokio::time::timeout(Duration::from_secs(5), opts.connect()).await;
    let cause = match attempt {
        Ok(Ok(conn)) => {
            use sea_orm::sqlx::Connection as _;
            let _ = conn.close().await;
            return Ok(());
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 5 s".to_owned(),
    };
    Err(Error::Unreachable {
        place: where_,
        cause,
    })
}

/// `host:port/database` of a URL, without the user or password.
fn where_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('?').next().unwrap_or(rest).to_owned()
}

/// Whether `e` says the database cannot be reached (down, refused, pool exhausted), as opposed
/// to a statement that failed.
pub fn is_unavailable(e: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match e {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed) => {
            true
        }
        DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => {
            matches!(
                s.as_ref(),
                Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed
            ) || is_disk_or_admin(s)
        }
        _ => false,
    }
}

/// Errors that are the database's state, not the statement: shut down, disk full, read-only.
fn is_disk_or_admin(e: &sea_orm::sqlx::Error) -> bool {
    let sea_orm::sqlx::Error::Database(d) = e else {
        return false;
    };
    let code = d.code().unwrap_or_default();
    // PostgreSQL: 57P01-03 admin shutdown / crash / cannot connect now, 53100 disk full,
    // 08xxx connection exceptions. SQLite: 13 SQLITE_FULL, 8 READONLY, 10 IOERR, 14 CANTOPEN.
    code.starts_with("57P") || code.starts_with("08") || code == "53100" || {
        let primary = code.parse::<i32>().map(|c| c & 0xff).unwrap_or(-1);
        matches!(primary, 8 | 10 | 13 | 14)
    }
}

#[cfg(test)]
mod tests {
    use super::where_of;

    #[test]
    fn where_hides_credentials() {
        assert_eq!(
            where_of("postgres://u:secret@db.example:5433/jobs?sslmode=disable"),
            "db.example:5433/jobs"
        );
        assert_eq!(where_of("postgres://127.0.0.1:1/x"), "127.0.0.1:1/x");
    }
}
