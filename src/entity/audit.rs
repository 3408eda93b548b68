//! The audit log: who did what, when, from where, and how it ended.
use sea_orm::entity::prelude::*;
use serde::Serialize;

/// A row of `nightshift_audit`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "nightshift_audit")]
pub struct Model {
    /// Its id, increasing: the audit page pages by it.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// When the action happened, in milliseconds since the Unix epoch.
    pub at: i64,
    /// Who acted: the signed-in operator's name, or the name given at a login or setup
    /// attempt (at most 100 characters).
    pub actor: String,
    /// The client's IP address, or `unknown`.
    pub address: String,
    /// `create_job`, `abort_job`, `login`, `add_operator`, …
    pub action: String,
    /// `job:42`, `operator:alice`, `token:7`.
    pub target: Option<String>,
    /// `ok`, `denied`, `failed`, `refused (409)`, …
    pub outcome: String,
    /// More about it, e.g. the error of a refused action (at most 2,000 characters).
    #[sea_orm(column_type = "Text", nullable)]
    pub detail: Option<String>,
}

/// Relations to other tables: none declared (joins are written in the queries).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
