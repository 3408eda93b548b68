//! The library's error type: what can go wrong when a Rust app or the admin talks to Nightshift.
use crate::state::JobStatus;

/// Everything the public API can fail with.
///
/// ```
/// # use nightshift::Error;
/// let err = Error::NotFound(7);
/// assert_eq!(err.to_string(), "job 7 not found");
/// ```
///
/// A refusal says why, so a caller can tell "too late" from a failure:
///
/// ```no_run
/// use nightshift::{Client, Error};
///
/// # async fn demo(client: Client, id: i64) -> nightshift::Result<()> {
/// match client.cancel(id).await {
///     Ok(job) => println!("cancelled {}", job.id),
///     // Already running (abort it instead) or finished.
///     Err(Error::InvalidState { status, .. }) => println!("job {id} is {status}"),
///     Err(Error::NotFound(_)) => println!("no job {id}"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No job kind with that name is registered on this worker.
    #[error("unknown job kind {}", crate::text::quote(.0))]
    UnknownKind(String),
    /// A kind with that name is already registered.
    #[error("job kind {} is already registered", crate::text::quote(.0))]
    DuplicateKind(String),
    /// The arguments do not fit the kind's argument type. `field` names the offending field when
    /// it is known.
    #[error("{}", match field { Some(f) => format!("{f}: {message}"), None => message.clone() })]
    InvalidArgs {
        /// The field (a JSON path such as `subject` or `items[2].sku`), when known.
        field: Option<String>,
        /// What is wrong, for a person.
        message: String,
    },
    /// A schedule time was given for a kind that is not schedulable.
    #[error("job kind {} is not schedulable", crate::text::quote(.0))]
    NotSchedulable(String),
    /// No job with that id.
    #[error("job {0} not found")]
    NotFound(i64),
    /// The job's state does not allow the action (e.g. cancelling a running job).
    #[error("job {id} is {status}: cannot {action} it")]
    InvalidState {
        /// The job.
        id: i64,
        /// Its state when the action was refused.
        status: JobStatus,
        /// What was refused: `cancel`, `abort`, `update`.
        action: &'static str,
    },
    /// No recurring schedule with that id.
    #[error("recurring schedule {0} not found")]
    ScheduleNotFound(i64),
    /// The recurring schedule's state does not allow the action (e.g. skipping the next tick of
    /// a paused schedule).
    #[error("{0}")]
    ScheduleConflict(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// The database cannot be reached (refused, unknown host, wrong password, no answer).
    #[error("cannot connect to the database at {place}: {cause}")]
    Unreachable {
        /// `host:port/database`, without credentials.
        place: String,
        /// What the driver said.
        cause: String,
    },
    /// On SQLite, the engine's one write connection stayed taken: usually by a transaction of
    /// the caller's, inside which a call other than `insert_in(&txn, …)` was made.
    #[error(
        "the database connection is held by an open transaction: on SQLite, Nightshift writes \
         through one connection; inside your transaction use insert_in(&txn, …), or commit first"
    )]
    ConnectionHeld,
    /// A wait (e.g. [`crate::testing::drain`]) ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A row in the database could not be read (corrupt or written by a newer version).
    #[error("corrupt job data: {0}")]
    Corrupt(String),
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
