//! A worker node (one process running the runtime), kept alive by its heartbeat.
use sea_orm::entity::prelude::*;

/// A row of `nightshift_nodes`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nightshift_nodes")]
pub struct Model {
    /// Unique per process run: `HOST-PID-RANDOM`. Jobs name it in `locked_by`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Where process ids mean the same thing: host name and PID namespace.
    pub hostname: String,
    /// The process id.
    pub pid: i64,
    /// When the node started, in milliseconds since the Unix epoch (its own clock).
    pub started_at: i64,
    /// Its last heartbeat, in milliseconds since the Unix epoch (the database's clock): a
    /// node silent for longer than the node timeout is reaped and its jobs rescued.
    pub heartbeat_at: i64,
    /// The plain host name, for people.
    pub host: String,
    /// The kernel's boot id: a pid is only comparable within one boot of one host.
    pub boot_id: String,
    /// The Nightshift version the node runs.
    pub version: String,
    /// The queues it serves and how many of each it runs at once (a JSON object).
    #[sea_orm(column_type = "Text", nullable)]
    pub queues: Option<String>,
    /// The job kinds it has handlers for (a JSON array); `None` from nodes that predate it.
    #[sea_orm(column_type = "Text", nullable)]
    pub kinds: Option<String>,
}

/// Relations to other tables: none declared (joins are written in the queries).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
