//! A worker node (one process running the runtime), kept alive by its heartbeat.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_nodes`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_nodes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Where process ids mean the same thing: host name and PID namespace.
    pub hostname: String,
    pub pid: i64,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// The plain host name, for people.
    pub host: String,
    /// The kernel's boot id: a pid is only comparable within one boot of one host.
    pub boot_id: String,
    /// The Nightshift version the node runs.
    pub version: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
