//! The page frame: head, the Workers navigation with live counts, the Cluster and Access
//! sections, flash message, content.
use maud::{DOCTYPE, Markup, html};

use super::components::count;
use crate::admin::hub::Counts;

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

/// A full page. `live` is the URL of a list event stream that keeps the counts current.
pub fn page(ctx: &PageCtx, title: &str, live: Option<&str>, body: Markup) -> Markup {
    let base = &ctx.base;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Nightshift" }
                meta name="htmx-config" content=r#"{"allowEval":false,"allowScriptTags":false,"includeIndicatorStyles":false,"historyCacheSize":0}"#;
                @if let Some(token) = &ctx.csrf {
                    meta name="csrf-token" content=(token);
                }
                link rel="stylesheet" href={ (base) "/assets/nightshift.css" };
                script src={ (base) "/assets/htmx.min.js" } defer {}
                script src={ (base) "/assets/sse.min.js" } defer {}
                script src={ (base) "/assets/nightshift.js" } defer {}
            }
            body hx-ext="sse" {
                header class="top" {
                    a class="brand" href={ (base) "/workers" } { "☾ Nightshift" }
                    span class="spacer" {}
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
                    nav class="side" aria-label="Workers" {
                        h2 { "Workers" }
                        ul {
                            @for (tab, label) in TABS {
                                li {
                                    a href={ (base) "/workers?status=" (tab) }
                                      class=[(ctx.tab.as_deref() == Some(tab)).then_some("active")] {
                                        span { (label) }
                                        span class="count num" sse-swap={ "count-" (tab) } {
                                            (count(tab_count(&ctx.counts, tab)))
                                        }
                                    }
                                }
                            }
                        }
                        h2 { "Cluster" }
                        ul {
                            li { a href={ (base) "/nodes" } class=[(ctx.tab.as_deref() == Some("nodes")).then_some("active")] { span { "Nodes" } } }
                            li { a href={ (base) "/recurring" } class=[(ctx.tab.as_deref() == Some("recurring")).then_some("active")] { span { "Recurring" } } }
                        }
                        @if ctx.may(crate::role::Role::Admin) && ctx.sessions {
                            h2 { "Access" }
                            ul {
                                li { a href={ (base) "/operators" } class=[(ctx.tab.as_deref() == Some("operators")).then_some("active")] { span { "Operators" } } }
                                li { a href={ (base) "/tokens" } class=[(ctx.tab.as_deref() == Some("tokens")).then_some("active")] { span { "API tokens" } } }
                                li { a href={ (base) "/audit" } class=[(ctx.tab.as_deref() == Some("audit")).then_some("active")] { span { "Audit log" } } }
                            }
                        } @else if ctx.may(crate::role::Role::Admin) {
                            ul { li { a href={ (base) "/audit" } { span { "Audit log" } } } }
                        }
                    }
                    main id="main" {
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

fn tab_count(c: &Counts, tab: &str) -> u64 {
    c.tabs()
        .into_iter()
        .find(|(t, _)| *t == tab)
        .map(|(_, n)| n)
        .unwrap_or(0)
}
