//! The `nightshift` binary: the admin and workers (`serve`), an extra worker node (`worker`), and
//! `migrate`.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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

#[derive(Subcommand)]
enum Command {
    /// Serve the admin and run workers.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "NIGHTSHIFT_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
        #[command(flatten)]
        db: Db,
        /// Serve the admin only; run no jobs on this node.
        #[arg(long)]
        no_workers: bool,
        /// Do not register the demo job kinds.
        #[arg(long)]
        no_demo: bool,
        /// Jobs run at once on this node.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Run workers only (an extra node), no HTTP.
    Worker {
        #[command(flatten)]
        db: Db,
        /// Do not register the demo job kinds.
        #[arg(long)]
        no_demo: bool,
        /// Jobs run at once on this node.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Apply database migrations.
    Migrate {
        #[command(flatten)]
        db: Db,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
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
            no_workers,
            no_demo,
            concurrency,
        } => {
            let worker = build(&db, concurrency, no_demo).await?;
            if !no_workers {
                worker.start().await?;
            }
            let listener = tokio::net::TcpListener::bind(&bind)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
            tracing::info!("admin at http://{}/", listener.local_addr()?);
            let app = nightshift::admin::router(worker.clone());
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?;
            worker.shutdown().await;
        }
        Command::Worker {
            db,
            no_demo,
            concurrency,
        } => {
            let worker = build(&db, concurrency, no_demo).await?;
            worker.start().await?;
            shutdown_signal().await;
            worker.shutdown().await;
        }
        Command::Migrate { db } => {
            nightshift::store::connect(&db.database_url).await?;
            eprintln!("migrations applied");
        }
    }
    Ok(())
}

async fn build(db: &Db, concurrency: usize, no_demo: bool) -> anyhow::Result<Worker> {
    let worker = Worker::builder()
        .database_url(&db.database_url)
        .concurrency(concurrency)
        .build()
        .await?;
    if !no_demo {
        nightshift::demo::register(&worker)?;
    }
    Ok(worker)
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
