//! An API token: a bearer credential acting with its operator's role. Only its hash is stored.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_api_tokens`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_api_tokens")]
pub struct Model {
    /// Its id, shown in the admin and used to revoke it.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The operator it acts as (`nightshift_operators.id`), with that operator's current role.
    pub operator_id: i64,
    /// A label its creator chose, to tell tokens apart (at most 100 characters).
    pub name: String,
    /// SHA-256 of the token, hex.
    #[sea_orm(unique)]
    pub token_hash: String,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When it last authenticated a request, in milliseconds since the Unix epoch; `None`
    /// if never.
    pub last_used_at: Option<i64>,
    /// When it was revoked, in milliseconds since the Unix epoch; `None` while it is valid.
    pub revoked_at: Option<i64>,
}

/// Relations to other tables: none declared (joins are written in the queries).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
