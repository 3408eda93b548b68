//! The examples run: `minimal` and `enqueue_only` to completion, `embed` as a server on port 0
//! driven over HTTP through its own sign-in, signup and the admin it mounts.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;

use crate::helpers::temp_db;

/// The directory of the example binaries, `<target>/<profile>/examples`, next to the binary
/// under test. `cargo test` builds the examples but `cargo test --test it` does not, and either
/// may leave them older than their sources: build them here once per run (a no-op when they are
/// up to date), into the same target directory and profile as this test.
fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = Path::new(env!("CARGO_BIN_EXE_nightshift"));
        let profile_dir = exe.parent().expect("the binary's directory");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a profile directory");
        let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or(env!("CARGO").into()));
        cargo
            .args([
                "build",
                "--examples",
                "--package",
                "nightshift",
                "--manifest-path",
            ])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        match profile {
            "debug" => {}
            "release" => {
                cargo.arg("--release");
            }
            other => {
                cargo.args(["--profile", other]);
            }
        }
        // `<target>/<profile>`, or `<target>/<triple>/<profile>` when built with `--target`;
        // cargo marks the target directory with a CACHEDIR.TAG.
        let above = profile_dir.parent().expect("the target directory");
        match above.parent() {
            Some(target) if !above.join("CACHEDIR.TAG").exists() => {
                let triple = above.file_name().and_then(|n| n.to_str()).unwrap();
                cargo
                    .arg("--target-dir")
                    .arg(target)
                    .args(["--target", triple]);
            }
            _ => {
                cargo.arg("--target-dir").arg(above);
            }
        }
        let out = cargo.output().expect("cargo runs");
        assert!(
            out.status.success(),
            "cargo build --examples failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir.join("examples")
    })
}

fn example(name: &str) -> Command {
    let path = examples_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let mut cmd = Command::new(path);
    cmd.env_remove("NIGHTSHIFT_DATABASE_URL")
        .env_remove("EMBED_BIND")
        .env_remove("EMBED_PASSWORD")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A running example: killed when dropped (also when the test panics), with what it has
/// written so far.
struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd.spawn().expect("the example starts");
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let keep = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let err = child.stderr.take().unwrap();
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        Running {
            child,
            stdout,
            stderr,
            lines,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The first stdout line starting with `prefix`, without it.
    fn wait_line(&self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(_) => panic!(
                    "no line starting with {prefix:?}; stdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                ),
            }
        }
    }

    /// Waits up to `limit` for the process to exit; then lets the output readers finish.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader threads end at the pipes' end of file.
                while self.lines.recv_timeout(Duration::from_secs(2)).is_ok() {}
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs to completion within `limit`; returns stdout, asserting a zero exit.
    fn finish(mut self, limit: Duration) -> String {
        let status = self.wait_exit(limit);
        assert!(
            status.success(),
            "exited with {status}; stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn minimal_runs_a_scheduled_job_and_exits() {
    let out = Running::start(example("minimal")).finish(Duration::from_secs(30));
    assert!(out.contains("job 1: scheduled for"), "{out}");
    assert!(out.contains("job 1: Hello, world!"), "{out}");
    assert!(out.lines().last() == Some("job 1: done"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_only_enqueues_without_running_and_names_the_bad_field() {
    let db = temp_db();
    let mut cmd = example("enqueue_only");
    cmd.env("NIGHTSHIFT_DATABASE_URL", &db.url);
    let out =
        tokio::task::spawn_blocking(move || Running::start(cmd).finish(Duration::from_secs(30)))
            .await
            .unwrap();
    assert!(out.contains("enqueued jobs [1, 2]"), "{out}");
    assert!(
        out.contains("refused: field `user_id`: invalid type"),
        "{out}"
    );
    // The jobs are in the database, waiting for a worker; the refused one is not.
    let client = nightshift::Client::connect(&db.url).await.unwrap();
    for id in [1, 2] {
        let job = client.job(id).await.unwrap();
        assert_eq!(job.job, "send_welcome_email");
        assert_eq!(job.status, nightshift::JobStatus::New);
    }
    assert!(
        client.job(3).await.is_err(),
        "the refused job was not written"
    );
}

/// Every `href`, `src` and `action` value in a page.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href", "src", "action"] {
        let needle = format!(" {attr}=\"");
        let mut rest = html;
        while let Some(i) = rest.find(&needle) {
            rest = &rest[i + needle.len()..];
            if let Some(end) = rest.find('"') {
                out.push(rest[..end].to_owned());
            }
        }
    }
    out
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_mounts_the_admin_behind_the_hosts_sign_in_and_enqueues_in_its_transaction() {
    let db = temp_db();
    let mut cmd = example("embed");
    cmd.env("NIGHTSHIFT_DATABASE_URL", &db.url)
        .env("EMBED_BIND", "127.0.0.1:0")
        .env("EMBED_PASSWORD", "correct horse battery");
    let mut app = tokio::task::spawn_blocking(move || {
        let app = Running::start(cmd);
        let addr = app.wait_line("listening on ", Duration::from_secs(60));
        (app, addr)
    })
    .await
    .unwrap();
    let base = app.1.clone();
    let url = |path: &str| format!("{base}{path}");
    let http = || {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let anonymous = http();
    let browser = http();

    // Without the host's sign-in the admin is out of reach: pages send to the host's login,
    // scripts and forms are refused.
    let res = anonymous.get(url("/admin/jobs/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(location(&res), "/admin/jobs");
    for (path, next) in [
        ("/admin/jobs", "%2Fadmin%2Fjobs"),
        ("/admin/jobs/workers", "%2Fadmin%2Fjobs%2Fworkers"),
    ] {
        let res = anonymous.get(url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&res), format!("/login?next={next}"), "{path}");
    }
    let res = anonymous
        .get(url("/admin/jobs/workers"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = anonymous
        .post(url("/admin/jobs/workers"))
        .json(&serde_json::json!({"job": "send_welcome_email", "args": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The host's own login form: a wrong password is refused, the right one comes back to
    // where the visitor was going.
    let res = browser
        .get(url("/login?next=%2Fadmin%2Fjobs%2Fworkers"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("name=\"next\" value=\"/admin/jobs/workers\""),
        "{html}"
    );
    let form = |password: &'static str| {
        [
            ("name", "alice"),
            ("password", password),
            ("next", "/admin/jobs/workers"),
        ]
    };
    let res = browser
        .post(url("/login"))
        .form(&form("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = browser
        .post(url("/login"))
        .form(&[
            ("name", "alice"),
            ("password", "correct horse battery"),
            ("next", "https://evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/", "never an open redirect");
    let res = browser
        .post(url("/login"))
        .form(&form("correct horse battery"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/admin/jobs/workers");

    // Signed in to the host, the admin answers, names the host's user, and every link stays
    // under the prefix.
    let res = browser.get(url("/admin/jobs")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/admin/jobs/dashboard");
    let res = browser
        .get(url("/admin/jobs/workers"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("alice"), "the operator is the host's user");
    let links = links(&html);
    assert!(links.len() > 5, "{links:?}");
    for link in &links {
        assert!(
            link.starts_with("/admin/jobs/") || link.starts_with('#'),
            "{link} leaves the prefix"
        );
    }
    let css = links.iter().find(|l| l.contains("/assets/")).unwrap();
    let res = browser.get(url(css)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{css}");

    // The admin's own CSRF check still guards its state changes under the host's sign-in.
    let res = browser
        .post(url("/admin/jobs/workers"))
        .form(&[("job", "send_welcome_email")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // A signup (no sign-in needed) writes the app's row and its job in one transaction; the
    // worker in the same process runs the job.
    let email = "ada@example.com";
    let res = anonymous
        .post(url("/signup"))
        .form(&[("email", email)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let page = res.text().await.unwrap();
    let jobs_of = |list: &Value| -> Vec<Value> {
        list["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["args"]["email"] == email)
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let list: Value = browser
            .get(url("/admin/jobs/workers?job=send_welcome_email"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let jobs = jobs_of(&list);
        assert_eq!(jobs.len(), 1, "{list}");
        if jobs[0]["status"] == "done" {
            break jobs[0].clone();
        }
        assert!(Instant::now() < deadline, "not done: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job["job"], "send_welcome_email");
    assert_eq!(job["label"], "Send Welcome Email");
    assert_eq!(job["created_by"], "signup");
    assert!(
        page.contains(&format!("/admin/jobs/workers/{}", job["id"])),
        "{page}"
    );
    let db_conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let row = db_conn
        .query_one_raw(Statement::from_sql_and_values(
            db_conn.get_database_backend(),
            "SELECT id FROM app_signups WHERE email = ?",
            [email.into()],
        ))
        .await
        .unwrap()
        .expect("the app's row");
    let user_id: i64 = row.try_get_by_index(0).unwrap();
    assert_eq!(job["args"]["user_id"], user_id);
    db_conn.close().await.unwrap();

    // The same address again: refused, and no second job.
    let res = anonymous
        .post(url("/signup"))
        .form(&[("email", email)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let list: Value = browser
        .get(url("/admin/jobs/workers?job=send_welcome_email"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs_of(&list).len(), 1, "{list}");

    // The host's forms refuse cross-site posts.
    let res = anonymous
        .post(url("/signup"))
        .header("origin", "https://evil.example")
        .form(&[("email", "mallory@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Signing out of the host closes the admin too.
    let res = browser.post(url("/logout")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = browser
        .get(url("/admin/jobs/workers"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/login?"));

    // Ctrl-C: it stops by itself, cleanly.
    #[cfg(unix)]
    {
        let pid = app.0.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(sent.success());
        let status = tokio::task::block_in_place(|| app.0.wait_exit(Duration::from_secs(20)));
        assert!(
            status.success(),
            "exited with {status}:\n{}",
            app.0.stderr()
        );
        assert!(app.0.stdout().ends_with("stopped"), "{}", app.0.stdout());
    }
}
