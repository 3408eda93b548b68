//! Reads for the admin's lists: filtered pages by keyset (never OFFSET) and capped counts.
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::Store;
use crate::entity::job;
use crate::error::Result;
use crate::state::JobStatus;

/// Counts above this show as "10,000+": counting stops there, so a view never scans the table.
pub const COUNT_CAP: u64 = 10_000;

/// What a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only these states (empty: all).
    pub statuses: Vec<JobStatus>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<String>,
    /// Only jobs whose arguments contain this text.
    pub text: Option<String>,
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
        let mut q = job::Entity::find().filter(condition(filter));
        if let Some(before) = before {
            q = q.filter(job::Column::Id.lt(before));
        }
        Ok(q.order_by_desc(job::Column::Id)
            .limit(limit)
            .all(self.reader())
            .await?)
    }

    /// How many jobs match, counting at most [`COUNT_CAP`] + 1.
    pub async fn count_capped(&self, filter: &JobFilter) -> Result<u64> {
        let inner = Query::select()
            .expr(Expr::val(1))
            .from(job::Entity)
            .cond_where(condition(filter))
            .limit(COUNT_CAP + 1)
            .to_owned();
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
}

use sea_orm::ConnectionTrait;

#[cfg(feature = "admin")]
impl JobFilter {
    /// The `WHERE` of this list, for the admin's own reads of it (the pages before a cursor).
    pub(crate) fn condition(&self) -> Condition {
        condition(self)
    }
}

pub(super) fn condition(filter: &JobFilter) -> Condition {
    let mut cond = Condition::all();
    if !filter.statuses.is_empty() {
        cond = cond.add(job::Column::Status.is_in(filter.statuses.iter().map(|s| s.as_str())));
    }
    if !filter.kinds.is_empty() {
        cond = cond.add(job::Column::Kind.is_in(filter.kinds.iter().cloned()));
    }
    if let Some(text) = filter.text.as_deref().filter(|t| !t.is_empty()) {
        // A plain substring: escape LIKE's wildcards so `%` and `_` match themselves.
        let escaped = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        // In the masked copy: a search must not reveal a secret a character at a time.
        cond = cond.add(
            Expr::col(job::Column::Search)
                .like(sea_orm::sea_query::LikeExpr::new(format!("%{escaped}%")).escape('\\')),
        );
    }
    if let Some(queue) = filter.queue.as_deref().filter(|q| !q.is_empty()) {
        cond = cond.add(job::Column::Queue.eq(queue));
    }
    if let Some(tag) = filter.tag.as_deref().filter(|t| !t.is_empty()) {
        cond = cond.add(tag_condition(tag));
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
