//! `nightshift bench` with tiny sizes on SQLite: every figure is there and sane. No timing is
//! asserted (the figures themselves are for BENCHMARKS.md, measured on a release build).
use std::time::Duration;

use serde_json::Value;

fn tiny(dir: &tempfile::TempDir) -> nightshift::bench::Options {
    let mut opts = nightshift::bench::Options::new(200);
    opts.database_url = Some(format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    ));
    opts.enqueue_one = 20;
    opts.pickup_samples = 5;
    opts.schedule_later = 100;
    opts.schedule_due = 10;
    opts.schedule_span = Duration::from_millis(200);
    opts.admin_samples = 3;
    opts.sse_subscribers = 10;
    opts.sse_lines = 100;
    opts.progress = false;
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_bench_reports_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let opts = tiny(&dir);
    let report = nightshift::bench::run(&opts).await.unwrap();
    let json = report.to_json();
    let text = serde_json::to_string_pretty(&json).unwrap();

    let rate = |key: &str| {
        let v = json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {text}"));
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
        v
    };
    for key in [
        "drain_per_s",
        "drain_ceiling_per_s",
        "drain_vs_ceiling",
        "drain_depth_ratio",
        "enqueue_batch_per_s",
        "enqueue_one_per_s",
    ] {
        rate(key);
    }
    // One depth below the standard ones: the backlog itself.
    let depths = json["drain_by_depth"].as_object().unwrap();
    assert_eq!(depths.keys().collect::<Vec<_>>(), ["200"], "{text}");
    assert_eq!(depths["200"].as_f64(), json["drain_per_s"].as_f64());
    assert_eq!(json["drain_depth_ratio"], 1.0);
    assert_eq!(json["backend"], "sqlite");
    assert_eq!(json["jobs"], 200);

    let latency = |key: &str, n: u64| {
        let l = &json[key];
        for p in ["p50", "p95", "p99", "max"] {
            let v = l[p]
                .as_f64()
                .unwrap_or_else(|| panic!("{key}.{p} in {text}"));
            assert!(v >= 0.0 && v.is_finite(), "{key}.{p} = {v}");
        }
        assert!(l["p50"].as_f64() <= l["p99"].as_f64(), "{key}: {l}");
        assert!(l["p99"].as_f64() <= l["max"].as_f64(), "{key}: {l}");
        if n > 0 {
            assert_eq!(l["n"], n, "{key}: {l}");
        } else {
            assert!(l["n"].as_u64().unwrap() >= 2, "{key}: {l}");
        }
    };
    latency("pickup_ms", 5);
    latency("pickup_other_process_ms", 5);
    latency("schedule_ms", 10);
    latency("admin_list_ms", 0);
    for page in ["all", "done"] {
        assert!(json["admin_list_by_page"][page]["n"].as_u64().unwrap() >= 1);
    }

    let sse = &json["sse_fanout"];
    assert_eq!(sse["subscribers"], 10);
    assert_eq!(sse["lines"], 100);
    assert!(sse["delivered_all"].is_boolean());
    assert!(sse["min_received"].as_u64().unwrap() <= 100);
    assert!(sse["p99_delay_ms"].as_f64().unwrap() >= 0.0);

    // Linux: the process's resident memory, idle below the peak of a drain.
    if std::path::Path::new("/proc/self/status").exists() {
        let idle = json["rss_mb"]["idle"].as_f64().unwrap();
        let drain = json["rss_mb"]["drain"].as_f64().unwrap();
        assert!(idle > 0.0 && drain > 0.0, "{}", json["rss_mb"]);
        assert!(json["drain_cpu"]["us_per_job"].as_f64().unwrap() >= 0.0);
    }

    // The human table names every figure.
    let table = report.table();
    for key in [
        "drain_per_s",
        "pickup_ms",
        "sse_fanout",
        "rss_mb",
        "admin_list_ms",
    ] {
        assert!(table.contains(key), "{table}");
    }
    // Everything the bench created is gone; only what the test made is left.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(matches!(json, Value::Object(_)));
}

/// `--queues`: the backlog spread over queues and priorities drains completely (bare SQL too)
/// past a paused queue whose jobs stay put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queues_mix_drains_every_job_past_a_paused_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = tiny(&dir);
    opts.queues = true;
    let json = nightshift::bench::run(&opts).await.unwrap().to_json();
    for key in ["drain_per_s", "drain_ceiling_per_s"] {
        let v = json[key].as_f64().unwrap();
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }
}
