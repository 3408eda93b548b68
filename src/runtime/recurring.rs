//! Recurring ticks: sleeps until the earliest tick of the schedules whose kind this node knows
//! (at most `poll_interval`, to see changes made elsewhere), then fires every tick due.
//!
//! Firing a tick is one transaction: the compare-and-set of the schedule's `next_run_at` from
//! this tick to the following one, the run's row (unique per schedule and tick) and the job,
//! inserted through the ordinary insert path. Whichever node commits first fires the tick; the
//! others' compare-and-set finds the next tick moved and changes nothing.
use std::sync::Arc;
use std::time::Duration;

use sea_orm::TransactionTrait;
use serde_json::Value;
use tokio::time::Instant;

use super::Shared;
use crate::client::Client;
use crate::entity::recurring;
use crate::error::{Error, Result};
use crate::events::JobEvent;
use crate::job::Job;
use crate::new_job::NewJob;
use crate::recurring::{CronSchedule, MISSED_AFTER, Missed};

pub(crate) async fn run(shared: Arc<Shared>) {
    let client = Client {
        shared: shared.clone(),
    };
    loop {
        if shared.stopping.is_cancelled() {
            return;
        }
        let kinds: Vec<String> = shared
            .kinds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        let now = shared.clock.now();
        let mut fired_all = true;
        match shared.store.recurring_due(now, &kinds).await {
            Ok(due) => {
                for row in due {
                    if shared.stopping.is_cancelled() {
                        return;
                    }
                    let (id, name) = (row.id, row.name.clone());
                    // A shutdown does not wait for a slow database: the transaction is dropped
                    // (rolled back), and the tick is fired by whoever runs next.
                    let fired = tokio::select! {
                        r = fire(&client, row) => r,
                        _ = shared.stopping.cancelled() => return,
                    };
                    if let Err(e) = fired {
                        fired_all = false;
                        tracing::error!(schedule = %name, id, "firing a recurring tick failed: {e}");
                    }
                }
            }
            Err(e) => {
                fired_all = false;
                tracing::error!("looking up due recurring ticks failed: {e}");
            }
        }
        // Schedules created or resumed by another process are seen within half the lateness
        // after which a tick counts as missed, whatever the poll interval.
        let poll = Instant::now() + shared.config.poll_interval.min(MISSED_AFTER / 2);
        let until = if !fired_all {
            // Try again, but not in a tight loop.
            Instant::now() + Duration::from_secs(1)
        } else {
            match shared.store.recurring_next_due(&kinds).await {
                Ok(Some(next)) => {
                    let wait = next - shared.clock.now();
                    if wait <= 0 {
                        Instant::now()
                    } else {
                        (Instant::now() + Duration::from_millis(wait as u64)).min(poll)
                    }
                }
                Ok(None) => poll,
                Err(e) => {
                    tracing::error!("looking up the next recurring tick failed: {e}");
                    poll
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = shared.recurring.wake.notified() => {}
            _ = shared.stopping.cancelled() => return,
        }
    }
}

/// What to do with a schedule whose next tick (`due`) has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// The tick to make a job for, and why (`tick` or `missed`); `None`: none.
    pub fire: Option<(i64, &'static str)>,
    /// Whether missed ticks were dropped (recorded as a `skipped` run).
    pub skipped: bool,
    /// The next tick after this step.
    pub next: Option<i64>,
}

/// A tick on time fires and the schedule moves to the following one. A tick more than
/// [`MISSED_AFTER`] late was missed, with every other tick up to then: they run once (one job)
/// or not at all, and the schedule moves to its first tick that is still on time.
pub(crate) fn plan(schedule: &CronSchedule, due: i64, now: i64, missed: Missed) -> Step {
    let grace = MISSED_AFTER.as_millis() as i64;
    if now - due < grace {
        return Step {
            fire: Some((due, "tick")),
            skipped: false,
            next: schedule.next_after_ms(due),
        };
    }
    let next = schedule.next_after_ms(now - grace);
    match missed {
        Missed::RunOnce => Step {
            fire: Some((due, "missed")),
            skipped: false,
            next,
        },
        Missed::Skip => Step {
            fire: None,
            skipped: true,
            next,
        },
    }
}

/// Fires `row`'s due tick (or handles its missed ticks): at most one job, on at most one node.
async fn fire(client: &Client, row: recurring::Model) -> Result<()> {
    let shared = &client.shared;
    let Some(due) = row.next_run_at else {
        return Ok(());
    };
    let store = &shared.store;
    let now = shared.clock.now();
    let step = match CronSchedule::new(&row.cron, &row.timezone) {
        Ok(schedule) => plan(&schedule, due, now, row.missed.parse().unwrap_or_default()),
        Err(e) => {
            // Written by hand, or by a node whose cron or time-zone data is newer than ours:
            // pause it, visibly, rather than end it for every node or fail every second.
            tracing::error!(schedule = %row.name, "recurring schedule paused: {e}");
            store
                .recurring_set_paused(row.id, true, None, "nightshift", now)
                .await?;
            return Ok(());
        }
    };
    let db = store.connection();
    let created = crate::store::retry_busy(|| async {
        let tx = db.begin().await?;
        if !store
            .recurring_advance(&tx, row.id, due, step.next, Some(due), Some(&row.def_hash))
            .await?
        {
            // Another node fired it, or an operator changed the schedule meanwhile.
            tx.rollback().await?;
            return Ok(None);
        }
        let mut created = None;
        if step.skipped {
            store
                .recurring_add_run(&tx, row.id, Some(due), "skipped", now)
                .await?;
        }
        if let Some((tick, reason)) = step.fire
            && let Some(run) = store
                .recurring_add_run(&tx, row.id, Some(tick), reason, now)
                .await?
        {
            match insert_job(client, &tx, &row).await {
                Ok(job) => {
                    store
                        .recurring_run_result(&tx, run, Some(job.id), None)
                        .await?;
                    created = Some(job);
                }
                // The kind no longer takes these arguments (or is gone): recorded, not retried.
                Err(
                    e @ (Error::InvalidArgs { .. } | Error::UnknownKind(_) | Error::Corrupt(_)),
                ) => {
                    // Shown to every viewer: never a quoted value (it may be a secret).
                    let why = without_quoted_values(&e.to_string());
                    tracing::error!(schedule = %row.name, "recurring tick made no job: {why}");
                    store
                        .recurring_run_result(&tx, run, None, Some(why))
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        tx.commit().await?;
        Ok(created)
    })
    .await?;
    if let Some(job) = created {
        tracing::debug!(schedule = %row.name, job_id = job.id, "recurring tick fired");
        announce(shared, &job);
    }
    Ok(())
}

/// `invalid type: string "hunter2", expected i64` → `invalid type: string "…", expected i64`.
fn without_quoted_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        if c == '"' {
            if !inside {
                out.push_str("\"…");
            } else {
                out.push('"');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    if inside {
        out.push('"');
    }
    out
}

async fn insert_job<C: sea_orm::ConnectionTrait>(
    client: &Client,
    conn: &C,
    row: &recurring::Model,
) -> Result<Job> {
    let args: Value = serde_json::from_str(&row.args).map_err(|e| Error::Corrupt(e.to_string()))?;
    let job =
        NewJob::from_value(row.kind.clone(), args).created_by(format!("recurring:{}", row.name));
    client.insert_in(conn, job).await
}

/// Tells this node's listeners (the admin's live lists) and scheduler about a job inserted in
/// a transaction that has committed.
pub(crate) fn announce(shared: &Shared, job: &Job) {
    shared.events.send(JobEvent::Status {
        job_id: job.id,
        kind: job.job.clone(),
        status: job.status,
        from: None,
    });
    shared.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn error_texts_keep_no_quoted_value() {
        assert_eq!(
            without_quoted_values(r#"args.token: invalid type: string "hunter2", expected i64"#),
            r#"args.token: invalid type: string "…", expected i64"#
        );
        assert_eq!(without_quoted_values("no quotes"), "no quotes");
        assert_eq!(without_quoted_values(r#"cut "open"#), r#"cut "…""#);
    }

    #[test]
    fn a_tick_on_time_fires_and_moves_on() {
        let s = CronSchedule::new("0 * * * *", "UTC").unwrap();
        let due = ms("2030-01-01T10:00:00Z");
        let step = plan(&s, due, due + 1_500, Missed::Skip);
        assert_eq!(step.fire, Some((due, "tick")));
        assert_eq!(step.next, Some(ms("2030-01-01T11:00:00Z")));
        assert!(!step.skipped);
    }

    #[test]
    fn missed_ticks_are_skipped_or_run_once_then_the_schedule_goes_on() {
        let s = CronSchedule::new("*/10 * * * *", "UTC").unwrap();
        let due = ms("2030-01-01T10:00:00Z");
        let now = ms("2030-01-01T12:05:30Z");
        let skip = plan(&s, due, now, Missed::Skip);
        assert_eq!(skip.fire, None);
        assert!(skip.skipped);
        assert_eq!(skip.next, Some(ms("2030-01-01T12:10:00Z")));
        let once = plan(&s, due, now, Missed::RunOnce);
        assert_eq!(once.fire, Some((due, "missed")));
        assert_eq!(once.next, skip.next);
        // A tick within the last minute is still on time: it is next, and fires.
        let now = ms("2030-01-01T12:10:20Z");
        assert_eq!(
            plan(&s, due, now, Missed::Skip).next,
            Some(ms("2030-01-01T12:10:00Z"))
        );
    }
}
