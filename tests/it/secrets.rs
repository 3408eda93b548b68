//! Secret job arguments encrypted at rest: nothing readable in the database file, the handler
//! gets the plain value, updates and reruns keep it, a wrong key fails the job by name only,
//! rotation, and the key files the binary makes.
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nightshift::kind::SECRET_MASK;
use nightshift::secrets::{self, Keyring, SecretKey};
use nightshift::{JobContext, JobKind, JobStatus, Worker};
use schemars::JsonSchema;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::helpers::{TestDb, builder, finished, temp_db};

const PLAIN: &str = "hunter2-plain";
const PIN: u32 = 424_242;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct VaultArgs {
    name: String,
    #[schemars(extend("writeOnly" = true))]
    secret: String,
    /// A secret that is not a string.
    #[schemars(extend("writeOnly" = true))]
    #[serde(default)]
    pin: u32,
}

/// What the `Vault` handler was given, by job id.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<i64, VaultArgs>>>);

impl Seen {
    fn get(&self, id: i64) -> Option<VaultArgs> {
        self.0.lock().unwrap().get(&id).cloned()
    }
}

/// Registers `Vault` (schedulable, one attempt): records its arguments.
fn vault(worker: &Worker) -> Seen {
    let seen = Seen::default();
    let s = seen.clone();
    worker
        .register(
            JobKind::new("Vault", move |args: VaultArgs, ctx: JobContext| {
                let s = s.clone();
                async move {
                    s.0.lock().unwrap().insert(ctx.job_id(), args);
                    Ok(())
                }
            })
            .schedulable(),
        )
        .unwrap();
    seen
}

fn args() -> Value {
    json!({"name": "n", "secret": PLAIN, "pin": PIN})
}

async fn keyed(db: &TestDb, keyring: &Keyring) -> (Worker, Seen) {
    let worker = builder(db)
        .secret_key(keyring.clone())
        .build()
        .await
        .unwrap();
    let seen = vault(&worker);
    (worker, seen)
}

async fn keyless(db: &TestDb) -> (Worker, Seen) {
    let worker = builder(db).build().await.unwrap();
    let seen = vault(&worker);
    (worker, seen)
}

fn db_path(db: &TestDb) -> PathBuf {
    let rest = db.url.strip_prefix("sqlite://").unwrap();
    PathBuf::from(rest.split('?').next().unwrap())
}

/// The `args` and `search` columns as stored.
async fn raw_row(worker: &Worker, id: i64) -> (Value, String) {
    let conn = worker.store().connection();
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "SELECT args, search FROM nightshift_jobs WHERE id = $1",
        _ => "SELECT args, search FROM nightshift_jobs WHERE id = ?",
    };
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [id.into()]))
        .await
        .unwrap()
        .expect("the job's row");
    let args: String = row.try_get_by_index(0).unwrap();
    let search: String = row.try_get_by_index(1).unwrap();
    (serde_json::from_str(&args).unwrap(), search)
}

/// Whether `needle` is anywhere in the database file or its write-ahead log.
fn in_db_files(db: &TestDb, needle: &str) -> bool {
    let path = db_path(db);
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    [path, PathBuf::from(wal)].iter().any(|p| {
        let bytes = std::fs::read(p).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

fn key_id_of(v: &Value) -> &str {
    let s = v.as_str().unwrap_or_else(|| panic!("not an envelope: {v}"));
    secrets::envelope_key_id(s).unwrap_or_else(|| panic!("not an envelope: {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_secrets_are_encrypted_at_rest_and_the_handler_gets_them_plain() {
    let db = temp_db();
    let keyring = Keyring::generate();
    let (worker, seen) = keyed(&db, &keyring).await;
    let id = worker.enqueue_dynamic("Vault", &args()).await.unwrap();

    let (raw, search) = raw_row(&worker, id).await;
    let stored = raw.to_string();
    assert!(
        !stored.contains(PLAIN) && !stored.contains(&PIN.to_string()),
        "{stored}"
    );
    assert_eq!(key_id_of(&raw["secret"]), keyring.primary_id());
    assert_eq!(key_id_of(&raw["pin"]), keyring.primary_id());
    assert_eq!(raw["name"], "n");
    assert!(
        !search.contains(PLAIN) && !search.contains("nsenc:"),
        "{search}"
    );
    assert!(
        !in_db_files(&db, PLAIN),
        "the plain secret is in the database file"
    );

    // Shown masked, never as the envelope.
    let job = worker.job(id).await.unwrap();
    assert_eq!(job.args["secret"], SECRET_MASK);
    assert_eq!(job.args["pin"], SECRET_MASK);
    let shown = serde_json::to_string(&job).unwrap();
    assert!(
        !shown.contains(PLAIN) && !shown.contains("nsenc:"),
        "{shown}"
    );

    worker.start().await.unwrap();
    let job = finished(&worker, id).await;
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    let got = seen.get(id).unwrap();
    assert_eq!((got.secret.as_str(), got.pin), (PLAIN, PIN));
    worker.shutdown().await;
    assert!(
        !in_db_files(&db, PLAIN),
        "the plain secret is in the database file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_with_the_mask_keeps_the_secret_and_a_rerun_keeps_it_too() {
    let db = temp_db();
    let keyring = Keyring::generate();
    let (worker, seen) = keyed(&db, &keyring).await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let id = worker
        .schedule_dynamic("Vault", &args(), later)
        .await
        .unwrap();

    // The form sends the mask (or nothing) back for secrets.
    let job = worker
        .update(
            id,
            json!({"name": "renamed", "secret": SECRET_MASK, "pin": ""}),
            Some(later),
        )
        .await
        .unwrap();
    assert_eq!(job.args["secret"], SECRET_MASK);
    let (raw, _) = raw_row(&worker, id).await;
    assert!(!raw.to_string().contains(PLAIN));
    assert_eq!(key_id_of(&raw["secret"]), keyring.primary_id());
    // The admin's JSON update without arguments sends the stored ones back as they are.
    worker.update(id, raw, None).await.unwrap();

    worker.start().await.unwrap();
    let job = finished(&worker, id).await;
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    let got = seen.get(id).unwrap();
    assert_eq!(got.name, "renamed");
    assert_eq!((got.secret.as_str(), got.pin), (PLAIN, PIN));

    // A new secret replaces the old one.
    let id2 = worker
        .schedule_dynamic(
            "Vault",
            &args(),
            chrono::Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    worker
        .update(
            id2,
            json!({"name": "n", "secret": "new-one", "pin": 7}),
            None,
        )
        .await
        .unwrap();
    finished(&worker, id2).await;
    let got = seen.get(id2).unwrap();
    assert_eq!((got.secret.as_str(), got.pin), ("new-one", 7));

    let rerun = worker.rerun(id, Some("tests")).await.unwrap();
    let job = finished(&worker, rerun.id).await;
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    assert_eq!(seen.get(rerun.id).unwrap().secret, PLAIN);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_wrong_key_the_job_fails_naming_the_field_and_key_not_the_value() {
    let db = temp_db();
    let right = Keyring::generate();
    let (writer, _) = keyed(&db, &right).await;
    let id = writer.enqueue_dynamic("Vault", &args()).await.unwrap();
    // Validation of an update must not choke on what it cannot decrypt either.
    let wrong = Keyring::generate();
    let (runner, seen) = keyed(&db, &wrong).await;
    let err = runner
        .update(
            id,
            json!({"name": "x", "secret": SECRET_MASK, "pin": ""}),
            None,
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`secret`") && msg.contains(right.primary_id()),
        "{msg}"
    );
    assert!(!msg.contains(PLAIN), "{msg}");

    runner.start().await.unwrap();
    let job = finished(&runner, id).await;
    assert_eq!(job.status, JobStatus::Exception, "{job:?}");
    let error = job.error.unwrap();
    assert!(error.contains("`secret`"), "{error}");
    assert!(error.contains(right.primary_id()), "{error}");
    assert!(
        !error.contains(PLAIN) && !error.contains("nsenc:"),
        "{error}"
    );
    assert!(seen.get(id).is_none(), "the handler never ran");
    let attempts = runner.attempts(id).await.unwrap();
    assert_eq!(
        attempts.last().unwrap().outcome.as_deref(),
        Some("bad_args")
    );
    runner.shutdown().await;

    // No key at all: the handler is not given the envelope as if it were the secret.
    let unkeyed = writer.enqueue_dynamic("Vault", &args()).await.unwrap();
    let (bare, seen) = keyless(&db).await;
    bare.start().await.unwrap();
    let job = finished(&bare, unkeyed).await;
    assert_eq!(job.status, JobStatus::Exception, "{job:?}");
    let error = job.error.unwrap();
    assert!(error.contains("no secret key is configured"), "{error}");
    assert!(seen.get(unkeyed).is_none());
    bare.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_secrets_are_stored_as_before_and_such_rows_still_run_with_a_key() {
    let db = temp_db();
    let (worker, seen) = keyless(&db).await;
    let id = worker.enqueue_dynamic("Vault", &args()).await.unwrap();
    let old_row = worker.enqueue_dynamic("Vault", &args()).await.unwrap();
    let (raw, search) = raw_row(&worker, id).await;
    assert_eq!(raw, args(), "stored as given");
    assert!(!search.contains(PLAIN));
    assert_eq!(worker.job(id).await.unwrap().args["secret"], SECRET_MASK);
    let job = worker
        .update(id, json!({"name": "m", "secret": "", "pin": ""}), None)
        .await
        .unwrap();
    assert_eq!(job.args["secret"], SECRET_MASK);
    assert_eq!(raw_row(&worker, id).await.0["secret"], PLAIN);
    worker.start().await.unwrap();
    assert_eq!(finished(&worker, id).await.status, JobStatus::Done);
    assert_eq!(seen.get(id).unwrap().secret, PLAIN);
    // `old_row` may have run here too; what matters next is a keyed worker reading such rows.
    worker.shutdown().await;

    let keyring = Keyring::generate();
    let (keyed_worker, seen) = keyed(&db, &keyring).await;
    let rerun = keyed_worker.rerun(old_row, None).await.unwrap();
    let (raw, _) = raw_row(&keyed_worker, rerun.id).await;
    assert_eq!(key_id_of(&raw["secret"]), keyring.primary_id());
    let plain_row = {
        // A row from before encryption, waiting: inserted by a keyless worker.
        let (w, _) = keyless(&db).await;
        w.enqueue_dynamic("Vault", &args()).await.unwrap()
    };
    keyed_worker.start().await.unwrap();
    for id in [rerun.id, plain_row] {
        assert_eq!(finished(&keyed_worker, id).await.status, JobStatus::Done);
        assert_eq!(seen.get(id).unwrap().secret, PLAIN);
    }
    keyed_worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_re_encrypts_every_row_and_old_rows_stay_readable() {
    let db = temp_db();
    let plain_id = {
        let (w, _) = keyless(&db).await;
        w.enqueue_dynamic("Vault", &args()).await.unwrap()
    };
    let old = Keyring::generate();
    let (worker, _) = keyed(&db, &old).await;
    let old_id = worker.enqueue_dynamic("Vault", &args()).await.unwrap();
    let (raw, _) = raw_row(&worker, old_id).await;
    assert_eq!(key_id_of(&raw["secret"]), old.primary_id());

    let new_key = SecretKey::generate();
    let next = Keyring::new(new_key.clone()).with_old_key(old.primary().clone());
    let conn = worker.store().connection();
    let report = secrets::rotate(conn, &worker.kinds(), &next).await.unwrap();
    assert_eq!(report.key_id, new_key.id());
    assert_eq!(report.rewritten, 2, "{report:?}");
    assert_eq!(report.newly_encrypted, 2, "the plain row's two secrets");
    assert!(report.unreadable.is_empty(), "{report:?}");
    for id in [plain_id, old_id] {
        let (raw, _) = raw_row(&worker, id).await;
        assert_eq!(key_id_of(&raw["secret"]), new_key.id());
        assert_eq!(key_id_of(&raw["pin"]), new_key.id());
    }
    let usage = secrets::key_usage(conn).await.unwrap();
    assert_eq!(usage.get(new_key.id()), Some(&2));
    assert_eq!(usage.get(old.primary_id()), None);
    // Rotating again to the same key changes nothing.
    let again = secrets::rotate(conn, &worker.kinds(), &next).await.unwrap();
    assert_eq!(again.rewritten, 0);
    // The plain row's old bytes stay in free pages and the log until they are scrubbed.
    assert!(secrets::scrub_sqlite(conn).await.unwrap());
    assert!(!in_db_files(&db, PLAIN));
    worker.shutdown().await;

    // Rows written before the rotation (with the old key) still run with the new keyring.
    let (w, _) = keyed(&db, &old).await;
    let written_before = w.enqueue_dynamic("Vault", &args()).await.unwrap();
    let (rotated, seen) = keyed(&db, &next).await;
    rotated.start().await.unwrap();
    for id in [plain_id, old_id, written_before] {
        let job = finished(&rotated, id).await;
        assert_eq!(job.status, JobStatus::Done, "{job:?}");
        let got = seen.get(id).unwrap();
        assert_eq!((got.secret.as_str(), got.pin), (PLAIN, PIN));
    }
    rotated.shutdown().await;
}

/// The binary, with no key in its environment.
fn nightshift(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(args)
        .env_remove(secrets::KEY_ENV)
        .env_remove(secrets::KEY_FILE_ENV)
        .env_remove("NIGHTSHIFT_DATABASE_URL")
        .output()
        .unwrap()
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_creates_a_private_key_file_and_rotates_it() {
    let db = temp_db();
    let key_path = PathBuf::from(format!("{}.key", db_path(&db).display()));

    // A worker node on SQLite makes the default key file on its first start.
    let mut child = Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["worker", "--no-demo", "--database-url", &db.url])
        .env_remove(secrets::KEY_ENV)
        .env_remove(secrets::KEY_FILE_ENV)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !key_path.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(key_path.exists(), "no key file at {}", key_path.display());
    assert_eq!(mode(&key_path), 0o600);
    let first = Keyring::from_file(&key_path).unwrap();

    // Rows written with the first key, and one from before encryption.
    let (w, _) = keyless(&db).await;
    let plain_id = w.enqueue_dynamic("Vault", &args()).await.unwrap();
    let (w, _) = keyed(&db, &first).await;
    let old_id = w.enqueue_dynamic("Vault", &args()).await.unwrap();

    let out = nightshift(&["secrets", "rotate", "--database-url", &db.url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated = Keyring::from_file(&key_path).unwrap();
    assert_eq!(mode(&key_path), 0o600);
    assert_ne!(rotated.primary_id(), first.primary_id());
    assert_eq!(
        rotated.key_ids()[1],
        first.primary_id(),
        "the old key is kept"
    );
    assert!(stdout.contains(rotated.primary_id()), "{stdout}");
    // Only demo kinds are known to the binary: the plain `Vault` row stays plain, the envelope
    // (whatever its kind) is re-encrypted.
    let (raw, _) = raw_row(&w, old_id).await;
    assert_eq!(key_id_of(&raw["secret"]), rotated.primary_id());
    assert_eq!(raw_row(&w, plain_id).await.0["secret"], PLAIN);

    // Once no row uses the first key, --retire drops it.
    let out = nightshift(&["secrets", "rotate", "--retire", "--database-url", &db.url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let retired = Keyring::from_file(&key_path).unwrap();
    assert_eq!(retired.key_ids(), vec![rotated.primary_id()]);
    assert_eq!(mode(&key_path), 0o600);

    // PostgreSQL has no default key file: bad usage, before any connection.
    let out = nightshift(&[
        "secrets",
        "rotate",
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(unix)]
#[test]
fn a_created_key_file_is_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.key");
    let keyring = Keyring::generate();
    secrets::create_key_file(&path, &keyring).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(Keyring::from_file(&path).unwrap(), keyring);
    assert!(
        secrets::create_key_file(&path, &keyring).is_err(),
        "an existing key file is never overwritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_secrets_are_encrypted_rotated_and_run() {
    let Some(pg) = crate::postgres::PgDb::create().await else {
        return;
    };
    let pg_builder = || {
        Worker::builder()
            .database_url(&pg.url)
            .grace_period(Duration::from_millis(300))
            .drain_timeout(Duration::from_millis(300))
    };
    let old = Keyring::generate();
    let worker = pg_builder().secret_key(old.clone()).build().await.unwrap();
    vault(&worker);
    let id = worker.enqueue_dynamic("Vault", &args()).await.unwrap();
    let (raw, search) = raw_row(&worker, id).await;
    assert!(!raw.to_string().contains(PLAIN) && !search.contains(PLAIN));
    assert_eq!(key_id_of(&raw["secret"]), old.primary_id());

    let next = Keyring::generate().with_old_key(old.primary().clone());
    let conn = worker.store().connection();
    let report = secrets::rotate(conn, &worker.kinds(), &next).await.unwrap();
    assert_eq!(report.rewritten, 1, "{report:?}");
    assert_eq!(
        key_id_of(&raw_row(&worker, id).await.0["secret"]),
        next.primary_id()
    );
    let usage = secrets::key_usage(conn).await.unwrap();
    assert_eq!(usage.get(next.primary_id()), Some(&1));
    worker.shutdown().await;

    let rotated = pg_builder().secret_key(next).build().await.unwrap();
    let seen = vault(&rotated);
    rotated.start().await.unwrap();
    let job = finished(&rotated, id).await;
    assert_eq!(job.status, JobStatus::Done, "{job:?}");
    assert_eq!(seen.get(id).unwrap().secret, PLAIN);
    rotated.shutdown().await;
    drop((worker, rotated));
    pg.drop_db().await;
}
