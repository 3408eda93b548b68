//! Health signals: the conditions an operator should hear about without looking for them —
//! jobs running far past their kind's usual time, due jobs starting late, work no live node
//! serves, kinds no node handles, nodes gone silent. Judged here from facts the store gathers
//! cheaply (rollups, capped counts, node rows); each signal names what it is about and links
//! to the matching jobs.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::to_datetime;
use crate::queue::QueueInfo;

/// A kind's usual run time needs this many finished attempts in the last day to judge by.
pub const MIN_SAMPLES: i64 = 5;
/// A due job that has waited longer than this is late.
pub const LATE_AFTER_S: i64 = 60;
/// A running job is overdue past `max(OVERDUE_FACTOR × p95, p95 + OVERDUE_MARGIN_MS)`.
pub const OVERDUE_FACTOR: i64 = 3;
/// See [`OVERDUE_FACTOR`].
pub const OVERDUE_MARGIN_MS: i64 = 60_000;

/// What a signal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// Jobs of a kind with no handler on any live node: they are never claimed.
    NoHandler,
    /// Work waiting on a queue no live node serves.
    Unserved,
    /// A node whose heartbeat stopped (not yet reaped).
    StaleNode,
    /// Running jobs far past their kind's usual run time.
    Overdue,
    /// Due jobs that have waited too long to start.
    Late,
}

impl SignalKind {
    /// The name JSON uses: `no_handler`, `unserved`, `stale_node`, `overdue`, `late`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::NoHandler => "no_handler",
            SignalKind::Unserved => "unserved",
            SignalKind::StaleNode => "stale_node",
            SignalKind::Overdue => "overdue",
            SignalKind::Late => "late",
        }
    }
}

/// One health signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signal {
    pub signal: SignalKind,
    /// The kind, queue or node it is about.
    pub subject: String,
    /// How many jobs (or nodes) it concerns.
    pub count: i64,
    /// The oldest concerned: created, due, started or last heard from.
    pub oldest: Option<DateTime<Utc>>,
    /// What is wrong, in a sentence.
    pub message: String,
    /// Where to look, relative to the admin's mount point (`/workers?…`, `/nodes`).
    pub link: String,
}

/// A node as the health check sees it.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub id: String,
    pub host: String,
    /// The database's time of its last heartbeat (ms).
    pub heartbeat_at: i64,
    /// The queues it serves.
    pub queues: BTreeSet<String>,
    /// The kinds it handles; `None` when it does not say (it handles any, as far as we know).
    pub kinds: Option<BTreeSet<String>>,
}

/// What the signals are judged from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The database's time (ms).
    pub now: i64,
    /// A node silent longer than this is stale (ms).
    pub stale_after_ms: i64,
    pub nodes: Vec<NodeFacts>,
    pub queues: Vec<QueueInfo>,
    /// Running jobs: `(kind, started_at)`.
    pub running: Vec<(String, i64)>,
    /// Per kind, the p95 run time (ms) and how many attempts it is read from.
    pub usual: HashMap<String, (i64, i64)>,
    /// Kinds no live node handles with jobs waiting: `(kind, count, oldest created_at)`.
    pub unhandled: Vec<(String, i64, Option<i64>)>,
}

impl Facts {
    /// The nodes that are not stale.
    pub fn live_nodes(&self) -> impl Iterator<Item = &NodeFacts> {
        self.nodes
            .iter()
            .filter(|n| self.now - n.heartbeat_at <= self.stale_after_ms)
    }

    /// Whether some live node handles `kind`.
    pub fn handled(&self, kind: &str) -> bool {
        self.live_nodes()
            .any(|n| n.kinds.as_ref().is_none_or(|k| k.contains(kind)))
    }
}

/// How long a job has run past its usual time before it is overdue: `max(3 × p95, p95 + 1 min)`.
pub fn overdue_after(p95_ms: i64) -> i64 {
    Ord::max(OVERDUE_FACTOR * p95_ms, p95_ms + OVERDUE_MARGIN_MS)
}

/// The signals the facts raise, most serious first.
pub fn judge(f: &Facts) -> Vec<Signal> {
    let mut out = Vec::new();
    for (kind, count, oldest) in &f.unhandled {
        out.push(Signal {
            signal: SignalKind::NoHandler,
            subject: kind.clone(),
            count: *count,
            oldest: oldest.map(to_datetime),
            message: format!(
                "{} of kind {kind} {} and no live node has a handler for it: {} not claimed \
                 and {} no attempt.",
                jobs(*count),
                if *count == 1 { "waits" } else { "wait" },
                if *count == 1 { "it is" } else { "they are" },
                if *count == 1 { "spends" } else { "spend" },
            ),
            link: link("all", &[("job", kind)]),
        });
    }
    let served: BTreeSet<&str> = f
        .live_nodes()
        .flat_map(|n| n.queues.iter().map(String::as_str))
        .collect();
    for q in &f.queues {
        let waiting = q.waiting.max(0);
        if waiting == 0 {
            continue;
        }
        if !served.contains(q.name.as_str()) {
            out.push(Signal {
                signal: SignalKind::Unserved,
                subject: q.name.clone(),
                count: waiting,
                oldest: oldest_due(f, q),
                message: format!(
                    "{} {} on queue {} and no live node serves it.",
                    jobs(waiting),
                    if waiting == 1 { "waits" } else { "wait" },
                    q.name
                ),
                link: link("all", &[("queue", &q.name)]),
            });
        } else if let Some(s) = q.oldest_waiting_s.filter(|s| *s > LATE_AFTER_S) {
            let due = q.due.max(1);
            out.push(Signal {
                signal: SignalKind::Late,
                subject: q.name.clone(),
                count: due,
                oldest: oldest_due(f, q),
                message: format!(
                    "{} due on queue {} {} not started; the oldest has waited {}{}.",
                    jobs(due),
                    q.name,
                    if due == 1 { "has" } else { "have" },
                    super::human_ms(s * 1000),
                    if q.paused {
                        " (the queue is paused)"
                    } else {
                        ""
                    },
                ),
                link: link("scheduled", &[("queue", &q.name)]),
            });
        }
    }
    for n in &f.nodes {
        let silent = f.now - n.heartbeat_at;
        if silent > f.stale_after_ms {
            out.push(Signal {
                signal: SignalKind::StaleNode,
                subject: n.id.clone(),
                count: 1,
                oldest: Some(to_datetime(n.heartbeat_at)),
                message: format!(
                    "Node {} on {} has sent no heartbeat for {}: if it stays silent it is \
                     declared dead and its jobs are rescued.",
                    n.id,
                    n.host,
                    super::human_ms(silent)
                ),
                link: "/nodes".to_owned(),
            });
        }
    }
    let mut overdue: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
    for (kind, started) in &f.running {
        let Some((p95, samples)) = f.usual.get(kind) else {
            continue;
        };
        if *samples < MIN_SAMPLES || f.now - started <= overdue_after(*p95) {
            continue;
        }
        let e = overdue.entry(kind).or_insert((0, *started, *p95));
        e.0 += 1;
        e.1 = e.1.min(*started);
    }
    for (kind, (count, oldest, p95)) in overdue {
        out.push(Signal {
            signal: SignalKind::Overdue,
            subject: kind.to_owned(),
            count,
            oldest: Some(to_datetime(oldest)),
            message: format!(
                "{} of kind {kind} {} running for {}; {kind} usually takes up to {} (p95).",
                jobs(count),
                if count == 1 { "has been" } else { "have been" },
                super::human_ms(f.now - oldest),
                super::human_ms(p95),
            ),
            link: link("running", &[("job", kind)]),
        });
    }
    out.sort_by(|a, b| a.signal.cmp(&b.signal).then(a.subject.cmp(&b.subject)));
    out
}

fn oldest_due(f: &Facts, q: &QueueInfo) -> Option<DateTime<Utc>> {
    q.oldest_waiting_s.map(|s| to_datetime(f.now - s * 1000))
}

/// "1 job", "2,345 jobs", or "10,000+ jobs" for a count that reached the cap of the capped
/// counts it comes from.
fn jobs(n: i64) -> String {
    if n == 1 {
        return "1 job".to_owned();
    }
    let digits = n.max(0).to_string();
    let mut out = String::with_capacity(digits.len() + 4);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n >= crate::store::COUNT_CAP as i64 {
        out.push('+');
    }
    format!("{out} jobs")
}

/// A link to the jobs list: `/workers?status=TAB&…`.
fn link(tab: &str, filters: &[(&str, &str)]) -> String {
    let mut pairs = vec![("status", tab)];
    pairs.extend_from_slice(filters);
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::text::percent_encode(v)))
        .collect();
    format!("/workers?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, heartbeat_at: i64, queues: &[&str], kinds: Option<&[&str]>) -> NodeFacts {
        NodeFacts {
            id: id.into(),
            host: "h".into(),
            heartbeat_at,
            queues: queues.iter().map(|s| s.to_string()).collect(),
            kinds: kinds.map(|k| k.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn queue(name: &str, due: i64, oldest_s: Option<i64>) -> QueueInfo {
        QueueInfo {
            name: name.into(),
            waiting: due,
            due,
            running: 0,
            paused: false,
            paused_by: None,
            paused_at: None,
            concurrency: 1,
            global_limit: None,
            nodes: 1,
            oldest_waiting_s: oldest_s,
            throughput: vec![],
        }
    }

    #[test]
    fn quiet_facts_raise_nothing() {
        let f = Facts {
            now: 1_000_000,
            stale_after_ms: 10_000,
            nodes: vec![node("a", 999_000, &["default"], Some(&["Work"]))],
            queues: vec![queue("default", 3, Some(5))],
            running: vec![("Work".into(), 990_000)],
            usual: HashMap::from([("Work".into(), (1_000, 50))]),
            unhandled: vec![],
        };
        assert!(judge(&f).is_empty(), "{:?}", judge(&f));
    }

    #[test]
    fn each_condition_raises_its_signal() {
        let now = 10_000_000;
        let f = Facts {
            now,
            stale_after_ms: 10_000,
            nodes: vec![
                node("a", now - 1_000, &["default"], Some(&["Work"])),
                node("gone", now - 60_000, &["mail"], None),
            ],
            queues: vec![queue("default", 2, Some(300)), queue("mail", 1, Some(5))],
            running: vec![
                ("Work".into(), now - 5 * 60_000),
                ("Work".into(), now - 1_000),
                ("Rare".into(), now - 3_600_000),
            ],
            usual: HashMap::from([("Work".into(), (2_000, 50)), ("Rare".into(), (10, 2))]),
            unhandled: vec![("Ghost".into(), 4, Some(now - 1_000))],
        };
        let s = judge(&f);
        let kinds: Vec<_> = s.iter().map(|s| (s.signal, s.subject.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (SignalKind::NoHandler, "Ghost"),
                (SignalKind::Unserved, "mail"),
                (SignalKind::StaleNode, "gone"),
                (SignalKind::Overdue, "Work"),
                (SignalKind::Late, "default"),
            ],
            "{s:#?}"
        );
        assert_eq!(s[0].link, "/workers?status=all&job=Ghost");
        assert!(
            s[0].message.contains("4 jobs of kind Ghost wait"),
            "{}",
            s[0].message
        );
        assert_eq!(s[3].count, 1, "only the job past 3 × p95 + margin");
        assert_eq!(s[3].link, "/workers?status=running&job=Work");
        assert_eq!(s[4].link, "/workers?status=scheduled&queue=default");
    }

    #[test]
    fn counts_read_well_and_say_when_capped() {
        assert_eq!(jobs(1), "1 job");
        assert_eq!(jobs(2_345), "2,345 jobs");
        assert_eq!(jobs(10_000), "10,000+ jobs");
    }

    #[test]
    fn overdue_needs_a_margin_over_the_usual_time() {
        assert_eq!(overdue_after(1_000), 61_000);
        assert_eq!(overdue_after(60_000), 180_000);
    }
}
