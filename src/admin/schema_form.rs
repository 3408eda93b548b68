//! Forms from JSON schemas: the fields a kind's argument type asks for, and the arguments an
//! operator's form input makes.
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::kind::JobKind;

/// How a field is entered.
#[derive(Debug, Clone, PartialEq)]
pub enum Widget {
    /// One line of text.
    Text,
    /// Several lines of text.
    TextArea,
    /// A secret: a password input, never prefilled.
    Secret,
    /// A whole number, optionally bounded.
    Integer { min: Option<f64>, max: Option<f64> },
    /// Any number.
    Number,
    /// On or off.
    Checkbox,
    /// One of fixed values: `(value, label)`.
    Select(Vec<(String, String)>),
    /// A date and time (entered in the operator's time zone, stored as UTC).
    DateTime,
    /// Anything else (lists, nested objects): JSON text.
    Json,
}

/// One field of a kind's form.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub label: String,
    pub help: Option<String>,
    pub widget: Widget,
    pub required: bool,
    pub default: Option<Value>,
}

/// The fields of `kind`'s argument type, in declaration order.
pub fn fields(kind: &JobKind) -> Vec<Field> {
    let schema = kind.schema();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, prop)| {
            let prop = resolve(schema, prop);
            Field {
                name: name.clone(),
                label: prop
                    .get("title")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| humanize(name)),
                help: prop
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                widget: widget(schema, &prop),
                required: required.contains(&name.as_str()) && prop.get("default").is_none(),
                default: prop.get("default").cloned(),
            }
        })
        .collect()
}

/// Follows a `$ref` into `$defs`, keeping the property's own description and default.
fn resolve(root: &Value, prop: &Value) -> Value {
    let target = prop
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| root.get("$defs")?.get(name));
    match target {
        Some(def) => {
            let mut merged = def.clone();
            if let (Value::Object(m), Value::Object(p)) = (&mut merged, prop) {
                for (k, v) in p {
                    if k != "$ref" {
                        m.insert(k.clone(), v.clone());
                    }
                }
            }
            merged
        }
        None => prop.clone(),
    }
}

fn types(prop: &Value) -> Vec<&str> {
    match prop.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn widget(root: &Value, prop: &Value) -> Widget {
    if prop.get("writeOnly").and_then(Value::as_bool) == Some(true)
        || prop.get("format").and_then(Value::as_str) == Some("password")
    {
        return Widget::Secret;
    }
    if let Some(options) = enum_options(root, prop) {
        return Widget::Select(options);
    }
    let ty = types(prop);
    if ty.contains(&"boolean") {
        Widget::Checkbox
    } else if ty.contains(&"integer") {
        Widget::Integer {
            min: prop.get("minimum").and_then(Value::as_f64),
            max: prop.get("maximum").and_then(Value::as_f64),
        }
    } else if ty.contains(&"number") {
        Widget::Number
    } else if ty.contains(&"string") {
        match prop.get("format").and_then(Value::as_str) {
            Some("date-time") => Widget::DateTime,
            _ if prop.get("x-widget").and_then(Value::as_str) == Some("textarea") => {
                Widget::TextArea
            }
            _ if prop.get("maxLength").and_then(Value::as_u64).unwrap_or(0) > 255 => {
                Widget::TextArea
            }
            _ => Widget::Text,
        }
    } else {
        Widget::Json
    }
}

/// `enum: [...]`, or `oneOf` of `const`s (documented enum variants).
fn enum_options(root: &Value, prop: &Value) -> Option<Vec<(String, String)>> {
    if let Some(values) = prop.get("enum").and_then(Value::as_array) {
        let opts: Vec<_> = values
            .iter()
            .filter_map(Value::as_str)
            .map(|v| (v.to_owned(), humanize(v)))
            .collect();
        return (!opts.is_empty()).then_some(opts);
    }
    let variants = prop
        .get("oneOf")
        .or_else(|| prop.get("anyOf"))?
        .as_array()?;
    let mut opts = Vec::new();
    for v in variants {
        let v = resolve(root, v);
        if v.get("type").and_then(Value::as_str) == Some("null") {
            continue;
        }
        let value = v.get("const").and_then(Value::as_str)?;
        let label = v
            .get("description")
            .and_then(Value::as_str)
            .map(|d| format!("{} — {d}", humanize(value)))
            .unwrap_or_else(|| humanize(value));
        opts.push((value.to_owned(), label));
    }
    (!opts.is_empty()).then_some(opts)
}

/// `send_password` → "Send password".
pub fn humanize(name: &str) -> String {
    let spaced = name.replace(['_', '-'], " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The arguments an operator's form input makes, or a message per field.
///
/// Date-time fields entered in local time are read with their own UTC offset
/// (`tz_offset.NAME`, see [`offset_of`]); without one, as UTC.
/// With `update`, an empty secret is left out: the job keeps the secret it has.
pub fn parse(
    fields: &[Field],
    input: &BTreeMap<String, String>,
    update: bool,
) -> Result<Value, BTreeMap<String, String>> {
    let mut args = Map::new();
    let mut errors = BTreeMap::new();
    for f in fields {
        let raw = input.get(&f.name).map(|s| s.trim()).unwrap_or("");
        if f.widget == Widget::Checkbox {
            args.insert(
                f.name.clone(),
                Value::Bool(!raw.is_empty() && raw != "false"),
            );
            continue;
        }
        if raw.is_empty() {
            if f.required && !(update && f.widget == Widget::Secret) {
                errors.insert(f.name.clone(), "is required".into());
            }
            continue;
        }
        let parsed = match &f.widget {
            Widget::Text | Widget::TextArea | Widget::Secret => Ok(Value::String(raw.into())),
            Widget::Integer { min, max } => match raw.parse::<i64>() {
                Ok(n) if min.is_some_and(|m| (n as f64) < m) => {
                    Err(format!("must be at least {}", min.unwrap_or_default()))
                }
                Ok(n) if max.is_some_and(|m| (n as f64) > m) => {
                    Err(format!("must be at most {}", max.unwrap_or_default()))
                }
                Ok(n) => Ok(Value::from(n)),
                Err(_) => Err("must be a whole number".into()),
            },
            Widget::Number => raw
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| "must be a number".into()),
            Widget::Select(options) => {
                if options.iter().any(|(v, _)| v == raw) {
                    Ok(Value::String(raw.into()))
                } else {
                    Err("is not one of the choices".into())
                }
            }
            Widget::DateTime => parse_time(raw, offset_of(input, &f.name))
                .map(|t| Value::String(t.to_rfc3339()))
                .ok_or_else(|| "is not a date and time".into()),
            Widget::Json => {
                serde_json::from_str(raw).map_err(|e| format!("is not valid JSON: {e}"))
            }
            Widget::Checkbox => unreachable!("handled above"),
        };
        match parsed {
            Ok(v) => {
                args.insert(f.name.clone(), v);
            }
            Err(msg) => {
                errors.insert(f.name.clone(), msg);
            }
        }
    }
    if errors.is_empty() {
        Ok(Value::Object(args))
    } else {
        Err(errors)
    }
}

/// Reads a time from a form: RFC 3339, or a `datetime-local` value in the operator's zone
/// (`tz_offset`: minutes east of UTC, sent by the page's script; absent means UTC).
pub fn parse_time(raw: &str, tz_offset: Option<&String>) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    let local = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M"))
        .ok()?;
    let offset: i64 = tz_offset
        .and_then(|o| o.trim().parse().ok())
        .filter(|o: &i64| o.abs() <= 18 * 60)
        .unwrap_or(0);
    local
        .and_utc()
        .checked_sub_signed(chrono::Duration::minutes(offset))
}

/// The UTC offset the page's script sent for date-time field `name`: its own
/// (`tz_offset.NAME`, the offset in force at the time entered — a value across a daylight-saving
/// change from now has another offset than now), else the page's (`tz_offset`, older pages).
pub fn offset_of<'a>(input: &'a BTreeMap<String, String>, name: &str) -> Option<&'a String> {
    input
        .get(&format!("tz_offset.{name}"))
        .filter(|o| !o.trim().is_empty())
        .or_else(|| input.get("tz_offset"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{LongExport, SendNewsletter};
    use crate::{JobContext, JobKind};

    #[test]
    fn newsletter_form_has_text_textarea_and_secret() {
        let kind = JobKind::new("n", |_: SendNewsletter, _: JobContext| async { Ok(()) });
        let f = fields(&kind);
        let widgets: Vec<_> = f
            .iter()
            .map(|f| (f.name.as_str(), f.widget.clone()))
            .collect();
        assert_eq!(
            widgets,
            [
                ("subject", Widget::Text),
                ("content", Widget::TextArea),
                ("send_password", Widget::Secret)
            ]
        );
        assert!(f[0].required);
        assert_eq!(f[0].help.as_deref(), Some("The newsletter's subject line."));
    }

    #[test]
    fn enums_become_selects_and_defaults_make_fields_optional() {
        let kind = JobKind::new("e", |_: LongExport, _: JobContext| async { Ok(()) });
        let f = fields(&kind);
        assert!(matches!(&f[1].widget, Widget::Select(o) if o.len() == 2 && o[0].0 == "csv"));
        assert!(!f[0].required);
        let mut input = BTreeMap::new();
        input.insert("minutes".to_owned(), "many".to_owned());
        let errors = parse(&f, &input, false).unwrap_err();
        assert_eq!(errors["minutes"], "must be a whole number");
    }

    #[test]
    fn each_time_is_converted_by_its_own_offset() {
        // Berlin: 28 March 2026 is still CET (+60), 30 March is CEST (+120). The page sends
        // each field's own offset; one offset for both put one of them an hour off.
        let input: BTreeMap<String, String> = [
            ("schedule_at", "2026-03-30T12:00"),
            ("tz_offset.schedule_at", "120"),
            ("starts", "2026-03-28T12:00"),
            ("tz_offset.starts", "60"),
            ("tz_offset", "60"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let at = |name: &str| parse_time(&input[name], offset_of(&input, name)).unwrap();
        assert_eq!(at("schedule_at").to_rfc3339(), "2026-03-30T10:00:00+00:00");
        assert_eq!(at("starts").to_rfc3339(), "2026-03-28T11:00:00+00:00");
        let old: BTreeMap<String, String> = [("tz_offset".to_owned(), "60".to_owned())]
            .into_iter()
            .collect();
        assert_eq!(offset_of(&old, "starts").map(String::as_str), Some("60"));
    }

    #[test]
    fn local_times_are_converted_to_utc() {
        let t = parse_time("2026-12-01T12:00", Some(&"60".into())).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-01T11:00:00+00:00");
        assert!(parse_time("tomorrow", None).is_none());
        assert!(parse_time("+262143-12-31T23:59:59", Some(&"-60".into())).is_none());
    }
}
