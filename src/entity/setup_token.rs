//! The one-time token that lets the first admin be created.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_setup_tokens`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_setup_tokens")]
pub struct Model {
    /// SHA-256 of the token, hex: the token itself is only printed, never stored.
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_hash: String,
    /// When it stops working (a day after it was made), in milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// Relations to other tables: none declared (joins are written in the queries).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
