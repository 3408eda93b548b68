//! Bulk actions in the browser: the bar above a job list (actions that fit its tab, the rows'
//! checkboxes or every job matching the filter) and the confirmation page before anything
//! changes. Plain forms: they work without JavaScript (only "select all on this page" needs it).
use maud::{Markup, html};

use super::components::thousands;
use super::layout::{PageCtx, page};
use crate::store::BulkAction;

/// The actions a list's tab offers: those that can change its jobs.
pub fn actions_for(tab: &str) -> &'static [BulkAction] {
    use BulkAction::*;
    match tab {
        "running" => &[Cancel],
        "scheduled" | "new" => &[Cancel, Retry],
        // A failed job's retry is a rerun: one button, not two doing the same.
        "errors" | "killed" => &[Retry, Delete],
        "done" | "cancelled" => &[Rerun, Delete],
        _ => &[Cancel, Retry, Rerun, Delete],
    }
}

/// The button's word.
pub fn verb(action: BulkAction) -> &'static str {
    match action {
        BulkAction::Cancel => "Cancel",
        BulkAction::Retry => "Retry",
        BulkAction::Rerun => "Rerun",
        BulkAction::Delete => "Delete",
    }
}

/// What happened, for the flash: "Cancelled 1,234 jobs."
pub fn done_message(action: BulkAction, affected: u64, skipped: u64) -> String {
    let past = match action {
        BulkAction::Cancel => "Cancelled",
        BulkAction::Retry => "Retried",
        BulkAction::Rerun => "Reran",
        BulkAction::Delete => "Deleted",
    };
    let mut msg = format!("{past} {}.", jobs(affected));
    if skipped > 0 {
        msg.push_str(&format!(
            " {} skipped: changed meanwhile, or not allowed for your role.",
            jobs(skipped)
        ));
    }
    msg
}

/// What the action does to which jobs, for the confirmation.
fn explain(action: BulkAction) -> &'static str {
    match action {
        BulkAction::Cancel => {
            "Waiting jobs are cancelled; running jobs are aborted and end killed. Finished jobs are left alone."
        }
        BulkAction::Retry => {
            "Failed and killed jobs run again as new jobs; jobs waiting for a retry run now. Other jobs are left alone."
        }
        BulkAction::Rerun => {
            "Each finished job runs again as a new job with the same arguments. Waiting and running jobs are left alone."
        }
        BulkAction::Delete => {
            "Finished jobs are deleted with their logs, results and attempts; this cannot be undone. Waiting and running jobs are left alone."
        }
    }
}

/// "1 job", "1,234 jobs".
pub fn jobs(n: u64) -> String {
    if n == 1 {
        "1 job".to_owned()
    } else {
        format!("{} jobs", thousands(n))
    }
}

/// The bar above a list: the scope (the ticked rows, or every job matching the filter) and the
/// actions of this tab. `filter`: the list's filter as query pairs; `matching`: how many jobs
/// match it (capped: `None` when over the cap).
pub fn bulk_bar(
    ctx: &PageCtx,
    tab: &str,
    filter: &[(&str, &str)],
    matching: Option<u64>,
) -> Markup {
    let all = match matching {
        Some(n) => format!("All {} matching this filter", jobs(n)),
        None => format!(
            "All jobs matching this filter (over {})",
            thousands(crate::store::COUNT_CAP)
        ),
    };
    html! {
        form id="bulk" class="bulk-bar" method="post" action={ (ctx.base) "/workers/bulk" } aria-label="Bulk actions" {
            input type="hidden" name="_csrf" value=[ctx.csrf.as_deref()];
            input type="hidden" name="preview" value="1";
            @for (name, value) in filter {
                input type="hidden" name=(name) value=(value);
            }
            span class="bulk-scope" {
                "With the ticked jobs, or "
                label { input type="checkbox" name="scope" value="filter"; " " (all) }
            }
            span class="bulk-actions" {
                @for action in actions_for(tab) {
                    button type="submit" name="action" value=(action.as_str())
                        class=[(*action == BulkAction::Delete).then_some("danger")] { (verb(*action)) "…" }
                }
            }
        }
    }
}

/// The confirmation before a bulk action: how many jobs, what happens to them.
#[derive(Debug, Clone)]
pub struct Confirm {
    pub action: BulkAction,
    pub count: u64,
    /// Jobs of kinds the operator's role does not allow (left alone).
    pub denied: u64,
    /// The selection, as fields to send again (without the CSRF token and `preview`).
    pub fields: Vec<(String, String)>,
    /// The list to go back to.
    pub back: String,
}

pub fn confirm_page(ctx: &PageCtx, c: &Confirm) -> Markup {
    let title = format!("{} {}?", verb(c.action), jobs(c.count));
    page(
        ctx,
        &title,
        None,
        html! {
            div class="card bulk-confirm" {
                @if c.count == 0 {
                    h1 { "No job to " (verb(c.action).to_lowercase()) }
                    p { "None of the selected jobs can be changed this way: " (explain(c.action)) }
                    p { a class="button" href=(c.back) { "Back to the list" } }
                } @else {
                    h1 { (title) }
                    p { (explain(c.action)) }
                    @if c.denied > 0 {
                        p class="muted" { (jobs(c.denied)) " more need a role you do not have; they are left alone." }
                    }
                    form method="post" action={ (ctx.base) "/workers/bulk" } {
                        input type="hidden" name="_csrf" value=[ctx.csrf.as_deref()];
                        @for (name, value) in &c.fields {
                            input type="hidden" name=(name) value=(value);
                        }
                        button type="submit" class=(if c.action == BulkAction::Delete { "danger" } else { "primary" }) {
                            (verb(c.action)) " " (jobs(c.count))
                        }
                        " "
                        a class="button" href=(c.back) { "Back" }
                    }
                }
            }
        },
    )
}
