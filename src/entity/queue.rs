//! A queue's shared state: paused or not, and its limit across all nodes.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_queues`. A queue without a row is running and has no global limit.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_queues")]
pub struct Model {
    /// The queue's name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// Paused: no node starts its jobs; running ones finish.
    pub paused: bool,
    /// Who paused it.
    pub paused_by: Option<String>,
    /// When it was paused (ms since the Unix epoch).
    pub paused_at: Option<i64>,
    /// At most this many of its jobs run at once across all nodes; `None`: no such limit.
    pub global_limit: Option<i32>,
    /// When the row last changed (ms since the Unix epoch).
    pub updated_at: i64,
}

/// Relations to other tables: none declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
