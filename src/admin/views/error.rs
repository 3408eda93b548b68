//! The plain error page for 404, 409, 422 and 500.
use maud::{Markup, html};

use super::layout::{PageCtx, page};

/// A page saying what went wrong, in words for an operator.
pub fn error_page(ctx: &PageCtx, status: u16, message: &str) -> Markup {
    let title = match status {
        404 => "Not found",
        409 => "Not possible now",
        422 => "Invalid input",
        403 => "Not allowed",
        s if s >= 500 => "Something went wrong",
        _ => "Request refused",
    };
    page(
        ctx,
        title,
        None,
        html! {
            section class="error-page" {
                h1 { (title) }
                p { (message) }
                p { a href={ (ctx.base) "/workers" } { "Back to all jobs" } }
            }
        },
    )
}
