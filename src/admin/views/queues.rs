//! The Queues page: per queue what waits, what runs, how many may run at once and on how many
//! nodes, how long the oldest due job has waited, what finished minute by minute, and the
//! Pause or Resume button.
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::chart::spark;
use super::components::thousands;
use super::layout::{PageCtx, page};
use super::nodes::ago;
use crate::queue::{QueueInfo, THROUGHPUT_MINUTES};
use crate::role::Role;

/// What the Queues page shows.
#[derive(Debug, Clone)]
pub struct QueuesView {
    pub queues: Vec<QueueInfo>,
    /// When the page was made (pause ages are counted from it).
    pub now: DateTime<Utc>,
}

/// How often the table reloads itself.
const REFRESH: &str = "every 2s";

pub fn queues_page(ctx: &PageCtx, view: &QueuesView) -> Markup {
    page(
        ctx,
        "Queues",
        None,
        html! {
            div class="page-head" { h1 { "Queues" } }
            p class="muted small" {
                "Every job waits on a queue until a node that serves the queue has a free slot; \
                 within a queue, priority 9 starts first. A paused queue starts nothing on any \
                 node; its running jobs finish."
            }
            (queues_table(ctx, view))
        },
    )
}

/// The table, also served alone to htmx, which reloads it every 2 s.
pub fn queues_table(ctx: &PageCtx, view: &QueuesView) -> Markup {
    let base = &ctx.base;
    let may_act = ctx.may(Role::Operator);
    html! {
        div id="queues" class="table-wrap" hx-get={ (base) "/queues" } hx-trigger=(REFRESH) hx-swap="outerHTML" {
            table class="queues" {
                thead {
                    tr {
                        th { "Queue" } th { "State" } th { "Waiting" } th { "Running" }
                        th { "Concurrency" } th { "Nodes" } th { "Oldest" br; "due" }
                        th { "Finished" br; span class="muted" { "last " (THROUGHPUT_MINUTES) " min" } }
                        @if may_act { th { span class="sr-only" { "Actions" } } }
                    }
                }
                tbody {
                    @for q in &view.queues { (queue_row(ctx, view, q, may_act)) }
                }
            }
            @if view.queues.is_empty() {
                p class="empty" { "No queues yet: none has jobs, and no node serves one." }
            }
        }
    }
}

fn queue_row(ctx: &PageCtx, view: &QueuesView, q: &QueueInfo, may_act: bool) -> Markup {
    let base = &ctx.base;
    let jobs = format!(
        "{base}/workers?{}",
        serde_urlencoded::to_string([("status", "all"), ("queue", q.name.as_str())])
            .unwrap_or_default()
    );
    let later = (q.waiting - q.due).max(0);
    html! {
        tr id={ "queue-" (q.name) } {
            td { a href=(jobs) title="The jobs on this queue" { code { (q.name) } } }
            td { (state(view, q)) }
            td {
                span class="num" { (thousands(q.waiting.max(0) as u64)) }
                @if q.waiting > 0 {
                    div class="muted small" {
                        (thousands(q.due.max(0) as u64)) " due now"
                        @if later > 0 { ", " (thousands(later as u64)) " later" }
                    }
                }
            }
            td class="num" { (thousands(q.running.max(0) as u64)) }
            td {
                span class="num" { (thousands(q.concurrency.max(0) as u64)) }
                @if let Some(limit) = q.global_limit {
                    div class="muted small" { "global limit " (limit) }
                }
            }
            td {
                @if q.nodes == 0 {
                    span class="queue-warning" role="note" {
                        "No node serves this queue: its jobs wait."
                    }
                } @else {
                    span class="num" { (q.nodes) }
                }
            }
            td {
                @match q.oldest_waiting_s {
                    Some(s) => { span class="num" { (waited(s)) } }
                    None => { span class="muted" { "—" } }
                }
            }
            td { (throughput(&q.throughput)) }
            @if may_act { td { (action(ctx, q)) } }
        }
    }
}

/// "Running", or who paused it and how long ago (the exact time in the tooltip).
fn state(view: &QueuesView, q: &QueueInfo) -> Markup {
    if !q.paused {
        return html! { span class="queue-state running" { "Running" } };
    }
    let by = q.paused_by.as_deref().filter(|b| !b.is_empty());
    let at = q.paused_at;
    html! {
        span class="queue-state paused"
            title=[at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))] {
            "Paused"
            @if let Some(by) = by { " by " (by) }
            @if let Some(at) = at { ", " (ago((view.now - at).num_milliseconds())) }
        }
    }
}

/// The Pause or Resume button: a form that works without script, confirmed under htmx.
fn action(ctx: &PageCtx, q: &QueueInfo) -> Markup {
    let (verb, label, class, confirm) = if q.paused {
        (
            "resume",
            "Resume",
            "primary",
            format!(
                "Resume queue {}? Its due jobs start again on every node.",
                q.name
            ),
        )
    } else {
        (
            "pause",
            "Pause",
            "",
            format!(
                "Pause queue {}? No node starts its jobs until it is resumed; running jobs finish.",
                q.name
            ),
        )
    };
    let target = format!(
        "{}/queues/{}/{verb}",
        ctx.base,
        crate::text::percent_encode(&q.name)
    );
    html! {
        form method="post" action=(target) hx-post=(target) hx-confirm=(confirm) class="inline" {
            input type="hidden" name="_csrf" value=(ctx.csrf.as_deref().unwrap_or_default()) data-csrf;
            button type="submit" class=(class) aria-label={ (label) " queue " (q.name) } { (label) }
        }
    }
}

/// The counts per minute as bars (oldest first, the current minute last) and their total.
/// The picture is one image to assistive technology, labelled with the total.
fn throughput(per_minute: &[i64]) -> Markup {
    let total: i64 = per_minute.iter().map(|n| (*n).max(0)).sum();
    let minutes = per_minute.len();
    let label = format!(
        "{} finished in the last {minutes} minutes",
        thousands(total as u64)
    );
    html! {
        span class="throughput" {
            (spark(per_minute, &label, |i, n| minute_label(minutes - 1 - i, n)))
            " "
            span class="num" { (thousands(total as u64)) }
        }
    }
}

fn minute_label(minutes_ago: usize, n: i64) -> String {
    match minutes_ago {
        0 => format!("{n} this minute"),
        1 => format!("{n} a minute ago"),
        m => format!("{n} {m} minutes ago"),
    }
}

/// How long a job has waited, as a person says it: `45 s`, `3 min`, `2 h 05 min`, `3 d 4 h`.
pub fn waited(seconds: i64) -> String {
    if seconds <= 0 {
        return "0 s".to_owned();
    }
    crate::insight::human_ms(seconds * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> QueueInfo {
        QueueInfo {
            name: name.into(),
            waiting: 0,
            due: 0,
            running: 0,
            paused: false,
            paused_by: None,
            paused_at: None,
            concurrency: 4,
            global_limit: None,
            nodes: 1,
            oldest_waiting_s: None,
            throughput: vec![0; THROUGHPUT_MINUTES],
        }
    }

    #[test]
    fn waits_read_as_people_say_them() {
        assert_eq!(waited(-3), "0 s");
        assert_eq!(waited(45), "45 s");
        assert_eq!(waited(3 * 60 + 59), "3 min");
        assert_eq!(waited(2 * 3600 + 5 * 60), "2 h 05 min");
        assert_eq!(waited(3 * 86_400 + 4 * 3600), "3 d 4 h");
    }

    #[test]
    fn the_chart_is_one_labelled_image_with_a_bar_a_minute() {
        let mut counts = vec![0; THROUGHPUT_MINUTES];
        counts[3] = 40;
        counts[14] = 2;
        let m = throughput(&counts).into_string();
        assert!(
            m.contains(r#"role="img" aria-label="42 finished in the last 15 minutes""#),
            "{m}"
        );
        assert_eq!(m.matches("<rect").count(), THROUGHPUT_MINUTES, "{m}");
        // The busiest minute fills the height; a quiet one keeps a stub.
        assert!(m.contains(r#"y="0" width="6" height="24""#), "{m}");
        assert!(m.contains(r#"class="zero""#), "{m}");
        assert!(m.contains("2 this minute"), "{m}");
    }

    #[test]
    fn a_queue_nobody_serves_says_so_and_a_paused_one_says_who() {
        let now = Utc::now();
        let mut lonely = info("reports");
        lonely.nodes = 0;
        lonely.concurrency = 0;
        let mut paused = info("mail<b>");
        paused.paused = true;
        paused.paused_by = Some("<alice>".into());
        paused.paused_at = Some(now - chrono::Duration::minutes(3));
        let ctx = PageCtx {
            operator: Some(crate::admin::extract::Operator {
                name: "op".into(),
                role: Role::Operator,
            }),
            ..PageCtx::default()
        };
        let view = QueuesView {
            queues: vec![lonely, paused],
            now,
        };
        let m = queues_table(&ctx, &view).into_string();
        assert!(
            m.contains("No node serves this queue: its jobs wait."),
            "{m}"
        );
        assert!(m.contains("Paused by &lt;alice&gt;, 3 min ago"), "{m}");
        assert!(!m.contains("<alice>") && !m.contains("mail<b>"), "{m}");
        assert!(m.contains(r#"action="/queues/mail%3Cb%3E/resume""#), "{m}");
        assert!(m.contains(r#"action="/queues/reports/pause""#), "{m}");

        // A viewer sees no buttons.
        let viewer = PageCtx {
            operator: Some(crate::admin::extract::Operator {
                name: "v".into(),
                role: Role::Viewer,
            }),
            ..PageCtx::default()
        };
        let m = queues_table(&viewer, &view).into_string();
        assert!(!m.contains("<form"), "{m}");
    }
}
