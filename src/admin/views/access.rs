//! Operators, API tokens and the audit log.
use maud::{Markup, html};

use super::components::time;
use super::layout::{PageCtx, page};
use crate::auth::audit::Filter;
use crate::entity::{api_token, audit, operator};
use crate::role::Role;

fn csrf(ctx: &PageCtx) -> Markup {
    html! { input type="hidden" name="_csrf" value=[ctx.csrf.as_deref()]; }
}

fn role_select(current: &str) -> Markup {
    html! {
        select name="role" aria-label="Role" {
            @for r in Role::ALL {
                option value=(r.as_str()) selected[r.as_str() == current] { (r.as_str()) }
            }
        }
    }
}

pub fn operators_page(ctx: &PageCtx, ops: &[operator::Model], error: Option<&str>) -> Markup {
    let base = &ctx.base;
    page(
        ctx,
        "Operators",
        None,
        html! {
            div class="page-head" { h1 { "Operators" } }
            div class="table-wrap" tabindex="0" {
                table {
                    thead { tr { th { "Name" } th { "Role" } th { "State" } th { "Password" } th {} } }
                    tbody {
                        @for o in ops {
                            tr {
                                td { (o.name) }
                                td {
                                    form method="post" action={ (base) "/operators/" (o.id) } class="inline" {
                                        (csrf(ctx))
                                        input type="hidden" name="action" value="role";
                                        (role_select(&o.role))
                                        " " button type="submit" { "Change" }
                                    }
                                }
                                td { @if o.disabled { span class="badge badge-cancelled" { "disabled" } } @else { "active" } }
                                td {
                                    form method="post" action={ (base) "/operators/" (o.id) } class="inline" {
                                        (csrf(ctx))
                                        input type="hidden" name="action" value="password";
                                        input type="password" name="password" placeholder="new password" autocomplete="new-password" minlength="8";
                                        " " button type="submit" { "Set" }
                                    }
                                }
                                td {
                                    form method="post" action={ (base) "/operators/" (o.id) } class="inline" {
                                        (csrf(ctx))
                                        @if o.disabled {
                                            input type="hidden" name="action" value="enable";
                                            button type="submit" { "Enable" }
                                        } @else {
                                            input type="hidden" name="action" value="disable";
                                            button type="submit" class="danger" { "Disable" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section class="card" {
                h2 { "Add an operator" }
                @if let Some(e) = error { p class="form-error" role="alert" { (e) } }
                form method="post" action={ (base) "/operators" } class="job-form" {
                    (csrf(ctx))
                    div class="field" { label for="op-name" { "Name" } input type="text" id="op-name" name="name" required; }
                    div class="field" { label for="op-role" { "Role" } (role_select("operator")) }
                    div class="field" {
                        label for="op-password" { "Password" }
                        input type="password" id="op-password" name="password" autocomplete="new-password" minlength="8" required;
                        small { "At least 8 characters." }
                    }
                    div class="form-actions" { button type="submit" class="primary" { "Add operator" } }
                }
            }
        },
    )
}

pub fn tokens_page(
    ctx: &PageCtx,
    tokens: &[api_token::Model],
    ops: &[operator::Model],
    new: Option<(&str, &str)>,
) -> Markup {
    let base = &ctx.base;
    let owner = |id: i64| {
        ops.iter()
            .find(|o| o.id == id)
            .map(|o| o.name.as_str())
            .unwrap_or("?")
    };
    page(
        ctx,
        "API tokens",
        None,
        html! {
            div class="page-head" { h1 { "API tokens" } }
            @if let Some((who, token)) = new {
                section class="card" {
                    h2 { "New token for " (who) }
                    p { "Copy it now: it is shown this once and stored only as a hash." }
                    pre class="token" { (token) }
                    p class="muted small" { "Use it as " code { "Authorization: Bearer …" } "; it acts with " (who) "'s role." }
                }
            }
            div class="table-wrap" tabindex="0" {
                table {
                    thead { tr { th { "ID" } th { "Name" } th { "Operator" } th { "Created" } th { "Last used" } th { "State" } } }
                    tbody {
                        @for t in tokens {
                            tr {
                                td class="num" { (t.id) }
                                td { (t.name) }
                                td { (owner(t.operator_id)) }
                                td { (time(Some(crate::clock::to_datetime(t.created_at)))) }
                                td { (time(t.last_used_at.map(crate::clock::to_datetime))) }
                                td {
                                    @if t.revoked_at.is_some() { span class="muted" { "revoked" } } @else {
                                        form method="post" action={ (base) "/tokens/" (t.id) "/revoke" } class="inline" {
                                            (csrf(ctx))
                                            button type="submit" class="danger" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if tokens.is_empty() { p class="empty" { "No tokens yet." } }
            }
            section class="card" {
                h2 { "Create a token" }
                form method="post" action={ (base) "/tokens" } class="job-form" {
                    (csrf(ctx))
                    div class="field" {
                        label for="t-op" { "Operator" }
                        select id="t-op" name="operator" { @for o in ops { option value=(o.name) { (o.name) " (" (o.role) ")" } } }
                    }
                    div class="field" { label for="t-name" { "Name" } input type="text" id="t-name" name="name" placeholder="deploy script"; }
                    div class="form-actions" { button type="submit" class="primary" { "Create token" } }
                }
            }
        },
    )
}

pub fn audit_page(ctx: &PageCtx, rows: &[audit::Model], f: &Filter) -> Markup {
    let base = &ctx.base;
    page(
        ctx,
        "Audit log",
        None,
        html! {
            div class="page-head" { h1 { "Audit log" } }
            form class="filters" method="get" action={ (base) "/audit" } {
                label { span { "Who" } input type="search" name="actor" value=[f.actor.as_deref()]; }
                label { span { "Action" } input type="search" name="action" value=[f.action.as_deref()] placeholder="abort_job"; }
                label { span { "Target" } input type="search" name="target" value=[f.target.as_deref()] placeholder="job:42"; }
                button type="submit" { "Filter" }
            }
            div class="table-wrap" tabindex="0" {
                table {
                    thead { tr { th { "When" } th { "Who" } th { "From" } th { "Action" } th { "Target" } th { "Outcome" } th { "Detail" } } }
                    tbody {
                        @for r in rows {
                            tr {
                                td { (time(Some(crate::clock::to_datetime(r.at)))) }
                                td { (r.actor) }
                                td class="small" { (r.address) }
                                td { (r.action) }
                                td {
                                    @match r.target.as_deref().and_then(|t| t.strip_prefix("job:")) {
                                        Some(id) => { a href={ (base) "/workers/" (id) } { "job " (id) } }
                                        None => { (r.target.as_deref().unwrap_or("")) }
                                    }
                                }
                                td { (r.outcome) }
                                td class="small" { (r.detail.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
                @if rows.is_empty() { p class="empty" { "Nothing recorded." } }
            }
            @if rows.len() == 100 {
                @if let Some(last) = rows.last() {
                    p class="pager" { a class="button" href={ (base) "/audit?before=" (last.id) } { "Older →" } }
                }
            }
        },
    )
}
