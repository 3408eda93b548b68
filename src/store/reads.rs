//! What pages and callers read about a job: its log, its results (the latest attempt's, a
//! page at a time), its attempts.
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::*;
use crate::context::ResultCell;
use crate::entity::{job, job_attempt, job_log, job_result};
use crate::error::{Error, Result};

/// How a job's result rows divide among its attempts.
#[derive(Debug, Clone, Default)]
pub struct ResultSummary {
    /// `(attempt, rows)`, latest attempt first.
    pub per_attempt: Vec<(i32, i64)>,
    /// Rows refused once the job reached [`MAX_RESULT_ROWS`].
    pub dropped: i64,
}

impl Store {
    /// A job's newest `limit` log lines, oldest first.
    pub async fn logs(&self, job_id: i64, limit: u64) -> Result<Vec<job_log::Model>> {
        let mut rows = job_log::Entity::find()
            .filter(job_log::Column::JobId.eq(job_id))
            .order_by_desc(job_log::Column::Id)
            .limit(limit)
            .all(&self.read)
            .await?;
        rows.reverse();
        Ok(rows)
    }

    /// A job's log lines after `after_id`, oldest first (catch-up for a reconnecting viewer).
    pub async fn logs_after(
        &self,
        job_id: i64,
        after_id: i64,
        limit: u64,
    ) -> Result<Vec<job_log::Model>> {
        Ok(job_log::Entity::find()
            .filter(job_log::Column::JobId.eq(job_id))
            .filter(job_log::Column::Id.gt(after_id))
            .order_by_asc(job_log::Column::Id)
            .limit(limit)
            .all(&self.read)
            .await?)
    }

    /// The result rows of a job's latest reporting attempt, in order, at most `limit` from
    /// `offset`. Earlier attempts' rows are kept in the table for the record.
    pub async fn results_page(
        &self,
        job_id: i64,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<Vec<ResultCell>>> {
        let latest = job_result::Entity::find()
            .select_only()
            .column_as(job_result::Column::Attempt.max(), "latest")
            .filter(job_result::Column::JobId.eq(job_id))
            .into_tuple::<Option<i32>>()
            .one(&self.read)
            .await?
            .flatten();
        let Some(latest) = latest else {
            return Ok(Vec::new());
        };
        let rows = job_result::Entity::find()
            .filter(job_result::Column::JobId.eq(job_id))
            .filter(job_result::Column::Attempt.eq(latest))
            .order_by_asc(job_result::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.read)
            .await?;
        rows.into_iter()
            .map(|r| serde_json::from_str(&r.cells).map_err(|e| Error::Corrupt(e.to_string())))
            .collect()
    }

    /// How many result rows each attempt of a job stored, latest attempt first, and how many
    /// were dropped at the cap.
    pub async fn result_summary(&self, job_id: i64) -> Result<ResultSummary> {
        let per_attempt = job_result::Entity::find()
            .select_only()
            .column(job_result::Column::Attempt)
            .column_as(job_result::Column::Id.count(), "n")
            .filter(job_result::Column::JobId.eq(job_id))
            .group_by(job_result::Column::Attempt)
            .order_by_desc(job_result::Column::Attempt)
            .into_tuple::<(i32, i64)>()
            .all(&self.read)
            .await?;
        let dropped = job::Entity::find_by_id(job_id)
            .select_only()
            .column(job::Column::ResultsDropped)
            .into_tuple::<i64>()
            .one(&self.read)
            .await?
            .unwrap_or(0);
        Ok(ResultSummary {
            per_attempt,
            dropped,
        })
    }

    /// A job's result rows (of its latest reporting attempt), in order: the first 1,000.
    pub async fn results(&self, job_id: i64) -> Result<Vec<Vec<ResultCell>>> {
        self.results_page(job_id, 0, 1000).await
    }

    /// A job's attempts, first to last.
    pub async fn attempts(&self, job_id: i64) -> Result<Vec<job_attempt::Model>> {
        Ok(job_attempt::Entity::find()
            .filter(job_attempt::Column::JobId.eq(job_id))
            .order_by_asc(job_attempt::Column::Attempt)
            .all(&self.read)
            .await?)
    }
}
