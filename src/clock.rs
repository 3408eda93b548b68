//! Time as Nightshift stores it: milliseconds since the Unix epoch, UTC.
use chrono::{DateTime, TimeZone, Utc};

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A stored time as a `DateTime`. Out-of-range values (never written by Nightshift) clamp to the
/// epoch rather than panic.
pub fn to_datetime(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A `DateTime` as stored, rounded up to the next millisecond so that a job never starts before
/// the instant it was given.
pub fn to_ms(at: DateTime<Utc>) -> i64 {
    let ms = at.timestamp_millis();
    if at.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        ms
    } else {
        ms + 1
    }
}
