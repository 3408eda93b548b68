//! Search served by an index: each job's `search` column becomes the index text of its masked
//! arguments ([`crate::search_text`]), indexed by SQLite FTS5 (a contentless table kept in step
//! by triggers) or a PostgreSQL GIN index over a `tsvector` of it. Existing rows are backfilled
//! from the masked JSON the column held before. Secrets were masked before they reached the
//! column, so they never reach the index.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement, Value as SqlValue};

use crate::search_text;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261230_000002_search_index"
    }
}

/// Rows rewritten per statement while backfilling.
const BATCH: usize = 500;

/// The value words of a `search` text (its first line), in SQLite.
const SQLITE_VALS: &str = "substr(new.search, 1, instr(new.search || char(10), char(10)) - 1)";
/// Its key/value tokens (its second line), in SQLite.
const SQLITE_PAIRS: &str = "substr(new.search, instr(new.search || char(10), char(10)) + 1)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        backfill(db).await?;
        match db.get_database_backend() {
            DbBackend::Sqlite => {
                // `contentless_delete` (SQLite 3.43+): rows go by rowid, the text is not kept twice.
                db.execute_unprepared(
                    "CREATE VIRTUAL TABLE IF NOT EXISTS nightshift_jobs_fts USING fts5(\
                     vals, pairs, content='', contentless_delete=1, \
                     tokenize='unicode61 remove_diacritics 0')",
                )
                .await?;
                db.execute_unprepared(&format!(
                    "INSERT INTO nightshift_jobs_fts(rowid, vals, pairs) \
                     SELECT id, {vals}, {pairs} FROM nightshift_jobs AS new \
                     WHERE length(new.search) > 1",
                    vals = SQLITE_VALS,
                    pairs = SQLITE_PAIRS,
                ))
                .await?;
                // Only a change of `search` touches the index: claims and completions do not.
                for sql in [
                    format!(
                        "CREATE TRIGGER IF NOT EXISTS nightshift_jobs_fts_insert \
                         AFTER INSERT ON nightshift_jobs WHEN length(new.search) > 1 BEGIN \
                         INSERT INTO nightshift_jobs_fts(rowid, vals, pairs) \
                         VALUES (new.id, {SQLITE_VALS}, {SQLITE_PAIRS}); END"
                    ),
                    format!(
                        "CREATE TRIGGER IF NOT EXISTS nightshift_jobs_fts_update \
                         AFTER UPDATE OF search ON nightshift_jobs BEGIN \
                         DELETE FROM nightshift_jobs_fts WHERE rowid = old.id; \
                         INSERT INTO nightshift_jobs_fts(rowid, vals, pairs) \
                         SELECT new.id, {SQLITE_VALS}, {SQLITE_PAIRS} \
                         WHERE length(new.search) > 1; END"
                    ),
                    "CREATE TRIGGER IF NOT EXISTS nightshift_jobs_fts_delete \
                     AFTER DELETE ON nightshift_jobs BEGIN \
                     DELETE FROM nightshift_jobs_fts WHERE rowid = old.id; END"
                        .to_owned(),
                ] {
                    db.execute_unprepared(&sql).await?;
                }
            }
            _ => {
                db.execute_unprepared(search_text::PG_FUNCTION).await?;
                db.execute_unprepared(&format!(
                    "CREATE INDEX IF NOT EXISTS nightshift_jobs_search_gin \
                     ON nightshift_jobs USING gin (({}))",
                    search_text::PG_VECTOR
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The column keeps the index text: the masked JSON cannot be rebuilt from it (the
        // arguments themselves may be encrypted).
        let db = manager.get_connection();
        match db.get_database_backend() {
            DbBackend::Sqlite => {
                for sql in [
                    "DROP TRIGGER IF EXISTS nightshift_jobs_fts_insert",
                    "DROP TRIGGER IF EXISTS nightshift_jobs_fts_update",
                    "DROP TRIGGER IF EXISTS nightshift_jobs_fts_delete",
                    "DROP TABLE IF EXISTS nightshift_jobs_fts",
                ] {
                    db.execute_unprepared(sql).await?;
                }
            }
            _ => {
                db.execute_unprepared("DROP INDEX IF EXISTS nightshift_jobs_search_gin")
                    .await?;
                db.execute_unprepared("DROP FUNCTION IF EXISTS nightshift_search_vector(text)")
                    .await?;
            }
        }
        Ok(())
    }
}

/// Rewrites every row's `search` (the masked JSON) as its index text, in batches by id.
async fn backfill(db: &SchemaManagerConnection<'_>) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let mut after = i64::MIN;
    loop {
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT id, search FROM nightshift_jobs WHERE id > {} \
                     ORDER BY id LIMIT {BATCH}",
                    param(backend, 1)
                ),
                [after.into()],
            ))
            .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.try_get_by_index::<i64>(0)?;
        let mut values: Vec<SqlValue> = Vec::with_capacity(rows.len() * 2);
        let mut tuples = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get_by_index(0)?;
            let search: String = row.try_get_by_index(1)?;
            let n = values.len();
            tuples.push(format!(
                "({}, {})",
                param(backend, n + 1),
                param(backend, n + 2)
            ));
            values.push(id.into());
            values.push(search_text::index_text_of_stored(&search).into());
        }
        let sql = match backend {
            DbBackend::Postgres => format!(
                "UPDATE nightshift_jobs SET search = v.search \
                 FROM (VALUES {}) AS v(id, search) WHERE nightshift_jobs.id = v.id::bigint",
                tuples.join(", ")
            ),
            _ => format!(
                "WITH v(id, search) AS (VALUES {}) \
                 UPDATE nightshift_jobs SET search = (SELECT v.search FROM v \
                 WHERE v.id = nightshift_jobs.id) WHERE id IN (SELECT id FROM v)",
                tuples.join(", ")
            ),
        };
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
}

fn param(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
}
