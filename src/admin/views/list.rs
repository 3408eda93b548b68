//! Job lists: the tabs, filters, rows that update in place, and the "older" link.
use chrono::Utc;
use maud::{Markup, html};

use super::components::{duration, progress_bar, status_badge, time};
use super::layout::{PageCtx, page};
use crate::job::Job;

/// What a list page shows.
#[derive(Debug, Clone)]
pub struct ListView {
    pub tab: String,
    pub jobs: Vec<Job>,
    /// The cursor of the next (older) page.
    pub next: Option<i64>,
    /// The filter as given, for the form and links.
    pub kind: Option<String>,
    pub group: Option<String>,
    pub q: Option<String>,
    /// Kinds (key, label) and groups for the filter selects.
    pub kinds: Vec<(String, String)>,
    pub groups: Vec<String>,
    /// Query string of this filter without the cursor (for "older" and the live stream).
    pub query: String,
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
    let live = format!("{base}/workers/events?{}", view.query);
    page(
        ctx,
        tab_title(&view.tab),
        Some(&live),
        html! {
            div class="page-head" {
                h1 { (tab_title(&view.tab)) }
                @if view.tab == "all" || view.tab == "killed" || view.tab == "cancelled" {
                    div class="chips" {
                        a href={ (base) "/workers?status=all" } class=[(view.tab == "all").then_some("active")] { "Any state" }
                        a href={ (base) "/workers?status=killed" } class=[(view.tab == "killed").then_some("active")] { "Killed" }
                        a href={ (base) "/workers?status=cancelled" } class=[(view.tab == "cancelled").then_some("active")] { "Cancelled" }
                    }
                }
            }
            form class="filters" method="get" action={ (base) "/workers" } {
                input type="hidden" name="status" value=(view.tab);
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
                    span { "Arguments contain" }
                    input type="search" name="q" value=[view.q.as_deref()] placeholder="text in the arguments";
                }
                button type="submit" { "Filter" }
            }
            (jobs_table(base, &view.jobs))
            @if let Some(next) = view.next {
                p class="pager" {
                    a class="button" href={ (base) "/workers?" (view.query) "&after=" (next) } { "Older jobs →" }
                }
            }
        },
    )
}

pub fn jobs_table(base: &str, jobs: &[Job]) -> Markup {
    html! {
        div class="table-wrap" {
            table class="jobs" {
                thead {
                    tr {
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
    html! {
        tr id={ "job-" (job.id) } sse-swap={ "row-" (job.id) } hx-swap="outerHTML" {
            td class="num" { a href=(href) { "#" (job.id) } }
            td {
                a href=(href) { (job.label) }
                @if !job.group.is_empty() { div class="muted small" { (job.group) } }
            }
            td {
                (status_badge(job.status))
                @if let Some(err) = job.error.as_deref().filter(|_| job.status == crate::JobStatus::Exception) {
                    div class="error-excerpt small" title=(err) { (excerpt(err, 80)) }
                }
            }
            td { (progress_bar(job.progress, job.status)) }
            td { (time(Some(job.created_at))) }
            td { (time(job.schedule_at)) }
            td { (time(job.started_at)) }
            td { (time(job.finished_at)) }
            td { (duration(job.duration(Utc::now()))) }
        }
    }
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
