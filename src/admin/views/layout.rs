//! The page frame: head, the Workers navigation with live counts, the Cluster and Access
//! sections, flash message, content.
use maud::{DOCTYPE, Markup, html};

use super::components::count;
use crate::admin::hub::Counts;
use crate::admin::routes::assets::ICON;

/// What every full page needs besides its content.
#[derive(Debug, Clone, Default)]
pub struct PageCtx {
    /// The mount prefix ("" at the root, "/admin/jobs" when nested).
    pub base: String,
    /// A message from the previous action.
    pub flash: Option<String>,
    pub counts: Counts,
    /// The active tab, if a list page.
    pub tab: Option<String>,
    /// The CSRF token to send with state changes, when sessions are in use.
    pub csrf: Option<String>,
    /// Who is looking, if known.
    pub operator: Option<crate::admin::extract::Operator>,
    /// The built-in login is in use (show the logout button).
    pub sessions: bool,
}

impl PageCtx {
    /// Whether the viewer may do what `role` may (hides buttons; the server checks anyway).
    pub fn may(&self, role: crate::role::Role) -> bool {
        self.operator.as_ref().is_some_and(|o| o.role.allows(role))
    }
}

/// The navigation tabs: `(tab, label)`.
pub const TABS: [(&str, &str); 5] = [
    ("all", "All Jobs"),
    ("running", "Running"),
    ("scheduled", "Scheduled"),
    ("done", "Done"),
    ("errors", "Errors"),
];

/// A full page. `live` is the URL of an event stream that keeps the counts current (a list's
/// or a job's); any other page an operator sees gets the counts-only stream.
pub fn page(ctx: &PageCtx, title: &str, live: Option<&str>, body: Markup) -> Markup {
    let base = &ctx.base;
    let counts_only = format!("{base}/workers/events?only=counts");
    let live = live.or_else(|| ctx.operator.is_some().then_some(counts_only.as_str()));
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Nightshift" }
                meta name="htmx-config" content=r#"{"allowEval":false,"allowScriptTags":false,"includeIndicatorStyles":false,"historyCacheSize":0}"#;
                @if let Some(token) = &ctx.csrf {
                    meta name="csrf-token" content=(token);
                }
                link rel="icon" type="image/svg+xml" href={ (base) "/assets/" (ICON) };
                link rel="stylesheet" href={ (base) "/assets/nightshift.css" };
                script src={ (base) "/assets/htmx.min.js" } defer {}
                script src={ (base) "/assets/sse.min.js" } defer {}
                script src={ (base) "/assets/nightshift.js" } defer {}
            }
            body hx-ext="sse" {
                a class="skip-link" href="#main" { "Skip to main content" }
                header class="top" {
                    a class="brand" href={ (base) "/dashboard" } { "☾ Nightshift" }
                    // Shown by the page script while the page has a live stream.
                    span id="live-status" class="live-status" role="status" hidden {
                        span class="dot" aria-hidden="true" {}
                        span class="live-text sr-only" {}
                    }
                    span class="spacer" {}
                    // The page script shows times in the operator's zone or in UTC; this
                    // switches (kept in a cookie). Without the script times stay in UTC.
                    button type="button" class="link tz-switch" data-tz-switch aria-pressed="false" { "Times: UTC" }
                    @if ctx.may(crate::role::Role::Operator) {
                        a class="button primary" href={ (base) "/workers/new" } { "New job" }
                    }
                    @if let Some(who) = &ctx.operator {
                        span class="who" { (who.name) " · " (who.role) }
                        @if ctx.sessions {
                            form method="post" action={ (base) "/logout" } class="inline" {
                                input type="hidden" name="_csrf" value=[ctx.csrf.as_deref()];
                                button type="submit" class="link" { "Log out" }
                            }
                        }
                    }
                }
                div class="shell" sse-connect=[live] {
                    nav class="side" aria-label="Sections" {
                        ul { (section_link(ctx, "dashboard", "Dashboard")) }
                        h2 { "Workers" }
                        ul {
                            @for (tab, label) in TABS {
                                li {
                                    a href={ (base) "/workers?status=" (tab) }
                                      class=[active(ctx, tab)] aria-current=[current(ctx, tab)] {
                                        span { (label) }
                                        span class="count num" sse-swap={ "count-" (tab) } aria-live="polite" {
                                            (count(tab_count(&ctx.counts, tab)))
                                        }
                                    }
                                }
                            }
                        }
                        h2 { "Cluster" }
                        ul {
                            (section_link(ctx, "nodes", "Nodes"))
                            (section_link(ctx, "queues", "Queues"))
                            (section_link(ctx, "recurring", "Recurring"))
                        }
                        @if ctx.may(crate::role::Role::Admin) && ctx.sessions {
                            h2 { "Access" }
                            ul {
                                (section_link(ctx, "operators", "Operators"))
                                (section_link(ctx, "tokens", "API tokens"))
                                (section_link(ctx, "audit", "Audit log"))
                            }
                        } @else if ctx.may(crate::role::Role::Admin) {
                            ul { (section_link(ctx, "audit", "Audit log")) }
                        }
                    }
                    main id="main" tabindex="-1" {
                        @if let Some(msg) = &ctx.flash {
                            div class="flash" role="status" { (msg) }
                        }
                        (body)
                    }
                }
            }
        }
    }
}

/// The navigation entry of the page being shown gets the `active` class (the look) and
/// `aria-current="page"` (what a screen reader announces).
fn active(ctx: &PageCtx, tab: &str) -> Option<&'static str> {
    (ctx.tab.as_deref() == Some(tab)).then_some("active")
}

fn current(ctx: &PageCtx, tab: &str) -> Option<&'static str> {
    (ctx.tab.as_deref() == Some(tab)).then_some("page")
}

/// A link of the Cluster or Access section: `tab` is both its path and its tab name.
fn section_link(ctx: &PageCtx, tab: &str, label: &str) -> Markup {
    html! {
        li {
            a href={ (ctx.base) "/" (tab) } class=[active(ctx, tab)] aria-current=[current(ctx, tab)] {
                span { (label) }
            }
        }
    }
}

fn tab_count(c: &Counts, tab: &str) -> u64 {
    c.tabs()
        .into_iter()
        .find(|(t, _)| *t == tab)
        .map(|(_, n)| n)
        .unwrap_or(0)
}
