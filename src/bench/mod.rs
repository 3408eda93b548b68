//! `nightshift bench`: what users with a real backlog see, measured end to end through the
//! public API and the real admin over HTTP (issue "Performance").
//!
//! Every figure group runs on a fresh database of the one given (a SQLite file next to the given
//! one, or in the temp dir when none is given; a PostgreSQL database created on the given server
//! and dropped afterwards), with the default [`Worker`] configuration:
//!
//! - `latency`: `rss_mb.idle`, `pickup_ms`, `pickup_other_process_ms`, `schedule_ms`;
//! - `drain`: `enqueue_one_per_s`, `drain_by_depth` (and `drain_per_s`, `rss_mb.drain`,
//!   `enqueue_batch_per_s` from the deepest), `drain_ceiling_per_s` (bare SQL);
//! - `web`: `admin_list_ms` while a drain runs, `sse_fanout`.
//!
//! [`run`] returns a [`Report`]; its JSON keys are the figure names of the issue.
mod drain;
mod http;
mod latency;
pub mod search;
mod web;

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::ConnectionTrait;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::Worker;

/// Backlogs the drain is measured at (those up to `--jobs`, and `--jobs` itself).
pub const DEPTHS: [u64; 3] = [10_000, 100_000, 1_000_000];

/// What to measure, and how much of it. [`Options::new`] gives the issue's sizes.
#[derive(Debug, Clone)]
pub struct Options {
    /// `sqlite://…` or `postgres://…`; `None`: a SQLite file in the temp dir.
    pub database_url: Option<String>,
    /// The backlog drained (`--jobs`), also the jobs in the table for `admin_list_ms`.
    pub jobs: u64,
    /// Jobs enqueued one per call for `enqueue_one_per_s`.
    pub enqueue_one: u64,
    /// Samples of `pickup_ms`, and again of `pickup_other_process_ms`.
    pub pickup_samples: usize,
    /// Jobs scheduled an hour later while `schedule_ms` is measured.
    pub schedule_later: u64,
    /// Jobs due at staggered times over `schedule_span`, starting a second from now.
    pub schedule_due: usize,
    /// How long the due times of the `schedule_due` jobs are spread over.
    pub schedule_span: Duration,
    /// Requests of each admin list page (all tab, `?status=done`) at most.
    pub admin_samples: usize,
    /// SSE connections following one job.
    pub sse_subscribers: usize,
    /// Lines that job logs, 1,000 a second.
    pub sse_lines: u64,
    /// A progress line on stderr.
    pub progress: bool,
    /// Drain backlogs spread over 4 queues with priorities 0–9, beside a paused queue holding
    /// a tenth as many jobs again (`--queues`).
    pub queues: bool,
}

impl Options {
    /// The issue's sizes for a backlog of `jobs`.
    pub fn new(jobs: u64) -> Options {
        Options {
            database_url: None,
            jobs: jobs.max(1),
            enqueue_one: 2_000,
            pickup_samples: 300,
            schedule_later: 100_000,
            schedule_due: 1_000,
            schedule_span: Duration::from_secs(4),
            admin_samples: 200,
            sse_subscribers: 1_000,
            sse_lines: 5_000,
            progress: true,
            queues: false,
        }
    }

    /// The depths the drain is measured at: the standard ones below `jobs`, then `jobs`.
    pub fn depths(&self) -> Vec<u64> {
        let mut d: Vec<u64> = DEPTHS.into_iter().filter(|d| *d < self.jobs).collect();
        d.push(self.jobs);
        d
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    /// The median.
    pub p50: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The slowest sample.
    pub max: f64,
    /// How many samples were taken (non-finite ones left out).
    pub n: usize,
}

impl Latency {
    /// Nearest-rank percentiles of `samples` (milliseconds).
    pub fn of(samples: &[f64]) -> Latency {
        let mut s: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        s.sort_by(f64::total_cmp);
        let pick = |p: f64| -> f64 {
            if s.is_empty() {
                return 0.0;
            }
            let rank = (p * s.len() as f64).ceil() as usize;
            round2(s[rank.clamp(1, s.len()) - 1])
        };
        Latency {
            p50: pick(0.50),
            p95: pick(0.95),
            p99: pick(0.99),
            max: pick(1.0),
            n: s.len(),
        }
    }
}

/// `sse_fanout`: did every subscriber get every line, and how late.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Fanout {
    /// SSE connections that followed the job.
    pub subscribers: usize,
    /// Lines the job logged.
    pub lines: u64,
    /// Whether every subscriber received every line.
    pub delivered_all: bool,
    /// The fewest distinct lines one subscriber received.
    pub min_received: u64,
    /// From the handler's `ctx.log` call to the subscriber reading the event.
    pub p99_delay_ms: f64,
    /// The median of the same delay.
    pub p50_delay_ms: f64,
    /// The longest of the same delay.
    pub max_delay_ms: f64,
    /// Streams the server ended early (a subscriber fell behind) that reconnected with
    /// `Last-Event-ID`, as a browser does.
    pub reconnects: u64,
}

/// `rss_mb`: this process's resident memory.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Rss {
    /// After a started worker on an empty database has idled for a second.
    pub idle: Option<f64>,
    /// The peak sampled during the deepest drain.
    pub drain: Option<f64>,
}

/// Where the deepest drain's time went in this process.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct DrainCpu {
    /// CPU time ÷ wall time (2 = both cores of a 2-core machine busy).
    pub cores: f64,
    /// CPU microseconds per job (SQLite runs inside this process; PostgreSQL's own work is not
    /// counted).
    pub us_per_job: f64,
}

/// Everything one run measured. Serialized, its keys are the issue's figure names.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The database's own version.
    pub database: String,
    /// `--jobs`.
    pub jobs: u64,
    /// Cores and memory of this machine.
    pub machine: String,
    /// RFC 3339, when the run started.
    pub date: String,
    /// The Nightshift version measured.
    pub version: &'static str,
    /// Jobs per second, `jobs` queued, default worker, no-op jobs, from `start()` until every
    /// job is `done`.
    pub drain_per_s: f64,
    /// The same at each depth (`{"10000": r, "100000": r}`).
    pub drain_by_depth: Map<String, Value>,
    /// Drain rate at the deepest ÷ at the shallowest depth.
    pub drain_depth_ratio: f64,
    /// Bare SQL on the same database: claim a batch (the engine's claim statement), mark it
    /// done, repeat, `jobs` queued.
    pub drain_ceiling_per_s: f64,
    /// Jobs the ceiling claims per statement: the scheduler's own largest claim.
    pub drain_ceiling_batch: u64,
    /// `drain_per_s` ÷ `drain_ceiling_per_s`: how much of the bare SQL rate the engine keeps.
    pub drain_vs_ceiling: f64,
    /// `insert_many` in chunks of 1,000 (the deepest drain's backlog).
    pub enqueue_batch_per_s: f64,
    /// This process's CPU use during the deepest drain (Linux).
    pub drain_cpu: Option<DrainCpu>,
    /// One `insert` per call.
    pub enqueue_one_per_s: f64,
    /// Insert call → handler's first instruction, idle started worker, same process.
    pub pickup_ms: Latency,
    /// The same, inserted by another `Worker` (not started) on the same database.
    pub pickup_other_process_ms: Latency,
    /// Handler start after its `schedule_at`.
    pub schedule_ms: Latency,
    /// `GET /workers` and `GET /workers?status=done` with `jobs` in the table, while they drain.
    pub admin_list_ms: Latency,
    /// The same per page: `{"all": latency, "done": latency}`.
    pub admin_list_by_page: Map<String, Value>,
    /// Many subscribers following one job's live log.
    pub sse_fanout: Fanout,
    /// This process's resident memory, in MiB (Linux only).
    pub rss_mb: Rss,
}

/// The issue's goals: (figure, SQLite, PostgreSQL), as shown next to the figures.
const GOALS: &[(&str, &str, &str)] = &[
    ("drain_per_s", "≥ 50,000", "≥ 35,000"),
    ("drain_vs_ceiling", "≥ 0.4", "≥ 0.5"),
    ("drain_depth_ratio", "≥ 0.9 (1M ÷ 10k)", "≥ 0.9 (1M ÷ 10k)"),
    ("enqueue_batch_per_s", "≥ 100,000", "≥ 100,000"),
    ("pickup_ms", "p99 ≤ 2, max ≤ 100", "p99 ≤ 4, max ≤ 100"),
    (
        "pickup_other_process_ms",
        "p99 ≤ 50, max ≤ 100",
        "p99 ≤ 10, max ≤ 100",
    ),
    ("schedule_ms", "p99 ≤ 10", "p99 ≤ 20"),
    ("admin_list_ms", "p95 ≤ 50 (1M jobs)", "p95 ≤ 50 (1M jobs)"),
    (
        "sse_fanout",
        "every line to every one",
        "every line to every one",
    ),
    ("rss_mb", "idle ≤ 40, drain ≤ 200", "idle ≤ 40, drain ≤ 200"),
];

impl Report {
    /// One JSON object.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A table for people: figure, value, goal.
    pub fn table(&self) -> String {
        let goal = |name: &str| {
            GOALS
                .iter()
                .find(|g| g.0 == name)
                .map(|g| if self.backend == "postgres" { g.2 } else { g.1 })
                .unwrap_or("")
        };
        let lat = |l: &Latency| {
            format!(
                "p50 {:.2} / p95 {:.2} / p99 {:.2} / max {:.2} ms (n {})",
                l.p50, l.p95, l.p99, l.max, l.n
            )
        };
        let depths = self
            .drain_by_depth
            .iter()
            .map(|(d, r)| format!("{}: {}", group(d.parse().unwrap_or(0)), rate(r)))
            .collect::<Vec<_>>()
            .join(", ");
        let mb = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.1}"));
        let f = &self.sse_fanout;
        let rows: Vec<(&str, String)> = vec![
            (
                "drain_per_s",
                format!(
                    "{}/s ({} queued)",
                    rate_f(self.drain_per_s),
                    group(self.jobs)
                ),
            ),
            ("drain_by_depth", depths),
            (
                "drain_depth_ratio",
                format!("{:.2}", self.drain_depth_ratio),
            ),
            (
                "drain_ceiling_per_s",
                format!(
                    "{}/s (batches of {})",
                    rate_f(self.drain_ceiling_per_s),
                    self.drain_ceiling_batch
                ),
            ),
            ("drain_vs_ceiling", format!("{:.3}", self.drain_vs_ceiling)),
            (
                "enqueue_batch_per_s",
                format!("{}/s", rate_f(self.enqueue_batch_per_s)),
            ),
            (
                "drain_cpu",
                self.drain_cpu.map_or("n/a".to_owned(), |c| {
                    format!(
                        "{:.2} cores busy, {:.0} µs CPU per job",
                        c.cores, c.us_per_job
                    )
                }),
            ),
            (
                "enqueue_one_per_s",
                format!("{}/s", rate_f(self.enqueue_one_per_s)),
            ),
            ("pickup_ms", lat(&self.pickup_ms)),
            (
                "pickup_other_process_ms",
                lat(&self.pickup_other_process_ms),
            ),
            ("schedule_ms", lat(&self.schedule_ms)),
            ("admin_list_ms", lat(&self.admin_list_ms)),
            (
                "sse_fanout",
                format!(
                    "{} to {} subscribers: min {} of {} lines; delay p50 {:.0} / p99 {:.0} / \
                     max {:.0} ms; {} reconnects",
                    if f.delivered_all { "all" } else { "NOT all" },
                    f.subscribers,
                    f.min_received,
                    f.lines,
                    f.p50_delay_ms,
                    f.p99_delay_ms,
                    f.max_delay_ms,
                    f.reconnects
                ),
            ),
            (
                "rss_mb",
                format!(
                    "idle {} / drain {}",
                    mb(self.rss_mb.idle),
                    mb(self.rss_mb.drain)
                ),
            ),
        ];
        let mut out = format!(
            "nightshift bench: {} ({}), {} jobs, {}, {}\n\n",
            self.backend,
            self.database,
            group(self.jobs),
            self.machine,
            self.date
        );
        let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let v = rows
            .iter()
            .map(|r| r.1.chars().count())
            .max()
            .unwrap_or(0)
            .min(60);
        out.push_str(&format!("{:<w$}  {:<v$}  goal\n", "figure", "value"));
        for (name, value) in &rows {
            out.push_str(&format!("{name:<w$}  {value:<v$}  {}\n", goal(name)));
        }
        out
    }
}

/// Runs every measurement on the database of `opts` (see the module docs).
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let target = Target::new(opts.database_url.as_deref())?;
    let out = run_on(&target, opts).await;
    target.close();
    out
}

async fn run_on(target: &Target, opts: &Options) -> anyhow::Result<Report> {
    let depths = opts.depths();
    let progress = Progress::new(opts.progress, 5 + depths.len());
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    progress.step("pickup and schedule latency");
    let lat = target
        .with_db("latency", |url| latency::run(url, opts, &progress))
        .await?;

    progress.step("enqueue one per call");
    let (enqueue_one_per_s, database) = target
        .with_db("enqueue", |url| drain::enqueue_one(url, opts.enqueue_one))
        .await?;

    let mut by_depth = Map::new();
    let mut deepest = drain::Drain::default();
    for depth in &depths {
        progress.step(format!("drain {} queued", group(*depth)));
        let last = *depth == opts.jobs;
        let d = target
            .with_db(&format!("drain-{depth}"), |url| {
                drain::drain(url, *depth, last, opts.queues, &progress)
            })
            .await?;
        by_depth.insert(depth.to_string(), Value::from(round1(d.per_s)));
        deepest = d;
    }
    let shallowest = by_depth
        .values()
        .next()
        .and_then(Value::as_f64)
        .unwrap_or(0.0);

    progress.step(format!("bare SQL ceiling, {} queued", group(opts.jobs)));
    let ceiling = target
        .with_db("ceiling", |url| {
            drain::ceiling(url, opts.jobs, opts.queues, &progress)
        })
        .await?;

    progress.step(format!(
        "admin list pages, {} jobs, while they drain",
        group(opts.jobs)
    ));
    let admin = target
        .with_db("admin", |url| {
            web::admin_list(url, opts.jobs, opts.admin_samples, &progress)
        })
        .await?;

    progress.step(format!(
        "SSE fan-out, {} subscribers",
        group(opts.sse_subscribers as u64)
    ));
    let sse_fanout = target
        .with_db("sse", |url| {
            web::sse_fanout(url, opts.sse_subscribers, opts.sse_lines, &progress)
        })
        .await?;
    progress.finish();

    Ok(Report {
        backend: target.backend(),
        database,
        jobs: opts.jobs,
        machine: machine(),
        date,
        version: env!("CARGO_PKG_VERSION"),
        drain_per_s: round1(deepest.per_s),
        drain_by_depth: by_depth,
        drain_depth_ratio: round3(ratio(deepest.per_s, shallowest)),
        drain_ceiling_per_s: round1(ceiling),
        drain_ceiling_batch: drain::CEILING_BATCH,
        drain_vs_ceiling: round3(ratio(deepest.per_s, ceiling)),
        enqueue_batch_per_s: round1(deepest.fill_per_s),
        drain_cpu: deepest.cpu_s.map(|cpu| DrainCpu {
            cores: round2(cpu / (opts.jobs as f64 / deepest.per_s)),
            us_per_job: round1(cpu * 1e6 / opts.jobs as f64),
        }),
        enqueue_one_per_s: round1(enqueue_one_per_s),
        pickup_ms: lat.pickup,
        pickup_other_process_ms: lat.pickup_other,
        schedule_ms: lat.schedule,
        admin_list_ms: admin.all,
        admin_list_by_page: admin.by_page,
        sse_fanout,
        rss_mb: Rss {
            idle: lat.rss_idle,
            drain: deepest.rss_peak,
        },
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `1234567` → `1,234,567`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate_f(v: f64) -> String {
    group(v.round().max(0.0) as u64)
}

fn rate(v: &Value) -> String {
    rate_f(v.as_f64().unwrap_or(0.0))
}

/// This process's resident memory now, in MB (Linux: `/proc/self/status`).
pub(crate) fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(round1(kb / 1024.0))
}

/// "2 cores, 24 GiB".
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
    });
    match mem {
        Some(kb) => format!("{cores} cores, {:.0} GiB", kb / 1024.0 / 1024.0),
        None => format!("{cores} cores"),
    }
}

/// A worker with the default configuration on `url`.
pub(crate) async fn worker(url: &str) -> anyhow::Result<Worker> {
    Ok(Worker::builder().database_url(url).build().await?)
}

/// The database's name and version, e.g. `SQLite 3.46.0`, `PostgreSQL 15.8`.
pub(crate) async fn database_version(worker: &Worker) -> String {
    let db = worker.store().connection();
    let (sql, name) = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => ("SHOW server_version", "PostgreSQL"),
        _ => ("SELECT sqlite_version()", "SQLite"),
    };
    let version = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql,
        ))
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get_by_index::<String>(0).ok())
        .unwrap_or_default();
    format!("{name} {}", version.split_whitespace().next().unwrap_or(""))
}

/// Shuts the worker down and closes its write pool, so the database can be dropped or removed.
pub(crate) async fn stop(worker: Worker) {
    worker.shutdown().await;
    let _ = worker.store().connection().clone().close().await;
}

/// Where the fresh databases of a run live.
pub(crate) enum Target {
    /// Files `<prefix><label>.db` in `dir` (removed with the directory if `own_dir`).
    Sqlite {
        dir: PathBuf,
        prefix: String,
        own_dir: bool,
    },
    /// Databases `nightshift_bench_<tag>_<label>` created through `admin_url`.
    Postgres { admin_url: String, tag: String },
}

impl Target {
    pub(crate) fn new(url: Option<&str>) -> anyhow::Result<Target> {
        let tag = format!("{}_{:04x}", std::process::id(), fastrand::u16(..));
        match url {
            None => {
                let dir = std::env::temp_dir().join(format!("nightshift-bench-{tag}"));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                Ok(Target::Sqlite {
                    dir,
                    prefix: String::new(),
                    own_dir: true,
                })
            }
            Some(u) if u.starts_with("sqlite:") => {
                let path = u
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:")
                    .split('?')
                    .next()
                    .unwrap_or("");
                anyhow::ensure!(
                    !path.is_empty() && !path.contains(":memory:"),
                    "the bench needs a SQLite file, not {u:?}"
                );
                let path = PathBuf::from(path);
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                    _ => PathBuf::from("."),
                };
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "nightshift".into());
                Ok(Target::Sqlite {
                    dir,
                    prefix: format!("{stem}-bench-{tag}-"),
                    own_dir: false,
                })
            }
            Some(u) if u.starts_with("postgres:") || u.starts_with("postgresql:") => {
                Ok(Target::Postgres {
                    admin_url: u.to_owned(),
                    tag,
                })
            }
            Some(u) => anyhow::bail!("not a sqlite:// or postgres:// URL: {u:?}"),
        }
    }

    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Target::Sqlite { .. } => "sqlite",
            Target::Postgres { .. } => "postgres",
        }
    }

    /// Runs `f` on a fresh database, removed afterwards whatever `f` returned.
    pub(crate) async fn with_db<T, F, Fut>(&self, label: &str, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let url = self.create(label).await?;
        let out = f(url).await;
        if let Err(e) = self.remove(label).await {
            eprintln!("nightshift bench: could not remove the {label} database: {e:#}");
        }
        out.with_context(|| format!("bench phase {label:?}"))
    }

    async fn create(&self, label: &str) -> anyhow::Result<String> {
        match self {
            Target::Sqlite { dir, prefix, .. } => {
                let path = dir.join(format!("{prefix}{label}.db"));
                remove_sqlite(&path);
                Ok(format!("sqlite://{}?mode=rwc", path.display()))
            }
            Target::Postgres { admin_url, tag } => {
                let name = pg_name(tag, label);
                let admin = pg_admin(admin_url).await?;
                let created = admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await;
                let _ = admin.close().await;
                created.with_context(|| format!("cannot create database {name}"))?;
                Ok(with_database(admin_url, &name))
            }
        }
    }

    async fn remove(&self, label: &str) -> anyhow::Result<()> {
        match self {
            Target::Sqlite { dir, prefix, .. } => {
                remove_sqlite(&dir.join(format!("{prefix}{label}.db")));
                Ok(())
            }
            Target::Postgres { admin_url, tag } => {
                let name = pg_name(tag, label);
                let admin = pg_admin(admin_url).await?;
                let dropped = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
                let _ = admin.close().await;
                dropped?;
                Ok(())
            }
        }
    }

    pub(crate) fn close(&self) {
        if let Target::Sqlite {
            dir, own_dir: true, ..
        } = self
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn pg_name(tag: &str, label: &str) -> String {
    let label: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("nightshift_bench_{tag}_{label}")
}

async fn pg_admin(url: &str) -> anyhow::Result<sea_orm::DatabaseConnection> {
    let mut opts = sea_orm::ConnectOptions::new(url.to_owned());
    opts.connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .max_connections(1)
        .sqlx_logging(false);
    sea_orm::Database::connect(opts)
        .await
        .with_context(|| format!("cannot connect to {}", strip_credentials(url)))
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn strip_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// The progress line on stderr: `[step/steps] what: detail`, redrawn in place on a terminal
/// (one line per step otherwise).
pub(crate) struct Progress {
    enabled: bool,
    tty: bool,
    state: Mutex<ProgressState>,
}

struct ProgressState {
    step: usize,
    steps: usize,
    label: String,
    drawn: usize,
    last: Option<Instant>,
}

impl Progress {
    pub(crate) fn new(enabled: bool, steps: usize) -> Progress {
        use std::io::IsTerminal;
        Progress {
            enabled,
            tty: std::io::stderr().is_terminal(),
            state: Mutex::new(ProgressState {
                step: 0,
                steps,
                label: String::new(),
                drawn: 0,
                last: None,
            }),
        }
    }

    /// A new step.
    pub(crate) fn step(&self, label: impl Into<String>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.step += 1;
        s.label = label.into();
        s.last = None;
        if !self.enabled {
            return;
        }
        let line = format!("[{}/{}] {}", s.step, s.steps, s.label);
        if self.tty {
            Self::draw(&mut s, &line);
        } else {
            eprintln!("nightshift bench {line}");
        }
    }

    /// How the current step is going (redrawn at most ten times a second).
    pub(crate) fn update(&self, detail: impl AsRef<str>) {
        if !self.enabled || !self.tty {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.last
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        s.last = Some(Instant::now());
        let line = format!("[{}/{}] {}: {}", s.step, s.steps, s.label, detail.as_ref());
        Self::draw(&mut s, &line);
    }

    fn draw(s: &mut ProgressState, line: &str) {
        let len = line.chars().count();
        let pad = s.drawn.saturating_sub(len);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}{}", " ".repeat(pad));
        let _ = err.flush();
        s.drawn = len;
    }

    pub(crate) fn finish(&self) {
        if !self.enabled || !self.tty {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}\r", " ".repeat(s.drawn));
        let _ = err.flush();
        s.drawn = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = Latency::of(&s);
        assert_eq!(
            (l.p50, l.p95, l.p99, l.max, l.n),
            (50.0, 95.0, 99.0, 100.0, 100)
        );
        assert_eq!(Latency::of(&[]).n, 0);
    }

    #[test]
    fn depths_stop_at_the_backlog() {
        assert_eq!(Options::new(100_000).depths(), vec![10_000, 100_000]);
        assert_eq!(
            Options::new(1_000_000).depths(),
            vec![10_000, 100_000, 1_000_000]
        );
        assert_eq!(Options::new(50_000).depths(), vec![10_000, 50_000]);
        assert_eq!(Options::new(200).depths(), vec![200]);
    }

    #[test]
    fn urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(strip_credentials("postgres://u:p@h/db"), "postgres://h/db");
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(group(100), "100");
    }
}
