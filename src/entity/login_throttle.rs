//! Failed logins per account and per address, so guessing is slowed down on every node alike.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_login_throttle`: one counter of attempts in a window.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_login_throttle")]
pub struct Model {
    /// What is counted: `addr:IP`, `pair:NAME|IP`, `user:NAME` (logins) or `token:IP`
    /// (unknown API tokens).
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Attempts counted in the current window.
    pub failures: i32,
    /// When the current 15-minute window began, in milliseconds since the Unix epoch.
    pub window_start: i64,
    /// For `user:` keys past the slow-down threshold: no attempt is counted before this time,
    /// in milliseconds since the Unix epoch. `None` otherwise.
    pub locked_until: Option<i64>,
}

/// Relations to other tables: none declared (joins are written in the queries).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
