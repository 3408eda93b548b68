//! Hand-written statements where the query builder cannot say it (claims with `SKIP LOCKED`,
//! compare-and-set completions with `CASE`), in one spelling for SQLite and PostgreSQL.
//!
//! Statements are written with `?` placeholders; for PostgreSQL they become `$1, $2, …`. State
//! names are literals, not parameters, so the planner can match the `(status, …)` indexes.
use sea_orm::{DbBackend, Statement, Value};

use super::Completion;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Sql {
    backend: DbBackend,
}

impl Sql {
    pub fn new(backend: DbBackend) -> Self {
        Sql { backend }
    }

    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    /// A statement written with `?` placeholders, spelled for this backend.
    pub fn stmt_pub(&self, sql: &str, values: Vec<Value>) -> Statement {
        self.stmt(sql, values)
    }

    /// The database's clock, in milliseconds since the epoch, as an SQL expression.
    pub fn db_now(&self) -> &'static str {
        match self.backend {
            DbBackend::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
            _ => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        }
    }

    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        let sql = match self.backend {
            DbBackend::Postgres => numbered_placeholders(sql),
            _ => sql.to_owned(),
        };
        Statement::from_sql_and_values(self.backend, sql, values)
    }

    /// Moves up to `limit` due jobs of `kinds` to `running` for `node`, oldest due first.
    pub fn claim(&self, node: &str, kinds: &[String], limit: u64, now: i64) -> Statement {
        let lock = match self.backend {
            // Several nodes claim from one table: skip rows another claim holds.
            DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
            _ => "",
        };
        let sql = format!(
            "UPDATE nightshift_jobs SET status = 'running', attempt = attempt + 1, \
             started_at = ?, updated_at = ?, finished_at = NULL, locked_by = ?, \
             progress = 0, progress_text = NULL, error_rows = 0 \
             WHERE id IN (SELECT id FROM nightshift_jobs \
               WHERE status IN ('new', 'scheduled') AND run_at <= ? AND kind IN ({}) \
               ORDER BY run_at, id LIMIT ?{lock}) \
             AND status IN ('new', 'scheduled') \
             RETURNING *",
            placeholders(kinds.len())
        );
        let mut values: Vec<Value> = vec![now.into(), now.into(), node.into(), now.into()];
        values.extend(kinds.iter().map(|k| Value::from(k.as_str())));
        values.push((limit as i64).into());
        self.stmt(&sql, values)
    }

    /// The earliest `run_at` among waiting jobs of `kinds`.
    pub fn next_due(&self, kinds: &[String]) -> Statement {
        let sql = format!(
            "SELECT MIN(run_at) FROM nightshift_jobs \
             WHERE status IN ('new', 'scheduled') AND kind IN ({})",
            placeholders(kinds.len())
        );
        self.stmt(
            &sql,
            kinds.iter().map(|k| Value::from(k.as_str())).collect(),
        )
    }

    /// Ends (or requeues) one attempt, if the job is still that attempt on that node. A job
    /// marked `aborting` ends `killed` whatever the handler returned.
    pub fn complete(&self, c: &Completion, now: i64) -> Statement {
        let sql = "UPDATE nightshift_jobs SET \
             status = CASE WHEN status = 'aborting' THEN 'killed' \
               WHEN ? AND error_rows > 0 THEN 'exception' ELSE ? END, \
             error = CASE WHEN status = 'aborting' THEN NULL \
               WHEN ? AND error_rows > 0 \
               THEN CAST(error_rows AS TEXT) || ' result row(s) reported errors' ELSE ? END, \
             attempt = CASE WHEN status = 'aborting' THEN attempt ELSE attempt - ? END, \
             run_at = CASE WHEN status = 'aborting' THEN run_at ELSE COALESCE(?, run_at) END, \
             finished_at = CASE WHEN status = 'aborting' OR ? THEN ? ELSE NULL END, \
             progress = CASE WHEN status = 'running' AND ? THEN 100 ELSE progress END, \
             updated_at = ? \
             WHERE id = ? AND attempt = ? AND locked_by = ? AND status IN ('running', 'aborting') \
             RETURNING status, kind, error";
        // A handler that returned Ok but reported error rows ends in `exception`.
        let done = c.status == crate::JobStatus::Done;
        let values: Vec<Value> = vec![
            done.into(),
            c.status.as_str().into(),
            done.into(),
            c.error.clone().into(),
            (c.refund_attempt as i32).into(),
            c.run_at.into(),
            c.status.is_finished().into(),
            now.into(),
            done.into(),
            now.into(),
            c.job_id.into(),
            c.attempt.into(),
            c.node.as_str().into(),
        ];
        self.stmt(sql, values)
    }

    /// The state of the jobs `ids` as a completer's fence sees it; on PostgreSQL the rows stay
    /// locked (in id order) until the transaction ends, so no rescue slips in between.
    pub fn fences(&self, ids: &[i64]) -> Statement {
        let lock = match self.backend {
            DbBackend::Postgres => " FOR UPDATE",
            _ => "",
        };
        self.stmt(
            &format!(
                "SELECT id, attempt, locked_by, status FROM nightshift_jobs \
                 WHERE id IN ({}) ORDER BY id{lock}",
                placeholders(ids.len())
            ),
            ids.iter().map(|id| Value::from(*id)).collect(),
        )
    }

    /// Running jobs whose node has no row: their worker is gone.
    pub fn orphans(&self) -> Statement {
        self.stmt(
            "SELECT * FROM nightshift_jobs WHERE status IN ('running', 'aborting') \
             AND (locked_by IS NULL OR locked_by NOT IN (SELECT id FROM nightshift_nodes))",
            vec![],
        )
    }

    pub fn count_log_lines(&self, job_id: i64, n: i64) -> Statement {
        self.stmt(
            "UPDATE nightshift_jobs SET log_lines = log_lines + ? WHERE id = ? RETURNING log_lines",
            vec![n.into(), job_id.into()],
        )
    }

    pub fn trim_logs(&self, job_id: i64, excess: i64) -> Statement {
        self.stmt(
            "DELETE FROM nightshift_job_logs WHERE job_id = ? AND id IN \
             (SELECT id FROM nightshift_job_logs WHERE job_id = ? ORDER BY id LIMIT ?)",
            vec![job_id.into(), job_id.into(), excess.into()],
        )
    }

    pub fn count_dropped(&self, job_id: i64, excess: i64) -> Statement {
        self.stmt(
            "UPDATE nightshift_jobs SET log_lines = log_lines - ?, log_dropped = log_dropped + ? \
             WHERE id = ?",
            vec![excess.into(), excess.into(), job_id.into()],
        )
    }
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `?` → `$1`, `$2`, … (our statements have no `?` inside literals).
fn numbered_placeholders(sql: &str) -> String {
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
            super::numbered_placeholders("a = ? AND b IN (?, ?)"),
            "a = $1 AND b IN ($2, $3)"
        );
    }
}
