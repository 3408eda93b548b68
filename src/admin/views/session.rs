//! The login and first-run setup pages: standalone, no navigation.
use maud::{DOCTYPE, Markup, html};

use crate::admin::extract::Chrome;
use crate::admin::routes::assets::ICON;

fn bare(chrome: &Chrome, title: &str, body: Markup) -> Markup {
    let base = &chrome.base;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(token) = &chrome.csrf {
                    meta name="csrf-token" content=(token);
                }
                title { (title) " · Nightshift" }
                // Without it the browser asks for /favicon.ico, a 404 on every visit.
                link rel="icon" type="image/svg+xml" href={ (base) "/assets/" (ICON) };
                link rel="stylesheet" href={ (base) "/assets/nightshift.css" };
            }
            body class="bare" {
                main class="login card" {
                    p class="brand-line" { "☾ Nightshift" }
                    h1 { (title) }
                    @if let Some(msg) = &chrome.flash { div class="flash" role="status" { (msg) } }
                    (body)
                }
            }
        }
    }
}

pub fn login_page(chrome: &Chrome, next: &str, error: Option<&str>, name: &str) -> Markup {
    bare(
        chrome,
        "Log in",
        html! {
            @if let Some(e) = error { p class="form-error" role="alert" { (e) } }
            form method="post" action={ (chrome.base) "/login" } class="job-form" {
                input type="hidden" name="_csrf" value=[chrome.csrf.as_deref()];
                input type="hidden" name="next" value=(next);
                div class="field" {
                    label for="name" { "Name" }
                    input type="text" id="name" name="name" value=(name) autocomplete="username" required autofocus;
                }
                div class="field" {
                    label for="password" { "Password" }
                    input type="password" id="password" name="password" autocomplete="current-password" required;
                }
                div class="form-actions" { button type="submit" class="primary" { "Log in" } }
            }
        },
    )
}

pub fn setup_page(chrome: &Chrome, token: &str, error: Option<&str>) -> Markup {
    bare(
        chrome,
        "Create the first admin",
        html! {
            p class="muted" { "This link works once. The operator you create here is an admin." }
            @if let Some(e) = error { p class="form-error" role="alert" { (e) } }
            form method="post" action={ (chrome.base) "/setup" } class="job-form" {
                input type="hidden" name="_csrf" value=[chrome.csrf.as_deref()];
                input type="hidden" name="token" value=(token);
                div class="field" {
                    label for="name" { "Name" }
                    input type="text" id="name" name="name" autocomplete="username" required;
                }
                div class="field" {
                    label for="password" { "Password" }
                    input type="password" id="password" name="password" autocomplete="new-password" minlength="8" required;
                    small { "At least 8 characters." }
                }
                div class="form-actions" { button type="submit" class="primary" { "Create admin" } }
            }
        },
    )
}
