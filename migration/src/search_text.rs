//! What a job's search index holds: the words of its (masked) argument values, and one token per
//! argument key and value word. Part of the schema: the index migration backfills with it and the
//! engine fills new rows with it, so both always agree.
//!
//! The text is two lines: the value words (`alice example com 42`), then the key/value tokens
//! (`k<hex of the lowercased key>x<word>`, letters and digits only, so every tokenizer keeps each
//! whole). Key names never appear as words, so free text never matches a key; the key of a value
//! inside an array is the key holding the array. Words are runs of letters and digits,
//! lowercased, cut at [`MAX_WORD`] characters; each line stops before [`MAX_LINE`] bytes.
use serde_json::Value;

/// The longest word kept (longer ones are cut: a search for them matches their start).
pub const MAX_WORD: usize = 64;
/// The longest key kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_KEY: usize = 64;
/// Each line of the index text stays below this many bytes (PostgreSQL's tsvector holds at
/// most 1 MiB; huge arguments are searchable by their first quarter-megabyte).
pub const MAX_LINE: usize = 256 * 1024;

/// The indexed `tsvector` of a job's `search` column on PostgreSQL (the function is made by the
/// index migration): the value words weighted `A`, the key/value tokens `B` (a query names the
/// weight it looks in). Queries spell it exactly so, for the planner to use the index built on it.
pub const PG_VECTOR: &str = "nightshift_search_vector(search)";

/// The function behind [`PG_VECTOR`]. PL/pgSQL, so that it is not inlined and keeps its `COST`:
/// with the default cost the planner took a word it had no statistics for as common and walked
/// the table newest first, computing the vector of every row (3 s for one customer in a
/// million); at its real cost it reads the index for rare words and walks for common ones.
pub const PG_FUNCTION: &str = "CREATE OR REPLACE FUNCTION nightshift_search_vector(search text) \
     RETURNS tsvector LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE COST 5000 AS $$ BEGIN \
     RETURN setweight(to_tsvector('simple'::regconfig, split_part(search, E'\\n', 1)), 'A') \
     || setweight(to_tsvector('simple'::regconfig, split_part(search, E'\\n', 2)), 'B'); END $$";

/// The index text of masked arguments.
pub fn index_text(masked: &Value) -> String {
    let mut out = Text::default();
    walk(masked, None, &mut out);
    format!("{}\n{}", out.values, out.pairs)
}

/// The index text of a stored `search` value from before the index (the masked arguments as
/// JSON): what the migration backfills with.
pub fn index_text_of_stored(search: &str) -> String {
    match serde_json::from_str::<Value>(search) {
        Ok(v) => index_text(&v),
        Err(_) => index_text(&Value::String(search.to_owned())),
    }
}

/// The words of a text as the index holds them.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().take(MAX_WORD).collect::<String>().to_lowercase())
}

/// The token of `word` (already one of [`words`]) under argument `key`.
pub fn pair_token(key: &str, word: &str) -> String {
    let key = key.to_lowercase();
    let mut end = key.len().min(MAX_KEY);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    let mut token = String::with_capacity(2 + 2 * end + word.len());
    token.push('k');
    for b in key[..end].bytes() {
        token.push_str(&format!("{b:02x}"));
    }
    token.push('x');
    token.push_str(word);
    token
}

#[derive(Default)]
struct Text {
    values: String,
    pairs: String,
}

fn push(line: &mut String, token: &str) {
    if line.len() + token.len() + 1 >= MAX_LINE {
        return;
    }
    if !line.is_empty() {
        line.push(' ');
    }
    line.push_str(token);
}

fn walk(v: &Value, key: Option<&str>, out: &mut Text) {
    let leaf = match v {
        Value::Null => return,
        Value::Object(map) => {
            for (k, v) in map {
                walk(v, Some(k), out);
            }
            return;
        }
        Value::Array(items) => {
            for v in items {
                walk(v, key, out);
            }
            return;
        }
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
    };
    for word in words(&leaf) {
        push(&mut out.values, &word);
        if let Some(k) = key {
            push(&mut out.pairs, &pair_token(k, &word));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_pairs_not_keys() {
        let text = index_text(&json!({
            "customer_id": 42,
            "email": "Alice@Example.com",
            "tags": ["vip", "eu"],
            "nested": {"plan": "pro"},
            "none": null,
        }));
        let (values, pairs) = text.split_once('\n').unwrap();
        // Key order depends on serde_json's `preserve_order`: compare the words as a set.
        let mut got: Vec<&str> = values.split(' ').collect();
        got.sort_unstable();
        assert_eq!(got, ["42", "alice", "com", "eu", "example", "pro", "vip"]);
        assert!(!values.contains("customer"));
        assert!(pairs.contains(&pair_token("customer_id", "42")));
        assert!(pairs.contains(&pair_token("tags", "eu")));
        assert!(pairs.contains(&pair_token("plan", "pro")));
        assert!(pair_token("Customer_ID", "42").starts_with("k637573746f6d65725f6964x"));
        assert!(
            pair_token("a b", "c")
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        );
    }

    #[test]
    fn masked_secrets_leave_nothing() {
        assert_eq!(index_text(&json!({"password": "••••••"})), "\n");
    }

    #[test]
    fn stored_json_from_before_the_index() {
        assert_eq!(
            index_text_of_stored(r#"{"n":"Hello, world"}"#),
            format!(
                "hello world\n{} {}",
                pair_token("n", "hello"),
                pair_token("n", "world")
            )
        );
        assert_eq!(index_text_of_stored("not json"), "not json\n");
    }

    #[test]
    fn long_words_and_lines_are_cut() {
        let long = "a".repeat(200);
        assert_eq!(words(&long).next().unwrap().len(), MAX_WORD);
        let many = vec!["word"; 100_000].join(" ");
        let text = index_text(&json!({"k": many}));
        let (values, pairs) = text.split_once('\n').unwrap();
        assert!(values.len() < MAX_LINE && pairs.len() < MAX_LINE);
    }
}
