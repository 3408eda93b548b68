//! Job lists: the tabs, filters, rows that update in place (and leave when their job leaves the
//! tab), and the pager.
use chrono::Utc;
use maud::{Markup, html};

use super::components::{duration, progress_bar, thousands, time};
use super::job::{is_retry, job_badge, retry_summary};
use super::layout::{PageCtx, page};
use crate::job::Job;
use crate::store::COUNT_CAP;

/// What a list page shows.
#[derive(Debug, Clone)]
pub struct ListView {
    pub tab: String,
    pub jobs: Vec<Job>,
    /// The cursor of the next (older) page.
    pub next: Option<i64>,
    /// This page's cursor (`None`: the first page).
    pub after: Option<i64>,
    /// The newer page, when this is not the first: its cursor, `None` for the first page.
    pub newer: Option<Option<i64>>,
    /// How many jobs of this list come before this page (counted up to the cap).
    pub skipped: u64,
    /// The filter as given, for the form and links.
    pub kind: Option<String>,
    pub group: Option<String>,
    pub q: Option<String>,
    /// Only jobs on this queue, or carrying this tag.
    pub queue: Option<String>,
    pub tag: Option<String>,
    /// Kinds (key, label) and groups for the filter selects.
    pub kinds: Vec<(String, String)>,
    pub groups: Vec<String>,
    /// Query string of this filter without the cursor (for the pager and the live stream).
    pub query: String,
    /// The bulk bar, for an operator when the list has jobs: how many jobs match the filter
    /// (`None`: more than the count's cap).
    pub bulk: Option<Option<u64>>,
    /// Why the search cannot run (shown above an empty list).
    pub error: Option<String>,
}

/// The tabs' titles, and the extra filters reachable from All Jobs.
pub fn tab_title(tab: &str) -> &'static str {
    match tab {
        "running" => "Running",
        "scheduled" => "Scheduled",
        "done" => "Done",
        "errors" => "Errors",
        "killed" => "Killed",
        "cancelled" => "Cancelled",
        "new" => "Waiting",
        _ => "All Jobs",
    }
}

pub fn list_page(ctx: &PageCtx, view: &ListView) -> Markup {
    let base = &ctx.base;
    // An older page gets its rows' changes but not the new jobs on top.
    let first = if view.after.is_some() { "&first=0" } else { "" };
    let live = format!("{base}/workers/events?{}{first}", view.query);
    page(
        ctx,
        tab_title(&view.tab),
        Some(&live),
        html! {
            div class="page-head" {
                h1 { (tab_title(&view.tab)) }
                @if view.tab == "all" || view.tab == "killed" || view.tab == "cancelled" {
                    div class="chips" {
                        a href={ (base) "/workers?status=all" } class=[(view.tab == "all").then_some("active")] aria-current=[(view.tab == "all").then_some("page")] { "Any state" }
                        a href={ (base) "/workers?status=killed" } class=[(view.tab == "killed").then_some("active")] aria-current=[(view.tab == "killed").then_some("page")] { "Killed" }
                        a href={ (base) "/workers?status=cancelled" } class=[(view.tab == "cancelled").then_some("active")] aria-current=[(view.tab == "cancelled").then_some("page")] { "Cancelled" }
                    }
                }
            }
            (active_filters(base, view))
            form class="filters" method="get" action={ (base) "/workers" } {
                input type="hidden" name="status" value=(view.tab);
                // The queue and tag filters come from links (a chip, the Queues page): kept
                // when the other filters change.
                @if let Some(queue) = &view.queue { input type="hidden" name="queue" value=(queue); }
                @if let Some(tag) = &view.tag { input type="hidden" name="tag" value=(tag); }
                label {
                    span { "Kind" }
                    select name="job" {
                        option value="" { "Any kind" }
                        @for (k, label) in &view.kinds {
                            option value=(k) selected[view.kind.as_deref() == Some(k.as_str())] { (label) }
                        }
                    }
                }
                label {
                    span { "Group" }
                    select name="group" {
                        option value="" { "Any group" }
                        @for g in &view.groups {
                            option value=(g) selected[view.group.as_deref() == Some(g.as_str())] { (g) }
                        }
                    }
                }
                label class="grow" {
                    span { "Search" }
                    input type="search" name="q" value=[view.q.as_deref()]
                        placeholder="customer_id:42 alice state:done after:2026-11-01"
                        aria-describedby="q-help" aria-invalid=[view.error.as_ref().map(|_| "true")];
                }
                button type="submit" { "Filter" }
                p id="q-help" class="small muted help" {
                    "Words in argument values; key:value for one argument; \"quoted phrases\"; "
                    "kind:, state:, queue:, tag:, after:, before: (a date, a UTC date-time or an age: 2h, 7d)."
                }
            }
            @if let Some(msg) = &view.error {
                p class="form-error" role="alert" { "Search: " (msg) }
            }
            @if let Some(matching) = view.bulk {
                (super::bulk::bulk_bar(ctx, &view.tab, &filter_pairs(view, None), matching))
            }
            (jobs_table(base, &view.jobs, view.bulk.is_some()))
            (pager(base, view))
        },
    )
}

/// The list's filter as form fields (what the bulk bar sends with "all matching"), without the
/// field `drop` if named.
fn filter_pairs<'a>(view: &'a ListView, drop: Option<&str>) -> Vec<(&'static str, &'a str)> {
    let mut pairs = vec![("status", view.tab.as_str())];
    for (name, value) in [
        ("job", &view.kind),
        ("group", &view.group),
        ("q", &view.q),
        ("queue", &view.queue),
        ("tag", &view.tag),
    ] {
        if let Some(v) = value.as_deref().filter(|_| Some(name) != drop) {
            pairs.push((name, v));
        }
    }
    pairs
}

/// The queue and tag filters in force, each with a link that drops it.
fn active_filters(base: &str, view: &ListView) -> Markup {
    if view.queue.is_none() && view.tag.is_none() {
        return html! {};
    }
    // The list's query without `drop`.
    let without = |drop: &str| {
        format!(
            "{base}/workers?{}",
            serde_urlencoded::to_string(filter_pairs(view, Some(drop))).unwrap_or_default()
        )
    };
    html! {
        div class="chips active-filters" {
            @if let Some(queue) = &view.queue {
                a href=(without("queue")) title="Jobs on any queue" {
                    "Queue: " (queue) span aria-hidden="true" { " ✕" } span class="sr-only" { " (remove this filter)" }
                }
            }
            @if let Some(tag) = &view.tag {
                a href=(without("tag")) title="Jobs with any tags" {
                    "Tag: " (tag) span aria-hidden="true" { " ✕" } span class="sr-only" { " (remove this filter)" }
                }
            }
        }
    }
}

/// The queue every job is on unless its kind or its creator names another.
const DEFAULT_QUEUE: &str = "default";

/// `{base}/workers?{name}={value}`, the value encoded.
fn list_link(base: &str, name: &str, value: &str) -> String {
    format!(
        "{base}/workers?{}",
        serde_urlencoded::to_string([(name, value)]).unwrap_or_default()
    )
}

/// A job's queue and priority where they are not the defaults, and its tags as chips; the
/// queue and each tag link to the list of the jobs that share it.
pub fn job_labels(base: &str, job: &Job) -> Markup {
    let queue = (job.queue != DEFAULT_QUEUE).then_some(job.queue.as_str());
    if queue.is_none() && job.priority == 0 && job.tags.is_empty() {
        return html! {};
    }
    html! {
        div class="job-labels small" {
            @if let Some(queue) = queue {
                a class="label" href=(list_link(base, "queue", queue)) title="Its queue: the jobs on it" {
                    "queue " (queue)
                }
            }
            @if job.priority != 0 {
                span class="label" title="Its priority: 9 starts first" { "priority " (job.priority) }
            }
            @for tag in &job.tags {
                a class="tag" href=(list_link(base, "tag", tag)) title="The jobs with this tag" { (tag) }
            }
        }
    }
}

/// Newest, newer and older pages, and which jobs this page shows ("Jobs 51–100").
fn pager(base: &str, view: &ListView) -> Markup {
    if view.after.is_none() && view.next.is_none() {
        return html! {};
    }
    let link = |after: Option<i64>| match after {
        Some(a) => format!("{base}/workers?{}&after={a}", view.query),
        None => format!("{base}/workers?{}", view.query),
    };
    let at = if view.jobs.is_empty() {
        "No jobs on this page".to_owned()
    } else if view.skipped > COUNT_CAP {
        format!("Jobs after the newest {}", thousands(COUNT_CAP))
    } else {
        let from = view.skipped + 1;
        let to = view.skipped + view.jobs.len() as u64;
        format!("Jobs {}–{}", thousands(from), thousands(to))
    };
    html! {
        nav class="pager" aria-label="Pages" {
            @if let Some(newer) = view.newer {
                a class="button pager-first" rel="first" href=(link(None)) { "« Newest" }
                " "
                a class="button pager-newer" rel="prev" href=(link(newer)) { "← Newer jobs" }
                " "
            }
            span class="muted pager-at" { (at) }
            @if let Some(next) = view.next {
                " "
                a class="button pager-older" rel="next" href=(link(Some(next))) { "Older jobs →" }
            }
        }
    }
}

/// The jobs; `selectable`: with the bulk bar's checkboxes shown.
pub fn jobs_table(base: &str, jobs: &[Job], selectable: bool) -> Markup {
    html! {
        div class="table-wrap" tabindex="0" {
            table class={ "jobs" @if selectable { " selectable" } } {
                thead {
                    tr {
                        th class="select" {
                            input type="checkbox" data-select-page aria-label="Select every job on this page";
                        }
                        th { "ID" } th { "Kind" } th { "Status" } th { "Progress" }
                        th { "Created" } th { "Scheduled for" } th { "Started" } th { "Finished" }
                        th { "Duration" }
                    }
                }
                tbody id="job-rows" sse-swap="new-row" hx-swap="afterbegin" {
                    @for job in jobs { (job_row(base, job)) }
                }
            }
            @if jobs.is_empty() {
                p class="empty" { "No jobs here." }
            }
        }
    }
}

/// One row; it replaces itself when its job changes.
pub fn job_row(base: &str, job: &Job) -> Markup {
    let href = format!("{base}/workers/{}", job.id);
    let retry = is_retry(job);
    html! {
        tr id={ "job-" (job.id) } sse-swap={ "row-" (job.id) } hx-swap="outerHTML" {
            // Shown to operators only (the table's `selectable`); the bulk bar's form owns it.
            td class="select" {
                input type="checkbox" name="ids" value=(job.id) form="bulk" aria-label={ "Select job #" (job.id) };
            }
            td class="num" { a href=(href) { "#" (job.id) } }
            td {
                a href=(href) { (job.label) }
                @if !job.group.is_empty() { div class="muted small" { (job.group) } }
                (job_labels(base, job))
            }
            td {
                (job_badge(job))
                @if retry {
                    div class="muted small retry-summary" { (retry_summary(job, Utc::now())) }
                }
                @if let Some(err) = job.error.as_deref().filter(|_| retry || job.status == crate::JobStatus::Exception) {
                    div class="error-excerpt small" title=(err) { (excerpt(err, 80)) }
                }
            }
            td { (progress_bar(job.progress, job.status)) }
            td { (time(Some(job.created_at))) }
            td {
                @if retry && job.schedule_at.is_none() {
                    (time(Some(job.run_at)))
                    div class="muted small" { "next try" }
                } @else {
                    (time(job.schedule_at))
                }
            }
            td { (time(job.started_at)) }
            td { (time(job.finished_at)) }
            td { (duration(job.duration(Utc::now()))) }
        }
    }
}

/// What replaces a row whose job has left the list's tab (a running job that finished, a
/// scheduled one that started): an out-of-band delete of the row.
pub fn row_gone(id: i64) -> Markup {
    html! { tr id={ "job-" (id) } hx-swap-oob="delete" {} }
}

/// The first line of `text`, cut to `max` characters.
fn excerpt(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > max || text.lines().nth(1).is_some() {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_owned()
    }
}
