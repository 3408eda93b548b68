//! Demo job kinds, registered by `nightshift serve` unless `--no-demo`: one of each thing the
//! admin can show.
use std::time::Duration;

use anyhow::bail;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::context::{JobContext, ResultCell};
use crate::kind::{Backoff, JobKind};
use crate::worker::Worker;

/// No arguments.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct NoArgs {}

/// Arguments of "Send Newsletter", as in QOR Worker's README.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SendNewsletter {
    /// The newsletter's subject line.
    pub subject: String,
    /// The body of the newsletter.
    #[schemars(extend("x-widget" = "textarea"))]
    pub content: String,
    /// The mail server's password (stored, never shown again).
    #[schemars(extend("writeOnly" = true))]
    pub send_password: String,
}

/// Arguments of "Import Products".
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ImportProducts {
    /// How many rows the import file has.
    #[serde(default = "default_rows")]
    pub rows: u32,
}

fn default_rows() -> u32 {
    20
}

/// Arguments of "Flaky Report".
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct FlakyReport {
    /// The chance, in percent, that an attempt fails.
    #[serde(default = "default_failure")]
    pub failure_percent: u8,
}

fn default_failure() -> u8 {
    50
}

/// Arguments of "Long Export".
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct LongExport {
    /// How long the export takes, in minutes.
    #[serde(default = "default_minutes")]
    pub minutes: u32,
    /// What to export.
    #[serde(default)]
    pub format: ExportFormat,
}

fn default_minutes() -> u32 {
    3
}

/// Export file formats.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Comma-separated values.
    #[default]
    Csv,
    /// JSON lines.
    Json,
}

/// Registers every demo kind on `worker`.
pub fn register(worker: &Worker) -> crate::Result<()> {
    worker.register(JobKind::new("Ping", ping).group("Demo"))?;
    worker.register(
        JobKind::new("Send Newsletter", send_newsletter)
            .group("Mail")
            .schedulable(),
    )?;
    worker.register(
        JobKind::new("Import Products", import_products)
            .group("Catalog")
            .result_columns(["SKU", "Name", "Price"]),
    )?;
    worker.register(
        JobKind::new("Flaky Report", flaky_report)
            .group("Reports")
            .max_attempts(4)
            .backoff(Backoff::exponential(
                Duration::from_secs(2),
                Duration::from_secs(30),
            )),
    )?;
    worker.register(
        JobKind::new("Long Export", long_export)
            .group("Reports")
            .schedulable(),
    )?;
    Ok(())
}

async fn ping(_: NoArgs, ctx: JobContext) -> anyhow::Result<()> {
    ctx.log("pong").await?;
    ctx.set_progress(100).await?;
    Ok(())
}

async fn send_newsletter(_args: SendNewsletter, ctx: JobContext) -> anyhow::Result<()> {
    ctx.log("Started sending newsletters...").await?;
    ctx.log(format!("Argument: {}", ctx.redacted_args()))
        .await?;
    for i in 1..=100 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = ctx.cancelled() => {
                ctx.log(format!("Stopped after {} newsletters", i - 1)).await?;
                return Ok(());
            }
        }
        ctx.log(format!("Sending newsletter {i}...")).await?;
        ctx.set_progress(i).await?;
        ctx.set_progress_text(format!("Sent {i} of 100")).await?;
    }
    ctx.log("Finished send newsletters").await?;
    Ok(())
}

async fn import_products(args: ImportProducts, ctx: JobContext) -> anyhow::Result<()> {
    let rows = args.rows.clamp(1, 10_000);
    for i in 1..=rows {
        if ctx.is_cancelled() {
            return Ok(());
        }
        let sku = format!("SKU-{i:04}");
        let price = if i % 7 == 0 {
            ResultCell::error("-1.00", "price must be positive")
        } else {
            ResultCell::ok(format!("{}.99", i % 50 + 1))
        };
        ctx.add_result_row(vec![
            ResultCell::ok(sku.clone()),
            ResultCell::ok(format!("Product {i}")),
            price,
        ])
        .await?;
        ctx.log(format!("Imported {sku}")).await?;
        ctx.set_progress(i as i64 * 100 / rows as i64).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn flaky_report(args: FlakyReport, ctx: JobContext) -> anyhow::Result<()> {
    ctx.log(format!("Building the report (attempt {})", ctx.attempt()))
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    if fastrand::u8(0..100) < args.failure_percent.min(100) {
        bail!("the reporting database timed out");
    }
    ctx.set_progress(100).await?;
    ctx.log("Report ready").await?;
    Ok(())
}

async fn long_export(args: LongExport, ctx: JobContext) -> anyhow::Result<()> {
    let steps = args.minutes.clamp(1, 60) * 60;
    let ext = match args.format {
        ExportFormat::Csv => "csv",
        ExportFormat::Json => "jsonl",
    };
    for s in 1..=steps {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = ctx.cancelled() => return Ok(()),
        }
        ctx.set_progress(s as i64 * 100 / steps as i64).await?;
        ctx.set_progress_text(format!("Exported {s} of {steps} chunks"))
            .await?;
        if s % 30 == 0 {
            ctx.log(format!("Checkpoint at chunk {s}")).await?;
        }
    }
    // A file name, not a path: the demo writes no file, and a path would be a link to nowhere.
    ctx.set_progress_text(format!(
        "Done: {steps} chunks written to export-{}.{ext}",
        ctx.job_id()
    ))
    .await?;
    Ok(())
}
