//! The job state machine: every state a job can be in and every transition allowed between them.
//!
//! ```text
//!            ┌──────── update ────────┐
//!            ▼                        │
//!   new ◄──────────► scheduled ───────┘   (update moves between the two; a claim first
//!    │  \           /                      stages scheduled jobs that came due to new)
//!    │   cancel    cancel
//!    │      ▼     ▼
//!    │    cancelled
//!  claim (new only)
//!    ▼
//!  running ──── abort ───► aborting ───► killed
//!    │  │  └─ handler cancels ─► cancelled
//!    │  └─ retry / snooze / shutdown ─► new | scheduled  (attempt kept or given back)
//!    ▼
//!  done | exception        (an aborting job ends killed, whatever its handler returns)
//! ```
//!
//! The store applies every transition as a compare-and-set (`UPDATE … WHERE id = ? AND status IN
//! (…)`), so a late writer, say a completion arriving after a rescue, changes nothing.
//!
//! # Guarantees, and their limits
//!
//! - **Claimed once.** A waiting job moves to `running` for exactly one node per attempt (one
//!   statement; `FOR UPDATE SKIP LOCKED` on PostgreSQL, one writer on SQLite).
//! - **Fenced attempts.** Every write an attempt makes — progress, log lines, result rows,
//!   error counts, its completion — lands only while the job is still that attempt on that node
//!   (`id`, `attempt`, `locked_by`, status `running`/`aborting`). A stale attempt's writes are
//!   dropped. Log lines and result rows carry their attempt; a claim resets the attempt's
//!   progress and error count, and an attempt given back by a shutdown loses its result rows.
//! - **Leases.** A node's heartbeat (on a connection of its own, stamped with the database's
//!   clock) renews its lease. A node that could not renew it for `node_timeout − 2 ×
//!   heartbeat_interval` tells its handlers to stop, stops them by force one heartbeat interval
//!   later, gives their jobs back and claims nothing until it renews. Other nodes reap it only
//!   after its heartbeat has been `node_timeout` old for two of their rounds. So a slow or
//!   frozen node's handler does not run beside the attempt that replaces it — as long as the
//!   handler yields to the runtime: a handler blocking its thread cannot be stopped, and its
//!   *writes* are still fenced, but what it does outside Nightshift (an email sent) is not.
//! - **At least once.** A job whose node dies, freezes past its lease or is shut down mid-run
//!   runs again (a rescue uses an attempt; a shutdown gives it back). A handler must therefore
//!   be idempotent for its side effects outside the database: check before acting, or key its
//!   effects by job id and attempt ([`crate::JobContext::job_id`], `attempt`).
//! - **Nothing stays `running`.** A job is finished by its handler, by the abort grace period, by
//!   its timeout, by a shutdown (back to `new`), or by the rescue of a dead node. A completion
//!   the database refuses is retried alone, then ended plainly by maintenance.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life. Stored as the lower-case name (`"running"`).
///
/// ```
/// use nightshift::JobStatus;
///
/// let status: JobStatus = "scheduled".parse().unwrap();
/// assert_eq!(status, JobStatus::Scheduled);
/// assert_eq!(status.to_string(), "scheduled");
/// assert!(status.is_waiting() && !status.is_finished());
/// assert!("paused".parse::<JobStatus>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for a free worker (always due: claims take only `new` jobs). Reached by
    /// enqueueing, by a scheduled job coming due, by an update without a future time, by a retry
    /// without backoff, and by a graceful shutdown giving an interrupted job back.
    New,
    /// Waiting for its time: a scheduled job, or a failed attempt waiting out its backoff. It
    /// becomes `new` when it comes due (staged by the next claim, in the claim's transaction).
    Scheduled,
    /// A handler is executing it on the node named in `locked_by`.
    Running,
    /// An operator asked to abort it; the handler has been told to stop and is stopped by force
    /// after the grace period.
    Aborting,
    /// The handler returned `Ok` and reported no result row with an error. Final.
    Done,
    /// The handler failed, panicked or timed out on its last attempt, reported result rows with
    /// errors, had arguments it could not read, or its worker was lost on its last attempt. Final.
    Exception,
    /// Aborted while running. Final.
    Killed,
    /// Cancelled before it started, or by its own handler ([`crate::cancel`]). Final.
    Cancelled,
}

impl JobStatus {
    /// Every state, in the order the admin lists them.
    pub const ALL: [JobStatus; 8] = [
        JobStatus::New,
        JobStatus::Scheduled,
        JobStatus::Running,
        JobStatus::Aborting,
        JobStatus::Done,
        JobStatus::Exception,
        JobStatus::Killed,
        JobStatus::Cancelled,
    ];

    /// The states a worker may claim a job from.
    pub const WAITING: [JobStatus; 2] = [JobStatus::New, JobStatus::Scheduled];

    /// The states in which a handler may still be executing.
    pub const ACTIVE: [JobStatus; 2] = [JobStatus::Running, JobStatus::Aborting];

    /// The name stored in the database and shown in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::New => "new",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Running => "running",
            JobStatus::Aborting => "aborting",
            JobStatus::Done => "done",
            JobStatus::Exception => "exception",
            JobStatus::Killed => "killed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// A finished job never changes again; rerun creates a new one.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Exception | JobStatus::Killed | JobStatus::Cancelled
        )
    }

    /// Only waiting jobs may start, be updated or be cancelled.
    pub fn is_waiting(self) -> bool {
        matches!(self, JobStatus::New | JobStatus::Scheduled)
    }

    /// Whether the state machine allows going from `self` to `next`.
    ///
    /// ```
    /// use nightshift::JobStatus::*;
    /// assert!(Running.can_become(Aborting));
    /// assert!(Running.can_become(Cancelled)); // its handler cancelled it
    /// assert!(!Killed.can_become(Cancelled));
    /// assert!(!Done.can_become(New));
    /// ```
    pub fn can_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        match (self, next) {
            // Update (and the time passing) moves a waiting job between the two waiting states;
            // claim starts it; cancel ends it.
            (New | Scheduled, New | Scheduled | Running | Cancelled) => true,
            // A handler finishes, fails for good, cancels its job (`crate::cancel`), is aborted,
            // or gives its job back for a retry or a snooze (`scheduled`/`new`), after a shutdown
            // interrupted it (`new`) or its worker was lost.
            (Running, Done | Exception | Cancelled | Aborting | Scheduled | New) => true,
            // An abort always ends `killed`, whatever the handler returns.
            (Aborting, Killed) => true,
            _ => false,
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of [`JobStatus::ALL`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown job status {}", crate::text::quote(.0))]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_states_never_change() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_finished()) {
            for to in JobStatus::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), s);
        }
        assert!("bogus".parse::<JobStatus>().is_err());
    }
}
