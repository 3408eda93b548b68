//! The job detail page: status, progress, live log console, results, arguments, attempts and the
//! actions its state allows.
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::components::{duration, progress_bar, status_badge, time};
use super::form::{FormState, kind_form};
use super::layout::{PageCtx, page};
use super::list::job_labels;
use crate::context::ResultCell;
use crate::entity::{job_attempt, job_log};
use crate::job::Job;
use crate::kind::JobKind;
use crate::state::JobStatus;

/// Everything the detail page shows.
#[derive(Debug)]
pub struct JobView {
    pub job: Job,
    pub log: Vec<job_log::Model>,
    /// One page of the latest reporting attempt's result rows.
    pub results: Vec<Vec<ResultCell>>,
    /// Which page (from 1), and how many rows a page holds.
    pub results_page: u64,
    pub results_per_page: u64,
    /// Rows per attempt, latest first, and rows dropped at the cap.
    pub result_summary: crate::store::ResultSummary,
    pub attempts: Vec<job_attempt::Model>,
    /// The kind, when registered here (for the update form).
    pub kind: Option<JobKind>,
    /// The update form's state (prefilled, or the operator's input with errors).
    pub form: Option<FormState>,
    /// Audit entries about this job, newest first.
    pub history: Vec<crate::entity::audit::Model>,
}

pub fn job_page(ctx: &PageCtx, view: &JobView) -> Markup {
    let base = &ctx.base;
    let job = &view.job;
    let after = view.log.last().map(|l| l.id).unwrap_or(0);
    // One stream a page (browsers allow few connections to a host): the job's, carrying the
    // sidebar's counts too, or for a finished job the counts alone.
    let live = if job.status.is_finished() {
        format!("{base}/workers/events?only=counts")
    } else {
        format!("{base}/workers/{}/events?after={after}&counts=1", job.id)
    };
    page(
        ctx,
        &format!("#{} {}", job.id, job.label),
        Some(&live),
        html! {
            div class="page-head" {
                h1 { "#" (job.id) " " (job.label) }
                @if !job.group.is_empty() { span class="muted" { (job.group) } }
                (job_labels(base, job))
                @if let Some(key) = &job.unique_key {
                    span class="muted small" title="While it waits or runs, no other job of its kind with this key is added" {
                        "key " code { (key) }
                    }
                }
            }
            div class="detail" {
                (status_panel(base, job, Some(ctx)))
                (progress(job))
                section class="card" {
                    h2 { "Log" }
                    @if job.log_dropped > 0 {
                        p class="muted small" { (job.log_dropped) " older lines were dropped." }
                    }
                    div class="console" tabindex="0" {
                        div id="job-log" sse-swap="log" hx-swap="beforeend" {
                            @for line in &view.log { (log_line(line.at, &line.line)) }
                        }
                    }
                }
                section class="card" {
                    h2 { "Results" }
                    (results_summary(base, view))
                    div class="table-wrap" tabindex="0" {
                        table class="results" {
                            @if let Some(kind) = view.kind.as_ref().filter(|k| !k.columns().is_empty()) {
                                thead { tr { @for c in kind.columns() { th scope="col" { (c) } } } }
                            }
                            tbody id="job-results" sse-swap="result" hx-swap="beforeend" {
                                @for row in &view.results { (result_row(row)) }
                            }
                        }
                    }
                }
            }
            @if let (Some(kind), Some(form)) = (&view.kind, &view.form) {
                @if job.status.is_waiting() && !is_retry(job) && ctx.may(crate::role::Role::Operator) {
                    section class="card" id="update" {
                        h2 { "Update scheduled Job" }
                        (kind_form(kind, form, &format!("{base}/workers/{}", job.id), true, ctx.csrf.as_deref()))
                    }
                }
            }
            section class="card" {
                h2 { "Arguments" }
                (args(&job.args))
            }
            section class="card" {
                h2 { "Attempts" }
                (attempts(&view.attempts))
            }
            @if !view.history.is_empty() {
                section class="card" {
                    h2 { "Who acted on it" }
                    (history(&view.history))
                }
            }
        },
    )
}

/// Which attempt the results table shows, the earlier attempts' rows (folded: counted, not
/// shown), rows dropped at the cap, and the pages.
fn results_summary(base: &str, view: &JobView) -> Markup {
    let summary = &view.result_summary;
    let latest = summary.per_attempt.first();
    let shown_total = latest.map(|l| l.1).unwrap_or(0) as u64;
    let pages = shown_total.div_ceil(view.results_per_page.max(1)).max(1);
    let page = view.results_page;
    let link = |p: u64| format!("{base}/workers/{}?results_page={p}", view.job.id);
    html! {
        @if let Some((attempt, rows)) = latest {
            @if summary.per_attempt.len() > 1 || *attempt > 1 {
                p class="muted small" { "Attempt " (attempt) ": " (rows) " row(s)." }
            }
        }
        @if summary.per_attempt.len() > 1 {
            details class="small" {
                summary { "Earlier attempts" }
                ul {
                    @for (attempt, rows) in summary.per_attempt.iter().skip(1) {
                        li { "Attempt " (attempt) ": " (rows) " row(s), superseded." }
                    }
                }
            }
        }
        @if summary.dropped > 0 {
            p class="muted small" {
                (summary.dropped) " row(s) were dropped: a job keeps at most "
                (crate::store::MAX_RESULT_ROWS) "."
            }
        }
        @if pages > 1 {
            nav class="pager small" aria-label="Result pages" {
                @if page > 1 { a href=(link(page - 1)) { "← Previous" } " " }
                span class="muted" { "Page " (page) " of " (pages) }
                @if page < pages { " " a href=(link(page + 1)) { "Next →" } }
            }
        }
    }
}

/// Whether `job` is waiting for a retry after a failed attempt (not for a time an operator
/// chose): waiting, with an attempt made and its error kept.
pub fn is_retry(job: &Job) -> bool {
    job.status.is_waiting() && job.attempt >= 1 && job.error.is_some()
}

/// "retry 3 of 4 in 12 s": the attempt to come, and when (relative to `now`).
pub fn retry_summary(job: &Job, now: DateTime<Utc>) -> String {
    let next = job.attempt + 1;
    let of = job.max_attempts.max(next);
    format!("retry {next} of {of} {}", relative(job.run_at - now))
}

/// How far ahead a time is, as a person says it: `in 12 s`, `in 4 min`, `in 2 h 05 min`, `now`.
pub fn relative(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    if d.num_milliseconds() <= 0 {
        "now".into()
    } else if s < 60 {
        format!("in {} s", s.max(1))
    } else if s < 3600 {
        format!("in {} min", s / 60)
    } else if s < 86_400 {
        format!("in {} h {:02} min", s / 3600, (s / 60) % 60)
    } else {
        format!("in {} d {} h", s / 86_400, (s / 3600) % 24)
    }
}

/// The badge of a job: its state, or `retry` for a job waiting for its retry.
pub fn job_badge(job: &Job) -> Markup {
    if is_retry(job) {
        html! { span class="badge badge-scheduled badge-retry" title=(job.status.as_str()) { "retry" } }
    } else {
        status_badge(job.status)
    }
}

/// Status, error, times and the actions the state allows. Replaced live on every state change.
/// `ctx` is the page's (buttons follow the viewer's role, forms carry the CSRF token); frames
/// pushed to every viewer have none, and the page script fills the token in.
pub fn status_panel(base: &str, job: &Job, ctx: Option<&PageCtx>) -> Markup {
    let csrf = ctx.and_then(|c| c.csrf.as_deref());
    let may_act = ctx.is_none_or(|c| c.may(crate::role::Role::Operator));
    let url = format!("{base}/workers/{}", job.id);
    let retry = is_retry(job);
    html! {
        section class="card status-panel" id="job-status" sse-swap="status" hx-swap="outerHTML" aria-live="polite" {
            div class="status-line" {
                (job_badge(job))
                @if retry {
                    span class="muted retry-summary" { (retry_summary(job, Utc::now())) }
                } @else {
                    span class="muted" { "attempt " span class="num" { (job.attempt) " of " (job.max_attempts) } }
                }
                @if let Some(by) = &job.aborted_by { span class="muted" { "aborted by " (by) } }
                @if let Some(by) = &job.created_by { span class="muted" { "created by " (by) } }
            }
            @if let Some(err) = &job.error {
                @if retry {
                    p class="muted small" { "Attempt " (job.attempt) " failed:" }
                }
                pre class="error-text" tabindex="0" { (err) }
            }
            dl class="times" {
                dt { "Created" } dd { (time(Some(job.created_at))) }
                @if !retry || job.schedule_at.is_some() {
                    dt { "Scheduled for" } dd { (time(job.schedule_at)) }
                }
                @if job.status == JobStatus::Scheduled && job.schedule_at != Some(job.run_at) {
                    dt { "Next try" } dd { (time(Some(job.run_at))) }
                }
                dt { "Started" } dd { (time(job.started_at)) }
                dt { "Finished" } dd { (time(job.finished_at)) }
                dt { "Duration" } dd { (duration(job.duration(Utc::now()))) }
            }
            div class="actions" {
                @if may_act {
                @match job.status {
                    JobStatus::Running => {
                        (action(&url, "abort", "Abort running Job", "danger",
                            &format!("Abort job #{}? Its handler is told to stop, then stopped by force.", job.id), csrf))
                    }
                    JobStatus::Aborting => { span class="muted" { "Aborting…" } }
                    JobStatus::New | JobStatus::Scheduled if retry => {
                        @if job.status == JobStatus::Scheduled {
                            (retry_now(&url, csrf))
                        }
                        (action(&url, "cancel", "Cancel", "danger",
                            &format!("Cancel job #{}? Its retry will not run.", job.id), csrf))
                    }
                    JobStatus::New | JobStatus::Scheduled => {
                        a class="button" href="#update" { "Update scheduled Job" }
                        (action(&url, "cancel", "Cancel scheduled Job", "danger",
                            &format!("Cancel job #{}? It will not run.", job.id), csrf))
                    }
                    _ => {}
                }
                (action(&url, "rerun", "Rerun", "",
                    &format!("Run job #{} again as a new job with the same arguments?", job.id), csrf))
                }
            }
        }
    }
}

/// The form field that makes an update of a waiting job "run it now, as it is": its arguments
/// kept, no schedule time (the update route, so it is checked and audited like an update).
pub const RETRY_NOW_FIELD: &str = "_retry";

/// "Retry now": the update route with the stored arguments and no time.
fn retry_now(url: &str, csrf: Option<&str>) -> Markup {
    html! {
        form method="post" action=(url) hx-post=(url) class="inline" {
            input type="hidden" name="_csrf" value=(csrf.unwrap_or_default()) data-csrf;
            input type="hidden" name="_method" value="PUT";
            input type="hidden" name=(RETRY_NOW_FIELD) value="now";
            button type="submit" class="primary" { "Retry now" }
        }
    }
}

/// A button that POSTs to `{url}/{verb}` after the operator confirms.
fn action(
    url: &str,
    verb: &str,
    label: &str,
    class: &str,
    confirm: &str,
    csrf: Option<&str>,
) -> Markup {
    let target = format!("{url}/{verb}");
    html! {
        form method="post" action=(target) hx-post=(target) hx-confirm=(confirm) class="inline" {
            input type="hidden" name="_csrf" value=(csrf.unwrap_or_default()) data-csrf;
            button type="submit" class=(class) { (label) }
        }
    }
}

/// The progress bar and progress text. Replaced live.
pub fn progress(job: &Job) -> Markup {
    // The panel stays and only its content is swapped: an element replaced whole re-registers
    // with the event stream after the swap, and a frame arriving meanwhile (the 100 % of a job
    // that just ended, right behind its last report) was lost.
    html! {
        section class="card progress-panel" id="job-progress" sse-swap="progress" hx-swap="innerHTML"
            aria-live="polite" aria-label="Progress" {
            (progress_content(job))
        }
    }
}

/// What the progress panel holds: the bar and the status line (the `progress` frame).
pub fn progress_content(job: &Job) -> Markup {
    html! {
        (progress_bar(job.progress, job.status))
        @if let Some(text) = &job.progress_text {
            p class="progress-text" { (linkified(text)) }
        }
    }
}

/// Text with its `http(s)://…` and `/absolute/path` words as links (a job can point at its
/// output). Everything stays escaped; no other scheme becomes a link.
fn linkified(text: &str) -> Markup {
    html! {
        @for (i, word) in text.split(' ').enumerate() {
            @if i > 0 { " " }
            @if word.starts_with("https://") || word.starts_with("http://")
                || (word.starts_with('/') && !word.starts_with("//") && !word.contains('\\') && word.len() > 1) {
                a href=(word) rel="noopener noreferrer" { (word) }
            } @else {
                (word)
            }
        }
    }
}

pub fn log_line(at: i64, line: &str) -> Markup {
    let at = crate::clock::to_datetime(at);
    html! {
        div class="line" {
            time class="at" datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) data-format="time" {
                (at.format("%H:%M:%S%.3f"))
            }
            " "
            span class="text" { (line) }
        }
    }
}

pub fn result_row(cells: &[ResultCell]) -> Markup {
    html! {
        tr class=[cells.iter().any(|c| c.error.is_some()).then_some("has-error")] {
            @for c in cells {
                @if let Some(err) = &c.error {
                    td class="cell-error" title=(err) {
                        (c.value)
                        div class="cell-error-text" { (err) }
                    }
                } @else {
                    td { (c.value) }
                }
            }
        }
    }
}

fn args(args: &serde_json::Value) -> Markup {
    match args.as_object() {
        Some(map) if !map.is_empty() => html! {
            dl class="args" {
                @for (k, v) in map {
                    dt { (k) }
                    dd {
                        @match v {
                            serde_json::Value::String(s) => { (s) }
                            other => { code { (other.to_string()) } }
                        }
                    }
                }
            }
        },
        _ => html! { p class="muted" { "No arguments." } },
    }
}

fn attempts(attempts: &[job_attempt::Model]) -> Markup {
    if attempts.is_empty() {
        return html! { p class="muted" { "Not started yet." } };
    }
    html! {
        div class="table-wrap" tabindex="0" {
            table class="attempts" {
                thead { tr { th { "#" } th { "Node" } th { "Started" } th { "Finished" } th { "Outcome" } th { "Error" } } }
                tbody {
                    @for a in attempts {
                        tr {
                            td class="num" { (a.attempt) }
                            td class="small" { (a.node) }
                            td { (time(Some(crate::clock::to_datetime(a.started_at)))) }
                            td { (time(a.finished_at.map(crate::clock::to_datetime))) }
                            td { (a.outcome.as_deref().unwrap_or("running")) }
                            td { @if let Some(e) = &a.error { pre class="error-text small" tabindex="0" { (e) } } }
                        }
                    }
                }
            }
        }
    }
}

fn history(rows: &[crate::entity::audit::Model]) -> Markup {
    html! {
        div class="table-wrap" tabindex="0" {
            table {
                thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Outcome" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td { (time(Some(crate::clock::to_datetime(r.at)))) }
                            td { (r.actor) }
                            td { (r.action) @if let Some(d) = &r.detail { " (" (d) ")" } }
                            td { (r.outcome) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_ahead_read_as_people_say_them() {
        let s = chrono::Duration::seconds;
        assert_eq!(super::relative(s(-5)), "now");
        assert_eq!(
            super::relative(chrono::Duration::milliseconds(300)),
            "in 1 s"
        );
        assert_eq!(super::relative(s(12)), "in 12 s");
        assert_eq!(super::relative(s(4 * 60 + 59)), "in 4 min");
        assert_eq!(super::relative(s(2 * 3600 + 5 * 60)), "in 2 h 05 min");
        assert_eq!(super::relative(s(3 * 86_400 + 7200)), "in 3 d 2 h");
    }

    #[test]
    fn only_web_links_and_paths_become_links() {
        let m = super::linkified(
            "Done: /exports/a.csv see https://x.test/?a=1&b=<2> javascript:alert(1)",
        )
        .into_string();
        assert!(m.contains(r#"<a href="/exports/a.csv""#), "{m}");
        assert!(m.contains("https://x.test/?a=1&amp;b=&lt;2&gt;"), "{m}");
        assert!(!m.contains(r#"href="javascript"#), "{m}");
    }
}
