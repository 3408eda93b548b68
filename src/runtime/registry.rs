//! The cancellation registry: the jobs this node is executing, and how to tell each one to stop.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

/// Why a handler was told to stop. The first reason given wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// An operator aborted the job.
    Abort { by: String, at: i64 },
    /// The attempt ran past the kind's timeout.
    Timeout,
    /// The worker is shutting down and the drain timeout passed.
    Shutdown,
    /// This node could not renew its lease: another node may soon take its jobs over.
    LeaseLost,
}

/// One running job's stop signal: a token the handler sees, and the reason behind it.
#[derive(Debug, Clone, Default)]
pub(crate) struct StopSignal {
    pub token: CancellationToken,
    reason: Arc<OnceLock<StopReason>>,
}

impl StopSignal {
    pub fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason.get().cloned()
    }
}

/// Running jobs by id. A `std` mutex: it is held only to look up or change the map, never across
/// an await.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    running: Mutex<HashMap<i64, StopSignal>>,
}

impl Registry {
    /// The stop signal of a job claimed here: the one registered at claim time (an abort may
    /// already have reached it while the job waited for a slot), or a new one.
    pub fn signal(&self, job_id: i64) -> StopSignal {
        self.lock().entry(job_id).or_default().clone()
    }

    /// A new stop signal for a job just claimed here, in place of any left by an earlier run of
    /// it: that run's executor may not have let go yet (its completion is written, its guard
    /// not yet dropped), and its stop reason is not this run's.
    pub fn register(&self, job_id: i64) -> StopSignal {
        let signal = StopSignal::default();
        self.lock().insert(job_id, signal.clone());
        signal
    }

    pub fn remove(&self, job_id: i64) {
        self.lock().remove(&job_id);
    }

    /// Removes the entry of `job_id` if it is still `signal` (not a later run's).
    pub fn remove_own(&self, job_id: i64, signal: &StopSignal) {
        let mut running = self.lock();
        if running
            .get(&job_id)
            .is_some_and(|s| Arc::ptr_eq(&s.reason, &signal.reason))
        {
            running.remove(&job_id);
        }
    }

    /// Tells one job to stop; false if it does not run here.
    pub fn stop(&self, job_id: i64, reason: StopReason) -> bool {
        match self.lock().get(&job_id) {
            Some(signal) => {
                if !signal.token.is_cancelled() {
                    signal.stop(reason);
                }
                true
            }
            None => false,
        }
    }

    /// Tells every job claimed here to stop (those waiting for a slot never start).
    pub fn stop_all(&self, reason: StopReason) {
        for signal in self.lock().values() {
            signal.stop(reason.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether a job is held here (buffered, running or stopping), its completion not queued.
    pub fn holds(&self, job_id: i64) -> bool {
        self.lock().contains_key(&job_id)
    }

    /// Whether a job runs here and has not been told to stop yet.
    pub fn is_running(&self, job_id: i64) -> bool {
        self.lock()
            .get(&job_id)
            .is_some_and(|s| !s.token.is_cancelled())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, StopSignal>> {
        // A panic while holding this lock cannot leave the map inconsistent; keep going.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_stop_reason_wins() {
        let reg = Registry::default();
        let signal = reg.signal(7);
        assert!(reg.stop(
            7,
            StopReason::Abort {
                by: "alice".into(),
                at: 1
            }
        ));
        reg.stop_all(StopReason::Shutdown);
        assert!(signal.token.is_cancelled());
        assert_eq!(
            signal.reason(),
            Some(StopReason::Abort {
                by: "alice".into(),
                at: 1
            })
        );
        assert!(!reg.stop(8, StopReason::Shutdown), "not running here");
        reg.remove(7);
        assert_eq!(reg.len(), 0);
    }

    #[test]
    fn a_run_that_lets_go_late_leaves_the_next_runs_entry() {
        let reg = Registry::default();
        let first = reg.register(7);
        first.stop(StopReason::Shutdown);
        // Completed, claimed again here before the first run's executor let go.
        let second = reg.register(7);
        assert_eq!(
            second.reason(),
            None,
            "the next run starts with no stop reason"
        );
        reg.remove_own(7, &first);
        assert!(reg.holds(7), "the first run removed the next run's entry");
        assert!(reg.is_running(7));
        reg.remove_own(7, &second);
        assert!(!reg.holds(7));
    }
}
