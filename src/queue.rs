//! Queues: how a node runs the jobs of one queue (its limit here, its limit across all nodes),
//! the rules for queue names, priorities and tags, and what the Queues page shows of each.
//!
//! Every job is on a queue (its kind's, [`crate::JobKind::queue`], or its own,
//! [`crate::NewJob::queue`]). A node serves the queues of the kinds it has handlers for and the
//! ones given to [`crate::WorkerBuilder::queue`]; a job on a queue no node serves waits (the
//! Queues page says so). Within a queue, due jobs start in priority order (9 first), then in
//! due order. A paused queue starts nothing on any node; its running jobs finish.
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};

/// The highest priority; 0 is the lowest and the default.
pub const MAX_PRIORITY: i32 = 9;
/// At most this many tags per job.
pub const MAX_TAGS: usize = 10;
/// At most this many characters per tag.
pub const MAX_TAG_CHARS: usize = 40;
/// At most this many characters in a queue's name.
pub const MAX_QUEUE_CHARS: usize = 64;

/// How this node runs one queue: how many of its jobs at once here, and at most how many at
/// once across all nodes.
///
/// ```no_run
/// # async fn demo() -> nightshift::Result<()> {
/// use nightshift::Queue;
/// let worker = nightshift::Worker::builder()
///     .concurrency(20)
///     // At most 5 mails at once on this node, and 8 across all nodes.
///     .queue(Queue::new("mail").concurrency(5).global_limit(8))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub(crate) name: String,
    pub(crate) concurrency: Option<usize>,
    pub(crate) global_limit: Option<u32>,
}

impl Queue {
    /// The queue `name`, with no limit of its own: its jobs share the node's slots.
    pub fn new(name: impl Into<String>) -> Self {
        Queue {
            name: name.into(),
            concurrency: None,
            global_limit: None,
        }
    }

    /// At most `n` of its jobs run at once on this node (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }

    /// At most `n` of its jobs run at once across all nodes sharing the database (at least 1).
    /// Stored in the database when the worker starts: the last node started sets it.
    pub fn global_limit(mut self, n: u32) -> Self {
        self.global_limit = Some(n.max(1));
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A queue as the Queues page and `GET /queues` show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueInfo {
    /// Its name.
    pub name: String,
    /// Jobs waiting on it: due, and scheduled for later.
    pub waiting: i64,
    /// Of those, the ones due now.
    pub due: i64,
    /// Jobs running (or being aborted).
    pub running: i64,
    /// Paused: no node starts its jobs.
    pub paused: bool,
    /// Who paused it, and when.
    pub paused_by: Option<String>,
    /// When it was paused.
    pub paused_at: Option<DateTime<Utc>>,
    /// How many of its jobs may run at once across the nodes alive now (each node's limit,
    /// summed, capped by the global limit); 0 when no node serves it.
    pub concurrency: i64,
    /// The limit across all nodes, if any.
    pub global_limit: Option<i32>,
    /// How many live nodes serve it.
    pub nodes: usize,
    /// How long the oldest due job has waited, in seconds.
    pub oldest_waiting_s: Option<i64>,
    /// Jobs finished per minute over the last [`THROUGHPUT_MINUTES`] minutes, oldest first
    /// (the current minute last).
    pub throughput: Vec<i64>,
}

/// How many minutes of throughput the Queues page shows.
pub const THROUGHPUT_MINUTES: usize = 15;

/// How long per-minute counts of finished jobs are kept (14 days).
pub const STATS_KEPT_MS: i64 = 14 * 24 * 3600 * 1000;

/// Checks a queue name: 1 to 64 letters, digits, `-`, `_`, `.` or `:`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_QUEUE_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "queue",
            format!(
                "must be 1 to {MAX_QUEUE_CHARS} letters, digits, '-', '_', '.' or ':' (got {})",
                crate::text::quote(name)
            ),
        ))
    }
}

/// Checks a priority: 0 (the default) to 9 (first).
pub fn check_priority(p: i32) -> Result<()> {
    if (0..=MAX_PRIORITY).contains(&p) {
        Ok(())
    } else {
        Err(invalid(
            "priority",
            format!("must be 0 to {MAX_PRIORITY} (9 starts first), got {p}"),
        ))
    }
}

/// Cleans a job's tags: trimmed, empty ones and repeats dropped, order kept. At most 10, each
/// at most 40 characters, without quotes, backslashes, commas or control characters.
pub fn clean_tags<I, S>(tags: I) -> Result<Vec<String>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.as_ref().trim();
        if tag.is_empty() || out.iter().any(|t| t == tag) {
            continue;
        }
        if tag.chars().count() > MAX_TAG_CHARS {
            return Err(invalid(
                "tags",
                format!(
                    "a tag has at most {MAX_TAG_CHARS} characters: {}",
                    crate::text::quote(tag)
                ),
            ));
        }
        if tag
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\\' | ','))
        {
            return Err(invalid(
                "tags",
                format!(
                    "a tag has no quotes, backslashes, commas or control characters: {}",
                    crate::text::quote(tag)
                ),
            ));
        }
        out.push(tag.to_owned());
    }
    if out.len() > MAX_TAGS {
        return Err(invalid(
            "tags",
            format!("at most {MAX_TAGS} tags, got {}", out.len()),
        ));
    }
    Ok(out)
}

/// Tags as stored: a JSON array, or `None` for no tags.
pub(crate) fn tags_column(tags: &[String]) -> Option<String> {
    (!tags.is_empty()).then(|| serde_json::to_string(tags).unwrap_or_default())
}

/// Tags as stored, read back (a damaged value reads as no tags).
pub(crate) fn tags_of(column: Option<&str>) -> Vec<String> {
    column
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

fn invalid(field: &str, message: String) -> Error {
    Error::InvalidArgs {
        field: Some(field.into()),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        assert!(check_name("mail").is_ok());
        assert!(check_name("reports.v2:eu-west_1").is_ok());
        for bad in ["", "a b", "ü", "x\"y", &"q".repeat(65)] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.starts_with("queue: "), "{e}");
        }
    }

    #[test]
    fn priorities_run_from_0_to_9() {
        assert!(check_priority(0).is_ok() && check_priority(9).is_ok());
        assert!(check_priority(-1).is_err());
        assert_eq!(
            check_priority(10).unwrap_err().to_string(),
            "priority: must be 0 to 9 (9 starts first), got 10"
        );
    }

    #[test]
    fn tags_are_trimmed_deduplicated_and_checked() {
        assert_eq!(
            clean_tags([" eu ", "", "vip", "eu"]).unwrap(),
            vec!["eu", "vip"]
        );
        assert!(clean_tags(["a,b"]).is_err());
        assert!(clean_tags(["say \"hi\""]).is_err());
        assert!(clean_tags([&"t".repeat(41)]).is_err());
        let many: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        assert!(
            clean_tags(&many)
                .unwrap_err()
                .to_string()
                .contains("at most 10")
        );
        assert_eq!(
            tags_of(tags_column(&clean_tags(["a"]).unwrap()).as_deref()),
            ["a"]
        );
        assert_eq!(tags_column(&[]), None);
    }
}
