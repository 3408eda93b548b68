//! A browser session, stored with the jobs so a restart (or another node) keeps operators logged in.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_sessions`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_sessions")]
pub struct Model {
    /// The session id the cookie carries (128 random bits).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The session record as JSON.
    #[sea_orm(column_type = "Text")]
    pub data: String,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

/// Relations to other tables: none declared (joins are written in the queries).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
