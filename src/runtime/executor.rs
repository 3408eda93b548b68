//! The executor: runs one claimed job and turns how it ended into a completion.
//!
//! The handler runs in a task of its own, so a panic is caught as a `JoinError` and never takes
//! the worker down, and a handler that ignores its stop signal can still be stopped by force.
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::{JoinError, JoinHandle};

use super::Shared;
use super::completer::WriteOp;
use super::registry::{StopReason, StopSignal};
use crate::clock::{now_ms, to_datetime};
use crate::context::{JobContext, truncate};
use crate::entity::job;
use crate::kind::{HandlerError, JobKind};
use crate::state::JobStatus;
use crate::store::Completion;
use crate::store::Run;

/// The longest error text kept.
pub const MAX_ERROR: usize = 16 * 1024;

/// The handler's task: its result, and whether it had been told to stop when it returned.
type Handle = JoinHandle<(Result<(), HandlerError>, bool)>;

/// How the handler's task ended.
enum Ended {
    /// It returned (or panicked) before anyone asked it to stop.
    Finished(Result<Result<(), HandlerError>, JoinError>),
    /// It returned (or panicked) after it was told to stop.
    Returned(Result<Result<(), HandlerError>, JoinError>),
    /// It did not stop within the grace period and was stopped by force.
    Forced,
}

/// Hands back what a claimed job holds here (its registry entry, its queue's slot, its
/// permit) however its run ends, a panic included: a queue with a limit here would otherwise
/// lose a slot for good.
struct Held {
    shared: Arc<Shared>,
    job_id: i64,
    /// This run's entry in the registry: once its completion is written, the job may be
    /// claimed again here, and the next run's entry must stay.
    signal: StopSignal,
    queue: String,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shared.registry.remove_own(self.job_id, &self.signal);
        self.shared.release_slot(&self.queue);
        // The slot is free before the scheduler is woken to fill it.
        drop(self.permit.take());
        self.shared.wake.notify_one();
    }
}

pub(crate) async fn run(shared: Arc<Shared>, job: job::Model, permit: OwnedSemaphorePermit) {
    let held = Held {
        shared: shared.clone(),
        job_id: job.id,
        signal: shared.registry.signal(job.id),
        queue: job.queue.clone(),
        permit: Some(permit),
    };
    let began = std::time::Instant::now();
    tracing::debug!(job_id = job.id, kind = %job.kind, attempt = job.attempt, "job started");
    let completion = execute(&shared, &job).await;
    let took = began.elapsed();
    shared.note_duration(took);
    telemetry(&job, &completion, took);
    if shared
        .writer
        .send(WriteOp::Complete(completion))
        .await
        .is_err()
    {
        tracing::error!(job_id = job.id, "completer gone; the job will be rescued");
    }
    drop(held);
}

/// One event per finished attempt, with its outcome and duration: `debug` when it went well,
/// `warn` when it failed.
fn telemetry(job: &job::Model, c: &Completion, took: Duration) {
    let ms = took.as_secs_f64() * 1000.0;
    match c.error.as_deref() {
        Some(error) if c.outcome != "cancelled" => tracing::warn!(
            job_id = job.id, kind = %job.kind, attempt = job.attempt, outcome = c.outcome,
            duration_ms = ms, error, "job attempt failed"
        ),
        _ => tracing::debug!(
            job_id = job.id, kind = %job.kind, attempt = job.attempt, outcome = c.outcome,
            duration_ms = ms, "job attempt ended"
        ),
    }
}

async fn execute(shared: &Shared, job: &job::Model) -> Completion {
    let attempt = job.attempt.max(1) as u32;
    // Claims only ask for kinds with a handler here; a kind re-registered without one in
    // between is the only way to get here without one.
    let Some((kind, handler)) = shared
        .kind(&job.kind)
        .and_then(|k| k.handler.clone().map(|h| (k, h)))
    else {
        return bad_args(
            shared,
            job,
            format!("no handler registered for {:?}", job.kind),
        );
    };
    let args: Value = match serde_json::from_str(&job.args) {
        Ok(v) => v,
        Err(e) => return bad_args(shared, job, format!("arguments are not valid JSON: {e}")),
    };
    // Secret fields stored encrypted are handed to the handler decrypted. The error names the
    // field and the key id, never the value.
    let args = match crate::secrets::open(shared.keyring.as_ref(), &kind.secrets, args) {
        Ok(v) => v,
        Err(e) => return bad_args(shared, job, format!("bad arguments: {e}")),
    };
    let signal = shared.registry.signal(job.id);
    match signal.reason() {
        // Aborted while it waited for a slot: it never starts.
        Some(StopReason::Abort { by, at }) => {
            log(
                shared,
                job,
                format!(
                    "Aborted by {by} at {} before it started",
                    to_datetime(at).to_rfc3339()
                ),
            )
            .await;
            return completion(shared, job, JobStatus::Killed, None, "killed");
        }
        // Told to stop before it started (shutdown, lost lease): given back untouched.
        Some(_) => {
            let mut c = completion(shared, job, JobStatus::New, None, "interrupted");
            c.run_at = Some(shared.clock.now());
            c.refund_attempt = true;
            return c;
        }
        None => {}
    }
    let ctx = JobContext::new(
        job.id,
        Run {
            attempt: job.attempt,
            started: job.started_at,
        },
        signal.token.clone(),
        shared.writer.clone(),
        kind.redact(&args),
    );
    // Every event the handler logs through `tracing` carries the job.
    let span = tracing::info_span!(
        "job",
        job_id = job.id,
        kind = %job.kind,
        attempt,
        queue = %job.queue
    );
    let run = tracing::Instrument::instrument(handler(args, ctx), span);
    let told = signal.token.clone();
    // Whether the stop signal came before the handler returned tells a job that finished from one
    // that stopped because it was asked to (both may return Ok).
    let mut handle: Handle = tokio::spawn(async move {
        let res = run.await;
        (res, told.is_cancelled())
    });
    let timeout = async {
        match kind.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let grace = shared.config.grace_period;
    let ended = tokio::select! {
        // A handler that has returned wins over a stop signal or timeout arriving at once.
        biased;
        res = &mut handle => classify(res),
        _ = signal.token.cancelled() => {
            // A node that lost its lease must have stopped before anyone may reap it: it has
            // two heartbeat intervals, not the whole grace period.
            let grace = match signal.reason() {
                Some(StopReason::LeaseLost) => grace.min(shared.config.heartbeat_interval),
                _ => grace,
            };
            stop_within(&mut handle, grace).await
        }
        _ = timeout => {
            signal.stop(StopReason::Timeout);
            stop_within(&mut handle, grace).await
        }
    };
    decide(shared, job, &kind, &signal, ended).await
}

/// Gives a handler that was told to stop `grace` to return, then aborts its task.
async fn stop_within(handle: &mut Handle, grace: Duration) -> Ended {
    match tokio::time::timeout(grace, &mut *handle).await {
        Ok(res) => classify(res),
        Err(_) => {
            // Takes effect at the handler's next await; a handler blocking its thread cannot be
            // stopped from here, but its job is finished for us all the same.
            handle.abort();
            Ended::Forced
        }
    }
}

fn classify(res: Result<(Result<(), HandlerError>, bool), JoinError>) -> Ended {
    match res {
        Ok((res, false)) => Ended::Finished(Ok(res)),
        Ok((res, true)) => Ended::Returned(Ok(res)),
        Err(join) => Ended::Returned(Err(join)),
    }
}

async fn decide(
    shared: &Shared,
    job: &job::Model,
    kind: &JobKind,
    signal: &StopSignal,
    ended: Ended,
) -> Completion {
    let forced = matches!(ended, Ended::Forced);
    let reason = match (&ended, signal.reason()) {
        // Finished before the shutdown or timeout reached it: its own outcome stands. An abort
        // still ends `killed` (the job is already `aborting` in the database).
        (
            Ended::Finished(_),
            Some(StopReason::Shutdown | StopReason::Timeout | StopReason::LeaseLost),
        ) => None,
        (_, reason) => reason,
    };
    match reason {
        Some(StopReason::Abort { by, at }) => {
            let how = if forced {
                format!(
                    "; it did not stop within {:?} and was stopped by force",
                    shared.config.grace_period
                )
            } else {
                String::new()
            };
            log(
                shared,
                job,
                format!("Aborted by {by} at {}{how}", to_datetime(at).to_rfc3339()),
            )
            .await;
            completion(shared, job, JobStatus::Killed, None, "killed")
        }
        Some(StopReason::Shutdown) => {
            log(
                shared,
                job,
                "Interrupted by a worker shutdown; the job goes back to the queue",
            )
            .await;
            let mut c = completion(shared, job, JobStatus::New, None, "interrupted");
            c.run_at = Some(shared.clock.now());
            c.refund_attempt = true;
            c
        }
        Some(StopReason::LeaseLost) => {
            // The attempt is spent, not given back: this node may claim the job again, and
            // whatever the stopped run still sends must not pass for the new attempt's.
            log(
                shared,
                job,
                "Interrupted: this node could not renew its lease; the job goes back to the queue",
            )
            .await;
            let error = Some("interrupted: its node could not renew its lease".to_owned());
            if job.attempt < job.max_attempts {
                let mut c = completion(shared, job, JobStatus::New, error, "lost");
                c.run_at = Some(shared.clock.now());
                c
            } else {
                completion(shared, job, JobStatus::Exception, error, "lost")
            }
        }
        Some(StopReason::Timeout) => {
            let timeout = kind.timeout.unwrap_or_default();
            let msg = if forced {
                format!("timed out after {timeout:?} and was stopped by force")
            } else {
                format!("timed out after {timeout:?}")
            };
            failure(shared, job, kind, msg, "timeout")
        }
        None => match ended {
            Ended::Finished(Ok(Ok(()))) | Ended::Returned(Ok(Ok(()))) => {
                completion(shared, job, JobStatus::Done, None, "done")
            }
            Ended::Finished(Ok(Err(HandlerError::BadArgs(msg))))
            | Ended::Returned(Ok(Err(HandlerError::BadArgs(msg)))) => {
                bad_args(shared, job, format!("bad arguments: {msg}"))
            }
            Ended::Finished(Ok(Err(HandlerError::Cancel(reason))))
            | Ended::Returned(Ok(Err(HandlerError::Cancel(reason)))) => {
                let msg = truncate(format!("cancelled by its handler: {reason}"), MAX_ERROR);
                completion(shared, job, JobStatus::Cancelled, Some(msg), "cancelled")
            }
            Ended::Finished(Ok(Err(HandlerError::Snooze(after))))
            | Ended::Returned(Ok(Err(HandlerError::Snooze(after)))) => {
                // Back to wait, the attempt given back: a snooze is not a failure.
                let status = if after.is_zero() {
                    JobStatus::New
                } else {
                    JobStatus::Scheduled
                };
                let mut c = completion(shared, job, status, None, "snoozed");
                c.run_at =
                    Some(shared.clock.now() + after.as_millis().min(i64::MAX as u128) as i64);
                c.refund_attempt = true;
                c
            }
            Ended::Finished(Ok(Err(HandlerError::Failed(e))))
            | Ended::Returned(Ok(Err(HandlerError::Failed(e)))) => {
                failure(shared, job, kind, format!("{e:#}"), "error")
            }
            Ended::Finished(Err(join)) | Ended::Returned(Err(join)) => {
                let msg = match join.try_into_panic() {
                    Ok(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
                    Err(e) => format!("the handler's task was cancelled: {e}"),
                };
                failure(shared, job, kind, msg, "panic")
            }
            // Forced only follows a stop, which always has a reason.
            Ended::Forced => failure(shared, job, kind, "stopped".into(), "error"),
        },
    }
}

/// A failed attempt: retried after the backoff if attempts are left, else `exception`.
fn failure(
    shared: &Shared,
    job: &job::Model,
    kind: &JobKind,
    msg: String,
    outcome: &'static str,
) -> Completion {
    let msg = truncate(msg, MAX_ERROR);
    if job.attempt < job.max_attempts {
        let delay = kind.backoff.delay(job.attempt.max(1) as u32);
        let mut c = completion(shared, job, JobStatus::Scheduled, Some(msg), outcome);
        c.run_at = Some(shared.clock.now() + delay.as_millis() as i64);
        c
    } else {
        completion(shared, job, JobStatus::Exception, Some(msg), outcome)
    }
}

fn bad_args(shared: &Shared, job: &job::Model, msg: String) -> Completion {
    completion(
        shared,
        job,
        JobStatus::Exception,
        Some(truncate(msg, MAX_ERROR)),
        "bad_args",
    )
}

fn completion(
    shared: &Shared,
    job: &job::Model,
    status: JobStatus,
    error: Option<String>,
    outcome: &'static str,
) -> Completion {
    Completion {
        job_id: job.id,
        attempt: job.attempt,
        node: shared.node.id.clone(),
        started_at: job.started_at,
        status,
        error,
        run_at: None,
        due_at: Some(job.run_at),
        outcome,
        refund_attempt: false,
        log: None,
        at: shared.clock.now(),
    }
}

async fn log(shared: &Shared, job: &job::Model, line: impl Into<String>) {
    let _ = shared
        .writer
        .send(WriteOp::Log {
            job_id: job.id,
            run: Run {
                attempt: job.attempt,
                started: job.started_at,
            },
            at: now_ms(),
            line: truncate(line.into(), crate::context::MAX_LOG_LINE),
        })
        .await;
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Paused time: the default 10 s grace period passes in an instant, and exactly.
    #[tokio::test(start_paused = true)]
    async fn a_handler_ignoring_its_signal_is_stopped_when_the_grace_period_ends() {
        let grace = crate::runtime::Config::default().grace_period;
        assert_eq!(grace, Duration::from_secs(10));
        let mut handle: Handle = tokio::spawn(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            (Ok(()), false)
        });
        let start = tokio::time::Instant::now();
        let ended = stop_within(&mut handle, grace).await;
        assert!(matches!(ended, Ended::Forced));
        assert_eq!(start.elapsed(), grace);
        let join = handle.await.unwrap_err();
        assert!(join.is_cancelled(), "the task was stopped by force");
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_that_stops_within_the_grace_period_returns_normally() {
        let mut handle: Handle = tokio::spawn(async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (Ok(()), true)
        });
        let start = tokio::time::Instant::now();
        let ended = stop_within(&mut handle, Duration::from_secs(10)).await;
        assert!(
            matches!(ended, Ended::Returned(Ok(Ok(())))),
            "told to stop, then returned"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
