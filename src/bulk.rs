//! Bulk actions: cancel, retry, rerun or delete many jobs at once, chosen by id or by a list
//! filter, in bounded batches (see [`crate::store::BULK_BATCH`]) so that an action over 100,000
//! jobs never holds a long lock nor starves the claims of running workers.
//!
//! Every change is the same compare-and-set as its single-job counterpart: a job that moved on
//! between the preview and the action (finished, started, deleted) is skipped and counted in
//! [`BulkOutcome::skipped`], never overwritten.
use serde_json::Value;

use crate::client::Client;
use crate::error::Result;
use crate::new_job::NewJob;
use crate::runtime::registry::StopReason;
use crate::state::JobStatus;
use crate::store::{BulkAction, BulkRow, Selection};

/// What a preview finds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BulkCount {
    /// The jobs the action would change.
    pub count: u64,
    /// The jobs it would apply to but whose kind asks for a role the operator lacks.
    pub denied: u64,
}

/// What a bulk action did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BulkOutcome {
    /// Jobs changed (cancelled, aborted, made due, rerun, deleted).
    pub affected: u64,
    /// Jobs it applied to but left alone: changed meanwhile, of a kind the operator's role
    /// does not allow, or a rerun refused (a kind not registered here, arguments it no longer
    /// accepts, a uniqueness key already held).
    pub skipped: u64,
}

impl Client {
    /// How many jobs of `sel` `action` would change (a preview; nothing is changed).
    pub async fn bulk_count(&self, action: BulkAction, sel: &Selection) -> Result<BulkCount> {
        let (count, denied) = self.shared.store.bulk_count(sel, action).await?;
        Ok(BulkCount { count, denied })
    }

    /// Applies `action` to every job of `sel` it applies to, batch by batch, newest first.
    /// `by` names the operator (it is recorded on aborted and rerun jobs).
    pub async fn bulk(&self, action: BulkAction, sel: &Selection, by: &str) -> Result<BulkOutcome> {
        let by = crate::text::scrub_nul(by.to_owned());
        let mut out = BulkOutcome {
            affected: 0,
            skipped: self.shared.store.bulk_count(sel, action).await?.1,
        };
        // With ids, each batch is a slice of them; otherwise a keyset over the filter.
        let mut chunks = sel.ids.as_ref().map(|ids| {
            let mut ids = ids.clone();
            ids.sort_unstable_by(|a, b| b.cmp(a));
            ids.dedup();
            ids.chunks(crate::store::BULK_BATCH)
                .map(<[i64]>::to_vec)
                .collect::<Vec<_>>()
                .into_iter()
        });
        let mut cursor = None;
        loop {
            let rows = match &mut chunks {
                Some(chunks) => match chunks.next() {
                    Some(ids) => {
                        let batch = Selection {
                            ids: Some(ids),
                            ..sel.clone()
                        };
                        self.shared.store.bulk_rows(&batch, action, None).await?
                    }
                    None => break,
                },
                None => {
                    let rows = self.shared.store.bulk_rows(sel, action, cursor).await?;
                    if rows.is_empty() {
                        break;
                    }
                    cursor = rows.iter().map(|r| r.id).min();
                    rows
                }
            };
            let changed = self.bulk_batch(action, &rows, &by).await?;
            out.affected += changed;
            out.skipped += rows.len() as u64 - changed;
            // Other work (claims, completions, pages) gets the database between batches.
            tokio::task::yield_now().await;
        }
        if out.affected > 0 {
            self.shared.wake.notify_one();
        }
        Ok(out)
    }

    /// One batch; returns how many of `rows` changed.
    async fn bulk_batch(&self, action: BulkAction, rows: &[BulkRow], by: &str) -> Result<u64> {
        let now = self.shared.clock.now();
        let with = |statuses: &[JobStatus]| -> Vec<i64> {
            rows.iter()
                .filter(|r| statuses.iter().any(|s| s.as_str() == r.status))
                .map(|r| r.id)
                .collect()
        };
        let store = &self.shared.store;
        Ok(match action {
            BulkAction::Cancel => {
                let cancelled = store.cancel_many(&with(&JobStatus::WAITING), now).await?;
                self.announce(rows, &cancelled, JobStatus::Cancelled);
                let aborted = store
                    .abort_many(&with(&[JobStatus::Running]), by, now)
                    .await?;
                for id in &aborted {
                    // Running here: told now. Elsewhere: its node hears the notification (or
                    // sees `aborting` at its next maintenance round).
                    self.shared.registry.stop(
                        *id,
                        StopReason::Abort {
                            by: by.to_owned(),
                            at: now,
                        },
                    );
                }
                self.announce(rows, &aborted, JobStatus::Aborting);
                (cancelled.len() + aborted.len()) as u64
            }
            BulkAction::Retry => {
                let due = store
                    .retry_now_many(&with(&[JobStatus::Scheduled]), now)
                    .await?;
                self.announce(rows, &due, JobStatus::New);
                let failed = with(&[JobStatus::Exception, JobStatus::Killed]);
                due.len() as u64 + self.rerun_many(&failed, by).await?
            }
            BulkAction::Rerun => {
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                self.rerun_many(&ids, by).await?
            }
            BulkAction::Delete => {
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                store.delete_finished(&ids).await?
            }
        })
    }

    /// Reruns the finished jobs among `ids` (as [`Client::rerun`] does one), in one
    /// transaction; returns how many new jobs were added. A job that cannot be rerun is skipped.
    async fn rerun_many(&self, ids: &[i64], by: &str) -> Result<u64> {
        let mut jobs = Vec::new();
        for m in self.shared.store.finished_among(ids).await? {
            let Ok(args) = serde_json::from_str::<Value>(&m.args) else {
                continue;
            };
            let tags = crate::queue::tags_of(m.tags.as_deref());
            let mut job = NewJob::from_value(m.kind, args)
                .queue(m.queue)
                .priority(m.priority)
                .tags(tags);
            job.created_by = Some(by.to_owned());
            // Checked one by one: one job a kind no longer accepts must not stop the rest.
            match self.prepare(vec![job]) {
                Ok(mut rows) => jobs.append(&mut rows),
                Err(e) => tracing::info!(job_id = m.id, "bulk rerun skipped a job: {e}"),
            }
        }
        if jobs.is_empty() {
            return Ok(0);
        }
        let added = self.insert_prepared(jobs).await?;
        Ok(added.iter().filter(|j| !j.already_queued).count() as u64)
    }

    /// Tells subscribers (the admin's live lists) that the jobs `ids` among `rows` are now
    /// `status`.
    fn announce(&self, rows: &[BulkRow], ids: &[i64], status: JobStatus) {
        for row in rows.iter().filter(|r| ids.contains(&r.id)) {
            self.shared.events.send(crate::events::JobEvent::Status {
                job_id: row.id,
                kind: row.kind.clone(),
                status,
                from: row.status.parse().ok(),
            });
        }
    }
}
