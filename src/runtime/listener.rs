//! Wake-ups across processes: a job inserted, or an abort asked, by another process (an admin
//! that only enqueues, a web app inserting inside its own transaction, another node) reaches
//! this node at once instead of at its next poll or maintenance round.
//!
//! - **PostgreSQL**: every insert statement path sends one `NOTIFY` per call (never per row) on
//!   [`NOTIFY_JOBS`], in the inserting transaction, so it is delivered only on commit; an abort
//!   sends [`NOTIFY_ABORT`] with the job id. This task `LISTEN`s on a connection of its own: a
//!   job notification wakes the scheduler; an abort of a job running here stops it the way
//!   maintenance would. A lost connection is re-established with backoff, and the scheduler is
//!   woken (and aborts looked up) once after every (re)connection, since notifications sent
//!   meanwhile are lost.
//! - **SQLite**: a connection of its own reads `PRAGMA data_version` every [`SQLITE_POLL`]; the
//!   value changes when another connection commits. Each read is one autocommit statement run to
//!   its end, so no read transaction stays open and WAL checkpoints are never held back. When the
//!   worker's own pool has a single connection (as [`crate::store::connect`] builds it), that
//!   connection's `data_version` is read too, on a change only: it moves for commits by *other*
//!   connections only, so the engine's own writes (claims, log flushes, completions) wake
//!   nobody.
//!
//! Polling (`poll_interval`, the heartbeat round) stays as the fallback for every case this
//! misses: a connection that cannot `LISTEN` (a transaction-pooling proxy), a listening
//! connection that died without the socket saying so, an in-memory SQLite database.
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DbBackend;
use sea_orm::sqlx::{self, ConnectOptions as _, Connection as _};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::registry::StopReason;
use crate::store::{NOTIFY_ABORT, NOTIFY_JOBS, NOTIFY_QUEUES};

/// How often SQLite's `data_version` is read.
pub(crate) const SQLITE_POLL: Duration = Duration::from_millis(20);

/// The first wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until `stop` (the same token as maintenance: aborts asked during the shutdown drain
/// still reach the jobs draining here).
pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    match shared.store.backend() {
        DbBackend::Postgres => postgres(&shared, &stop).await,
        DbBackend::Sqlite => sqlite(&shared, &stop).await,
        _ => {}
    }
}

/// After a (re)connection: notifications sent while nobody listened are lost, so look once.
async fn caught_up(shared: &Shared) {
    shared.wake.notify_one();
    stop_aborted(shared).await;
}

/// Stops the jobs running here that are marked `aborting` (asked on another node).
async fn stop_aborted(shared: &Shared) {
    if shared.registry.len() == 0 {
        return;
    }
    match shared.store.aborting_on(&shared.node.id).await {
        Ok(jobs) => {
            let now = shared.clock.now();
            for (job_id, by) in jobs {
                let by = by.unwrap_or_else(|| "an operator".into());
                shared
                    .registry
                    .stop(job_id, StopReason::Abort { by, at: now });
            }
        }
        // Maintenance looks again at its next round.
        Err(e) => tracing::debug!("looking up aborted jobs failed: {e}"),
    }
}

/// Doubling waits between reconnection attempts, with jitter.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(MIN_BACKOFF)
    }

    fn reset(&mut self) {
        self.0 = MIN_BACKOFF;
    }

    /// Waits the current delay (or until `stop`); returns false when stopped.
    async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.0.mul_f64(0.75 + fastrand::f64() / 2.0);
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = stop.cancelled() => false,
        }
    }
}

async fn postgres(shared: &Shared, stop: &CancellationToken) {
    use sqlx::postgres::{PgListener, PgPoolOptions};
    let options = shared
        .store
        .connection()
        .get_postgres_connection_pool()
        .connect_options();
    let mut backoff = Backoff::new();
    let mut failing = false;
    loop {
        // A pool of one connection of our own, so the listener never holds one of the worker's.
        let connect = async {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .max_lifetime(None)
                .idle_timeout(None)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with((*options).clone())
                .await?;
            let mut listener = PgListener::connect_with(&pool).await?;
            // We reconnect ourselves, to know when to catch up.
            listener.eager_reconnect(false);
            listener
                .listen_all([NOTIFY_JOBS, NOTIFY_ABORT, NOTIFY_QUEUES])
                .await?;
            Ok::<_, sqlx::Error>((pool, listener))
        };
        let connected = tokio::select! {
            c = connect => c,
            _ = stop.cancelled() => return,
        };
        let (pool, mut listener) = match connected {
            Ok(c) => c,
            Err(e) => {
                if !failing {
                    tracing::warn!("cannot listen for job notifications ({e}); retrying");
                    failing = true;
                } else {
                    tracing::debug!("cannot listen for job notifications: {e}");
                }
                if !backoff.wait(stop).await {
                    return;
                }
                continue;
            }
        };
        if failing {
            tracing::info!("listening for job notifications again");
        }
        backoff.reset();
        caught_up(shared).await;
        let lost = loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                _ = stop.cancelled() => break None,
            };
            match next {
                Ok(Some(n)) if n.channel() == NOTIFY_JOBS => shared.wake.notify_one(),
                // Read the pauses again and claim (a resumed queue's jobs may wait).
                Ok(Some(n)) if n.channel() == NOTIFY_QUEUES => shared.queues_changed(),
                Ok(Some(n)) if n.channel() == NOTIFY_ABORT => {
                    // Only the node running it has anything to do.
                    if n.payload()
                        .parse()
                        .is_ok_and(|id| shared.registry.is_running(id))
                    {
                        stop_aborted(shared).await;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break Some("the connection was lost".to_owned()),
                Err(e) => break Some(e.to_string()),
            }
        };
        drop(listener);
        // Returns the connection (after `UNLISTEN *`) and closes it; never wait long for that.
        let _ = tokio::time::timeout(Duration::from_secs(1), pool.close()).await;
        let Some(why) = lost else { return };
        tracing::warn!("stopped listening for job notifications ({why}); reconnecting");
        failing = true;
        if !backoff.wait(stop).await {
            return;
        }
    }
}

async fn sqlite(shared: &Shared, stop: &CancellationToken) {
    let pool = shared.store.connection().get_sqlite_connection_pool();
    // Read-only: it never writes, and never takes the write lock.
    let options = (*pool.connect_options()).clone().read_only(true);
    let name = options.get_filename().to_string_lossy();
    if name == ":memory:" || name.starts_with("file:sqlx-in-memory-") {
        // Nothing else can write to it.
        return;
    }
    // A single pooled connection makes the engine's writes (claims, log flushes, completions):
    // its own data_version moves only for the commits of *other* connections (other processes,
    // and this process's heartbeat), so the engine's own writes wake nobody. With more, any
    // commit wakes the scheduler.
    let single = pool.options().get_max_connections() == 1;
    let mut backoff = Backoff::new();
    let mut failing = false;
    loop {
        let connected = tokio::select! {
            c = options.connect() => c,
            _ = stop.cancelled() => return,
        };
        let mut conn = match connected {
            Ok(c) => c,
            Err(e) => {
                if !failing {
                    tracing::warn!("cannot watch the database for changes ({e}); retrying");
                    failing = true;
                }
                if !backoff.wait(stop).await {
                    return;
                }
                continue;
            }
        };
        // Other processes' commits as the worker's connection sees them; `None`: unknown.
        let mut seen_by_pool = if single {
            data_version(pool).await.ok()
        } else {
            None
        };
        let mut seen = match data_version(&mut conn).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("cannot watch the database for changes ({e}); retrying");
                failing = true;
                let _ = conn.close().await;
                if !backoff.wait(stop).await {
                    return;
                }
                continue;
            }
        };
        if failing {
            tracing::info!("watching the database for changes again");
        }
        backoff.reset();
        caught_up(shared).await;
        let mut tick = tokio::time::interval(SQLITE_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let error = loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break None,
            }
            match data_version(&mut conn).await {
                Ok(v) if v == seen => continue,
                Ok(v) => seen = v,
                Err(e) => break Some(e),
            }
            if single {
                match data_version(pool).await {
                    // Only our own connection committed: engine writes wake nobody, unless a
                    // caller's transaction may just have committed a job (`insert_in`).
                    Ok(v) if Some(v) == seen_by_pool => {
                        let until = shared
                            .own_commits_wake_until
                            .load(std::sync::atomic::Ordering::Relaxed);
                        if crate::clock::now_ms() >= until {
                            continue;
                        }
                    }
                    Ok(v) => seen_by_pool = Some(v),
                    // Wake anyway; the next change sets a new baseline.
                    Err(_) => seen_by_pool = None,
                }
            }
            shared.wake.notify_one();
            stop_aborted(shared).await;
        };
        let _ = conn.close().await;
        let Some(e) = error else { return };
        tracing::warn!("stopped watching the database for changes ({e}); reconnecting");
        failing = true;
        if !backoff.wait(stop).await {
            return;
        }
    }
}

/// `PRAGMA data_version`: changes when another connection commits. Read with `fetch_all`, run
/// to its end: the statement's implicit read transaction ends with it.
async fn data_version<'e, E>(conn: E) -> Result<i64, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let rows: Vec<i64> = sqlx::query_scalar("PRAGMA data_version")
        .fetch_all(conn)
        .await?;
    rows.first()
        .copied()
        .ok_or_else(|| sqlx::Error::Protocol("PRAGMA data_version returned no row".into()))
}
