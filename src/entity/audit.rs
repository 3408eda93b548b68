//! The audit log: who did what, when, from where, and how it ended.
use sea_orm::entity::prelude::*;
use serde::Serialize;

/// A row of `nightshift_audit`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "nightshift_audit")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub address: String,
    /// `create_job`, `abort_job`, `login`, `add_operator`, …
    pub action: String,
    /// `job:42`, `operator:alice`, `token:7`.
    pub target: Option<String>,
    /// `ok`, `denied`, `failed`, `refused (409)`, …
    pub outcome: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub detail: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
