//! This node's lease: the right to run the jobs it claimed, renewed by every heartbeat.
//!
//! Another node may reap this one once its heartbeat is `node_timeout` old. So this node stops
//! by itself earlier: if it could not renew its lease for `node_timeout − 2 × heartbeat_interval`
//! (a frozen process, a stalled database connection, a runtime starved by blocking handlers),
//! it tells its running jobs to stop, gives them back, and claims nothing until a heartbeat
//! succeeds again. A handler never runs here beside a new attempt started elsewhere.
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The lease of one node.
#[derive(Debug)]
pub(crate) struct Lease {
    /// How long a renewal holds.
    window: Duration,
    /// When the lease runs out (a renewal moves it).
    deadline: Mutex<Instant>,
    /// Set when the watchdog fenced this node; cleared by the next renewal.
    fenced: AtomicBool,
    renewed: Notify,
}

impl Lease {
    /// A lease held for `node_timeout − 2 × heartbeat_interval` after each renewal (at least one
    /// heartbeat interval).
    pub fn new(node_timeout: Duration, heartbeat_interval: Duration) -> Self {
        let window = node_timeout
            .saturating_sub(heartbeat_interval * 2)
            .max(heartbeat_interval);
        Lease {
            window,
            deadline: Mutex::new(Instant::now() + window),
            fenced: AtomicBool::new(false),
            renewed: Notify::new(),
        }
    }

    /// A heartbeat sent at `sent` was stored: the lease holds until `sent + window`. Returns
    /// whether the node had been fenced (its jobs were stopped meanwhile).
    pub fn renew(&self, sent: Instant) -> bool {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = sent + self.window;
        self.renewed.notify_waiters();
        self.fenced.swap(false, Ordering::SeqCst)
    }

    /// Whether this node may claim and run jobs now.
    pub fn is_held(&self) -> bool {
        !self.fenced.load(Ordering::SeqCst) && Instant::now() < self.deadline()
    }

    fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the lease runs out without a renewal, marks the node fenced, and returns.
    /// Returns at once if it has run out already.
    pub async fn expired(&self) {
        loop {
            let renewed = self.renewed.notified();
            let deadline = self.deadline();
            if Instant::now() >= deadline {
                if !self.fenced.swap(true, Ordering::SeqCst) {
                    return;
                }
                // Already fenced: wait for a renewal before watching again.
                renewed.await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = renewed => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_unrenewed_lease_runs_out_before_the_node_timeout() {
        let lease = Lease::new(Duration::from_secs(30), Duration::from_secs(5));
        let start = Instant::now();
        assert!(lease.is_held());
        lease.expired().await;
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        assert!(!lease.is_held());
        assert!(lease.renew(Instant::now()), "it had been fenced");
        assert!(lease.is_held());
    }
}
