//! Test harness: a fresh database per test (a SQLite file, or a PostgreSQL database), the
//! `both_databases!` macro that runs one test on each, and a worker with fast timings and test
//! job kinds.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nightshift::{Backoff, JobContext, JobKind, ResultCell, Worker, WorkerBuilder};
use schemars::JsonSchema;
use sea_orm::{ConnectionTrait, Database, DbErr};
use serde::{Deserialize, Serialize};

/// A database for one test, SQLite or PostgreSQL, that lives as long as the value: the SQLite
/// file's directory is removed and the PostgreSQL database dropped when it is dropped, whether
/// the test passed or panicked.
pub struct TestDb {
    pub url: String,
    _keep: Keep,
}

/// What owns the database behind a [`TestDb`]: held only to be dropped with it.
enum Keep {
    Sqlite { _dir: tempfile::TempDir },
    Postgres { _db: PgDb },
}

impl TestDb {
    /// A fresh SQLite file in a temporary directory.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display());
        TestDb {
            url,
            _keep: Keep::Sqlite { _dir: dir },
        }
    }

    /// A fresh PostgreSQL database, or `None` (the test is skipped, and says so) when no server
    /// answers, unless `NIGHTSHIFT_REQUIRE_POSTGRES=1`.
    pub async fn postgres() -> Option<TestDb> {
        let pg = PgDb::create().await?;
        Some(TestDb {
            url: pg.url.clone(),
            _keep: Keep::Postgres { _db: pg },
        })
    }
}

/// A fresh SQLite file (for tests that only run on SQLite).
pub fn temp_db() -> TestDb {
    TestDb::sqlite()
}

/// Runs an engine test on both databases: each
///
/// ```ignore
/// both_databases! {
///     /// What it checks.
///     async fn name(db: TestDb) { /* uses `db.url`, e.g. through `builder(&db)` */ }
/// }
/// ```
///
/// becomes a module `name` with two tests, `name::sqlite` (a fresh SQLite file) and
/// `name::postgres` (a fresh PostgreSQL database, dropped afterwards; skipped with a notice when
/// no server answers, unless `NIGHTSHIFT_REQUIRE_POSTGRES=1`). The body sees everything the
/// enclosing file imports. Attributes (e.g. `#[ignore]`) apply to both tests. rustfmt does not
/// format inside the macro: keep the body formatted as it would be outside.
macro_rules! both_databases {
    ($(
        $(#[$attr:meta])*
        async fn $name:ident($db:ident: TestDb $(,)?) $body:block
    )*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($db: $crate::helpers::TestDb) $body

            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::helpers::TestDb::sqlite()).await;
            }

            $(#[$attr])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::helpers::TestDb::postgres().await {
                    run(db).await;
                }
            }
        }
    )*};
}
pub(crate) use both_databases;

/// The PostgreSQL server the tests use (CI starts it); override with `NIGHTSHIFT_TEST_POSTGRES`.
pub fn pg_admin_url() -> String {
    std::env::var("NIGHTSHIFT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn pg_admin() -> Result<sea_orm::DatabaseConnection, DbErr> {
    let mut opts = sea_orm::ConnectOptions::new(pg_admin_url());
    opts.connect_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(3))
        .max_connections(1)
        .sqlx_logging(false);
    Database::connect(opts).await
}

/// A fresh PostgreSQL database for one test. It is dropped by [`PgDb::drop_db`], or else when
/// the value is dropped (also when the test panics).
pub struct PgDb {
    pub name: String,
    pub url: String,
    dropped: bool,
}

impl PgDb {
    /// A fresh database, or `None` (the test is skipped, and says so) when no server answers,
    /// unless `NIGHTSHIFT_REQUIRE_POSTGRES=1` (set by `.ci/run`).
    pub async fn create() -> Option<PgDb> {
        let admin = match pg_admin().await {
            Ok(db) => db,
            Err(e) if std::env::var("NIGHTSHIFT_REQUIRE_POSTGRES").as_deref() != Ok("1") => {
                eprintln!(
                    "skipping PostgreSQL test: no server at {} ({e})",
                    pg_admin_url()
                );
                return None;
            }
            Err(e) => panic!("PostgreSQL is required but not reachable: {e}"),
        };
        let name = format!("nightshift_t_{:08x}", fastrand::u32(..));
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let _ = admin.close().await;
        let base = pg_admin_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        Some(PgDb {
            name,
            url,
            dropped: false,
        })
    }

    /// Drops the database now (closing any connection still open to it).
    pub async fn drop_db(mut self) {
        self.dropped = drop_pg_database(&self.name).await.is_ok();
    }
}

impl Drop for PgDb {
    /// `Drop` cannot await, and may run inside the test's runtime (which cannot be blocked on)
    /// or while a failed test unwinds: drop the database from a helper thread with a runtime of
    /// its own, and wait for it.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(drop_pg_database(&name))
                .map_err(|e| e.to_string())
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop test database {}: panicked", self.name),
        }
    }
}

async fn drop_pg_database(name: &str) -> Result<(), DbErr> {
    let admin = pg_admin().await?;
    let dropped = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    let _ = admin.close().await;
    dropped.map(|_| ())
}

/// Builder with test timings: short grace and drain, fast heartbeat.
pub fn builder(db: &TestDb) -> WorkerBuilder {
    Worker::builder()
        .database_url(&db.url)
        .concurrency(4)
        .grace_period(Duration::from_millis(300))
        .drain_timeout(Duration::from_millis(300))
        .heartbeat_interval(Duration::from_millis(200))
        .node_timeout(Duration::from_secs(2))
}

/// Arguments of the test kinds.
#[derive(Debug, Default, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Args {
    /// Milliseconds to work.
    #[serde(default)]
    pub ms: u64,
    /// Fail the first `fail_times` attempts.
    #[serde(default)]
    pub fail_times: u32,
    /// Log lines to write.
    #[serde(default)]
    pub lines: u32,
    /// Milliseconds to work on the first attempt only (a job that crashes its first worker).
    #[serde(default)]
    pub first_ms: u64,
    #[schemars(extend("writeOnly" = true))]
    #[serde(default)]
    pub secret: String,
}

/// How many times each job's handler ran.
#[derive(Clone, Default)]
pub struct Runs(Arc<Mutex<HashMap<i64, u32>>>);

impl Runs {
    pub fn count(&self, id: i64) -> u32 {
        self.0.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
    pub fn total(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn hit(&self, id: i64) {
        *self.0.lock().unwrap().entry(id).or_default() += 1;
    }
}

/// Registers the test kinds:
/// - `Work`: logs `lines` lines, sleeps `ms` (stopping early when cancelled), fails its first
///   `fail_times` attempts; 3 attempts, 50 ms backoff; schedulable.
/// - `Stubborn`: sleeps `ms` and ignores cancellation.
/// - `Fail`: returns an error. `Panic`: panics. `ErrorRows`: reports a row with an error.
/// - `Slow`: like `Work`, with a 200 ms timeout and one attempt.
pub fn register(worker: &Worker) -> Runs {
    let runs = Runs::default();
    let r = runs.clone();
    worker
        .register(
            JobKind::new("Work", move |args: Args, ctx: JobContext| {
                let r = r.clone();
                async move {
                    r.hit(ctx.job_id());
                    work(args, ctx).await
                }
            })
            .schedulable()
            .max_attempts(3)
            .backoff(Backoff::exponential(
                Duration::from_millis(50),
                Duration::from_millis(200),
            )),
        )
        .unwrap();
    worker
        .register(JobKind::new(
            "Stubborn",
            |args: Args, ctx: JobContext| async move {
                ctx.log("ignoring every signal").await?;
                tokio::time::sleep(Duration::from_millis(args.ms)).await;
                ctx.log("finished anyway").await?;
                Ok(())
            },
        ))
        .unwrap();
    worker
        .register(JobKind::new("Fail", |_: Args, _: JobContext| async move {
            anyhow::bail!("the <b>upstream</b> said no")
        }))
        .unwrap();
    worker
        .register(JobKind::new("Panic", |_: Args, _: JobContext| async move {
            if true {
                panic!("kaboom");
            }
            Ok(())
        }))
        .unwrap();
    worker
        .register(JobKind::new(
            "ErrorRows",
            |_: Args, ctx: JobContext| async move {
                ctx.add_result_row(vec![ResultCell::ok("a"), ResultCell::ok("1")])
                    .await?;
                ctx.add_result_row(vec![
                    ResultCell::ok("b"),
                    ResultCell::error("-1", "negative"),
                ])
                .await?;
                Ok(())
            },
        ))
        .unwrap();
    worker
        .register(
            JobKind::new("Slow", work)
                .timeout(Duration::from_millis(200))
                .max_attempts(1),
        )
        .unwrap();
    runs
}

async fn work(args: Args, ctx: JobContext) -> anyhow::Result<()> {
    for i in 0..args.lines {
        ctx.log(format!("line {i}")).await?;
    }
    let ms = if ctx.attempt() == 1 {
        args.ms + args.first_ms
    } else {
        args.ms
    };
    if ms > 0 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = ctx.cancelled() => {
                ctx.log("cancelled, stopping").await?;
                return Ok(());
            }
        }
    }
    if ctx.attempt() <= args.fail_times {
        anyhow::bail!("attempt {} failed on purpose", ctx.attempt());
    }
    ctx.set_progress(100).await?;
    Ok(())
}

/// Waits until `cond` holds for job `id`, polling the database.
pub async fn wait_for(
    worker: &Worker,
    id: i64,
    what: &str,
    cond: impl Fn(&nightshift::Job) -> bool,
) -> nightshift::Job {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let job = worker.job(id).await.unwrap();
        if cond(&job) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for job {id} to be {what}; it is {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn finished(worker: &Worker, id: i64) -> nightshift::Job {
    wait_for(worker, id, "finished", |j| j.status.is_finished()).await
}
