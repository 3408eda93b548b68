//! The list's search language, parsed: argument values by key (`customer_id:42`), free text over
//! values only, `kind:`/`job:`, `state:`/`status:`, `queue:`, `tag:`, `after:`/`before:`, and
//! quoted phrases. Text terms are answered by the search index (see
//! [`migration::search_text`]); the rest are plain conditions.
//!
//! - `alice` — a value holding the word `alice` (an unquoted term of several words,
//!   `alice@example.com`, matches them in order); `ali*` — a word starting with `ali` (it reads
//!   every word it starts: give a few letters).
//! - `"alice smith"` — the exact words, in order, within the values.
//! - `customer_id:42`, `name:"alice smith"` — argument `customer_id` (at any depth; the key of an
//!   array's items is the array's key; case ignored) holding exactly these words, in order
//!   (`email:ali*`: the last one a prefix).
//! - `kind:Ping`, `job:"Send Newsletter"` — the kind (several: any of them).
//! - `state:done`, `status:errors` — a state (`new`, `scheduled`, `running`, `aborting`, `done`,
//!   `exception`, `killed`, `cancelled`) or a tab name (`running`, `errors`); several: any.
//! - `queue:mail`, `tag:vip` — the queue, a tag.
//! - `after:2026-11-01`, `before:2026-11-02T10:30`, `after:2h` — created at or after / before a
//!   UTC date or date-time (RFC 3339 with an offset accepted), or that long ago (`m`, `h`, `d`).
//!
//! All terms must hold. Anything else (an unknown field, a bad date, an unclosed quote, a term
//! with no letters or digits) is a [`SearchError`] naming the problem.
use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use migration::search_text::{self, pair_token, words};
use serde_json::Value;

use crate::state::JobStatus;

/// Terms a query holds at most.
pub const MAX_TERMS: usize = 16;

/// A search the list can run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Text terms, all of which must match (answered by the index).
    pub terms: Vec<TextTerm>,
    /// Any of these kinds (empty: any).
    pub kinds: Vec<String>,
    /// Any of these states (empty: any).
    pub statuses: Vec<JobStatus>,
    /// Any of these queues (empty: any).
    pub queues: Vec<String>,
    /// All of these tags.
    pub tags: Vec<String>,
    /// Created at or after (ms since the epoch).
    pub after: Option<i64>,
    /// Created before (ms since the epoch).
    pub before: Option<i64>,
}

/// One text term: words in order, in the values or under one argument key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextTerm {
    /// The argument key (lowercased), or `None`: any value.
    pub key: Option<String>,
    /// The words (as the index holds them), adjacent and in order.
    pub words: Vec<String>,
    /// Whether the last word may be the start of a longer one.
    pub prefix: bool,
}

/// A query that cannot run, with a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SearchError(pub String);

/// What the parser may check terms against.
#[derive(Debug, Clone, Default)]
pub struct SearchContext {
    /// Kind names known here: `kind:` matches them ignoring case.
    pub kinds: Vec<String>,
    /// Argument names the known kinds declare; `None` when some kind takes any arguments (then
    /// every `key:` is accepted).
    pub keys: Option<BTreeSet<String>>,
}

impl SearchContext {
    /// The context of the kinds registered here: their names and the argument names their
    /// schemas declare (at any depth).
    pub fn of_kinds<'a>(kinds: impl IntoIterator<Item = &'a crate::JobKind>) -> SearchContext {
        let mut names = vec![];
        let mut keys = Some(BTreeSet::new());
        for k in kinds {
            names.push(k.name().to_owned());
            if let Some(set) = keys.as_mut()
                && !schema_keys(k.schema(), set)
            {
                keys = None;
            }
        }
        SearchContext { kinds: names, keys }
    }
}

/// Adds the property names of `schema` (and of everything it nests) to `out`; `false` when the
/// top-level schema does not list its properties (any argument may come).
fn schema_keys(schema: &Value, out: &mut BTreeSet<String>) -> bool {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::Object(props)) = map.get("properties") {
                    out.extend(props.keys().map(|k| k.to_lowercase()));
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    // A struct's schema lists its properties (none: `{"type": "object"}`); `true`, `{}` or open
    // additional properties take anything.
    let listed = (matches!(schema.get("properties"), Some(Value::Object(_)))
        || schema.get("type") == Some(&Value::String("object".into())))
        && schema.get("additionalProperties") != Some(&Value::Bool(true));
    walk(schema, out);
    listed
}

impl SearchQuery {
    /// Parses `q` (see the module docs) at time `now` (for `after:2h`).
    pub fn parse(q: &str, ctx: &SearchContext, now: DateTime<Utc>) -> Result<Self, SearchError> {
        let mut out = SearchQuery::default();
        let tokens = lex(q)?;
        if tokens.len() > MAX_TERMS {
            return Err(SearchError(format!(
                "{} terms: a search holds at most {MAX_TERMS}",
                tokens.len()
            )));
        }
        for t in tokens {
            match t.field {
                None => {
                    let ws: Vec<String> = words(&t.value).collect();
                    if ws.is_empty() {
                        return Err(SearchError(format!(
                            "{} has no letters or digits to search for",
                            show(&t.value)
                        )));
                    }
                    out.terms.push(TextTerm {
                        key: None,
                        words: ws,
                        prefix: t.prefix,
                    });
                }
                Some(field) => out.field(&field, &t.value, t.prefix, ctx, now)?,
            }
        }
        Ok(out)
    }

    fn field(
        &mut self,
        field: &str,
        value: &str,
        prefix: bool,
        ctx: &SearchContext,
        now: DateTime<Utc>,
    ) -> Result<(), SearchError> {
        let name = field.to_lowercase();
        if value.is_empty() {
            return Err(SearchError(format!(
                "{field}: needs a value after the colon"
            )));
        }
        match name.as_str() {
            "kind" | "job" => {
                let kind = ctx
                    .kinds
                    .iter()
                    .find(|k| k.eq_ignore_ascii_case(value))
                    .cloned()
                    .unwrap_or_else(|| value.to_owned());
                self.kinds.push(kind);
            }
            "state" | "status" => match value.to_lowercase().as_str() {
                "running" => self.statuses.extend(JobStatus::ACTIVE),
                "errors" | "error" | "failed" => self.statuses.push(JobStatus::Exception),
                "waiting" => self.statuses.extend(JobStatus::WAITING),
                other => match other.parse::<JobStatus>() {
                    Ok(s) => self.statuses.push(s),
                    Err(_) => {
                        return Err(SearchError(format!(
                            "{field}:{} is not a state (new, scheduled, running, aborting, done, \
                             exception, errors, killed, cancelled)",
                            show(value)
                        )));
                    }
                },
            },
            "queue" => self.queues.push(value.to_owned()),
            "tag" => self.tags.push(value.to_owned()),
            "after" => self.after = Some(time(field, value, now)?),
            "before" => self.before = Some(time(field, value, now)?),
            _ => {
                let key = name;
                if let Some(keys) = &ctx.keys
                    && !keys.contains(&key)
                {
                    return Err(SearchError(format!(
                        "unknown field {}: not kind, state, queue, tag, after, before, nor \
                         an argument of a job kind here",
                        show(field)
                    )));
                }
                let ws: Vec<String> = words(value).collect();
                if ws.is_empty() {
                    return Err(SearchError(format!(
                        "{field}:{} has no letters or digits to search for",
                        show(value)
                    )));
                }
                self.terms.push(TextTerm {
                    key: Some(key),
                    words: ws,
                    prefix,
                });
            }
        }
        Ok(())
    }

    /// The FTS5 `MATCH` expression of the text terms (`None`: no text term).
    pub fn fts5(&self) -> Option<String> {
        if self.terms.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| {
                let (column, tokens) = t.tokens();
                // Tokens hold letters and digits only: nothing to escape inside the quotes.
                let phrase = tokens
                    .iter()
                    .map(|w| format!("\"{w}\""))
                    .collect::<Vec<_>>()
                    .join(" + ");
                let star = if t.prefix { " *" } else { "" };
                format!("{column} : ({phrase}{star})")
            })
            .collect();
        Some(parts.join(" AND "))
    }

    /// The PostgreSQL `tsquery` text of the text terms (`None`: no text term).
    pub fn tsquery(&self) -> Option<String> {
        if self.terms.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| {
                let (column, tokens) = t.tokens();
                let weight = if column == "vals" { "A" } else { "B" };
                let last = tokens.len() - 1;
                let phrase = tokens
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        let star = if t.prefix && i == last { "*" } else { "" };
                        format!("'{w}':{star}{weight}")
                    })
                    .collect::<Vec<_>>()
                    .join(" <-> ");
                format!("({phrase})")
            })
            .collect();
        Some(parts.join(" & "))
    }

    /// Whether a job matches (for live lists), judged on its masked arguments as the index is.
    pub fn matches(
        &self,
        kind: &str,
        status: JobStatus,
        queue: &str,
        tags: &[String],
        created_at: i64,
        masked: &Value,
    ) -> bool {
        if !self.kinds.is_empty() && !self.kinds.iter().any(|k| k == kind) {
            return false;
        }
        if !self.statuses.is_empty() && !self.statuses.contains(&status) {
            return false;
        }
        if !self.queues.is_empty() && !self.queues.iter().any(|q| q == queue) {
            return false;
        }
        if !self.tags.iter().all(|t| tags.contains(t)) {
            return false;
        }
        if self.after.is_some_and(|a| created_at < a)
            || self.before.is_some_and(|b| created_at >= b)
        {
            return false;
        }
        if self.terms.is_empty() {
            return true;
        }
        let text = search_text::index_text(masked);
        let (vals, pairs) = text.split_once('\n').unwrap_or((&text, ""));
        let vals: Vec<&str> = vals.split(' ').collect();
        let pairs: Vec<&str> = pairs.split(' ').collect();
        self.terms.iter().all(|t| {
            let (column, tokens) = t.tokens();
            let hay = if column == "vals" { &vals } else { &pairs };
            hay.windows(tokens.len()).any(|w| {
                w.iter().zip(&tokens).enumerate().all(|(i, (have, want))| {
                    if t.prefix && i == tokens.len() - 1 {
                        have.starts_with(want.as_str())
                    } else {
                        have == want
                    }
                })
            })
        })
    }
}

impl TextTerm {
    /// The index column it looks in and the tokens it looks for there.
    fn tokens(&self) -> (&'static str, Vec<String>) {
        match &self.key {
            None => ("vals", self.words.clone()),
            Some(key) => (
                "pairs",
                self.words.iter().map(|w| pair_token(key, w)).collect(),
            ),
        }
    }
}

/// One term as typed: `field:value` or a bare value, quotes removed.
#[derive(Debug)]
struct Lexed {
    field: Option<String>,
    value: String,
    /// Ends in an unquoted `*`: its last word is a prefix. (A prefix is not the default: the
    /// index merges every word a prefix starts before it hands over the first row — 40 ms for a
    /// word in every job of a million — while a whole word is read newest first and stops.)
    prefix: bool,
}

/// Splits a query into terms at unquoted spaces; `field:` is the text before the first colon
/// of an unquoted start.
fn lex(q: &str) -> Result<Vec<Lexed>, SearchError> {
    let mut out = vec![];
    let mut chars = q.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut field: Option<String> = None;
        let mut value = String::new();
        let mut quoted = false;
        let mut prefix = false;
        loop {
            match chars.peek().copied() {
                None => break,
                Some(c) if c.is_whitespace() => break,
                Some('"') => {
                    chars.next();
                    quoted = true;
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '"' {
                            closed = true;
                            break;
                        }
                        value.push(c);
                    }
                    if !closed {
                        return Err(SearchError(format!(
                            "the quote before {} is not closed",
                            show(&value)
                        )));
                    }
                }
                Some(':') if field.is_none() && !quoted => {
                    chars.next();
                    if value.is_empty() {
                        return Err(SearchError(
                            "a colon needs a field name before it (customer_id:42)".into(),
                        ));
                    }
                    field = Some(std::mem::take(&mut value));
                }
                Some(c) => {
                    chars.next();
                    prefix = c == '*';
                    value.push(c);
                }
            }
        }
        out.push(Lexed {
            field,
            value,
            prefix,
        });
    }
}

/// A time bound: a date, a date-time (UTC unless it says), or an age (`30m`, `2h`, `7d`).
fn time(field: &str, value: &str, now: DateTime<Utc>) -> Result<i64, SearchError> {
    let bad = || {
        SearchError(format!(
            "{field}:{} is not a date (2026-11-01), a date-time (2026-11-01T10:30, UTC unless \
             it says) or an age (30m, 2h, 7d)",
            show(value)
        ))
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, fmt) {
            return Ok(Utc.from_utc_datetime(&t).timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(Utc
            .from_utc_datetime(&d.and_hms_opt(0, 0, 0).ok_or_else(bad)?)
            .timestamp_millis());
    }
    let (n, unit) = value.split_at(value.len() - value.chars().last().map_or(0, char::len_utf8));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let minutes = match unit {
        "m" => n,
        "h" => n.saturating_mul(60),
        "d" => n.saturating_mul(1440),
        _ => return Err(bad()),
    };
    if !(0..=1440 * 36_600).contains(&minutes) {
        return Err(bad());
    }
    Ok(now.timestamp_millis() - minutes * 60_000)
}

/// A value as a message quotes it: short.
fn show(v: &str) -> String {
    crate::text::quote(&crate::text::clip(v, 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
    }

    fn parse(q: &str) -> Result<SearchQuery, SearchError> {
        SearchQuery::parse(q, &SearchContext::default(), now())
    }

    #[test]
    fn key_value_free_text_and_phrases() {
        let q = parse(r#"customer_id:42 ali* "big plan" name:"Ann Lee""#).unwrap();
        assert_eq!(
            q.terms,
            vec![
                TextTerm {
                    key: Some("customer_id".into()),
                    words: vec!["42".into()],
                    prefix: false
                },
                TextTerm {
                    key: None,
                    words: vec!["ali".into()],
                    prefix: true
                },
                TextTerm {
                    key: None,
                    words: vec!["big".into(), "plan".into()],
                    prefix: false
                },
                TextTerm {
                    key: Some("name".into()),
                    words: vec!["ann".into(), "lee".into()],
                    prefix: false
                },
            ]
        );
        let fts = q.fts5().unwrap();
        assert!(fts.starts_with(&format!(
            "pairs : (\"{}\")",
            pair_token("customer_id", "42")
        )));
        assert!(fts.contains("vals : (\"ali\" *)"));
        assert!(fts.contains("vals : (\"big\" + \"plan\")"));
        let ts = q.tsquery().unwrap();
        assert!(ts.contains("('ali':*A)"));
        assert!(
            !parse("alice").unwrap().terms[0].prefix,
            "whole words by default"
        );
        assert!(ts.contains("('big':A <-> 'plan':A)"));
        assert!(ts.contains(&format!("('{}':B)", pair_token("customer_id", "42"))));
    }

    #[test]
    fn fields() {
        let ctx = SearchContext {
            kinds: vec!["Send Newsletter".into()],
            keys: None,
        };
        let q = SearchQuery::parse(
            r#"kind:"send newsletter" state:errors status:done queue:mail tag:vip after:2026-11-01 before:2h"#,
            &ctx,
            now(),
        )
        .unwrap();
        assert_eq!(q.kinds, vec!["Send Newsletter".to_owned()]);
        assert_eq!(q.statuses, vec![JobStatus::Exception, JobStatus::Done]);
        assert_eq!(q.queues, vec!["mail".to_owned()]);
        assert_eq!(q.tags, vec!["vip".to_owned()]);
        assert_eq!(
            q.after,
            Some(
                Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                    .unwrap()
                    .timestamp_millis()
            )
        );
        assert_eq!(q.before, Some(now().timestamp_millis() - 2 * 3_600_000));
        assert!(q.terms.is_empty() && q.fts5().is_none());
        let t = parse("after:2026-11-01T10:30:00+01:00").unwrap();
        assert_eq!(
            t.after,
            Some(
                Utc.with_ymd_and_hms(2026, 11, 1, 9, 30, 0)
                    .unwrap()
                    .timestamp_millis()
            )
        );
    }

    #[test]
    fn bad_queries_say_why() {
        for (q, needle) in [
            ("after:yesterday", "after:\"yesterday\" is not a date"),
            ("before:2026-13-01", "is not a date"),
            ("state:sleeping", "is not a state"),
            ("\"open", "not closed"),
            ("customer_id:", "needs a value"),
            (":42", "field name"),
            ("***", "no letters or digits"),
            ("k:***", "no letters or digits"),
        ] {
            let e = parse(q).unwrap_err();
            assert!(e.0.contains(needle), "{q}: {e}");
        }
        let many = vec!["a"; MAX_TERMS + 1].join(" ");
        assert!(parse(&many).is_err());
        let ctx = SearchContext {
            kinds: vec![],
            keys: Some(["customer_id".to_owned()].into()),
        };
        assert!(SearchQuery::parse("customer_id:1", &ctx, now()).is_ok());
        let e = SearchQuery::parse("customer_idd:1", &ctx, now()).unwrap_err();
        assert!(e.0.contains("unknown field \"customer_idd\""), "{e}");
    }

    #[test]
    fn matching_in_memory_agrees_with_the_index_rules() {
        let args = serde_json::json!({"customer_id": 42, "email": "alice@example.com", "note": "big plan"});
        let m = |q: &str| {
            parse(q)
                .unwrap()
                .matches("K", JobStatus::Done, "default", &[], 0, &args)
        };
        assert!(m("customer_id:42"));
        assert!(!m("customer_id:4"));
        assert!(!m("ali"), "a whole word");
        assert!(m("ali*"));
        assert!(m("email:ali*"));
        assert!(!m("email:ali"));
        assert!(m("alice@example.com"));
        assert!(!m("customer"), "key names are not values");
        assert!(m("\"big plan\""));
        assert!(!m("\"plan big\""));
        assert!(!m("state:running"));
        assert!(m("status:done email:alice"));
    }
}
