//! PostgreSQL: several nodes claim from one table, so claims skip rows another claim holds and
//! the completer's fence locks its rows in id order; batches arrive as one JSON parameter
//! unpacked by `json_to_recordset`; one node per round rescues (an advisory lock); inserts and
//! aborts `NOTIFY` the other nodes.
use sea_orm::{DbBackend, Statement, Value};

use super::Driver;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Postgres;

/// The advisory lock that makes one node per round the rescuer.
const RESCUE_LOCK: i64 = 7_418_209_338;

impl Driver for Postgres {
    fn backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Postgres, numbered(sql), values)
    }

    fn now_sql(&self) -> &'static str {
        "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT"
    }

    fn claim_lock(&self) -> &'static str {
        " FOR UPDATE SKIP LOCKED"
    }

    fn ready_index(&self) -> &'static str {
        ""
    }

    fn scheduled_index(&self) -> &'static str {
        ""
    }

    fn fence_lock(&self) -> &'static str {
        " FOR UPDATE"
    }

    fn completion_rows(&self) -> &'static str {
        "json_to_recordset(?::json) AS c(id BIGINT, attempt INT, node TEXT, started BIGINT, status TEXT, \
         error TEXT, run_at BIGINT, finished BOOLEAN, refund INT, done BOOLEAN, at BIGINT)"
    }

    fn attempt_rows(&self) -> &'static str {
        "json_to_recordset(?::json) AS c(id BIGINT, attempt INT, outcome TEXT, error TEXT, at BIGINT)"
    }

    fn plan_for_claims(&self) -> Option<&'static str> {
        // Without fresh statistics (a bulk insert, autovacuum behind or off) the planner
        // guesses a handful of waiting rows, combines two indexes and sorts every waiting job
        // for each claim: 30 ms at 70,000 waiting, growing with the queue. The partial index
        // already yields claim order; this makes the planner read it, whatever it guesses.
        // Custom plans and no JIT as well (see `connect::PG_PLANS`), also on a pool the engine
        // did not open: the sort penalty makes a claim over several queues look costly enough
        // to compile, which took 160 ms per claim.
        Some(
            "SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off; \
             SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off",
        )
    }

    fn rescue_lock(&self) -> Option<Statement> {
        Some(self.stmt(
            "SELECT pg_try_advisory_xact_lock(?)",
            vec![RESCUE_LOCK.into()],
        ))
    }

    /// Several queues: one statement of the same text whatever the queues (their names and
    /// shares arrive as one JSON parameter), each queue's share taken from its range by a
    /// `LATERAL` subselect. A union of one subselect per queue cost its planning per queue on
    /// every claim.
    fn pick(&self, kinds: &[String], queues: &[(String, u64)], limit: u64) -> (String, Vec<Value>) {
        if queues.len() < 2 {
            return super::pick_union(self, kinds, queues, limit);
        }
        let rooms: Vec<serde_json::Value> = queues
            .iter()
            .map(|(name, room)| serde_json::json!({"name": name, "room": (*room).min(limit)}))
            .collect();
        let sql = format!(
            "SELECT h.id, h.priority, h.run_at FROM \
             (SELECT q.name, q.room FROM json_to_recordset(?::json) AS q(name TEXT, room BIGINT) \
              WHERE NOT EXISTS (SELECT 1 FROM nightshift_queues p WHERE p.name = q.name AND p.paused)) AS q \
             CROSS JOIN LATERAL (SELECT id, priority, run_at FROM nightshift_jobs \
               WHERE status = 'new' AND queue = q.name AND kind IN ({}) \
               ORDER BY priority DESC, run_at, id LIMIT q.room FOR UPDATE SKIP LOCKED) AS h \
             ORDER BY h.priority DESC, h.run_at, h.id LIMIT ?",
            super::placeholders(kinds.len())
        );
        let mut values: Vec<Value> = vec![serde_json::Value::Array(rooms).to_string().into()];
        values.extend(kinds.iter().map(|k| Value::from(k.as_str())));
        values.push((limit as i64).into());
        (sql, values)
    }

    fn notify(&self, channel: &str, payload: &str) -> Option<Statement> {
        Some(self.stmt(
            "SELECT pg_notify(?, ?)",
            vec![channel.into(), payload.into()],
        ))
    }
}

/// `?` → `$1`, `$2`, … (our statements have no `?` inside literals).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_placeholders() {
        assert_eq!(
            super::numbered("a = ? AND b IN (?, ?)"),
            "a = $1 AND b IN ($2, $3)"
        );
    }
}
