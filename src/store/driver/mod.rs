//! The database drivers: the statements each database gets, behind one small interface (after
//! River's `riverdriver`). The [`Store`](super::Store) runs them; a driver only says how each
//! step is spelled where the databases differ: claiming a batch (`SKIP LOCKED` on PostgreSQL),
//! completing a batch in one statement (`json_to_recordset` / `json_each`), fencing reports,
//! the database clock, one rescuer per round, and notifications.
//!
//! Statements are written with `?` placeholders; PostgreSQL's driver numbers them. State names
//! are literals, not parameters, so the planner can match the partial indexes.
mod postgres;
mod sqlite;

use std::sync::Arc;

use sea_orm::{DbBackend, Statement, Value};

use super::Completion;

/// What differs between the databases, as statements.
pub(crate) trait Driver: Send + Sync + std::fmt::Debug {
    /// Which database this drives.
    fn backend(&self) -> DbBackend;

    /// A statement written with `?` placeholders, spelled for this database.
    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement;

    /// The database's clock, in milliseconds since the epoch, as an SQL expression.
    fn now_sql(&self) -> &'static str;

    /// How the claim's inner select locks the rows it picks ("" where one writer is enough).
    fn claim_lock(&self) -> &'static str;

    /// How the claim names the partial index of due jobs in claim order, where the planner
    /// needs telling ("" where it finds it by itself).
    fn ready_index(&self) -> &'static str;

    /// How the stager and the next-due look-up name the partial index of scheduled jobs in due
    /// order, where the planner needs telling.
    fn scheduled_index(&self) -> &'static str;

    /// How the completer's fence locks the rows it reads ("" where one writer is enough).
    fn fence_lock(&self) -> &'static str;

    /// The completions of a batch (one per job) as rows `c(id, attempt, node, started, status,
    /// error, run_at, finished, refund, done, at)`, from one JSON parameter.
    fn completion_rows(&self) -> &'static str;

    /// Attempt results as rows `c(id, attempt, outcome, error, at)`, from one JSON parameter.
    fn attempt_rows(&self) -> &'static str;

    /// Run first in the transaction of a claim or a next-due look-up: pins the plan to the
    /// partial index in claim order. `None` where the planner needs no telling.
    fn plan_for_claims(&self) -> Option<&'static str> {
        None
    }

    /// Taken at the start of a rescue round's transaction: `true` if this node does the round.
    /// `None`: no lock needed (SQLite has one writer).
    fn rescue_lock(&self) -> Option<Statement> {
        None
    }

    /// A notification to other processes on `channel`, delivered at commit. `None`: this
    /// database has none (other processes notice by polling `data_version`).
    fn notify(&self, _channel: &str, _payload: &str) -> Option<Statement> {
        None
    }

    /// Moves scheduled jobs that have come due to `new` (oldest first, at most 1,000 a round),
    /// where claims find them in priority order. Returns `id, kind` of each.
    fn stage_due(&self, now: i64) -> Statement {
        let sql = format!(
            "UPDATE nightshift_jobs SET status = 'new', updated_at = ? \
             WHERE id IN (SELECT id FROM nightshift_jobs{} \
               WHERE status = 'scheduled' AND run_at <= ? ORDER BY run_at, id LIMIT 1000{}) \
             AND status = 'scheduled' \
             RETURNING id, kind",
            self.scheduled_index(),
            self.claim_lock()
        );
        self.stmt(&sql, vec![now.into(), now.into()])
    }

    /// Moves up to `limit` due jobs of `kinds` to `running` for `node`: from each queue in
    /// `queues` at most its share, skipping paused queues, highest priority first, then oldest
    /// due. Each queue is one range of the `nightshift_jobs_ready` index, read from its
    /// start; an attempt starts with its own progress and error count.
    ///
    /// `new` means due, so `run_at` is not compared with this node's clock: a job inserted
    /// due now by a node whose clock runs a millisecond ahead was once skipped here, and as
    /// nothing woke this node when that millisecond passed, it waited for the next poll.
    fn claim(
        &self,
        node: &str,
        kinds: &[String],
        queues: &[(String, u64)],
        limit: u64,
        now: i64,
    ) -> Statement {
        let (picked, values) = self.pick(kinds, queues, limit);
        claim_picked(self, &picked, values, node, now)
    }

    /// The select of the jobs a claim takes (`id, priority, run_at`), and its values: per
    /// queue one subselect of its range, their union under one `ORDER BY … LIMIT`.
    fn pick(&self, kinds: &[String], queues: &[(String, u64)], limit: u64) -> (String, Vec<Value>) {
        pick_union(self, kinds, queues, limit)
    }

    /// The earliest `run_at` among scheduled jobs of `kinds` (due jobs are `new`: a claim
    /// takes them or their queue is full or paused).
    fn next_due(&self, kinds: &[String]) -> Statement {
        let sql = format!(
            "SELECT MIN(run_at) FROM nightshift_jobs{} \
             WHERE status = 'scheduled' AND kind IN ({})",
            self.scheduled_index(),
            placeholders(kinds.len())
        );
        self.stmt(
            &sql,
            kinds.iter().map(|k| Value::from(k.as_str())).collect(),
        )
    }

    /// One due job of `kinds` on `queues` that no pause holds back, if any.
    fn ready_one(&self, kinds: &[String], queues: &[String]) -> Statement {
        let sql = format!(
            "SELECT id FROM nightshift_jobs WHERE status = 'new' AND kind IN ({}) \
             AND queue IN ({}) AND queue NOT IN (SELECT name FROM nightshift_queues WHERE paused) \
             LIMIT 1",
            placeholders(kinds.len()),
            placeholders(queues.len())
        );
        let values = kinds
            .iter()
            .chain(queues)
            .map(|v| Value::from(v.as_str()))
            .collect();
        self.stmt(&sql, values)
    }

    /// Locks the rows of `queues` that have a global limit (until the transaction ends, so
    /// claims on other nodes count after this one); returns `name, global_limit`.
    fn lock_limited_queues(&self, queues: &[&str]) -> Statement {
        self.stmt(
            &format!(
                "SELECT name, global_limit FROM nightshift_queues \
                 WHERE name IN ({}) AND global_limit IS NOT NULL ORDER BY name{}",
                placeholders(queues.len()),
                self.fence_lock()
            ),
            queues.iter().map(|q| Value::from(*q)).collect(),
        )
    }

    /// How many jobs of each of `queues` run (or are being aborted), on any node.
    fn running_in_queues(&self, queues: &[&str]) -> Statement {
        self.stmt(
            &format!(
                "SELECT queue, COUNT(*) FROM nightshift_jobs \
                 WHERE status IN ('running', 'aborting') AND queue IN ({}) GROUP BY queue",
                placeholders(queues.len())
            ),
            queues.iter().map(|q| Value::from(*q)).collect(),
        )
    }

    /// Ends (or requeues) a batch of attempts in one statement, each only if its job is still
    /// that run (attempt, node and start) on that node. A job marked `aborting` ends `killed` whatever the handler
    /// returned; a handler that returned Ok but reported error rows ends in `exception`.
    /// Returns `id, status, kind, error, queue, started_at` of each job that changed.
    fn complete_many(&self, batch: &[Completion], now: i64) -> Statement {
        let rows: Vec<serde_json::Value> = batch
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.job_id,
                    "attempt": c.attempt,
                    "node": c.node,
                    "started": c.started_at,
                    "status": c.status.as_str(),
                    "error": c.error,
                    "run_at": c.run_at,
                    "finished": c.status.is_finished(),
                    "refund": c.refund_attempt as i32,
                    "done": c.status == crate::JobStatus::Done,
                    "at": c.at,
                })
            })
            .collect();
        let j = "nightshift_jobs";
        let sql = format!(
            "UPDATE {j} SET \
             status = CASE WHEN {j}.status = 'aborting' THEN 'killed' \
               WHEN c.done AND {j}.error_rows > 0 THEN 'exception' ELSE c.status END, \
             error = CASE WHEN {j}.status = 'aborting' THEN NULL \
               WHEN c.done AND {j}.error_rows > 0 \
               THEN CAST({j}.error_rows AS TEXT) || ' result row(s) reported errors' \
               ELSE c.error END, \
             attempt = CASE WHEN {j}.status = 'aborting' THEN {j}.attempt \
               ELSE {j}.attempt - c.refund END, \
             run_at = CASE WHEN {j}.status = 'aborting' THEN {j}.run_at \
               ELSE COALESCE(c.run_at, {j}.run_at) END, \
             finished_at = CASE WHEN {j}.status = 'aborting' OR c.finished THEN c.at \
               ELSE NULL END, \
             progress = CASE WHEN {j}.status = 'running' AND c.done THEN 100 \
               ELSE {j}.progress END, \
             updated_at = ? \
             FROM {rows} \
             WHERE {j}.id = c.id AND {j}.attempt = c.attempt AND {j}.locked_by = c.node \
             AND (c.started IS NULL OR {j}.started_at = c.started) \
             AND {j}.status IN ('running', 'aborting') \
             RETURNING {j}.id, {j}.status, {j}.kind, {j}.error, {j}.queue, {j}.started_at",
            rows = self.completion_rows()
        );
        let json = serde_json::Value::Array(rows).to_string();
        // Placeholders in text order: updated_at, then the rows.
        self.stmt(&sql, vec![now.into(), json.into()])
    }

    /// Adds finished attempts to the per-minute counts and their histograms (`rows` sorted by
    /// key, so that completers on several nodes lock them in one order).
    fn add_stats(&self, rows: &[StatRow]) -> Statement {
        use crate::insight::histogram::{BUCKETS, stat_columns};
        let per_row = 9 + 2 * BUCKETS;
        let mut values: Vec<Value> = Vec::with_capacity(rows.len() * per_row);
        for r in rows {
            values.extend([
                r.minute.into(),
                r.queue.clone().into(),
                r.kind.clone().into(),
                r.done.into(),
                r.failed.into(),
                r.retried.into(),
                r.cancelled.into(),
                r.run_ms.into(),
                r.wait_ms.into(),
            ]);
            values.extend(r.run.iter().chain(&r.wait).map(|n| Value::from(*n as i32)));
        }
        let s = "nightshift_stats";
        let added = stat_columns();
        let row = format!("({})", vec!["?"; per_row].join(", "));
        let sql = format!(
            "INSERT INTO {s} (minute, queue, kind, {}) VALUES {} \
             ON CONFLICT (minute, queue, kind) DO UPDATE SET {}",
            added.join(", "),
            vec![row.as_str(); rows.len()].join(", "),
            added
                .iter()
                .map(|c| format!("{c} = {s}.{c} + excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.stmt(&sql, values)
    }

    /// Closes a batch of attempt records (`job, attempt, outcome, error`) in one statement. An
    /// attempt given back by a shutdown is numbered again: a closed row is left be.
    fn finish_attempts(&self, rows: &[(i64, i32, &str, Option<&str>, i64)]) -> Statement {
        let json: Vec<serde_json::Value> = rows
            .iter()
            .map(|(id, attempt, outcome, error, at)| {
                serde_json::json!({
                    "id": id, "attempt": attempt, "outcome": outcome, "error": error, "at": at
                })
            })
            .collect();
        let a = "nightshift_job_attempts";
        let sql = format!(
            "UPDATE {a} SET finished_at = c.at, outcome = c.outcome, error = c.error \
             FROM {rows} \
             WHERE {a}.job_id = c.id AND {a}.attempt = c.attempt AND {a}.finished_at IS NULL",
            rows = self.attempt_rows()
        );
        self.stmt(
            &sql,
            vec![serde_json::Value::Array(json).to_string().into()],
        )
    }

    /// The state of the jobs `ids` as a completer's fence sees it (locked where the database
    /// needs it, in id order, until the transaction ends).
    fn fences(&self, ids: &[i64]) -> Statement {
        self.stmt(
            &format!(
                "SELECT id, attempt, locked_by, status, started_at FROM nightshift_jobs \
                 WHERE id IN ({}) ORDER BY id{}",
                placeholders(ids.len()),
                self.fence_lock()
            ),
            ids.iter().map(|id| Value::from(*id)).collect(),
        )
    }

    /// Running jobs whose node has no row: their worker is gone.
    fn orphans(&self) -> Statement {
        self.stmt(
            "SELECT * FROM nightshift_jobs WHERE status IN ('running', 'aborting') \
             AND (locked_by IS NULL OR locked_by NOT IN (SELECT id FROM nightshift_nodes))",
            vec![],
        )
    }

    /// Renews `node`'s heartbeat at the database's time, with the queues it serves and the
    /// kinds it handles now; returns that time.
    fn heartbeat(&self, node: &str, queues: &str, kinds: &str) -> Statement {
        self.stmt(
            &format!(
                "UPDATE nightshift_nodes SET heartbeat_at = {}, queues = ?, kinds = ? \
                 WHERE id = ? RETURNING heartbeat_at",
                self.now_sql()
            ),
            vec![queues.into(), kinds.into(), node.into()],
        )
    }

    /// Inserts a node row with a heartbeat at the database's time; returns that time.
    fn insert_node(&self, n: &crate::entity::node::Model) -> Statement {
        self.stmt(
            &format!(
                "INSERT INTO nightshift_nodes \
                 (id, hostname, pid, started_at, heartbeat_at, host, boot_id, version, queues, \
                 kinds) VALUES (?, ?, ?, ?, {}, ?, ?, ?, ?, ?) RETURNING heartbeat_at",
                self.now_sql()
            ),
            vec![
                n.id.clone().into(),
                n.hostname.clone().into(),
                n.pid.into(),
                n.started_at.into(),
                n.host.clone().into(),
                n.boot_id.clone().into(),
                n.version.clone().into(),
                n.queues.clone().into(),
                n.kinds.clone().into(),
            ],
        )
    }

    /// Nodes whose heartbeat is older than `timeout_ms` on the database's clock.
    fn silent_nodes(&self, timeout_ms: i64) -> Statement {
        self.stmt(
            &format!(
                "SELECT id, heartbeat_at FROM nightshift_nodes WHERE heartbeat_at < {} - ?",
                self.now_sql()
            ),
            vec![timeout_ms.into()],
        )
    }

    fn count_log_lines(&self, job_id: i64, n: i64) -> Statement {
        self.stmt(
            "UPDATE nightshift_jobs SET log_lines = log_lines + ? WHERE id = ? RETURNING log_lines",
            vec![n.into(), job_id.into()],
        )
    }

    fn trim_logs(&self, job_id: i64, excess: i64) -> Statement {
        self.stmt(
            "DELETE FROM nightshift_job_logs WHERE job_id = ? AND id IN \
             (SELECT id FROM nightshift_job_logs WHERE job_id = ? ORDER BY id LIMIT ?)",
            vec![job_id.into(), job_id.into(), excess.into()],
        )
    }

    fn count_dropped(&self, job_id: i64, excess: i64) -> Statement {
        self.stmt(
            "UPDATE nightshift_jobs SET log_lines = log_lines - ?, log_dropped = log_dropped + ? \
             WHERE id = ?",
            vec![excess.into(), excess.into(), job_id.into()],
        )
    }
}

/// One minute's finished attempts of one kind on one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StatRow {
    /// The minute's start, ms since the Unix epoch.
    pub minute: i64,
    pub queue: String,
    pub kind: String,
    pub done: i32,
    /// Ended `exception` or `killed`.
    pub failed: i32,
    /// Failed with a retry to come (or snoozed).
    pub retried: i32,
    pub cancelled: i32,
    /// Time spent running, summed.
    pub run_ms: i64,
    /// Time waited from due to start, summed.
    pub wait_ms: i64,
    /// How many attempts ran how long (see [`crate::insight::histogram`]).
    pub run: crate::insight::histogram::Buckets,
    /// How many attempts waited how long from due to start.
    pub wait: crate::insight::histogram::Buckets,
}

/// Per queue one subselect of its range (at most its share), their union under one `ORDER BY
/// … LIMIT`: every database can run it.
pub(super) fn pick_union<D: Driver + ?Sized>(
    d: &D,
    kinds: &[String],
    queues: &[(String, u64)],
    limit: u64,
) -> (String, Vec<Value>) {
    let mut values: Vec<Value> = Vec::new();
    let mut branches: Vec<String> = Vec::with_capacity(queues.len());
    for (i, (queue, room)) in queues.iter().enumerate() {
        // The queue's name is the index key, or NULL while it is paused: a paused queue's
        // range is never read (a per-row pause filter would walk all of it, on SQLite).
        branches.push(format!(
            "SELECT id, priority, run_at FROM (SELECT id, priority, run_at \
             FROM nightshift_jobs{index} \
             WHERE status = 'new' \
             AND queue = (SELECT CAST(? AS TEXT) WHERE NOT EXISTS \
               (SELECT 1 FROM nightshift_queues p WHERE p.name = ? AND p.paused)) \
             AND kind IN ({kinds}) \
             ORDER BY priority DESC, run_at, id LIMIT ?{lock}) AS q{i}",
            index = d.ready_index(),
            kinds = placeholders(kinds.len()),
            lock = d.claim_lock(),
        ));
        values.push(queue.as_str().into());
        values.push(queue.as_str().into());
        values.extend(kinds.iter().map(|k| Value::from(k.as_str())));
        values.push((*room.min(&limit) as i64).into());
    }
    // Each queue gives at most its share from the head of its range; with several, the
    // best of those heads, at most `limit` in all.
    let picked = if branches.len() == 1 {
        branches.remove(0)
    } else {
        values.push((limit as i64).into());
        format!(
            "SELECT id, priority, run_at FROM ({}) AS heads \
             ORDER BY priority DESC, run_at, id LIMIT ?",
            branches.join(" UNION ALL ")
        )
    };
    (picked, values)
}

/// The claim around the select of its jobs (`picked`, with `values`).
fn claim_picked<D: Driver + ?Sized>(
    driver: &D,
    picked: &str,
    mut values: Vec<Value>,
    node: &str,
    now: i64,
) -> Statement {
    // Picked once, in a materialized CTE: as a plain `IN (subquery)` PostgreSQL may run the
    // subquery again for its join, and each run locks and returns more rows than its LIMIT.
    let sql = format!(
        "WITH picked AS MATERIALIZED ({picked}) \
         UPDATE nightshift_jobs SET status = 'running', attempt = attempt + 1, \
         started_at = ?, updated_at = ?, finished_at = NULL, locked_by = ?, \
         progress = 0, progress_text = NULL, error_rows = 0 \
         WHERE id IN (SELECT id FROM picked) AND status = 'new' \
         RETURNING *"
    );
    // In text order: the CTE's placeholders, then the SET clause's.
    values.extend([now.into(), now.into(), node.into()]);
    driver.stmt(&sql, values)
}

/// The driver for a database.
pub(crate) fn for_backend(backend: DbBackend) -> Arc<dyn Driver> {
    match backend {
        DbBackend::Postgres => Arc::new(postgres::Postgres),
        _ => Arc::new(sqlite::Sqlite),
    }
}

pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}
