//! Latency: how soon an idle worker starts a job inserted here or by another process, how late
//! scheduled jobs start, and the resident memory of an idle worker.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::{Latency, Options, Progress, group, rss_mb, stop, worker};
use crate::{JobContext, JobKind, NewJob, Worker};

const PICKUP: &str = "Bench Pickup";
const SCHEDULED: &str = "Bench Scheduled";

/// The latency figures, and `rss_mb.idle`.
pub(crate) struct Latencies {
    pub rss_idle: Option<f64>,
    pub pickup: Latency,
    pub pickup_other: Latency,
    pub schedule: Latency,
}

/// When a handler started, and wall-clock time then.
type Started = (i64, Instant, DateTime<Utc>);

fn register(worker: &Worker, tx: Option<mpsc::UnboundedSender<Started>>) -> anyhow::Result<()> {
    for name in [PICKUP, SCHEDULED] {
        let tx = tx.clone();
        let kind = JobKind::new(name, move |_: crate::demo::NoArgs, ctx: JobContext| {
            let tx = tx.clone();
            async move {
                let started = (ctx.job_id(), Instant::now(), Utc::now());
                if let Some(tx) = tx {
                    let _ = tx.send(started);
                }
                Ok(())
            }
        });
        worker.register(if name == SCHEDULED {
            kind.schedulable()
        } else {
            kind
        })?;
    }
    Ok(())
}

pub(crate) async fn run(
    url: String,
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Latencies> {
    let worker = worker(&url).await?;
    // The other "process": a second worker on the same database, never started.
    let other = super::worker(&url).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    register(&worker, Some(tx))?;
    register(&other, None)?;
    let out = async {
        worker.start().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_idle = rss_mb();
        let pickup = time_pickups(
            &worker,
            &worker,
            &mut rx,
            opts.pickup_samples,
            "here",
            progress,
        )
        .await?;
        let pickup_other = time_pickups(
            &worker,
            &other,
            &mut rx,
            opts.pickup_samples,
            "other process",
            progress,
        )
        .await?;
        let schedule = schedule(&worker, &mut rx, opts, progress).await?;
        Ok(Latencies {
            rss_idle,
            pickup,
            pickup_other,
            schedule,
        })
    }
    .await;
    stop(other).await;
    stop(worker).await;
    out
}

/// Inserts one job at a time through `inserter` and times until its handler starts on `worker`,
/// each sample once the worker is idle again, after a random pause (so samples do not fall
/// into step with any timer of the engine).
async fn time_pickups(
    worker: &Worker,
    inserter: &Worker,
    rx: &mut mpsc::UnboundedReceiver<Started>,
    samples: usize,
    what: &str,
    progress: &Progress,
) -> anyhow::Result<Latency> {
    let mut ms = Vec::with_capacity(samples);
    for i in 0..samples {
        progress.update(format!("pickup ({what}) {} / {}", i, samples));
        let t0 = Instant::now();
        let job = inserter
            .insert(NewJob::from_value(PICKUP, serde_json::json!({})))
            .await?;
        let started = loop {
            let (id, at, _) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .map_err(|_| anyhow::anyhow!("job {} did not start within 10 s", job.id))?
                .ok_or_else(|| anyhow::anyhow!("the handler channel closed"))?;
            if id == job.id {
                break at;
            }
        };
        ms.push(started.duration_since(t0).as_secs_f64() * 1000.0);
        let idle_by = Instant::now() + Duration::from_secs(10);
        while worker.running_here() > 0 && Instant::now() < idle_by {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        worker.flush().await;
        tokio::time::sleep(Duration::from_millis(10 + fastrand::u64(..20))).await;
    }
    Ok(Latency::of(&ms))
}

/// `schedule_later` jobs an hour out, then `schedule_due` jobs due at staggered times over
/// `schedule_span` starting a second from now: how late after its time each starts.
async fn schedule(
    worker: &Worker,
    rx: &mut mpsc::UnboundedReceiver<Started>,
    opts: &Options,
    progress: &Progress,
) -> anyhow::Result<Latency> {
    let later = Utc::now() + chrono::Duration::hours(1);
    let mut queued = 0;
    while queued < opts.schedule_later {
        let k = super::drain::CHUNK.min(opts.schedule_later - queued);
        let jobs = (0..k)
            .map(|_| NewJob::from_value(SCHEDULED, serde_json::json!({})).schedule_at(later))
            .collect();
        worker.insert_many(jobs).await?;
        queued += k;
        progress.update(format!(
            "scheduling {} / {} an hour out",
            group(queued),
            group(opts.schedule_later)
        ));
    }
    let n = opts.schedule_due;
    let first = Utc::now() + chrono::Duration::seconds(1);
    let step = opts.schedule_span.as_secs_f64() / n.max(1) as f64;
    let jobs = (0..n)
        .map(|i| {
            let at = first + chrono::Duration::microseconds((i as f64 * step * 1e6) as i64);
            NewJob::from_value(SCHEDULED, serde_json::json!({})).schedule_at(at)
        })
        .collect();
    let due: HashMap<i64, DateTime<Utc>> = worker
        .insert_many(jobs)
        .await?
        .into_iter()
        .filter_map(|j| Some((j.id, j.schedule_at?)))
        .collect();
    anyhow::ensure!(due.len() == n, "scheduled {} of {n} jobs", due.len());
    let deadline = tokio::time::Instant::now() + opts.schedule_span + Duration::from_secs(30);
    let mut late = Vec::with_capacity(n);
    while late.len() < n {
        let Ok(Some((id, _, at))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            anyhow::bail!("{} of {n} scheduled jobs started in time", late.len());
        };
        if let Some(due_at) = due.get(&id) {
            late.push((at - *due_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
            progress.update(format!("scheduled jobs started {} / {n}", late.len()));
        }
    }
    Ok(Latency::of(&late))
}
