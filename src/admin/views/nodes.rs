//! The nodes sharing this database: each one's host, process, version, lease and what it runs.
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::components::{status_badge, thousands, time};
use super::layout::{PageCtx, page};
use crate::state::JobStatus;

/// One node as the page shows it.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// How many jobs it runs (`running` or `aborting`).
    pub running: u64,
    /// The first of them: `(id, kind, status)`.
    pub jobs: Vec<(i64, String, JobStatus)>,
}

/// What the Nodes page shows.
#[derive(Debug, Clone)]
pub struct NodesView {
    pub nodes: Vec<NodeRow>,
    /// When the page was made (lease ages are counted from it).
    pub now: DateTime<Utc>,
    /// The node serving this page.
    pub this_node: String,
    /// A node silent for longer is considered dead (its jobs get rescued).
    pub node_timeout: std::time::Duration,
    /// The pruner's last run, if any.
    pub pruner: Option<crate::store::PruneRun>,
    /// What this node's pruner keeps.
    pub retention: crate::retention::Retention,
}

pub fn nodes_page(ctx: &PageCtx, view: &NodesView) -> Markup {
    page(
        ctx,
        "Nodes",
        None,
        html! {
            div class="page-head" { h1 { "Nodes" } }
            p class="muted small" {
                "The processes running jobs from this database. Each proves it is alive with a \
                 heartbeat; one silent for longer than " (secs(view.node_timeout)) " is \
                 considered lost and its jobs are rescued."
            }
            (nodes_table(&ctx.base, view))
            (pruner(view))
        },
    )
}

/// Retention: what is kept, and the pruner's last run.
fn pruner(view: &NodesView) -> Markup {
    let r = &view.retention;
    let keep = |d: Option<std::time::Duration>| match d {
        Some(d) => format!("{} days", d.as_secs() / 86_400),
        None => "for ever".to_owned(),
    };
    html! {
        section class="card pruner" aria-labelledby="pruner-title" {
            h2 id="pruner-title" { "Retention" }
            p class="muted small" {
                "Finished jobs are deleted with their logs, results and attempts after: done "
                (keep(r.done)) ", failed or killed " (keep(r.errors)) ", cancelled "
                (keep(r.cancelled)) "; audit entries after " (keep(r.audit)) "."
            }
            @match &view.pruner {
                None => p { "The pruner has not run yet." },
                Some(run) => {
                    p class="pruner-last" {
                        "Last run " (time(Some(crate::clock::to_datetime(run.started_at))))
                        @if let Some(node) = &run.node { " on " code { (node) } }
                        @match run.finished_at {
                            Some(end) => { ", took " (format!("{:.1} s", (end - run.started_at).max(0) as f64 / 1000.0)) "." }
                            None => { ", still running." }
                        }
                    }
                    @if run.finished_at.is_some() {
                        p class="pruner-deleted" {
                            "Deleted: "
                            @if run.deleted.values().all(|n| *n == 0) { "nothing (nothing was old enough)" }
                            @for (i, (what, n)) in run.deleted.iter().filter(|(_, n)| **n > 0).enumerate() {
                                @if i > 0 { ", " }
                                (thousands(*n)) " " (what)
                            }
                            "."
                        }
                    }
                    @if let Some(e) = &run.error { p class="error-excerpt" { "Stopped early: " (e) } }
                }
            }
        }
    }
}

/// The table, also served alone to htmx, which refreshes it every few seconds.
pub fn nodes_table(base: &str, view: &NodesView) -> Markup {
    html! {
        div id="nodes" class="table-wrap" hx-get={ (base) "/nodes" } hx-trigger="every 5s" hx-swap="outerHTML" {
            table class="nodes" {
                thead {
                    tr {
                        th { "Node" } th { "Host" } th { "PID" } th { "Version" } th { "Started" }
                        th { "Heartbeat" } th { "Running" }
                    }
                }
                tbody {
                    @for n in &view.nodes { (node_row(base, view, n)) }
                }
            }
            @if view.nodes.is_empty() {
                p class="empty" { "No node is running jobs." }
            }
        }
    }
}

fn node_row(base: &str, view: &NodesView, n: &NodeRow) -> Markup {
    let age_ms = (view.now - n.heartbeat_at).num_milliseconds().max(0);
    let silent = age_ms as u128 > view.node_timeout.as_millis();
    html! {
        tr id={ "node-" (n.id) } {
            td {
                code { (n.id) }
                @if n.id == view.this_node { " " span class="badge badge-done" { "this node" } }
            }
            td { (n.host) }
            td class="num" { (n.pid) }
            td { (n.version) }
            td { (time(Some(n.started_at))) }
            td {
                span class="lease" title=(n.heartbeat_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) {
                    (ago(age_ms))
                }
                @if silent { " " span class="badge badge-exception" { "silent" } }
            }
            td {
                span class="num" { (thousands(n.running)) }
                @if !n.jobs.is_empty() {
                    ul class="node-jobs" {
                        @for (id, kind, status) in &n.jobs {
                            li {
                                a href={ (base) "/workers/" (id) } { "#" (id) " " (kind) }
                                @if *status != JobStatus::Running { " " (status_badge(*status)) }
                            }
                        }
                    }
                    @if n.running > n.jobs.len() as u64 {
                        div class="muted small" {
                            "and " (thousands(n.running - n.jobs.len() as u64)) " more"
                        }
                    }
                }
            }
        }
    }
}

/// A lease age as a person reads it: `2 s ago`, `3 min ago`, `5 h ago`.
pub fn ago(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 120 {
        format!("{s} s ago")
    } else if s < 2 * 3600 {
        format!("{} min ago", s / 60)
    } else {
        format!("{} h ago", s / 3600)
    }
}

fn secs(d: std::time::Duration) -> String {
    format!("{} s", d.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn lease_ages_read_naturally() {
        assert_eq!(super::ago(-50), "0 s ago");
        assert_eq!(super::ago(2_400), "2 s ago");
        assert_eq!(super::ago(119_999), "119 s ago");
        assert_eq!(super::ago(180_000), "3 min ago");
        assert_eq!(super::ago(5 * 3_600_000), "5 h ago");
    }
}
