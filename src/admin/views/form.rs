//! The new-job page and the argument forms built from each kind's JSON schema.
use std::collections::BTreeMap;

use maud::{Markup, html};

use super::layout::{PageCtx, page};
use crate::admin::schema_form::{Field, Widget, fields};
use crate::kind::JobKind;

/// A form's values and errors: prefilled from a job, or the operator's input re-shown.
#[derive(Debug, Clone, Default)]
pub struct FormState {
    pub values: BTreeMap<String, String>,
    pub errors: BTreeMap<String, String>,
    /// An error not tied to one field.
    pub message: Option<String>,
    /// Times in `values` are UTC (prefilled from a job), not the operator's own input.
    pub utc: bool,
}

/// The kind chooser (grouped), or straight to a form when one kind is chosen or there is only one.
pub fn new_job_page(
    ctx: &PageCtx,
    kinds: &[JobKind],
    chosen: Option<(&JobKind, &FormState)>,
) -> Markup {
    let base = &ctx.base;
    let single = if kinds.len() == 1 {
        kinds.first()
    } else {
        None
    };
    let default_state = FormState::default();
    let chosen = chosen.or(single.map(|k| (k, &default_state)));
    page(
        ctx,
        "New job",
        None,
        html! {
            @if let Some((kind, state)) = chosen {
                div class="page-head" {
                    h1 { "New job: " (kind.display_label()) }
                    @if kinds.len() > 1 { a href={ (base) "/workers/new" } { "← All kinds" } }
                }
                section class="card" {
                    (kind_form(kind, state, &format!("{base}/workers"), false, ctx.csrf.as_deref()))
                }
            } @else {
                div class="page-head" { h1 { "New job" } }
                @for (group, members) in grouped(kinds) {
                    section class="card" {
                        h2 { (group) }
                        ul class="kinds" {
                            @for k in members {
                                li {
                                    a href={ (base) "/workers/new?job=" (urlencode(k.name())) } { (k.display_label()) }
                                    @if k.is_schedulable() { span class="muted small" { " schedulable" } }
                                }
                            }
                        }
                    }
                }
                @if kinds.is_empty() {
                    p class="empty" { "No job kinds are registered." }
                }
            }
        },
    )
}

fn grouped(kinds: &[JobKind]) -> Vec<(&str, Vec<&JobKind>)> {
    let mut groups: Vec<(&str, Vec<&JobKind>)> = Vec::new();
    for k in kinds {
        match groups.iter_mut().find(|(g, _)| *g == k.group_name()) {
            Some((_, v)) => v.push(k),
            None => groups.push((k.group_name(), vec![k])),
        }
    }
    groups
}

/// A kind's argument form. `update`: the form edits an existing job (sent as PUT).
pub fn kind_form(
    kind: &JobKind,
    state: &FormState,
    action: &str,
    update: bool,
    csrf: Option<&str>,
) -> Markup {
    html! {
        form class="job-form" method="post" action=(action) novalidate {
            input type="hidden" name="_csrf" value=(csrf.unwrap_or_default()) data-csrf;
            @if update { input type="hidden" name="_method" value="PUT"; }
            input type="hidden" name="job" value=(kind.name());
            input type="hidden" name="tz_offset" value="" data-tz-offset;
            @if let Some(msg) = &state.message {
                p class="form-error" role="alert" { (msg) }
            }
            @for f in fields(kind) {
                (field(&f, state, update))
            }
            @if kind.is_schedulable() {
                div class={ "field" @if state.errors.contains_key("schedule_at") { " invalid" } } {
                    label for="f-schedule_at" { "Schedule Time" }
                    div class="with-zone" {
                        input type="datetime-local" id="f-schedule_at" name="schedule_at" step="1"
                            value=[state.values.get("schedule_at")] data-local-time data-utc[state.utc];
                        span class="zone muted" data-zone { "UTC" }
                    }
                    small { "Leave empty to run now. A time in the past runs at once." }
                    @if let Some(e) = state.errors.get("schedule_at") { p class="field-error" { (e) } }
                }
            }
            div class="form-actions" {
                button type="submit" class="primary" {
                    @if update { "Update scheduled Job" } @else { "Create job" }
                }
            }
        }
    }
}

fn field(f: &Field, state: &FormState, update: bool) -> Markup {
    let id = format!("f-{}", f.name);
    let value = state
        .values
        .get(&f.name)
        .cloned()
        .or_else(|| f.default.as_ref().map(default_text));
    let error = state.errors.get(&f.name);
    html! {
        div class={ "field" @if error.is_some() { " invalid" } } {
            @if f.widget == Widget::Checkbox {
                label class="check" {
                    input type="checkbox" id=(id) name=(f.name) value="true"
                        checked[value.as_deref() == Some("true")];
                    " " (f.label)
                }
            } @else {
                label for=(id) {
                    (f.label)
                    @if f.required { span class="req" title="required" { " *" } }
                }
                @match &f.widget {
                    Widget::TextArea | Widget::Json => {
                        textarea id=(id) name=(f.name) rows="5" required[f.required] { (value.unwrap_or_default()) }
                    }
                    Widget::Secret => {
                        // Never sent back to the browser; empty on update keeps the stored value.
                        input type="password" id=(id) name=(f.name) autocomplete="new-password"
                            placeholder=[update.then_some("unchanged — type to replace")];
                    }
                    Widget::Integer { min, max } => {
                        input type="number" id=(id) name=(f.name) step="1" value=[value]
                            min=[min.map(|m| m.to_string())] max=[max.map(|m| m.to_string())] required[f.required];
                    }
                    Widget::Number => {
                        input type="number" id=(id) name=(f.name) step="any" value=[value] required[f.required];
                    }
                    Widget::Select(options) => {
                        select id=(id) name=(f.name) required[f.required] {
                            @if !f.required { option value="" { "—" } }
                            @for (v, label) in options {
                                option value=(v) selected[value.as_deref() == Some(v.as_str())] { (label) }
                            }
                        }
                    }
                    Widget::DateTime => {
                        input type="datetime-local" id=(id) name=(f.name) step="1" value=[value] data-local-time required[f.required];
                    }
                    Widget::Text | Widget::Checkbox => {
                        input type="text" id=(id) name=(f.name) value=[value] required[f.required];
                    }
                }
            }
            @if let Some(help) = &f.help { small { (help) } }
            @if let Some(e) = error { p class="field-error" { (f.label) " " (e) } }
        }
    }
}

fn default_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
