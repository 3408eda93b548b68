//! SQLite: one writer at a time, so claims need no row locks; batches arrive as one JSON
//! parameter unpacked by `jsonb_each` (each row's object stays binary JSON, so reading its
//! fields parses nothing again); no notifications (other processes watch `data_version`).
use sea_orm::{DbBackend, Statement, Value};

use super::Driver;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Sqlite;

impl Driver for Sqlite {
    fn backend(&self) -> DbBackend {
        DbBackend::Sqlite
    }

    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
    }

    fn now_sql(&self) -> &'static str {
        "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
    }

    fn claim_lock(&self) -> &'static str {
        ""
    }

    fn ready_index(&self) -> &'static str {
        // Without statistics SQLite prefers (status, run_at) and sorts every waiting job.
        " INDEXED BY nightshift_jobs_ready"
    }

    fn scheduled_index(&self) -> &'static str {
        " INDEXED BY nightshift_jobs_scheduled"
    }

    fn fence_lock(&self) -> &'static str {
        ""
    }

    fn completion_rows(&self) -> &'static str {
        "(SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt, \
          json_extract(value, '$.node') AS node, json_extract(value, '$.started') AS started, \
          json_extract(value, '$.status') AS status, \
          json_extract(value, '$.error') AS error, json_extract(value, '$.run_at') AS run_at, \
          json_extract(value, '$.finished') AS finished, json_extract(value, '$.refund') AS refund, \
          json_extract(value, '$.done') AS done, json_extract(value, '$.at') AS at \
          FROM jsonb_each(?)) AS c"
    }

    fn attempt_rows(&self) -> &'static str {
        "(SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt, \
          json_extract(value, '$.outcome') AS outcome, json_extract(value, '$.error') AS error, \
          json_extract(value, '$.at') AS at FROM jsonb_each(?)) AS c"
    }
}
