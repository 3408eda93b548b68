//! Pure views: functions from data to markup, composed from one layout.
pub mod access;
pub mod bulk;
pub mod chart;
pub mod components;
pub mod dashboard;
pub mod error;
pub mod form;
pub mod job;
pub mod layout;
pub mod list;
pub mod nodes;
pub mod queues;
pub mod recurring;
pub mod session;
