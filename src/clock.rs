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

/// A node's clock, kept in step with the database's: times that decide anything (when a job is
/// due, how old a heartbeat is) must mean the same on every node, whatever each host's clock
/// says. Each heartbeat reads the database's time and corrects the offset.
///
/// A reading of the database's clock, taken somewhere between sending and receiving, only
/// bounds the offset from below (`db_now − received`); the estimate is the tightest of the
/// last few such bounds. So this clock is never ahead of the database's: a job may start a
/// round trip late, never early.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    /// How far this host's clock is off (a test hook; zero in production).
    skew_ms: i64,
    /// Database time minus this host's time, as estimated.
    offset_ms: std::sync::atomic::AtomicI64,
    /// The last few lower bounds of the offset, newest last.
    samples: std::sync::Mutex<std::collections::VecDeque<i64>>,
    /// When (local time) the offset was last measured; 0: never.
    learned_at: std::sync::atomic::AtomicI64,
}

/// How many readings the estimate is the best of.
const SAMPLES: usize = 5;

impl Clock {
    pub fn new(skew_ms: i64) -> Self {
        Clock {
            skew_ms,
            ..Clock::default()
        }
    }

    /// This host's own time (skewed by the test hook, if any).
    pub fn local(&self) -> i64 {
        now_ms() + self.skew_ms
    }

    /// Now, on the database's clock (never ahead of it).
    pub fn now(&self) -> i64 {
        self.local() + self.offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Learns from a database time read after `_sent` and before `received` (local times).
    pub fn learn(&self, db_now: i64, _sent: i64, received: i64) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.push_back(db_now - received);
        while samples.len() > SAMPLES {
            samples.pop_front();
        }
        let best = samples.iter().copied().max().unwrap_or(0);
        self.offset_ms
            .store(best, std::sync::atomic::Ordering::Relaxed);
        self.learned_at
            .store(received, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the offset was measured within the last `max_age_ms`.
    pub fn is_fresh(&self, max_age_ms: i64) -> bool {
        let at = self.learned_at.load(std::sync::atomic::Ordering::Relaxed);
        at != 0 && self.local() - at < max_age_ms
    }
}

#[cfg(test)]
mod tests {
    use super::Clock;

    #[test]
    fn a_skewed_clock_learns_the_database_time_and_is_never_ahead() {
        let clock = Clock::new(60_000);
        let sent = clock.local();
        let db = super::now_ms();
        clock.learn(db, sent, clock.local());
        let now = super::now_ms();
        assert!(clock.now() <= now, "never ahead");
        assert!(now - clock.now() < 50);
    }
}
