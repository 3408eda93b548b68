//! The page frame: head, the Workers navigation with live counts, flash message, content.
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
    pub operator: Option<String>,
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
                    a class="button primary" href={ (base) "/workers/new" } { "New job" }
                    @if let Some(who) = &ctx.operator {
                        span class="who" { (who) }
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
