//! `/metrics` in the Prometheus text format, encoded by `prometheus-client`: jobs by queue and
//! state (capped counts, as on the Queues page), attempts finished and their wait and run-time
//! histograms per queue and kind (from the per-minute counts), and the nodes.
//!
//! Counters must never go down, but the per-minute counts are pruned after 14 days: so minutes
//! more than two minutes old are folded once into totals this process keeps, and only the
//! minutes since are read on each scrape. The counters start from what the database holds when
//! the process starts and grow from there (a restart is a counter reset, as Prometheus expects).
use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::clock::now_ms;
use crate::insight::histogram::{BOUNDS_MS, BUCKETS};
use crate::queue::QueueInfo;
use crate::store::StatSum;

/// Minutes younger than this may still receive completions (a completer flushes late): they
/// are read on each scrape, not folded.
const OPEN_MINUTES: i64 = 2;

type Labels = Vec<(&'static str, String)>;

/// The totals folded so far, per `(queue, kind)`: the minutes before `to` (ms).
#[derive(Debug)]
pub(crate) struct Folded {
    to: i64,
    totals: BTreeMap<(String, String), StatSum>,
}

impl Default for Folded {
    fn default() -> Self {
        Folded {
            to: i64::MIN,
            totals: BTreeMap::new(),
        }
    }
}

/// What one scrape shows.
#[derive(Debug, Default)]
struct Snapshot {
    queues: Vec<QueueInfo>,
    stats: Vec<StatSum>,
    /// `(id, host, seconds since its heartbeat, jobs it runs)`.
    nodes: Vec<(String, String, f64, u64)>,
}

/// The metrics, as Prometheus text.
pub(crate) async fn render(
    client: &crate::Client,
    folded: &tokio::sync::Mutex<Folded>,
) -> crate::Result<String> {
    let store = client.store();
    let now = now_ms();
    let fold_to = now - now.rem_euclid(60_000) - OPEN_MINUTES * 60_000;
    let stats = {
        let mut f = folded.lock().await;
        if fold_to > f.to {
            for s in store.stat_sums(f.to, fold_to).await? {
                f.totals
                    .entry((s.queue.clone(), s.kind.clone()))
                    .or_default()
                    .add(&s);
            }
            f.to = fold_to;
        }
        let mut totals = f.totals.clone();
        for s in store.stat_sums(f.to, i64::MAX).await? {
            totals
                .entry((s.queue.clone(), s.kind.clone()))
                .or_default()
                .add(&s);
        }
        totals
            .into_iter()
            .map(|((queue, kind), s)| StatSum { queue, kind, ..s })
            .collect()
    };
    let nodes = store
        .nodes_running(0)
        .await?
        .into_iter()
        .map(|(n, running, _)| {
            let age = (now - n.heartbeat_at).max(0) as f64 / 1000.0;
            (n.id, n.host, age, running)
        })
        .collect();
    let snapshot = Snapshot {
        queues: client.queues().await?,
        stats,
        nodes,
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .map_err(|e| crate::Error::Corrupt(format!("encoding the metrics failed: {e}")))?;
    Ok(out)
}

/// The content type of the answer.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(
            "nightshift_jobs",
            "Jobs waiting or running, by queue and state (waiting counts are capped at 10,000 per queue)",
            None,
            MetricType::Gauge,
        )?;
        for q in &self.queues {
            for (state, n) in [
                ("due", q.due),
                ("scheduled", (q.waiting - q.due).max(0)),
                ("running", q.running),
            ] {
                let labels: Labels = vec![("queue", q.name.clone()), ("state", state.into())];
                m.encode_family(&labels)?.encode_gauge(&n)?;
            }
        }
        for (name, help, value) in [
            (
                "nightshift_queue_paused",
                "1 while the queue is paused on every node",
                (|q: &QueueInfo| i64::from(q.paused)) as fn(&QueueInfo) -> i64,
            ),
            (
                "nightshift_queue_oldest_due_seconds",
                "How long the oldest due job of the queue has waited to start",
                |q: &QueueInfo| q.oldest_waiting_s.unwrap_or(0),
            ),
        ] {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for q in &self.queues {
                let labels: Labels = vec![("queue", q.name.clone())];
                m.encode_family(&labels)?.encode_gauge(&value(q))?;
            }
        }
        let mut m = enc.encode_descriptor(
            "nightshift_attempts",
            "Attempts finished, by queue, kind and outcome (done, failed, retried, cancelled)",
            None,
            MetricType::Counter,
        )?;
        for s in &self.stats {
            for (outcome, n) in [
                ("done", s.done),
                ("failed", s.failed),
                ("retried", s.retried),
                ("cancelled", s.cancelled),
            ] {
                let labels: Labels = vec![
                    ("queue", s.queue.clone()),
                    ("kind", s.kind.clone()),
                    ("outcome", outcome.into()),
                ];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, u64>(&(n.max(0) as u64), None)?;
            }
        }
        for (name, help, pick) in [
            (
                "nightshift_job_wait_seconds",
                "How long attempts waited from due to start, by queue and kind",
                (|s: &StatSum| (s.wait, s.wait_ms)) as fn(&StatSum) -> ([i64; BUCKETS], i64),
            ),
            (
                "nightshift_job_run_seconds",
                "How long attempts ran, by queue and kind",
                |s: &StatSum| (s.run, s.run_ms),
            ),
        ] {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for s in &self.stats {
                let (buckets, sum_ms) = pick(s);
                let count: i64 = buckets.iter().map(|n| (*n).max(0)).sum();
                let bounds: Vec<(f64, u64)> = buckets
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let le = BOUNDS_MS
                            .get(i)
                            .map_or(f64::INFINITY, |b| *b as f64 / 1000.0);
                        (le, (*n).max(0) as u64)
                    })
                    .collect();
                let labels: Labels = vec![("queue", s.queue.clone()), ("kind", s.kind.clone())];
                m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    sum_ms as f64 / 1000.0,
                    count as u64,
                    &bounds,
                    None,
                )?;
            }
        }
        enc.encode_descriptor(
            "nightshift_nodes",
            "Nodes with a row in the database (live or not yet reaped)",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&(self.nodes.len() as i64))?;
        let mut m = enc.encode_descriptor(
            "nightshift_node_heartbeat_age_seconds",
            "Seconds since each node's last heartbeat",
            None,
            MetricType::Gauge,
        )?;
        for (id, host, age, _) in &self.nodes {
            let labels: Labels = vec![("node", id.clone()), ("host", host.clone())];
            m.encode_family(&labels)?.encode_gauge(age)?;
        }
        let mut m = enc.encode_descriptor(
            "nightshift_node_running_jobs",
            "Jobs each node runs now",
            None,
            MetricType::Gauge,
        )?;
        for (id, host, _, running) in &self.nodes {
            let labels: Labels = vec![("node", id.clone()), ("host", host.clone())];
            m.encode_family(&labels)?.encode_gauge(running)?;
        }
        Ok(())
    }
}
