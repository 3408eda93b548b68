//! The audit log: every action on jobs, every login and every operator or token change.
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::clock::now_ms;
use crate::entity::audit;

/// One audited action.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// Who acted (an operator's name, or the name given at a login or setup).
    pub actor: String,
    /// The client's IP address, or `unknown`.
    pub address: String,
    /// What was done: `create_job`, `login`, … (see `entity::audit`).
    pub action: String,
    /// What it was done to: `job:42`, `operator:alice`, `token:7`.
    pub target: Option<String>,
    /// How it ended: `ok`, `denied`, `failed`, `refused (409)`, …
    pub outcome: String,
    /// More about it; cut at 2,000 characters.
    pub detail: Option<String>,
}

/// Writes an entry. A failure is logged: the action already happened and must not be hidden.
pub async fn record(db: &DatabaseConnection, e: Entry) {
    let row = audit::ActiveModel {
        id: NotSet,
        at: Set(now_ms()),
        actor: Set(e.actor.chars().take(100).collect()),
        address: Set(e.address),
        action: Set(e.action.clone()),
        target: Set(e.target),
        outcome: Set(e.outcome),
        detail: Set(e.detail.map(|d| d.chars().take(2000).collect())),
    };
    if let Err(err) = audit::Entity::insert(row).exec_without_returning(db).await {
        tracing::error!(action = %e.action, "could not write the audit log: {err}");
    }
}

/// Filters for the audit page.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only entries by this actor.
    pub actor: Option<String>,
    /// Only entries of this action.
    pub action: Option<String>,
    /// Only entries about this target.
    pub target: Option<String>,
}

/// Entries, newest first, below the `before` cursor.
pub async fn list(
    db: &DatabaseConnection,
    f: &Filter,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<audit::Model>, sea_orm::DbErr> {
    let mut q = audit::Entity::find().order_by_desc(audit::Column::Id);
    if let Some(a) = &f.actor {
        q = q.filter(audit::Column::Actor.eq(a.clone()));
    }
    if let Some(a) = &f.action {
        q = q.filter(audit::Column::Action.eq(a.clone()));
    }
    if let Some(t) = &f.target {
        q = q.filter(audit::Column::Target.eq(t.clone()));
    }
    if let Some(b) = before {
        q = q.filter(audit::Column::Id.lt(b));
    }
    q.limit(limit).all(db).await
}
