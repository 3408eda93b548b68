//! The `nightshift` binary: the admin and workers (`serve`), an extra worker node (`worker`),
//! `migrate`, and operator and token management.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nightshift::auth::{Accounts, Auth, SessionOptions};
use nightshift::{DEFAULT_DATABASE_URL, Worker};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "nightshift",
    version,
    about = "Background jobs with a live admin"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Db {
    /// `sqlite://…` or `postgres://…`.
    #[arg(long, env = "NIGHTSHIFT_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
}

#[derive(clap::Args, Clone)]
struct Keys {
    /// Key file for secret job arguments (one key per line, the first encrypts). Default for
    /// SQLite: `<database file>.key`, created on first start. `NIGHTSHIFT_SECRET_KEY` (the key
    /// itself, hex) wins over it.
    #[arg(long, env = nightshift::secrets::KEY_FILE_ENV)]
    secret_key_file: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Clone, Copy)]
struct Drain {
    /// At shutdown (SIGTERM, Ctrl-C), how many seconds running jobs may take to finish before
    /// they are interrupted and go back to the queue.
    #[arg(
        long,
        env = "NIGHTSHIFT_DRAIN_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 25
    )]
    drain_timeout: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the admin and run workers.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "NIGHTSHIFT_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
        #[command(flatten)]
        db: Db,
        #[command(flatten)]
        keys: Keys,
        /// Serve the admin only; run no jobs on this node.
        #[arg(long)]
        no_workers: bool,
        /// Do not register the demo job kinds.
        #[arg(long)]
        no_demo: bool,
        /// Jobs run at once on this node.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Mark the session cookie `Secure` (when served over HTTPS, or behind a TLS proxy).
        #[arg(long, env = "NIGHTSHIFT_SECURE_COOKIES")]
        secure_cookies: bool,
        #[command(flatten)]
        drain: Drain,
    },
    /// Run workers only (an extra node), no HTTP.
    Worker {
        #[command(flatten)]
        db: Db,
        #[command(flatten)]
        keys: Keys,
        /// Do not register the demo job kinds.
        #[arg(long)]
        no_demo: bool,
        /// Jobs run at once on this node.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[command(flatten)]
        drain: Drain,
    },
    /// Apply database migrations.
    Migrate {
        #[command(flatten)]
        db: Db,
    },
    /// Measure what users with a backlog see: drain, enqueue, pickup and schedule latency, the
    /// admin under load, SSE fan-out, memory (issue "Performance").
    Bench {
        /// `sqlite://…` (fresh files next to it) or `postgres://…` (fresh databases on that
        /// server); everything the bench creates is removed afterwards. Default: the temp dir.
        #[arg(long, env = "NIGHTSHIFT_BENCH_DATABASE_URL")]
        database_url: Option<String>,
        /// Print one JSON object whose keys are the figure names.
        #[arg(long)]
        json: bool,
        /// The backlog drained (and the jobs in the table for the admin figure).
        #[arg(long, default_value_t = 100_000)]
        jobs: u64,
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
        db: Db,
        #[command(flatten)]
        keys: Keys,
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
        db: Db,
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
        db: Db,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The bench's progress line and figures are its output: only errors are logged by default.
    let default_filter = match cli.command {
        Command::Bench { .. } => "error",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nightshift: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            bind,
            db,
            keys,
            no_workers,
            no_demo,
            concurrency,
            secure_cookies,
            drain,
        } => {
            let worker = build(&db, &keys, concurrency, drain, no_demo).await?;
            if !no_workers {
                worker.start().await?;
            }
            let listener = tokio::net::TcpListener::bind(&bind)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
            let addr = listener.local_addr()?;
            let accounts = Accounts::new(worker.store().connection().clone());
            if accounts.count().await? == 0 {
                let token = accounts.create_setup_token().await?;
                tracing::warn!(
                    "no operator yet: create the first admin at http://{addr}/setup?token={token}"
                );
                eprintln!(
                    "\n  First run: create the first admin at http://{addr}/setup?token={token}\n"
                );
            }
            tracing::info!("admin at http://{addr}/");
            let auth = Auth::Sessions(SessionOptions {
                secure_cookies,
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
            let jobs = async {
                signal.await;
                worker.shutdown().await;
                Ok(())
            };
            tokio::try_join!(http, jobs)?;
        }
        Command::Worker {
            db,
            keys,
            no_demo,
            concurrency,
            drain,
        } => {
            let worker = build(&db, &keys, concurrency, drain, no_demo).await?;
            worker.start().await?;
            shutdown_signal().await;
            worker.shutdown().await;
        }
        Command::Migrate { db } => {
            nightshift::store::connect(&db.database_url).await?;
            eprintln!("migrations applied");
        }
        Command::Bench {
            database_url,
            json,
            jobs,
        } => {
            let opts = nightshift::bench::Options {
                database_url,
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
            command: OperatorCommand::Add { name, role, db },
        } => {
            let accounts = Accounts::new(nightshift::store::connect(&db.database_url).await?);
            let password = read_password()?;
            let op = accounts.add(&name, &password, role).await?;
            eprintln!("operator {} added as {}", op.name, op.role);
        }
        Command::Token {
            command: TokenCommand::Create { name, label, db },
        } => {
            let accounts = Accounts::new(nightshift::store::connect(&db.database_url).await?);
            let (token, _) = accounts.create_token(&name, &label).await?;
            println!("{token}");
        }
        Command::Secrets {
            command: SecretsCommand::Rotate { db, keys, retire },
        } => println!("{}", rotate_secrets(&db, &keys, retire).await?),
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

async fn build(
    db: &Db,
    keys: &Keys,
    concurrency: usize,
    drain: Drain,
    no_demo: bool,
) -> anyhow::Result<Worker> {
    let mut builder = Worker::builder()
        .database_url(&db.database_url)
        .concurrency(concurrency)
        .drain_timeout(std::time::Duration::from_secs(drain.drain_timeout));
    let key_file = keys.secret_key_file.as_deref();
    if let Some(keyring) = nightshift::secrets::keyring_for_url(&db.database_url, key_file)? {
        builder = builder.secret_key(keyring);
    }
    let worker = builder.build().await?;
    if !no_demo {
        nightshift::demo::register(&worker)?;
    }
    Ok(worker)
}

/// `secrets rotate [--retire]`: the key file is the one `serve` would use (the flag, or the
/// SQLite default); a key given in `NIGHTSHIFT_SECRET_KEY` cannot be rewritten.
async fn rotate_secrets(
    db: &Db,
    keys: &Keys,
    retire: bool,
) -> anyhow::Result<nightshift::secrets::KeyFileChange> {
    use nightshift::secrets;
    let usage = |msg: String| -> ! {
        use clap::CommandFactory;
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
    let Some(path) = secrets::key_file_path(&db.database_url, keys.secret_key_file.as_deref())
    else {
        usage("--secret-key-file is required: only SQLite has a default key file".into());
    };
    if retire {
        let conn = nightshift::store::connect(&db.database_url).await?;
        return secrets::retire_keys(&conn, &path).await;
    }
    let keyring = secrets::next_keyring(&path)?;
    let worker = Worker::builder()
        .database_url(&db.database_url)
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
