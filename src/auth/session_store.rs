//! Sessions in the database (tower-sessions' `SessionStore`), so a restart or another node keeps
//! operators logged in.
//!
//! A deleted session (a logout, the old id of a login) stays deleted: its row is kept for an
//! hour as a tombstone (`expires_at` negative) that a save cannot overwrite. A request that
//! loaded the session just before the logout and saves it just after (an active operator's
//! session is saved now and then) would otherwise bring it back, signed in.
use async_trait::async_trait;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, ExprTrait,
    QueryFilter,
};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::entity::session;

/// How long a deleted session's tombstone is kept: longer than any request takes.
const TOMBSTONE_SECS: i64 = 3600;

/// Sessions in `nightshift_sessions`.
#[derive(Debug, Clone)]
pub struct DbSessionStore {
    db: DatabaseConnection,
}

impl DbSessionStore {
    /// The sessions of `db` (a migrated database).
    pub fn new(db: DatabaseConnection) -> Self {
        DbSessionStore { db }
    }

    /// Deletes expired sessions, and tombstones older than an hour.
    pub async fn delete_expired(&self) -> Result<u64, sea_orm::DbErr> {
        let now = chrono::Utc::now().timestamp();
        let res = session::Entity::delete_many()
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(session::Column::ExpiresAt.gte(0))
                            .add(session::Column::ExpiresAt.lt(now)),
                    )
                    // A tombstone holds minus (deleted at + an hour).
                    .add(
                        Condition::all()
                            .add(session::Column::ExpiresAt.lt(0))
                            .add(session::Column::ExpiresAt.gt(-now)),
                    ),
            )
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected)
    }
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // Ids are 128 random bits; on the off chance of a collision, draw again.
        while session::Entity::find_by_id(record.id.to_string())
            .one(&self.db)
            .await
            .map_err(backend)?
            .is_some()
        {
            record.id = Id::default();
        }
        self.save(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(record)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let row = session::ActiveModel {
            id: Set(record.id.to_string()),
            data: Set(data),
            expires_at: Set(record.expiry_date.unix_timestamp()),
        };
        session::Entity::insert(row)
            .on_conflict(
                OnConflict::column(session::Column::Id)
                    .update_columns([session::Column::Data, session::Column::ExpiresAt])
                    // Never over a tombstone.
                    .action_and_where(
                        Expr::col((session::Entity, session::Column::ExpiresAt)).gte(0),
                    )
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row = session::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await
            .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        if row.expires_at < chrono::Utc::now().timestamp() {
            return Ok(None);
        }
        serde_json::from_str(&row.data)
            .map(Some)
            .map_err(|e| session_store::Error::Decode(e.to_string()))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let until = chrono::Utc::now().timestamp() + TOMBSTONE_SECS;
        session::Entity::update_many()
            .col_expr(session::Column::Data, Expr::value(""))
            .col_expr(session::Column::ExpiresAt, Expr::value(-until))
            .filter(session::Column::Id.eq(id.to_string()))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tower_sessions::cookie::time::{Duration, OffsetDateTime};

    use super::*;

    /// A request that loaded a session before its logout and saves it after (an active
    /// operator's session is saved now and then) does not bring it back.
    #[tokio::test]
    async fn a_deleted_session_stays_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = crate::store::connect(&url).await.unwrap();
        let store = DbSessionStore::new(db);
        let mut record = Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: OffsetDateTime::now_utc() + Duration::hours(8),
        };
        store.create(&mut record).await.unwrap();
        assert!(store.load(&record.id).await.unwrap().is_some());
        let loaded_before = record.clone();
        store.delete(&record.id).await.unwrap();
        store.save(&loaded_before).await.unwrap();
        assert!(
            store.load(&record.id).await.unwrap().is_none(),
            "a save after the logout signed the session in again"
        );
        // Pruning keeps the tombstone a while, and takes expired sessions.
        let mut old = Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: OffsetDateTime::now_utc() - Duration::hours(1),
        };
        store.create(&mut old).await.unwrap();
        assert_eq!(store.delete_expired().await.unwrap(), 1);
        store.save(&loaded_before).await.unwrap();
        assert!(store.load(&record.id).await.unwrap().is_none());
    }
}
