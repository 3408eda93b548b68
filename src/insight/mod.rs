//! Insight for operators: what finished per minute, how long jobs of each kind waited and ran
//! (percentiles read from the per-minute histograms, never from the jobs table), and the health
//! signals worth a look. The admin's dashboard and `/metrics` show it; [`crate::Client::dashboard`]
//! returns it.
pub mod health;
pub mod histogram;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use health::{Signal, SignalKind};
use histogram::Buckets;

/// The span of the fine chart: the last hour, a point a minute.
pub const HOUR_POINTS: usize = 60;
/// The span of the coarse chart: the last day, a point per 15 minutes.
pub const DAY_POINTS: usize = 96;
/// The step of the coarse chart, in minutes.
pub const DAY_STEP_MINUTES: i64 = 15;

/// Finished attempts in one step of a chart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Point {
    /// The step's start.
    pub at: DateTime<Utc>,
    /// Ended `done`.
    pub done: i64,
    /// Ended `exception` or `killed`.
    pub failed: i64,
    /// Failed with a retry to come (or snoozed).
    pub retried: i64,
    pub cancelled: i64,
}

impl Point {
    /// Attempts that ended the job: done, failed or cancelled.
    pub fn finished(&self) -> i64 {
        self.done + self.failed + self.cancelled
    }
}

/// A chart's points, oldest first (the current step last).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Series {
    /// Seconds per point.
    pub step_s: i64,
    pub points: Vec<Point>,
}

impl Series {
    /// Points of `step_s` seconds covering `len` steps up to the one holding `now` (ms).
    pub fn empty(now: i64, step_s: i64, len: usize) -> Series {
        let step = step_s * 1000;
        let last = now - now.rem_euclid(step);
        let points = (0..len as i64)
            .map(|i| Point {
                at: crate::clock::to_datetime(last - (len as i64 - 1 - i) * step),
                ..Point::default()
            })
            .collect();
        Series { step_s, points }
    }

    /// Adds one minute's counts to the point that holds it (minutes outside are ignored).
    pub fn add(&mut self, minute: i64, done: i64, failed: i64, retried: i64, cancelled: i64) {
        let Some(first) = self.points.first() else {
            return;
        };
        let offset = minute - first.at.timestamp_millis();
        if offset < 0 {
            return;
        }
        if let Some(p) = self
            .points
            .get_mut((offset / (self.step_s * 1000)) as usize)
        {
            p.done += done;
            p.failed += failed;
            p.retried += retried;
            p.cancelled += cancelled;
        }
    }

    /// Totals over the whole span.
    pub fn total(&self) -> Point {
        let mut t = Point::default();
        for p in &self.points {
            t.done += p.done;
            t.failed += p.failed;
            t.retried += p.retried;
            t.cancelled += p.cancelled;
        }
        t
    }
}

/// p50, p95 and p99 of a duration, in ms (`None` without samples).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub p50: Option<i64>,
    pub p95: Option<i64>,
    pub p99: Option<i64>,
}

impl Percentiles {
    /// Read from summed buckets.
    pub fn of(buckets: &Buckets) -> Percentiles {
        Percentiles {
            p50: histogram::percentile(buckets, 0.50),
            p95: histogram::percentile(buckets, 0.95),
            p99: histogram::percentile(buckets, 0.99),
        }
    }
}

/// How long the attempts of one kind waited (due → start) and ran, over the last day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindTimes {
    pub kind: String,
    /// Attempts counted (every ending, retries included).
    pub attempts: i64,
    /// Of them, failed (retried or not).
    pub failed: i64,
    pub wait_ms: Percentiles,
    pub run_ms: Percentiles,
    /// The buckets behind `run_ms` (the health check reads the usual run time from them).
    #[serde(skip)]
    pub run_buckets: Buckets,
}

/// `series` of the dashboard's JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Charts {
    /// Per minute, the last hour.
    pub last_hour: Series,
    /// Per 15 minutes, the last day.
    pub last_day: Series,
    /// Per kind, the last day, busiest first.
    pub kinds: Vec<KindTimes>,
}

/// What the dashboard shows: the charts and the health signals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Dashboard {
    pub series: Charts,
    pub health: Vec<Signal>,
}

/// A duration as a person says it: `850 ms`, `12 s`, `3 min`, `2 h 05 min`, `3 d 4 h`.
pub fn human_ms(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    if ms < 1000 {
        format!("{ms} ms")
    } else if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min", s / 60)
    } else if s < 86_400 {
        format!("{} h {:02} min", s / 3600, (s / 60) % 60)
    } else {
        format!("{} d {} h", s / 86_400, (s / 3600) % 24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_land_in_their_step() {
        let now = 1_000 * 3_600_000 + 30 * 60_000 + 5_000; // 10:30:05 of some day
        let mut day = Series::empty(now, DAY_STEP_MINUTES * 60, DAY_POINTS);
        assert_eq!(day.points.len(), DAY_POINTS);
        assert_eq!(
            day.points.last().unwrap().at.timestamp_millis(),
            now - 5_000,
            "the current quarter hour is last"
        );
        day.add(now - 5_000 + 15 * 60_000, 1, 0, 0, 0); // the next step: ignored
        day.add(now - 5_000 + 60_000, 2, 1, 0, 0);
        day.add(now - 5_000 - 60_000, 3, 0, 1, 1);
        day.add(0, 9, 9, 9, 9); // long ago: ignored
        let last = day.points[DAY_POINTS - 1];
        assert_eq!((last.done, last.failed), (2, 1), "{last:?}");
        assert_eq!(day.points[DAY_POINTS - 2].done, 3);
        assert_eq!(day.total().finished(), 2 + 1 + 3 + 1);
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_ms(850), "850 ms");
        assert_eq!(human_ms(12_400), "12 s");
        assert_eq!(human_ms(3 * 60_000 + 59_000), "3 min");
        assert_eq!(human_ms(2 * 3_600_000 + 5 * 60_000), "2 h 05 min");
        assert_eq!(human_ms(3 * 86_400_000 + 4 * 3_600_000), "3 d 4 h");
    }
}
