//! Fixed log-scale histograms of durations, as the per-minute counts store them (one integer
//! column per bucket): which bucket a duration falls in, and percentiles read back from summed
//! buckets.

/// Upper bounds (exclusive) of every bucket but the last, in ms: 10 ms to 1 h. The last bucket
/// holds everything from 1 h up. Changing them needs a migration of `nightshift_stats`.
pub const BOUNDS_MS: [i64; 15] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000,
    3_600_000,
];

/// How many buckets a histogram has.
pub const BUCKETS: usize = BOUNDS_MS.len() + 1;

/// Counts per bucket.
pub type Buckets = [i64; BUCKETS];

/// The bucket a duration (ms) falls in; negative durations (clock skew) count as 0.
pub fn bucket_of(ms: i64) -> usize {
    BOUNDS_MS.partition_point(|&b| b <= ms)
}

/// The range `[low, high)` of bucket `i` in ms (`high` is `None` for the last).
pub fn range_of(i: usize) -> (i64, Option<i64>) {
    let low = if i == 0 { 0 } else { BOUNDS_MS[i - 1] };
    (low, BOUNDS_MS.get(i).copied())
}

/// The `q`-quantile (0 < q ≤ 1) of the durations counted in `buckets`, in ms, interpolated
/// linearly within its bucket; `None` when nothing was counted. In the open last bucket the
/// answer is its lower bound (1 h): "at least".
pub fn percentile(buckets: &Buckets, q: f64) -> Option<i64> {
    let total: i64 = buckets.iter().map(|n| (*n).max(0)).sum();
    if total == 0 {
        return None;
    }
    // The rank of the sample sought, 1-based: the p95 of 20 samples is the 19th.
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as i64).max(1);
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        let n = (*n).max(0);
        if n == 0 {
            continue;
        }
        if seen + n >= rank {
            let (low, high) = range_of(i);
            let Some(high) = high else { return Some(low) };
            // The samples of a bucket are taken as spread evenly over it.
            let within = (rank - seen) as f64 / n as f64;
            return Some(low + ((high - low) as f64 * within).round() as i64);
        }
        seen += n;
    }
    None
}

/// The SQL column names of a histogram: `{prefix}0`, `{prefix}1`, ….
pub fn columns(prefix: &str) -> Vec<String> {
    (0..BUCKETS).map(|i| format!("{prefix}{i}")).collect()
}

/// The summed columns of a `nightshift_stats` row, in the order its statements list them: the
/// counts, the summed times, then the run and wait histograms.
pub fn stat_columns() -> Vec<String> {
    [
        "done",
        "failed",
        "retried",
        "cancelled",
        "run_ms",
        "wait_ms",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(columns("run_b"))
    .chain(columns("wait_b"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_their_bucket() {
        assert_eq!(bucket_of(-5), 0);
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(9), 0);
        assert_eq!(bucket_of(10), 1);
        assert_eq!(bucket_of(999), 6);
        assert_eq!(bucket_of(1_000), 7);
        assert_eq!(bucket_of(3_599_999), 14);
        assert_eq!(bucket_of(3_600_000), 15);
        assert_eq!(bucket_of(i64::MAX), BUCKETS - 1);
        assert_eq!(range_of(0), (0, Some(10)));
        assert_eq!(range_of(15), (3_600_000, None));
    }

    #[test]
    fn percentiles_interpolate_within_the_bucket() {
        let mut b = [0; BUCKETS];
        assert_eq!(percentile(&b, 0.5), None);
        // 100 samples in [100, 250): the median halfway.
        b[bucket_of(100)] = 100;
        assert_eq!(percentile(&b, 0.5), Some(175));
        assert_eq!(percentile(&b, 1.0), Some(250));
        // 95 fast ones and 5 slow ones: the p95 is still fast, the p99 slow.
        let mut b = [0; BUCKETS];
        b[bucket_of(5)] = 95;
        b[bucket_of(7_000)] = 5;
        assert!(percentile(&b, 0.95).unwrap() <= 10);
        let p99 = percentile(&b, 0.99).unwrap();
        assert!((5_000..=10_000).contains(&p99), "{p99}");
        // The open bucket answers its lower bound.
        let mut b = [0; BUCKETS];
        b[BUCKETS - 1] = 1;
        assert_eq!(percentile(&b, 0.5), Some(3_600_000));
    }
}
