//! The Recurring page: each schedule in plain English with its next ticks, its latest runs and
//! their outcome, and its actions; the form that creates or edits one.
use maud::{Markup, html};

use super::components::{status_badge, time};
use super::form::FormState;
use super::layout::{PageCtx, page};
use crate::kind::JobKind;
use crate::recurring::{LastRun, Missed, Schedule};
use crate::role::Role;
use crate::state::JobStatus;

/// What the Recurring page shows.
#[derive(Debug, Clone)]
pub struct RecurringView {
    pub schedules: Vec<Schedule>,
}

/// What the form shows: a new schedule, or the one being edited.
#[derive(Debug)]
pub struct ScheduleForm<'a> {
    /// `None`: a new schedule.
    pub schedule: Option<&'a Schedule>,
    /// The kinds an operator can pick.
    pub kinds: &'a [JobKind],
    /// The fields' values and errors.
    pub state: &'a FormState,
}

pub fn recurring_page(ctx: &PageCtx, view: &RecurringView) -> Markup {
    let base = &ctx.base;
    page(
        ctx,
        "Recurring",
        None,
        html! {
            div class="page-head" {
                h1 { "Recurring" }
                @if ctx.may(Role::Operator) {
                    a class="button" href={ (base) "/recurring/new" } { "New schedule" }
                }
            }
            p class="muted small" {
                "Jobs started on a schedule. Each tick fires once, whichever node gets to it; a tick \
                 more than a minute late was missed, and the schedule's policy says whether missed \
                 ticks run once or are skipped."
            }
            (schedules(ctx, view))
        },
    )
}

/// The schedules, also served alone to htmx, which refreshes them every few seconds.
pub fn schedules(ctx: &PageCtx, view: &RecurringView) -> Markup {
    html! {
        div id="recurring" class="recurring" hx-get={ (ctx.base) "/recurring" } hx-trigger="every 10s" hx-swap="outerHTML" {
            @for s in &view.schedules { (schedule_card(ctx, s)) }
            @if view.schedules.is_empty() {
                p class="empty" { "No recurring schedules yet." }
            }
        }
    }
}

fn schedule_card(ctx: &PageCtx, s: &Schedule) -> Markup {
    let base = &ctx.base;
    let url = format!("{base}/recurring/{}", s.id);
    let csrf = ctx.csrf.as_deref();
    html! {
        section class="card schedule" id={ "schedule-" (s.id) } {
            div class="status-line" {
                h2 { (s.name) }
                @if s.paused {
                    span class="badge badge-cancelled" { "paused" }
                } @else {
                    span class="badge badge-done" { "active" }
                }
                span class="muted small" {
                    @if s.source == "code" { "defined in code" } @else if s.in_code { "edited by an operator" } @else { "created by an operator" }
                }
            }
            p class="description" { strong { (s.description) } }
            dl class="times" {
                dt { "Job" } dd { (s.label) @if s.label != s.job { " " span class="muted small" { "(" (s.job) ")" } } }
                dt { "Cron" } dd { code { (s.cron) } }
                dt { "Time zone" } dd { (s.timezone) }
                dt { "Missed ticks" } dd { (s.missed.label()) }
                dt { "Arguments" } dd { code { (s.args.to_string()) } }
                dt { "Last changed" } dd {
                    (time(Some(s.updated_at)))
                    @if let Some(by) = &s.updated_by { " by " (by) }
                }
            }
            @if let Some(code) = &s.code {
                div class="code-differs" role="note" {
                    strong { "Code says: " }
                    (code.description) ", job " code { (code.job) } ", arguments " code { (code.args.to_string()) }
                    ", " (code.missed.label()) ". "
                    "The operator's version above is kept; the code does not overwrite it."
                }
            }
            @if !s.kind_known {
                p class="muted small" {
                    "Kind " code { (s.job) } " is not registered in this process: only nodes that know it fire this schedule."
                }
            }
            div class="schedule-runs" {
                div {
                    h3 { @if s.paused { "Next runs, if resumed" } @else { "Next runs" } }
                    @if s.next_runs.is_empty() {
                        p class="muted" { "None: the expression names no further time." }
                    } @else {
                        ol class="next-runs" {
                            @for t in &s.next_runs { li { (time(Some(*t))) } }
                        }
                    }
                }
                div {
                    h3 { "Last runs" }
                    @if s.last_runs.is_empty() {
                        p class="muted" { "Not run yet." }
                    } @else {
                        ul class="last-runs" {
                            @for r in &s.last_runs { li { (last_run(base, r)) } }
                        }
                    }
                }
            }
            @if ctx.may(Role::Operator) {
                div class="actions" {
                    (action(&url, "run", "Run now", "primary",
                        &format!("Run {} now, as a job apart from its ticks?", s.name), csrf))
                    @if s.paused {
                        (action(&url, "resume", "Resume", "",
                            &format!("Resume {}? It goes on from its next tick after now.", s.name), csrf))
                    } @else {
                        (action(&url, "pause", "Pause", "",
                            &format!("Pause {}? It fires nothing until resumed.", s.name), csrf))
                        @if !s.next_runs.is_empty() {
                            (action(&url, "skip", "Skip next", "",
                                &format!("Skip the next run of {}?", s.name), csrf))
                        }
                    }
                    a class="button" href=(url) { "Edit" }
                    (action(&url, "delete", "Delete", "danger",
                        &if s.in_code {
                            format!("Delete {}? The code defines it: it is created again at the next start (pause it to stop it for good).", s.name)
                        } else {
                            format!("Delete {}? Its jobs stay.", s.name)
                        }, csrf))
                }
            }
        }
    }
}

fn last_run(base: &str, r: &LastRun) -> Markup {
    let status: Option<JobStatus> = r.status.parse().ok();
    html! {
        @if let Some(id) = r.job_id {
            a href={ (base) "/workers/" (id) } { "#" (id) }
            " "
        }
        @match status {
            Some(s) => { (status_badge(s)) }
            None => {
                span class={ "badge " @if r.status == "failed" { "badge-exception" } @else { "badge-cancelled" } } { (r.status) }
            }
        }
        " "
        span class="muted small" {
            @match r.reason.as_str() {
                "manual" => { "run now " }
                "missed" => { "for missed ticks from " }
                "skipped" => { "missed ticks skipped from " }
                _ => {}
            }
            (time(Some(r.tick_at.unwrap_or(r.at))))
        }
        @if let Some(e) = &r.error { div class="error-excerpt small" { (e) } }
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

/// The page with the form that creates a schedule (`form.schedule` is `None`) or edits one.
pub fn schedule_form_page(ctx: &PageCtx, form: &ScheduleForm<'_>) -> Markup {
    let base = &ctx.base;
    let title = match form.schedule {
        Some(s) => format!("Edit {}", s.name),
        None => "New schedule".to_owned(),
    };
    page(
        ctx,
        &title,
        None,
        html! {
            div class="page-head" {
                h1 { (title) }
                a href={ (base) "/recurring" } { "← Recurring" }
            }
            @if let Some(s) = form.schedule {
                @if s.source == "code" {
                    p class="muted small" {
                        "The code defines this schedule. Once you save a change it is yours: the \
                         code no longer updates it, and the page shows what the code says."
                    }
                }
            }
            section class="card" { (schedule_form(ctx, form)) }
        },
    )
}

fn schedule_form(ctx: &PageCtx, form: &ScheduleForm<'_>) -> Markup {
    let base = &ctx.base;
    let state = form.state;
    let value = |name: &str| state.values.get(name).cloned().unwrap_or_default();
    let action = match form.schedule {
        Some(s) => format!("{base}/recurring/{}", s.id),
        None => format!("{base}/recurring"),
    };
    let missed = value("missed");
    html! {
        form class="job-form" method="post" action=(action) novalidate {
            input type="hidden" name="_csrf" value=(ctx.csrf.as_deref().unwrap_or_default()) data-csrf;
            @if form.schedule.is_some() { input type="hidden" name="_method" value="PUT"; }
            @if let Some(msg) = &state.message {
                p class="form-error" role="alert" { (msg) }
            }
            @if form.schedule.is_none() {
                (text_field(state, "name", "Name", "A unique name, such as nightly-report.", "text", None))
            }
            div class={ "field" @if state.errors.contains_key("job") { " invalid" } } {
                label for="f-job" { "Job" span class="req" title="required" { " *" } }
                select id="f-job" name="job" {
                    @if !value("job").is_empty() && !form.kinds.iter().any(|k| k.name() == value("job")) {
                        option value=(value("job")) selected { (value("job")) " (not registered here)" }
                    }
                    @for k in form.kinds {
                        option value=(k.name()) selected[value("job") == k.name()] { (k.display_label()) }
                    }
                }
                @if let Some(e) = state.errors.get("job") { p class="field-error" { (e) } }
            }
            (text_field(state, "cron", "Cron expression",
                "5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first: \
                 0 9 * * MON-FRI is every weekday at 09:00.", "text", None))
            (text_field(state, "timezone", "Time zone",
                "An IANA name: Europe/Paris, America/New_York, UTC.", "text", Some("timezones")))
            datalist id="timezones" {
                @for tz in chrono_tz::TZ_VARIANTS { option value=(tz.name()) {} }
            }
            div class={ "field" @if state.errors.keys().any(|k| k == "args" || k.starts_with("args.")) { " invalid" } } {
                label for="f-args" { "Arguments (JSON)" }
                textarea id="f-args" name="args" rows="6" { (value("args")) }
                small { "The job's arguments as a JSON object. Secret fields show as ••••••: leave them so to keep them." }
                @for (k, e) in state.errors.iter().filter(|(k, _)| *k == "args" || k.starts_with("args.")) {
                    p class="field-error" { (k) ": " (e) }
                }
            }
            div class={ "field" @if state.errors.contains_key("missed") { " invalid" } } {
                label for="f-missed" { "Missed ticks" }
                select id="f-missed" name="missed" {
                    @for m in [Missed::Skip, Missed::RunOnce] {
                        option value=(m.as_str()) selected[missed == m.as_str()] { (m.label()) }
                    }
                }
                small { "When every node was down at a tick: skip the missed ticks, or run once for all of them." }
                @if let Some(e) = state.errors.get("missed") { p class="field-error" { (e) } }
            }
            div class="form-actions" {
                button type="submit" class="primary" {
                    @if form.schedule.is_some() { "Save schedule" } @else { "Create schedule" }
                }
            }
        }
    }
}

fn text_field(
    state: &FormState,
    name: &str,
    label: &str,
    help: &str,
    kind: &str,
    list: Option<&str>,
) -> Markup {
    let id = format!("f-{name}");
    let error = state.errors.get(name);
    html! {
        div class={ "field" @if error.is_some() { " invalid" } } {
            label for=(id) { (label) span class="req" title="required" { " *" } }
            input type=(kind) id=(id) name=(name) value=[state.values.get(name)] list=[list];
            small { (help) }
            @if let Some(e) = error { p class="field-error" { (e) } }
        }
    }
}
