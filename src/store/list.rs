//! Reads for the admin's lists: filtered pages by keyset (never OFFSET) and capped counts.
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{
    ColumnTrait, Condition, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Select,
};

use super::Store;
use super::search::SearchQuery;
use crate::entity::job;
use crate::error::Result;
use crate::state::JobStatus;

/// SQLite's full-text index of `search` (migration `m20261230_000002_search_index`).
const FTS: &str = "nightshift_jobs_fts";

/// Counts above this show as "10,000+": counting stops there, so a view never scans the table.
pub const COUNT_CAP: u64 = 10_000;

/// What a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only these states (empty: all).
    pub statuses: Vec<JobStatus>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<String>,
    /// Only jobs matching this search (`q`, see [`SearchQuery`]).
    pub search: Option<SearchQuery>,
    /// Only jobs on this queue.
    pub queue: Option<String>,
    /// Only jobs carrying this tag (the whole tag, case included).
    pub tag: Option<String>,
}

impl Store {
    /// One page of jobs, newest first: those with an id below `before` (the cursor).
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<job::Model>> {
        let (mut q, key) = self.matching(filter);
        if let Some(before) = before {
            q = q.filter(key.clone().lt(before));
        }
        Ok(q.order_by(key, Order::Desc)
            .limit(limit)
            .all(self.reader())
            .await?)
    }

    /// The ids of up to `limit` jobs from id `from` up, oldest first (the pages before a
    /// cursor, read by the same keyset).
    pub async fn list_ids_from(
        &self,
        filter: &JobFilter,
        from: i64,
        limit: u64,
    ) -> Result<Vec<i64>> {
        let (q, key) = self.matching(filter);
        Ok(q.filter(key.clone().gte(from))
            .select_only()
            .column(job::Column::Id)
            .order_by(key, Order::Asc)
            .limit(limit)
            .into_tuple()
            .all(self.reader())
            .await?)
    }

    /// How many jobs match, counting at most [`COUNT_CAP`] + 1.
    pub async fn count_capped(&self, filter: &JobFilter) -> Result<u64> {
        let (q, _) = self.matching(filter);
        self.count_of(q).await
    }

    /// How many jobs from id `from` up match, counting at most [`COUNT_CAP`] + 1.
    pub async fn count_capped_from(&self, filter: &JobFilter, from: i64) -> Result<u64> {
        let (q, key) = self.matching(filter);
        self.count_of(q.filter(key.gte(from))).await
    }

    async fn count_of(&self, q: Select<job::Entity>) -> Result<u64> {
        let inner = q
            .select_only()
            .expr(Expr::val(1))
            .limit(COUNT_CAP + 1)
            .into_query();
        let outer = Query::select()
            .expr(Expr::cust("COUNT(*)"))
            .from_subquery(inner, "capped")
            .to_owned();
        let row = self
            .reader()
            .query_one(&outer)
            .await?
            .map(|r| r.try_get_by_index::<i64>(0))
            .transpose()?;
        Ok(row.unwrap_or(0).clamp(0, i64::MAX) as u64)
    }

    /// The `WHERE` of `filter` as one condition on the jobs table, for statements that cannot
    /// take the full-text join (bulk actions): with SQLite text terms, ids from the match.
    pub(crate) fn filter_condition(&self, filter: &JobFilter) -> Condition {
        let backend = self.reader().get_database_backend();
        let fts = match backend {
            DbBackend::Sqlite => filter.search.as_ref().and_then(SearchQuery::fts5),
            _ => None,
        };
        if fts.is_none() {
            return condition(filter, backend);
        }
        let (q, _) = self.matching(filter);
        let ids = q.select_only().column(job::Column::Id).into_query();
        Condition::all().add(Expr::col((job::Entity, job::Column::Id)).in_subquery(ids))
    }

    /// The jobs of `filter`, and the key they are paged and ordered by: the job id, or on
    /// SQLite with text terms the full-text index's rowid (the same number), so that the index
    /// hands rows over newest first and a page stops reading after its last row.
    pub(crate) fn matching(&self, filter: &JobFilter) -> (Select<job::Entity>, Expr) {
        let backend = self.reader().get_database_backend();
        let mut q = job::Entity::find().filter(condition(filter, backend));
        let fts = match backend {
            DbBackend::Sqlite => filter.search.as_ref().and_then(SearchQuery::fts5),
            _ => None,
        };
        let Some(fts) = fts else {
            return (q, Expr::col((job::Entity, job::Column::Id)));
        };
        let rowid = Expr::col((Alias::new(FTS), Alias::new("rowid")));
        // The index first (SQLite keeps the order of a CROSS JOIN): driven by the state index
        // instead, a tab with a search ran the match once per row of the tab (140 ms at 20k).
        // (sea-query writes no ON for a CROSS JOIN: the join's condition is in the WHERE.)
        QueryTrait::query(&mut q)
            .from_clear()
            .from(Alias::new(FTS))
            .cross_join(job::Entity);
        let q = q
            .filter(rowid.clone().equals((job::Entity, job::Column::Id)))
            .filter(Expr::cust_with_values(format!("{FTS} MATCH ?"), [fts]));
        (q, rowid)
    }
}

use sea_orm::ConnectionTrait;

/// The `WHERE` of a list but for SQLite's full-text match (a join, added by the caller).
fn condition(filter: &JobFilter, backend: DbBackend) -> Condition {
    let mut cond = Condition::all();
    if !filter.statuses.is_empty() {
        cond = cond.add(job::Column::Status.is_in(filter.statuses.iter().map(|s| s.as_str())));
    }
    if !filter.kinds.is_empty() {
        cond = cond.add(job::Column::Kind.is_in(filter.kinds.iter().cloned()));
    }
    if let Some(search) = &filter.search {
        cond = cond.add(search_condition(search, backend));
    }
    if let Some(queue) = filter.queue.as_deref().filter(|q| !q.is_empty()) {
        cond = cond.add(job::Column::Queue.eq(queue));
    }
    if let Some(tag) = filter.tag.as_deref().filter(|t| !t.is_empty()) {
        cond = cond.add(tag_condition(tag));
    }
    cond
}

/// A search's conditions but for SQLite's full-text match.
fn search_condition(search: &SearchQuery, backend: DbBackend) -> Condition {
    let mut cond = Condition::all();
    if !search.kinds.is_empty() {
        cond = cond.add(job::Column::Kind.is_in(search.kinds.iter().cloned()));
    }
    if !search.statuses.is_empty() {
        cond = cond.add(job::Column::Status.is_in(search.statuses.iter().map(|s| s.as_str())));
    }
    if !search.queues.is_empty() {
        cond = cond.add(job::Column::Queue.is_in(search.queues.iter().cloned()));
    }
    for tag in &search.tags {
        cond = cond.add(tag_condition(tag));
    }
    if let Some(after) = search.after {
        cond = cond.add(job::Column::CreatedAt.gte(after));
    }
    if let Some(before) = search.before {
        cond = cond.add(job::Column::CreatedAt.lt(before));
    }
    if let (DbBackend::Postgres, Some(tsquery)) = (backend, search.tsquery()) {
        // Spelled as the index is, for the planner to use it.
        cond = cond.add(Expr::cust_with_values(
            format!(
                "({}) @@ CAST($1 AS tsquery)",
                migration::search_text::PG_VECTOR
            ),
            [tsquery],
        ));
    }
    cond
}

/// Jobs whose tags (stored as a JSON array, `["eu","vip"]`) hold `tag` as a whole element.
/// A tag never holds a quote, backslash, comma or control character, so `"tag"` occurs in the
/// stored text exactly when the tag is one of them; a filter holding one matches nothing.
fn tag_condition(tag: &str) -> Condition {
    if tag
        .chars()
        .any(|c| c.is_control() || matches!(c, '"' | '\\' | ','))
    {
        return Condition::all().add(Expr::val(1).eq(0));
    }
    let needle = format!("\"{tag}\"");
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    Condition::all()
        .add(
            Expr::col(job::Column::Tags)
                .like(sea_orm::sea_query::LikeExpr::new(format!("%{escaped}%")).escape('\\')),
        )
        // SQLite's LIKE folds ASCII case ("EU" would find "eu"); REPLACE compares exactly on
        // both databases, so the tag matches as written.
        .add(
            Expr::expr(
                sea_orm::sea_query::Func::cust("REPLACE")
                    .arg(Expr::col(job::Column::Tags))
                    .arg(needle)
                    .arg(""),
            )
            .ne(Expr::col(job::Column::Tags)),
        )
}
