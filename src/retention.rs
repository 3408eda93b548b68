//! Retention: finished jobs (with their logs, results and attempts), audit entries and login
//! throttle counters are deleted once old enough, by one node at a time, in small batches
//! with a pause between them so claims and completions never wait long behind the pruner.
//!
//! Defaults: done and cancelled jobs 14 days (outcomes nobody needs to investigate: a
//! cancelled job was cancelled on purpose, by an operator or its handler), failed jobs
//! (`exception`, `killed`) 90 days (kept longer to investigate and compare), the audit log a
//! year, throttle counters a day (they count 15-minute windows). `None` keeps them for ever.
use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::Result;
use crate::runtime::Shared;
use crate::state::JobStatus;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// How long finished jobs and old records are kept; `None`: for ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Jobs that ended `done`.
    pub done: Option<Duration>,
    /// Jobs that ended `exception` or `killed`.
    pub errors: Option<Duration>,
    /// Jobs that ended `cancelled`.
    pub cancelled: Option<Duration>,
    /// Audit log entries.
    pub audit: Option<Duration>,
    /// Login-throttle counters (only those that lock nothing any more).
    pub throttle: Option<Duration>,
    /// How often the pruner runs (one node per interval).
    pub interval: Duration,
    /// Rows deleted per transaction.
    pub batch: u64,
    /// The pause between two batches.
    pub pause: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            done: Some(DAY * 14),
            errors: Some(DAY * 90),
            cancelled: Some(DAY * 14),
            audit: Some(DAY * 365),
            throttle: Some(DAY),
            interval: Duration::from_secs(600),
            batch: 1000,
            pause: Duration::from_millis(20),
        }
    }
}

impl Retention {
    /// `days` days; 0: kept for ever (`None`). For settings given in days.
    pub fn days(days: u64) -> Option<Duration> {
        (days > 0).then(|| Duration::from_secs(days.saturating_mul(DAY.as_secs())))
    }

    /// Keeps everything: no pruning.
    pub fn forever() -> Self {
        Retention {
            done: None,
            errors: None,
            cancelled: None,
            audit: None,
            throttle: None,
            ..Retention::default()
        }
    }
}

impl Client {
    /// Prunes now on this node, whatever the interval (another node may be pruning too: each
    /// batch is its own transaction and deleting twice deletes nothing), and records the run.
    /// Returns the rows deleted, by what they were.
    pub async fn prune(&self) -> Result<BTreeMap<String, u64>> {
        let shared = &self.shared;
        let now = shared.clock.now();
        shared
            .store
            .take_prune_turn(&shared.node.id, now, i64::MAX)
            .await?;
        run_and_record(shared, &CancellationToken::new()).await
    }

    /// The pruner's last run on any node, if one ever started.
    pub async fn last_prune(&self) -> Result<Option<crate::store::PruneRun>> {
        self.shared.store.last_prune().await
    }
}

/// One pass, recorded (its counts, or why it stopped).
pub(crate) async fn run_and_record(
    shared: &Shared,
    stop: &CancellationToken,
) -> Result<BTreeMap<String, u64>> {
    let mut deleted = BTreeMap::new();
    let result = pass(shared, stop, &mut deleted).await;
    let error = result.as_ref().err().map(|e| e.to_string());
    shared
        .store
        .end_prune_turn(shared.clock.now(), &deleted, error)
        .await?;
    result.map(|()| deleted)
}

async fn pass(
    shared: &Shared,
    stop: &CancellationToken,
    deleted: &mut BTreeMap<String, u64>,
) -> Result<()> {
    let r = &shared.config.retention;
    let store = &shared.store;
    let now = shared.clock.now();
    let cutoff = |keep: Duration| now - keep.as_millis().min(i64::MAX as u128) as i64;
    let jobs = [
        (JobStatus::Done, r.done),
        (JobStatus::Exception, r.errors),
        (JobStatus::Killed, r.errors),
        (JobStatus::Cancelled, r.cancelled),
    ];
    for (status, keep) in jobs {
        let Some(keep) = keep else { continue };
        let before = cutoff(keep);
        let n = batches(r, stop, || {
            store.prune_jobs(status.as_str(), before, r.batch)
        })
        .await?;
        deleted.insert(status.as_str().to_owned(), n);
    }
    if let Some(keep) = r.audit {
        let before = cutoff(keep);
        let n = batches(r, stop, || store.prune_audit(before, r.batch)).await?;
        deleted.insert("audit".into(), n);
    }
    if let Some(keep) = r.throttle {
        let before = cutoff(keep);
        let n = batches(r, stop, || store.prune_throttle(before, now, r.batch)).await?;
        deleted.insert("throttle".into(), n);
    }
    Ok(())
}

/// Runs `batch` until it deletes less than a full batch (or `stop`), pausing between batches;
/// returns the total deleted.
async fn batches<F, Fut>(r: &Retention, stop: &CancellationToken, mut batch: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if n < r.batch || stop.is_cancelled() {
            return Ok(total);
        }
        tokio::select! {
            _ = tokio::time::sleep(r.pause) => {}
            _ = stop.cancelled() => return Ok(total),
        }
    }
}

/// The pruner task: every `interval`, this node prunes if no node has in the last interval.
pub(crate) async fn run(shared: std::sync::Arc<Shared>, stop: CancellationToken) {
    let interval = shared.config.retention.interval;
    // Not in the burst of a node's start (its first claims, other nodes' rescues): a minute
    // later, then every interval.
    let first = tokio::time::Instant::now() + interval.min(Duration::from_secs(60));
    let mut tick = tokio::time::interval_at(first, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = shared.clock.now();
        // A little slack: nodes' ticks drift, and the one that pruned last must not lose its
        // turn to a tick a few milliseconds early.
        let since = now - interval.as_millis() as i64 + 1_000;
        match shared
            .store
            .take_prune_turn(&shared.node.id, now, since)
            .await
        {
            Ok(true) => match run_and_record(&shared, &stop).await {
                Ok(deleted) => tracing::debug!(?deleted, "pruned old jobs and records"),
                Err(e) => tracing::warn!("pruning failed: {e}"),
            },
            Ok(false) => {}
            Err(e) => tracing::warn!("could not take the pruner's turn: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_of_zero_keep_for_ever_and_huge_ones_do_not_overflow() {
        assert_eq!(Retention::days(0), None);
        assert_eq!(Retention::days(2), Some(Duration::from_secs(2 * 86_400)));
        assert!(Retention::days(u64::MAX).is_some());
        let d = Retention::default();
        assert_eq!(d.done, Retention::days(14));
        assert_eq!(d.errors, Retention::days(90));
        assert_eq!(d.cancelled, Retention::days(14));
        assert_eq!(d.audit, Retention::days(365));
    }
}
