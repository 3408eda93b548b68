//! sea-orm entities: the tables Nightshift keeps (see the `migration` crate for their indexes).
pub mod job;
pub mod job_attempt;
pub mod job_log;
pub mod job_result;
pub mod node;
