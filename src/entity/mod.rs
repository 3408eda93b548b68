//! sea-orm entities: the tables Nightshift keeps (see the `migration` crate for their indexes).
pub mod api_token;
pub mod audit;
pub mod job;
pub mod job_attempt;
pub mod job_log;
pub mod job_result;
pub mod login_throttle;
pub mod node;
pub mod operator;
pub mod queue;
pub mod recurring;
pub mod recurring_run;
pub mod session;
pub mod setup_token;
