//! An operator: a person who logs in to the admin, with a role.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_operators`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_operators")]
pub struct Model {
    /// Its id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// What it logs in with: 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
    #[sea_orm(unique)]
    pub name: String,
    /// An argon2id PHC string.
    pub password_hash: String,
    /// A [`crate::Role`] name.
    pub role: String,
    /// A disabled operator cannot log in, and its API tokens are refused.
    pub disabled: bool,
    /// When it was added, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When its role, password or `disabled` last changed, in milliseconds since the Unix
    /// epoch.
    pub updated_at: i64,
}

/// Relations to other tables: none declared (joins are written in the queries).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
