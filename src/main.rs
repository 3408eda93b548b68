//! The `nightshift` binary: the admin and workers (`serve`), an extra worker node (`worker`),
//! `migrate`, and operator and token management.
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use config_file::{Config, DbArgs, GlobalArgs, KeyArgs, LogFormat, ServeArgs, WorkerArgs};
use nightshift::Worker;
use nightshift::auth::{Accounts, Auth, SessionOptions};
use tracing_subscriber::EnvFilter;

mod config_file;

#[derive(Parser)]
#[command(
    name = "nightshift",
    version,
    about = "Background jobs with a live admin",
    after_help = "Settings: a flag wins over its environment variable, which wins over \
                  nightshift.toml (or the file --config names), which wins over the default. \
                  `nightshift config` shows the effective settings and where each comes from."
)]
struct Cli {
    #[command(flatten)]
    _global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the admin and run workers.
    Serve(ServeArgs),
    /// Run workers only (an extra node), no HTTP.
    Worker(WorkerArgs),
    /// Print the effective settings (flags, environment, settings file, defaults) and where
    /// each comes from, as a TOML file; exits 2 naming the first bad value. Secrets are masked.
    Config {
        /// Print one JSON object: `{"<key>": {"value": …, "source": "…"}, …}`.
        #[arg(long)]
        json: bool,
        /// The flags `serve` takes, to see what they change.
        #[command(flatten)]
        _settings: ServeArgs,
    },
    /// Apply database migrations.
    Migrate(DbArgs),
    /// Measure what users with a backlog see: drain, enqueue, pickup and schedule latency, the
    /// admin under load, SSE fan-out, memory (issue "Performance").
    Bench {
        /// `sqlite://…` (fresh files next to it) or `postgres://…` (fresh databases on that
        /// server); everything the bench creates is removed afterwards. Default: the temp dir.
        /// (Not read from the settings file: the bench never touches the configured database.)
        #[arg(
            id = "bench_database_url",
            long = "database-url",
            env = "NIGHTSHIFT_BENCH_DATABASE_URL"
        )]
        database_url: Option<String>,
        /// Print one JSON object whose keys are the figure names.
        #[arg(long)]
        json: bool,
        /// The backlog drained (and the jobs in the table for the admin figure).
        #[arg(long, default_value_t = 100_000)]
        jobs: u64,
        /// Drain backlogs spread over 4 queues with priorities 0-9, beside a paused queue.
        #[arg(long)]
        queues: bool,
        /// Only the search figures: list searches over a table of `--jobs` jobs (JSON).
        #[arg(long)]
        search: bool,
    },
    /// Manage operators.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the keys that encrypt secret job arguments.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Make a new primary key, re-encrypt every job's secrets with it, and keep the old keys in
    /// the key file (decrypt only). Restart every node afterwards.
    Rotate {
        #[command(flatten)]
        _keys: KeyArgs,
        /// Instead: drop the old keys no job uses any more (once every node runs the new key).
        #[arg(long)]
        retire: bool,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Add an operator; the password is read from standard input.
    Add {
        name: String,
        /// viewer, operator or admin.
        #[arg(long, default_value = "operator")]
        role: nightshift::Role,
        #[command(flatten)]
        _db: DbArgs,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new API token for operator NAME (shown once).
    Create {
        name: String,
        /// What the token is for.
        #[arg(long, default_value = "cli")]
        label: String,
        #[command(flatten)]
        _db: DbArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The bench's progress line and figures are its output: only errors are logged by default.
    let default_filter = match cli.command {
        Command::Bench { .. } => "error",
        _ => "info",
    };
    // Every setting is checked before anything starts; a bad one is bad usage (exit 2).
    let config = match Config::load(&matches, default_filter) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("nightshift: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let json_logs = config.log_format.value == LogFormat::Json;
    match run(cli, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if json_logs => {
            tracing::error!("nightshift: {e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("nightshift: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines on stderr, as text or one JSON object per line (`log_format`), filtered by
/// `log_filter` (`RUST_LOG`).
fn init_logging(config: &Config) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(&config.log_filter.value))
        .with_writer(std::io::stderr);
    match config.log_format.value {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    let database_url = config.database_url.value.as_str();
    match cli.command {
        Command::Serve(_) => {
            let worker = build(&config).await?;
            if !config.no_workers.value {
                worker.start().await?;
            }
            let bind = &config.bind.value;
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
            let addr = listener.local_addr()?;
            let accounts = Accounts::new(worker.store().connection().clone());
            if accounts.count().await? == 0 {
                let token = accounts.create_setup_token().await?;
                tracing::warn!(
                    "no operator yet: create the first admin at http://{addr}/setup?token={token}"
                );
                // The banner is for a person at a terminal; JSON logs carry the link above.
                if config.log_format.value == LogFormat::Text {
                    eprintln!(
                        "\n  First run: create the first admin at http://{addr}/setup?token={token}\n"
                    );
                }
            }
            tracing::info!("admin at http://{addr}/");
            let auth = Auth::Sessions(SessionOptions {
                secure_cookies: config.secure_cookies.value,
                ..SessionOptions::default()
            });
            let app: axum::Router = nightshift::admin::router(worker.clone(), auth);
            // One signal starts both drains at once: the worker stops claiming (which also closes
            // the admin's event streams) while the HTTP server finishes its open requests.
            let signal = futures::FutureExt::shared(Box::pin(shutdown_signal()));
            let http = nightshift::admin::serve::serve(
                listener,
                app,
                signal.clone(),
                nightshift::admin::serve::ServeOptions::default(),
            );
            // `/metrics` alone on an address of its own, if asked for.
            let metrics_signal = signal.clone();
            let metrics = async {
                let Some(bind) = &config.metrics_bind.value else {
                    return Ok(());
                };
                let listener = tokio::net::TcpListener::bind(bind)
                    .await
                    .map_err(|e| std::io::Error::other(format!("cannot listen on {bind}: {e}")))?;
                tracing::info!("metrics at http://{}/metrics", listener.local_addr()?);
                let app: axum::Router = nightshift::admin::metrics_router(
                    worker.clone(),
                    Auth::Sessions(SessionOptions::default()),
                );
                nightshift::admin::serve::serve(
                    listener,
                    app,
                    metrics_signal,
                    nightshift::admin::serve::ServeOptions::default(),
                )
                .await
            };
            let jobs = async {
                signal.await;
                worker.shutdown().await;
                Ok(())
            };
            tokio::try_join!(http, metrics, jobs)?;
        }
        Command::Worker(_) => {
            let worker = build(&config).await?;
            worker.start().await?;
            shutdown_signal().await;
            worker.shutdown().await;
        }
        Command::Config { json, .. } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&config.to_json())?);
            } else {
                print!("{}", config.to_toml());
            }
        }
        Command::Migrate(_) => {
            nightshift::store::connect(database_url).await?;
            eprintln!("migrations applied");
        }
        Command::Bench {
            database_url,
            json,
            jobs,
            queues,
            search,
        } => {
            if search {
                let report =
                    nightshift::bench::search::run(database_url.as_deref(), jobs, 100, !json)
                        .await?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            let opts = nightshift::bench::Options {
                database_url,
                queues,
                ..nightshift::bench::Options::new(jobs)
            };
            let report = nightshift::bench::run(&opts).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            } else {
                print!("{}", report.table());
            }
        }
        Command::Operator {
            command: OperatorCommand::Add { name, role, .. },
        } => {
            let accounts = Accounts::new(nightshift::store::connect(database_url).await?);
            let password = read_password()?;
            let op = accounts.add(&name, &password, role).await?;
            eprintln!("operator {} added as {}", op.name, op.role);
        }
        Command::Token {
            command: TokenCommand::Create { name, label, .. },
        } => {
            let accounts = Accounts::new(nightshift::store::connect(database_url).await?);
            let (token, _) = accounts.create_token(&name, &label).await?;
            println!("{token}");
        }
        Command::Secrets {
            command: SecretsCommand::Rotate { retire, .. },
        } => println!("{}", rotate_secrets(&config, retire).await?),
    }
    Ok(())
}

/// The password from standard input: the first line (prompted for on a terminal).
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    if std::io::stdin().is_terminal() {
        eprint!("Password (at least 8 characters; it is echoed): ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn build(config: &Config) -> anyhow::Result<Worker> {
    let database_url = &config.database_url.value;
    let mut builder = Worker::builder()
        .database_url(database_url)
        .concurrency(config.concurrency.value)
        .drain_timeout(std::time::Duration::from_secs(config.drain_timeout.value))
        .retention(nightshift::Retention {
            done: nightshift::Retention::days(config.retention_done_days.value),
            errors: nightshift::Retention::days(config.retention_errors_days.value),
            cancelled: nightshift::Retention::days(config.retention_cancelled_days.value),
            audit: nightshift::Retention::days(config.retention_audit_days.value),
            ..nightshift::Retention::default()
        });
    let key_file = config.secret_key_file.value.as_deref();
    if let Some(keyring) = nightshift::secrets::keyring_for_url(database_url, key_file)? {
        builder = builder.secret_key(keyring);
    }
    let worker = builder.build().await?;
    if !config.no_demo.value {
        nightshift::demo::register(&worker)?;
    }
    Ok(worker)
}

/// `secrets rotate [--retire]`: the key file is the one `serve` would use (the flag, or the
/// SQLite default); a key given in `NIGHTSHIFT_SECRET_KEY` cannot be rewritten.
async fn rotate_secrets(
    config: &Config,
    retire: bool,
) -> anyhow::Result<nightshift::secrets::KeyFileChange> {
    use nightshift::secrets;
    let usage = |msg: String| -> ! {
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, msg)
            .exit()
    };
    if std::env::var_os(secrets::KEY_ENV).is_some_and(|v| !v.is_empty()) {
        usage(format!(
            "{} is set: rotation rewrites a key file; unset it and pass --secret-key-file",
            secrets::KEY_ENV
        ));
    }
    let database_url = &config.database_url.value;
    let Some(path) = secrets::key_file_path(database_url, config.secret_key_file.value.as_deref())
    else {
        usage(
            "--secret-key-file (or secret_key_file in the settings file) is required: only \
             SQLite has a default key file"
                .into(),
        );
    };
    if retire {
        let conn = nightshift::store::connect(database_url).await?;
        return secrets::retire_keys(&conn, &path).await;
    }
    let keyring = secrets::next_keyring(&path)?;
    let worker = Worker::builder()
        .database_url(database_url)
        .secret_key(keyring.clone())
        .build()
        .await?;
    nightshift::demo::register(&worker)?;
    let conn = worker.store().connection();
    secrets::rotate_key_file(conn, &worker.kinds(), &path, &keyring).await
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
