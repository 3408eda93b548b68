//! Text that crosses a boundary: what the engine stores for a handler (never a NUL, which
//! PostgreSQL refuses in text), what a refusal may echo of its input (a short excerpt), where
//! a NUL hides in a JSON value, and a value put into a URL.
//!
//! Internal helpers of the engine and the admin: nothing here is public API.
use std::borrow::Cow;

use serde_json::Value;

/// How many characters of an input a message quotes.
pub(crate) const EXCERPT_CHARS: usize = 60;

/// The refusal of a NUL character, after the field's name.
pub(crate) const NUL_REFUSED: &str = "must not contain a NUL character";

/// `s` with every NUL character replaced by U+FFFD: storable in any text column.
pub(crate) fn scrub_nul(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    }
}

/// At most `max` characters of `s`; a longer text is cut and ends in "…".
pub(crate) fn clip(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((end, _)) => Cow::Owned(format!("{}…", &s[..end])),
    }
}

/// A short excerpt of an input, for a message that quotes it.
pub(crate) fn excerpt(s: &str) -> Cow<'_, str> {
    clip(s, EXCERPT_CHARS)
}

/// A short excerpt of an input, quoted and escaped like `{:?}`: `"abc…"`.
pub(crate) fn quote(s: &str) -> String {
    format!("{:?}", excerpt(s))
}

/// `msg` with every quoted run (in double quotes or backticks) longer than an excerpt cut to
/// one: for messages written by others that quote input in full, such as serde's
/// `invalid type: string "…", expected u64` or its unknown field errors.
pub(crate) fn shorten_quotes(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(1024));
    let mut chars = msg.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' && c != '`' {
            continue;
        }
        let (mut kept, mut cut, mut escaped) = (0, false, false);
        for d in chars.by_ref() {
            if d == c && !escaped {
                if cut {
                    out.push('…');
                }
                out.push(d);
                cut = false;
                break;
            }
            // Inside "…" (a `{:?}` string), \" does not close it.
            escaped = c == '"' && d == '\\' && !escaped;
            if kept < EXCERPT_CHARS {
                out.push(d);
                kept += 1;
            } else {
                cut = true;
            }
        }
        if cut {
            out.push('…');
        }
    }
    out
}

/// The path of the first string (or object key) in `v` holding a NUL character, such as
/// `subject` or `items[2].sku`, under `prefix` (`""` for none). `Some(prefix)` when `v` itself
/// is such a string.
pub(crate) fn nul_path(v: &Value, prefix: &str) -> Option<String> {
    match v {
        Value::String(s) if s.contains('\0') => Some(prefix.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, &format!("{prefix}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let key = scrub_nul(excerpt(k).into_owned());
            let path = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            if k.contains('\0') {
                Some(path)
            } else {
                nul_path(item, &path)
            }
        }),
        _ => None,
    }
}

/// Percent-encodes `s` for a URL's query value or path segment: every byte but the unreserved
/// ones (`A–Z a–z 0–9 - _ . ~`).
pub(crate) fn percent_encode(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_nul() {
        assert_eq!(scrub_nul("a\0b".into()), "a\u{FFFD}b");
        assert_eq!(scrub_nul("ab".into()), "ab");
    }

    #[test]
    fn quotes_an_escaped_excerpt() {
        let long = "x".repeat(1000);
        assert_eq!(quote(&long).chars().count(), EXCERPT_CHARS + 3);
        assert_eq!(quote("a\"b"), r#""a\"b""#);
    }

    #[test]
    fn clips_on_characters() {
        assert_eq!(clip("héllo", 10), "héllo");
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("", 0), "");
        assert_eq!(excerpt(&"é".repeat(100)).chars().count(), EXCERPT_CHARS + 1);
    }

    #[test]
    fn shortens_a_serde_message() {
        let msg = format!("invalid type: string {:?}, expected u64", "x".repeat(1000));
        let short = shorten_quotes(&msg);
        assert!(
            short.len() < 120 && short.ends_with("…\", expected u64"),
            "{short}"
        );
    }

    #[test]
    fn shortens_long_quotes_only() {
        assert_eq!(shorten_quotes("unknown field `a`"), "unknown field `a`");
        let long = "y".repeat(100);
        assert_eq!(
            shorten_quotes(&format!("unknown field `{long}`, expected `job`")),
            format!(
                "unknown field `{}…`, expected `job`",
                &long[..EXCERPT_CHARS]
            )
        );
        let quoted = format!("{:?}", format!("a\"{long}"));
        let short = shorten_quotes(&format!("string {quoted}, expected u64"));
        assert!(short.ends_with("…\", expected u64"), "{short}");
        assert_eq!(shorten_quotes("open \"quote"), "open \"quote");
        assert!(shorten_quotes(&format!("open \"{long}")).ends_with('…'));
    }

    #[test]
    fn names_the_path_of_a_nul() {
        let v = serde_json::json!({"items": [{"sku": "a"}, {"sku": "b\u{0}"}]});
        assert_eq!(nul_path(&v, "args").as_deref(), Some("args.items[1].sku"));
        assert_eq!(nul_path(&serde_json::json!({"ok": 1}), ""), None);
    }

    #[test]
    fn finds_a_nul_in_keys_and_nested_values() {
        let v = serde_json::json!({"a": {"b\u{0}": 1}});
        assert_eq!(nul_path(&v, "").as_deref(), Some("a.b\u{FFFD}"));
        let v = serde_json::json!(["x", ["y", "\u{0}"]]);
        assert_eq!(nul_path(&v, "").as_deref(), Some("[1][1]"));
        assert_eq!(
            nul_path(&Value::String("\0".into()), "q").as_deref(),
            Some("q")
        );
    }
}
