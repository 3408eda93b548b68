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
                                    a href={ (base) "/workers/new?job=" (crate::text::percent_encode(k.name())) } { (k.display_label()) }
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
            @if !update { (options(kind, state)) }
            div class="form-actions" {
                button type="submit" class="primary" {
                    @if update { "Update scheduled Job" } @else { "Create job" }
                }
            }
        }
    }
}

/// The settings of a new job besides its arguments, as the form and `POST /workers` name them.
pub const OPTION_FIELDS: [&str; 4] = ["queue", "priority", "tags", "unique_key"];

/// The options `kind`'s form offers: those no argument of the kind is named after (the form
/// sends one value per name, and the argument keeps it).
pub fn option_fields(kind: &JobKind) -> Vec<&'static str> {
    let args = fields(kind);
    OPTION_FIELDS
        .into_iter()
        .filter(|o| !args.iter().any(|f| f.name == *o))
        .collect()
}

/// The new job's queue, priority, tags and uniqueness key, folded away: most jobs need none.
/// Open when the operator has given one (or one was refused).
fn options(kind: &JobKind, state: &FormState) -> Markup {
    let offered = option_fields(kind);
    if offered.is_empty() {
        return html! {};
    }
    let open = offered.iter().any(|o| {
        state.errors.contains_key(*o) || state.values.get(*o).is_some_and(|v| !v.trim().is_empty())
    });
    let priority = kind.priority.to_string();
    html! {
        details class="options" open[open] {
            summary { "Options" span class="muted small" { " queue, priority, tags, uniqueness key" } }
            @if offered.contains(&"queue") {
                (option(state, "queue", "Queue", html! {
                    input type="text" id="f-queue" name="queue" aria-describedby="f-queue-help" value=[state.values.get("queue")]
                        placeholder=(kind.queue) autocomplete="off";
                }, "Empty: the kind's queue. A job waits until some node serves its queue."))
            }
            @if offered.contains(&"priority") {
                (option(state, "priority", "Priority", html! {
                    input type="number" id="f-priority" name="priority" aria-describedby="f-priority-help" min="0" max="9" step="1"
                        value=[state.values.get("priority")] placeholder=(priority);
                }, "0 to 9: among the due jobs of its queue, 9 starts first."))
            }
            @if offered.contains(&"tags") {
                (option(state, "tags", "Tags", html! {
                    input type="text" id="f-tags" name="tags" aria-describedby="f-tags-help" value=[state.values.get("tags")]
                        placeholder="eu, vip" autocomplete="off";
                }, "Labels to find it by, separated by commas (at most 10)."))
            }
            @if offered.contains(&"unique_key") {
                (option(state, "unique_key", "Uniqueness key", html! {
                    input type="text" id="f-unique_key" name="unique_key" aria-describedby="f-unique_key-help" value=[state.values.get("unique_key")]
                        autocomplete="off";
                }, "While a job of this kind with this key waits or runs, no second one is added: you are sent to it."))
            }
        }
    }
}

fn option(state: &FormState, name: &str, label: &str, input: Markup, help: &str) -> Markup {
    let error = state.errors.get(name);
    html! {
        div class={ "field" @if error.is_some() { " invalid" } } {
            label for={ "f-" (name) } { (label) }
            (input)
            small id={ "f-" (name) "-help" } { (help) }
            @if let Some(e) = error { p class="field-error" role="alert" { (label) " " (e) } }
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
    // Help text and error read out with the field (screen readers).
    let help_id = format!("{id}-help");
    let error_id = format!("{id}-error");
    let described: Vec<&str> = [
        f.help.is_some().then_some(help_id.as_str()),
        error.is_some().then_some(error_id.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let described = (!described.is_empty()).then(|| described.join(" "));
    let described = described.as_deref();
    let invalid = error.is_some().then_some("true");
    html! {
        div class={ "field" @if error.is_some() { " invalid" } } {
            @if f.widget == Widget::Checkbox {
                label class="check" {
                    input type="checkbox" id=(id) name=(f.name) aria-describedby=[described] aria-invalid=[invalid] value="true"
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
                        textarea id=(id) name=(f.name) aria-describedby=[described] aria-invalid=[invalid] rows="5" required[f.required] { (value.unwrap_or_default()) }
                    }
                    Widget::Secret => {
                        // Never sent back to the browser; empty on update keeps the stored value.
                        input type="password" id=(id) name=(f.name) aria-describedby=[described] aria-invalid=[invalid] autocomplete="new-password"
                            placeholder=[update.then_some("unchanged — type to replace")];
                    }
                    Widget::Integer { min, max } => {
                        input type="number" id=(id) name=(f.name) aria-describedby=[described] aria-invalid=[invalid] step="1" value=[value]
                            min=[min.map(|m| m.to_string())] max=[max.map(|m| m.to_string())] required[f.required];
                    }
                    Widget::Number => {
                        input type="number" id=(id) name=(f.name) aria-describedby=[described] aria-invalid=[invalid] step="any" value=[value] required[f.required];
                    }
                    Widget::Select(options) => {
                        select id=(id) name=(f.name) aria-describedby=[described] aria-invalid=[invalid] required[f.required] {
                            @if !f.required { option value="" { "—" } }
                            @for (v, label) in options {
                                option value=(v) selected[value.as_deref() == Some(v.as_str())] { (label) }
                            }
                        }
                    }
                    Widget::DateTime => {
                        input type="datetime-local" id=(id) name=(f.name) aria-describedby=[described] aria-invalid=[invalid] step="1" value=[value] data-local-time required[f.required];
                    }
                    Widget::Text | Widget::Checkbox => {
                        input type="text" id=(id) name=(f.name) aria-describedby=[described] aria-invalid=[invalid] value=[value] required[f.required];
                    }
                }
            }
            @if let Some(help) = &f.help { small id=(help_id) { (help) } }
            @if let Some(e) = error { p class="field-error" id=(error_id) { (f.label) " " (e) } }
        }
    }
}

fn default_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobContext;

    /// Arguments with a field named like an option.
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Ranked {
        subject: String,
        priority: u8,
    }

    #[test]
    fn an_argument_named_like_an_option_keeps_its_name() {
        let kind = JobKind::new("r", |_: Ranked, _: JobContext| async { Ok(()) });
        assert_eq!(option_fields(&kind), ["queue", "tags", "unique_key"]);
        let form = kind_form(&kind, &FormState::default(), "/workers", false, None).into_string();
        assert_eq!(form.matches(r#"name="priority""#).count(), 1, "{form}");
        assert!(form.contains(r#"<details class="options">"#), "{form}");
        // The update form has no options: they are set when a job is created.
        let update = kind_form(&kind, &FormState::default(), "/workers/1", true, None);
        assert!(!update.into_string().contains("details"));
    }
}
