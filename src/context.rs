//! What a running handler gets: its job's identity, a way to report (log, progress, results),
//! and the signal that it should stop.
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::runtime::completer::WriteOp;
use crate::store::Run;

/// The longest log line kept; a longer one is cut and marked.
pub const MAX_LOG_LINE: usize = 8 * 1024;
const TRUNCATED: &str = "…[truncated]";

/// One cell of a result row: a value, and an error if that value is wrong. Any error cell makes
/// the job end in `exception`.
///
/// ```
/// use nightshift::ResultCell;
/// let row = vec![ResultCell::ok("SKU-1"), ResultCell::error("-3", "price must be positive")];
/// assert!(row[1].error.is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultCell {
    /// What the cell shows.
    pub value: String,
    /// What is wrong with it, if anything.
    pub error: Option<String>,
}

impl ResultCell {
    /// A cell without error.
    pub fn ok(value: impl Into<String>) -> Self {
        ResultCell {
            value: value.into(),
            error: None,
        }
    }

    /// A cell marked with an error.
    pub fn error(value: impl Into<String>, error: impl Into<String>) -> Self {
        ResultCell {
            value: value.into(),
            error: Some(error.into()),
        }
    }
}

/// The runtime stopped taking reports (it is shutting down and has flushed).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the worker is no longer accepting reports for this job (it stopped, or nothing could be \
     written for 30 s: is a database transaction held open while reporting?)"
)]
pub struct ReportClosed;

/// How long a report may wait for room in the queue before the handler is told it failed.
/// Bounded so that a handler holding the database connection while the queue is full (its
/// reports waiting on the very connection it holds) fails instead of waiting for ever.
const REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Handed to every handler call. Cheap to clone; clones report for the same job.
///
/// Reports are buffered and written in batches (about every 100 ms), so a chatty handler cannot
/// flood the database; everything reported before the handler returns is stored before the job
/// is marked finished.
///
/// ```no_run
/// # use nightshift::JobContext;
/// async fn work(_args: (), ctx: JobContext) -> anyhow::Result<()> {
///     for i in 1..=10 {
///         if ctx.is_cancelled() {
///             ctx.log("stopping early").await?;
///             return Ok(());
///         }
///         ctx.set_progress(i * 10).await?;
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

struct Inner {
    job_id: i64,
    attempt: u32,
    /// What its reports are fenced on: they land only on this run of the job.
    run: Run,
    token: CancellationToken,
    tx: mpsc::Sender<WriteOp>,
    redacted_args: Value,
}

impl JobContext {
    pub(crate) fn new(
        job_id: i64,
        run: Run,
        token: CancellationToken,
        tx: mpsc::Sender<WriteOp>,
        redacted_args: Value,
    ) -> Self {
        JobContext {
            inner: Arc::new(Inner {
                job_id,
                attempt: run.attempt.max(1) as u32,
                run,
                token,
                tx,
                redacted_args,
            }),
        }
    }

    /// The job's id. With [`JobContext::attempt`], a key for effects outside the database that
    /// must not happen twice (a job runs at least once; see [`crate::state`]).
    ///
    /// ```
    /// # use nightshift::{JobArgs, JobContext};
    /// # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// # struct Charge {}
    /// # impl JobArgs for Charge { const KIND: &'static str = "charge"; }
    /// async fn charge(_: Charge, ctx: JobContext) -> anyhow::Result<()> {
    ///     // The payment provider drops a second request with the same key.
    ///     let idempotency_key = format!("job-{}", ctx.job_id());
    ///     ctx.log(format!("charging with key {idempotency_key}")).await?;
    ///     Ok(())
    /// }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let run = nightshift::testing::perform(charge, Charge {}).await;
    /// # assert_eq!(run.logs, ["charging with key job-0"]);
    /// # }
    /// ```
    pub fn job_id(&self) -> i64 {
        self.inner.job_id
    }

    /// Which attempt this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The arguments with secret fields masked: safe to log.
    ///
    /// ```
    /// use nightshift::{JobArgs, JobContext};
    /// use nightshift::testing::perform;
    /// # use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    /// struct Upload {
    ///     path: String,
    ///     #[schemars(extend("writeOnly" = true))]
    ///     api_key: String,
    /// }
    /// impl JobArgs for Upload { const KIND: &'static str = "upload"; }
    ///
    /// async fn upload(args: Upload, ctx: JobContext) -> anyhow::Result<()> {
    ///     ctx.log(format!("started with {}", ctx.redacted_args())).await?;
    ///     let _key = args.api_key; // the handler itself gets the real value
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let run = perform(upload, Upload { path: "a.csv".into(), api_key: "k-123".into() }).await;
    /// assert_eq!(run.logs, [r#"started with {"path":"a.csv","api_key":"••••••"}"#]);
    /// # }
    /// ```
    pub fn redacted_args(&self) -> &Value {
        &self.inner.redacted_args
    }

    /// Appends a line to the job's log (cut at 8 KiB).
    pub async fn log(&self, line: impl Into<String>) -> Result<(), ReportClosed> {
        let line = truncate(line.into(), MAX_LOG_LINE);
        self.send(WriteOp::Log {
            job_id: self.inner.job_id,
            run: self.inner.run,
            at: now_ms(),
            line,
        })
        .await
    }

    /// Sets the progress bar, 0 to 100 (values outside are clamped).
    pub async fn set_progress(&self, percent: impl Into<i64>) -> Result<(), ReportClosed> {
        let progress = percent.into().clamp(0, 100) as i32;
        self.send(WriteOp::Progress {
            job_id: self.inner.job_id,
            run: self.inner.run,
            progress: Some(progress),
            text: None,
        })
        .await
    }

    /// Sets the short status line shown under the progress bar.
    pub async fn set_progress_text(&self, text: impl Into<String>) -> Result<(), ReportClosed> {
        self.send(WriteOp::Progress {
            job_id: self.inner.job_id,
            run: self.inner.run,
            progress: None,
            text: Some(truncate(text.into(), 1024)),
        })
        .await
    }

    /// Adds a row to the job's results table. A row with an error cell makes the job end in
    /// `exception` once the handler returns.
    ///
    /// ```
    /// use nightshift::testing::{Outcome, perform};
    /// use nightshift::{JobArgs, JobContext, ResultCell};
    /// # use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    /// struct ImportPrices { prices: Vec<(String, i64)> }
    /// impl JobArgs for ImportPrices { const KIND: &'static str = "import_prices"; }
    ///
    /// async fn import(args: ImportPrices, ctx: JobContext) -> anyhow::Result<()> {
    ///     for (sku, cents) in args.prices {
    ///         let price = if cents > 0 {
    ///             ResultCell::ok(cents.to_string())
    ///         } else {
    ///             ResultCell::error(cents.to_string(), "price must be positive")
    ///         };
    ///         ctx.add_result_row(vec![ResultCell::ok(sku), price]).await?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let args = ImportPrices { prices: vec![("A-1".into(), 250), ("B-2".into(), -3)] };
    /// let run = perform(import, args).await;
    /// assert_eq!(run.rows.len(), 2);
    /// assert_eq!(run.outcome, Outcome::ErrorRows(1)); // the job would end `exception`
    /// # }
    /// ```
    pub async fn add_result_row(&self, cells: Vec<ResultCell>) -> Result<(), ReportClosed> {
        let cells = cells
            .into_iter()
            .map(|c| ResultCell {
                value: truncate(c.value, MAX_LOG_LINE),
                error: c.error.map(|e| truncate(e, MAX_LOG_LINE)),
            })
            .collect();
        self.send(WriteOp::Result {
            job_id: self.inner.job_id,
            run: self.inner.run,
            cells,
        })
        .await
    }

    /// Whether the handler has been asked to stop (abort, timeout or shutdown).
    pub fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Completes when the handler is asked to stop; select on it around long awaits.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nightshift::JobContext;
    ///
    /// async fn wait_for_export(_: (), ctx: JobContext) -> anyhow::Result<()> {
    ///     tokio::select! {
    ///         _ = ctx.cancelled() => {
    ///             ctx.log("asked to stop; the export carries on without us").await?;
    ///         }
    ///         _ = tokio::time::sleep(Duration::from_millis(10)) => {
    ///             ctx.log("export ready").await?;
    ///         }
    ///     }
    ///     Ok(())
    /// }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let kind = nightshift::JobKind::new("wait", wait_for_export);
    /// # let run = nightshift::testing::perform_kind(&kind, serde_json::Value::Null).await;
    /// # assert_eq!(run.logs, ["export ready"]);
    /// # }
    /// ```
    pub async fn cancelled(&self) {
        self.inner.token.cancelled().await
    }

    async fn send(&self, op: WriteOp) -> Result<(), ReportClosed> {
        // A bounded channel: a handler that reports faster than the database takes it waits here.
        match tokio::time::timeout(REPORT_WAIT, self.inner.tx.send(op)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(ReportClosed),
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut. NUL characters
/// (which PostgreSQL refuses in text) become U+FFFD: every text a handler reports goes through
/// here before it is stored.
pub(crate) fn truncate(s: String, max: usize) -> String {
    let mut s = crate::text::scrub_nul(s);
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub(TRUNCATED.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(TRUNCATED);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundary() {
        let s = "é".repeat(10_000);
        let t = truncate(s, MAX_LOG_LINE);
        assert!(t.len() <= MAX_LOG_LINE);
        assert!(t.ends_with(TRUNCATED));
        assert_eq!(truncate("short".into(), 10), "short");
    }
}
