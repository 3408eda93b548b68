//! The binary's settings: flag > environment > `nightshift.toml` > default, bad values refused
//! before anything starts (naming the key and where it came from), JSON log lines.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Every variable the binary reads its settings from: unset in each run, so that the machine's
/// environment cannot change what a test sees.
const VARS: &[&str] = &[
    "NIGHTSHIFT_CONFIG",
    "NIGHTSHIFT_DATABASE_URL",
    "NIGHTSHIFT_BIND",
    "NIGHTSHIFT_CONCURRENCY",
    "NIGHTSHIFT_DRAIN_TIMEOUT",
    "NIGHTSHIFT_SECRET_KEY",
    "NIGHTSHIFT_SECRET_KEY_FILE",
    "NIGHTSHIFT_NO_DEMO",
    "NIGHTSHIFT_NO_WORKERS",
    "NIGHTSHIFT_SECURE_COOKIES",
    "NIGHTSHIFT_METRICS_BIND",
    "NIGHTSHIFT_LOG_FORMAT",
    "NIGHTSHIFT_RETENTION_DONE_DAYS",
    "NIGHTSHIFT_RETENTION_ERRORS_DAYS",
    "NIGHTSHIFT_RETENTION_CANCELLED_DAYS",
    "NIGHTSHIFT_RETENTION_AUDIT_DAYS",
    "RUST_LOG",
];

fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nightshift"));
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    for var in VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(dir, args, env).output().unwrap()
}

/// `nightshift config --json` (plus `args`) in `dir`: the effective settings.
fn effective(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = vec!["config", "--json"];
    all.extend_from_slice(args);
    let out = run(dir, &all, env);
    assert!(
        out.status.success(),
        "nightshift {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value and source of `key` in `nightshift config --json` output.
fn setting(config: &Value, key: &str) -> (Value, String) {
    let s = &config[key];
    (s["value"].clone(), s["source"].as_str().unwrap().to_owned())
}

#[test]
fn a_flag_wins_over_the_environment_which_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nightshift.toml"),
        "# the deployment's settings\n\
         bind = \"127.0.0.1:9001\"\n\
         concurrency = 3\n\
         drain_timeout = 7\n\
         no_demo = true\n\
         log_format = \"json\"\n",
    )
    .unwrap();

    // The file over the defaults.
    let c = effective(dir.path(), &[], &[]);
    assert_eq!(c["file"], "nightshift.toml");
    let file = "file nightshift.toml".to_owned();
    assert_eq!(setting(&c, "bind"), ("127.0.0.1:9001".into(), file.clone()));
    assert_eq!(setting(&c, "concurrency"), (3.into(), file.clone()));
    assert_eq!(setting(&c, "drain_timeout"), (7.into(), file.clone()));
    assert_eq!(setting(&c, "no_demo"), (true.into(), file.clone()));
    assert_eq!(setting(&c, "log_format"), ("json".into(), file.clone()));
    assert_eq!(
        setting(&c, "database_url"),
        (
            "sqlite://nightshift.db?mode=rwc".into(),
            "default".to_owned()
        )
    );
    assert_eq!(setting(&c, "no_workers"), (false.into(), "default".into()));

    // The environment over the file.
    let env = [
        ("NIGHTSHIFT_BIND", "127.0.0.1:9002"),
        ("NIGHTSHIFT_CONCURRENCY", "4"),
        ("NIGHTSHIFT_NO_DEMO", "false"),
        ("NIGHTSHIFT_LOG_FORMAT", "text"),
    ];
    let c = effective(dir.path(), &[], &env);
    assert_eq!(
        setting(&c, "bind"),
        ("127.0.0.1:9002".into(), "env NIGHTSHIFT_BIND".into())
    );
    assert_eq!(
        setting(&c, "concurrency"),
        (4.into(), "env NIGHTSHIFT_CONCURRENCY".into())
    );
    assert_eq!(
        setting(&c, "no_demo"),
        (false.into(), "env NIGHTSHIFT_NO_DEMO".into())
    );
    assert_eq!(
        setting(&c, "log_format"),
        ("text".into(), "env NIGHTSHIFT_LOG_FORMAT".into())
    );
    assert_eq!(setting(&c, "drain_timeout"), (7.into(), file.clone()));

    // A flag over the environment.
    let c = effective(
        dir.path(),
        &[
            "--concurrency",
            "5",
            "--bind",
            "0.0.0.0:9003",
            "--log-format",
            "json",
        ],
        &env,
    );
    assert_eq!(
        setting(&c, "concurrency"),
        (5.into(), "flag --concurrency".into())
    );
    assert_eq!(
        setting(&c, "bind"),
        ("0.0.0.0:9003".into(), "flag --bind".into())
    );
    assert_eq!(
        setting(&c, "log_format"),
        ("json".into(), "flag --log-format".into())
    );
    assert_eq!(setting(&c, "drain_timeout"), (7.into(), file));

    // The text form is a TOML file that says where each value came from.
    let out = run(dir.path(), &["config", "--concurrency", "5"], &env);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("concurrency = 5 ") && l.ends_with("# flag --concurrency")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("drain_timeout = 7 ") && l.ends_with("# file nightshift.toml")),
        "{text}"
    );
    let parsed: toml::Table = text.parse().expect("`nightshift config` prints TOML");
    assert_eq!(parsed["bind"].as_str(), Some("127.0.0.1:9002"));
}

/// Precedence seen in what the binary does, not only in what it prints: the database file that
/// `migrate` creates.
#[test]
fn the_database_used_follows_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(
        p.join("custom.toml"),
        "database_url = \"sqlite://from-file.db?mode=rwc\"\n",
    )
    .unwrap();
    let migrate = |args: &[&str], env: &[(&str, &str)]| {
        let out = run(p, args, env);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let env_url = [("NIGHTSHIFT_DATABASE_URL", "sqlite://from-env.db?mode=rwc")];

    migrate(&["--config", "custom.toml", "migrate"], &[]);
    assert!(p.join("from-file.db").exists());
    // Named by NIGHTSHIFT_CONFIG, and a global flag after the subcommand works the same.
    std::fs::remove_file(p.join("from-file.db")).unwrap();
    migrate(&["migrate"], &[("NIGHTSHIFT_CONFIG", "custom.toml")]);
    assert!(p.join("from-file.db").exists());

    migrate(&["migrate", "--config", "custom.toml"], &env_url);
    assert!(p.join("from-env.db").exists());

    migrate(
        &[
            "migrate",
            "--config",
            "custom.toml",
            "--database-url",
            "sqlite://from-flag.db?mode=rwc",
        ],
        &env_url,
    );
    assert!(p.join("from-flag.db").exists());
    // Never the default.
    assert!(!p.join("nightshift.db").exists());
}

/// `serve` with everything from the file: it listens where the file says and logs JSON lines;
/// `/metrics` is also served alone where `metrics_bind` says (and wants a token there too).
#[test]
fn serve_reads_the_file_and_logs_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let free_port = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let port = free_port();
    let metrics_port = free_port();
    std::fs::write(
        dir.path().join("nightshift.toml"),
        format!(
            "bind = \"127.0.0.1:{port}\"\n\
             metrics_bind = \"127.0.0.1:{metrics_port}\"\n\
             database_url = \"sqlite://served.db?mode=rwc\"\n\
             no_demo = true\n\
             log_format = \"json\"\n\
             log_filter = \"info\"\n"
        ),
    )
    .unwrap();
    let mut child = command(dir.path(), &["serve"], &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let admin = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!("serve never said where it listens:\n{}", lines.join("\n"));
        };
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(event["timestamp"].is_string(), "{line}");
        assert!(event["level"].is_string(), "{line}");
        lines.push(line);
        if let Some(rest) = event["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("admin at "))
        {
            break rest.to_owned();
        }
    };
    assert_eq!(admin, format!("http://127.0.0.1:{port}/"));
    assert!(dir.path().join("served.db").exists());
    assert!(!dir.path().join("nightshift.db").exists());
    // The first-run link is in a JSON line too (no plain-text banner).
    assert!(
        lines.iter().any(|l| l.contains("/setup?token=")),
        "{lines:?}"
    );
    let get = |port: u16, path: &str| {
        std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            use std::io::{Read, Write};
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            s.write_all(request.as_bytes())?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer)
        })
    };
    let health = get(port, "/healthz");
    // The metrics address comes up beside the admin's.
    let metrics_at = format!("metrics at http://127.0.0.1:{metrics_port}/metrics");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !lines.iter().any(|l| l.contains(&metrics_at)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let metrics = get(metrics_port, "/metrics");
    let other = get(metrics_port, "/healthz");
    let _ = child.kill();
    let _ = child.wait();
    let health = health.unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(lines.iter().any(|l| l.contains(&metrics_at)), "{lines:?}");
    let metrics = metrics.unwrap();
    assert!(
        metrics.starts_with("HTTP/1.1 401"),
        "a token is needed: {metrics}"
    );
    let other = other.unwrap();
    assert!(
        other.starts_with("HTTP/1.1 404"),
        "only /metrics there: {other}"
    );
    // Whatever it wrote until it was killed is JSON as well.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        serde_json::from_str::<Value>(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
}

/// A bad value stops the start with exit code 2 and one line naming the key and its source;
/// nothing is started (no database file).
#[test]
fn bad_values_are_refused_naming_the_key_and_where_it_came_from() {
    struct Case {
        file: Option<&'static str>,
        env: &'static [(&'static str, &'static str)],
        args: &'static [&'static str],
        says: &'static str,
    }
    let cases = [
        Case {
            file: Some("concurrency = 0\n"),
            env: &[],
            args: &[],
            says: "nightshift.toml: concurrency: must be at least 1",
        },
        Case {
            file: Some("concurrency = \"8\"\n"),
            env: &[],
            args: &[],
            says: "nightshift.toml: concurrency: expected a whole number, found a string (\"8\")",
        },
        Case {
            file: Some("bind = \"127.0.0.1:0\"\nconcurency = 4\n"),
            env: &[],
            args: &[],
            says: "nightshift.toml: concurency: unknown setting",
        },
        Case {
            file: Some("log_format = \"xml\"\n"),
            env: &[],
            args: &[],
            says: "nightshift.toml: log_format: expected \"text\" or \"json\", found \"xml\"",
        },
        Case {
            file: Some("no_demo = \"yes\"\n"),
            env: &[],
            args: &[],
            says: "nightshift.toml: no_demo: expected true or false, found a string (\"yes\")",
        },
        Case {
            file: Some("bind = \"localhost\"\n"),
            env: &[],
            args: &[],
            says: "nightshift.toml: bind: expected HOST:PORT",
        },
        Case {
            file: Some("retention_done_days = -3\n"),
            env: &[],
            args: &[],
            says: "nightshift.toml: retention_done_days: must be at least 0",
        },
        Case {
            file: Some("drain_timeout = -1\n"),
            env: &[],
            args: &[],
            says: "nightshift.toml: drain_timeout: must be at least 0",
        },
        Case {
            file: Some("bind = \"127.0.0.1:0\"\nconcurrency = \n"),
            env: &[],
            args: &[],
            says: "nightshift.toml: line 2, column 15:",
        },
        Case {
            // The environment is checked even when the file is fine.
            file: Some("concurrency = 2\n"),
            env: &[("NIGHTSHIFT_CONCURRENCY", "0")],
            args: &[],
            says: "NIGHTSHIFT_CONCURRENCY: must be at least 1",
        },
        Case {
            file: None,
            env: &[("NIGHTSHIFT_LOG_FORMAT", "yaml")],
            args: &[],
            says: "NIGHTSHIFT_LOG_FORMAT: expected \"text\" or \"json\", found \"yaml\"",
        },
        Case {
            file: None,
            env: &[("NIGHTSHIFT_NO_WORKERS", "maybe")],
            args: &[],
            says: "NIGHTSHIFT_NO_WORKERS: expected true or false, found \"maybe\"",
        },
        Case {
            file: None,
            env: &[],
            args: &["--bind", "not-an-address"],
            says: "--bind: expected HOST:PORT",
        },
        Case {
            file: None,
            env: &[],
            args: &["--metrics-bind", "not-an-address"],
            says: "--metrics-bind: expected HOST:PORT",
        },
        Case {
            file: None,
            env: &[],
            args: &["--concurrency", "0"],
            says: "--concurrency: must be at least 1",
        },
        Case {
            file: None,
            env: &[],
            args: &["--log-format", "xml"],
            says: "--log-format: expected \"text\" or \"json\", found \"xml\"",
        },
        Case {
            // The password is never quoted back.
            file: None,
            env: &[("NIGHTSHIFT_DATABASE_URL", "mysql://root:hunter2@db/app")],
            args: &[],
            says: "NIGHTSHIFT_DATABASE_URL: unsupported database \"mysql\"",
        },
        Case {
            file: None,
            env: &[],
            args: &["--config", "missing.toml"],
            says: "--config: missing.toml: no such file",
        },
        Case {
            file: None,
            env: &[("NIGHTSHIFT_CONFIG", "missing.toml")],
            args: &[],
            says: "NIGHTSHIFT_CONFIG: missing.toml: no such file",
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = case.file {
            std::fs::write(dir.path().join("nightshift.toml"), text).unwrap();
        }
        let mut args = vec!["serve"];
        args.extend_from_slice(case.args);
        let out = run(dir.path(), &args, case.env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} {:?} {:?}: {stderr}",
            case.file,
            case.env
        );
        let expected = format!("nightshift: {}", case.says);
        assert!(
            stderr.starts_with(&expected),
            "expected {expected:?}, got {stderr:?}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != "nightshift.toml")
            .collect();
        assert!(left.is_empty(), "nothing started, yet {left:?} exists");
    }
}

#[test]
fn secrets_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let key = "ab".repeat(32);
    let env = [
        (
            "NIGHTSHIFT_DATABASE_URL",
            "postgres://app:hunter2@db.internal:5432/jobs",
        ),
        ("NIGHTSHIFT_SECRET_KEY", key.as_str()),
    ];
    let c = effective(dir.path(), &[], &env);
    assert_eq!(
        setting(&c, "database_url"),
        (
            "postgres://app:••••••@db.internal:5432/jobs".into(),
            "env NIGHTSHIFT_DATABASE_URL".into()
        )
    );
    assert_eq!(c["secret_key_in_env"], true);
    let out = run(dir.path(), &["config"], &env);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("NIGHTSHIFT_SECRET_KEY (not shown)"), "{text}");
    for printed in [text, c.to_string()] {
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains(&key), "{printed}");
    }
}

/// Retention in days: the file, the environment and a flag, each winning over the one before;
/// the defaults are 14, 90, 14 and 365 days.
#[test]
fn retention_days_come_from_file_env_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let c = effective(dir.path(), &[], &[]);
    assert_eq!(setting(&c, "retention_done_days").0, 14);
    assert_eq!(setting(&c, "retention_errors_days").0, 90);
    assert_eq!(setting(&c, "retention_cancelled_days").0, 14);
    assert_eq!(setting(&c, "retention_audit_days").0, 365);
    std::fs::write(
        dir.path().join("nightshift.toml"),
        "retention_done_days = 3\nretention_errors_days = 0\n",
    )
    .unwrap();
    let c = effective(
        dir.path(),
        &["--retention-audit-days", "30"],
        &[("NIGHTSHIFT_RETENTION_ERRORS_DAYS", "7")],
    );
    assert_eq!(
        setting(&c, "retention_done_days"),
        (3.into(), "file nightshift.toml".into())
    );
    assert_eq!(
        setting(&c, "retention_errors_days"),
        (7.into(), "env NIGHTSHIFT_RETENTION_ERRORS_DAYS".into())
    );
    assert_eq!(
        setting(&c, "retention_audit_days"),
        (30.into(), "flag --retention-audit-days".into())
    );
}
