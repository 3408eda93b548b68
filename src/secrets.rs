//! Secret job arguments encrypted at rest: keys and keyrings, the `nsenc:v1:` envelope, key
//! files, and key rotation.
//!
//! A kind's secret fields (schema `writeOnly: true` or `format: password`) are stored in
//! `nightshift_jobs.args` as a string envelope `nsenc:v1:<key id>:<hex nonce+ciphertext>`: the
//! field's JSON value, serialized, sealed with XChaCha20-Poly1305 under a random 24-byte nonce,
//! with the field's name as associated data (a value cannot be moved to another field). The key
//! id is the first 8 hex characters of the key's SHA-256.
//!
//! A [`Keyring`] has one primary key, which encrypts, and optionally older keys, which only
//! decrypt. Its text form (a key file, or `NIGHTSHIFT_SECRET_KEY`) is one key of 64 hex
//! characters per line, primary first; `#` starts a comment.
//!
//! ```
//! use std::collections::BTreeSet;
//! use nightshift::secrets::{Keyring, is_envelope};
//! use serde_json::json;
//!
//! let keyring = Keyring::generate();
//! let secrets = BTreeSet::from(["password".to_owned()]);
//! let args = json!({"user": "alice", "password": "hunter2"});
//! let stored = keyring.encrypt_secrets(&args, &secrets).unwrap();
//! assert!(is_envelope(&stored["password"]));
//! assert_eq!(stored["user"], "alice");
//! assert_eq!(keyring.decrypt_secrets(&stored, &secrets).unwrap(), args);
//! ```
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::entity::job;
use crate::kind::JobKind;

/// What every encrypted value starts with.
pub const ENVELOPE_PREFIX: &str = "nsenc:v1:";

/// The environment variable holding the key(s) as text; it wins over any key file.
pub const KEY_ENV: &str = "NIGHTSHIFT_SECRET_KEY";

/// The environment variable naming the key file (the `--secret-key-file` flag).
pub const KEY_FILE_ENV: &str = "NIGHTSHIFT_SECRET_KEY_FILE";

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Rows read per query while rotating.
const ROTATE_BATCH: u64 = 500;

/// What can go wrong with keys, key files and encrypted values. Messages name fields and key
/// ids, never a secret value or a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// A key's text is not 64 hex characters.
    #[error("invalid secret key: {0}")]
    InvalidKey(String),
    /// A key file or key text holds no key.
    #[error("no secret key in {0}")]
    Empty(String),
    /// A key file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The value was encrypted with a key this keyring does not have.
    #[error(
        "secret field `{field}` is encrypted with key {key_id}, which is not in this worker's keyring"
    )]
    UnknownKey {
        /// The field.
        field: String,
        /// The key id in the envelope.
        key_id: String,
    },
    /// The value is encrypted but no key is configured at all.
    #[error(
        "secret field `{field}` is encrypted with key {key_id}, but no secret key is configured"
    )]
    NoKeyring {
        /// The field.
        field: String,
        /// The key id in the envelope.
        key_id: String,
    },
    /// The value does not authenticate: wrong key, altered, or moved from another field.
    #[error(
        "secret field `{field}` does not authenticate with key {key_id} (wrong key, or the value was altered or moved from another field)"
    )]
    Unauthenticated {
        /// The field.
        field: String,
        /// The key id in the envelope.
        key_id: String,
    },
    /// The value starts like an envelope but is not one.
    #[error("secret field `{field}` holds a malformed encrypted value")]
    Malformed {
        /// The field.
        field: String,
    },
    /// The value could not be encrypted.
    #[error("secret field `{field}` could not be encrypted: {reason}")]
    Encrypt {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}

impl SecretError {
    /// The argument field concerned, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            SecretError::UnknownKey { field, .. }
            | SecretError::NoKeyring { field, .. }
            | SecretError::Unauthenticated { field, .. }
            | SecretError::Malformed { field }
            | SecretError::Encrypt { field, .. } => Some(field),
            _ => None,
        }
    }

    fn io(path: &Path, source: std::io::Error) -> Self {
        SecretError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// One 256-bit key. `Debug` shows its id only.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    bytes: [u8; 32],
    id: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

impl SecretKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// The key with these 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = Sha256::digest(bytes);
        let id = to_hex(&digest[..4]);
        SecretKey { bytes, id }
    }

    /// Reads 64 hex characters (surrounding whitespace ignored).
    ///
    /// ```
    /// use nightshift::secrets::SecretKey;
    /// let key = SecretKey::generate();
    /// let again = SecretKey::from_hex(&format!("  {}\n", key.to_hex())).unwrap();
    /// assert_eq!(again.id(), key.id());
    /// assert_eq!(key.id().len(), 8);
    /// assert!(SecretKey::from_hex("not a key").is_err());
    /// ```
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(SecretError::InvalidKey(format!(
                "expected 64 hex characters, found {}",
                text.chars().count()
            )));
        }
        let bytes =
            from_hex(text).ok_or_else(|| SecretError::InvalidKey("not hexadecimal".into()))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(Self::from_bytes(key))
    }

    /// The key as 64 hex characters (this is the secret itself).
    pub fn to_hex(&self) -> String {
        to_hex(&self.bytes)
    }

    /// The first 8 hex characters of the key's SHA-256: names the key in envelopes and messages.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.bytes.into())
    }
}

/// One primary key that encrypts, and older keys that only decrypt. `Debug` shows key ids only.
///
/// ```
/// use nightshift::secrets::{Keyring, SecretKey};
/// let old = SecretKey::generate();
/// let keyring = Keyring::new(SecretKey::generate()).with_old_key(old.clone());
/// let reread = Keyring::parse(&keyring.to_text()).unwrap();
/// assert_eq!(reread.primary_id(), keyring.primary_id());
/// assert_eq!(reread.key_ids(), vec![keyring.primary_id(), old.id()]);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<SecretKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

impl From<SecretKey> for Keyring {
    fn from(key: SecretKey) -> Self {
        Keyring::new(key)
    }
}

impl Keyring {
    /// A keyring whose primary key is `primary`.
    pub fn new(primary: SecretKey) -> Self {
        Keyring {
            keys: vec![primary],
        }
    }

    /// A keyring with one new random key.
    pub fn generate() -> Self {
        Keyring::new(SecretKey::generate())
    }

    /// Adds a key that decrypts only (a key already in the ring is not added twice).
    pub fn with_old_key(mut self, key: SecretKey) -> Self {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
        self
    }

    /// Reads key text: keys of 64 hex characters separated by newlines, commas or spaces, the
    /// first one primary; `#` starts a comment that runs to the end of its line.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let mut keys = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or(""))
            .flat_map(|line| line.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|token| !token.is_empty())
            .map(SecretKey::from_hex);
        let primary = keys
            .next()
            .ok_or_else(|| SecretError::Empty("the key text".into()))??;
        keys.try_fold(Keyring::new(primary), |ring, key| {
            Ok(ring.with_old_key(key?))
        })
    }

    /// Reads a key file (see [`Keyring::parse`]). Warns when the file is readable by others.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SecretError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| SecretError::io(path, e))?;
        warn_if_exposed(path);
        Keyring::parse(&text).map_err(|e| match e {
            SecretError::Empty(_) => SecretError::Empty(path.display().to_string()),
            SecretError::InvalidKey(why) => {
                SecretError::InvalidKey(format!("{}: {why}", path.display()))
            }
            other => other,
        })
    }

    /// The key that encrypts.
    pub fn primary(&self) -> &SecretKey {
        &self.keys[0]
    }

    /// The primary key's id.
    pub fn primary_id(&self) -> &str {
        self.keys[0].id()
    }

    /// Every key's id, primary first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(SecretKey::id).collect()
    }

    /// The keys that only decrypt.
    pub fn old_keys(&self) -> &[SecretKey] {
        &self.keys[1..]
    }

    /// The key file's text: a comment, then one key per line, primary first.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "# Nightshift secret keys: the first encrypts, the others only decrypt. Keep it secret;\n\
             # without it, encrypted job arguments cannot be read.\n",
        );
        for key in &self.keys {
            out.push_str(&key.to_hex());
            out.push('\n');
        }
        out
    }

    /// Encrypts one field's value with the primary key; the field's name is bound to it.
    ///
    /// ```
    /// use nightshift::secrets::{Keyring, SecretError, envelope_key_id};
    /// use serde_json::json;
    ///
    /// let keyring = Keyring::generate();
    /// let sealed = keyring.encrypt_value("password", &json!("hunter2")).unwrap();
    /// assert_eq!(envelope_key_id(&sealed), Some(keyring.primary_id()));
    /// assert_eq!(keyring.decrypt_value("password", &sealed).unwrap(), json!("hunter2"));
    /// // Moved to another field, it no longer opens.
    /// let moved = keyring.decrypt_value("token", &sealed).unwrap_err();
    /// assert!(matches!(moved, SecretError::Unauthenticated { .. }));
    /// ```
    pub fn encrypt_value(&self, field: &str, value: &Value) -> Result<String, SecretError> {
        let key = self.primary();
        let plain = serde_json::to_vec(value).map_err(|e| SecretError::Encrypt {
            field: field.to_owned(),
            reason: e.to_string(),
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let sealed = key
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: field.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Encrypt {
                field: field.to_owned(),
                reason: "the cipher refused the value".into(),
            })?;
        let mut out = String::with_capacity(ENVELOPE_PREFIX.len() + 9 + 2 * (24 + sealed.len()));
        out.push_str(ENVELOPE_PREFIX);
        out.push_str(key.id());
        out.push(':');
        out.push_str(&to_hex(&nonce));
        out.push_str(&to_hex(&sealed));
        Ok(out)
    }

    /// Decrypts one field's envelope back to the field's JSON value.
    pub fn decrypt_value(&self, field: &str, envelope: &str) -> Result<Value, SecretError> {
        let malformed = || SecretError::Malformed {
            field: field.to_owned(),
        };
        let (key_id, sealed) = parse_envelope(envelope).ok_or_else(malformed)?;
        let mut candidates = self.keys.iter().filter(|k| k.id() == key_id).peekable();
        if candidates.peek().is_none() {
            return Err(SecretError::UnknownKey {
                field: field.to_owned(),
                key_id: key_id.to_owned(),
            });
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| malformed())?;
        for key in candidates {
            let opened = key.cipher().decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: field.as_bytes(),
                },
            );
            if let Ok(plain) = opened {
                return serde_json::from_slice(&plain).map_err(|_| malformed());
            }
        }
        Err(SecretError::Unauthenticated {
            field: field.to_owned(),
            key_id: key_id.to_owned(),
        })
    }

    /// `args` with each field named in `secrets` encrypted. Values already encrypted and nulls
    /// are left as they are, so encrypting twice changes nothing.
    pub fn encrypt_secrets(
        &self,
        args: &Value,
        secrets: &BTreeSet<String>,
    ) -> Result<Value, SecretError> {
        let mut out = args.clone();
        if let Value::Object(map) = &mut out {
            for (name, value) in map.iter_mut() {
                if secrets.contains(name) && !value.is_null() && !is_envelope(value) {
                    *value = Value::String(self.encrypt_value(name, value)?);
                }
            }
        }
        Ok(out)
    }

    /// `args` with each encrypted field named in `secrets` decrypted. Plain values are left as
    /// they are (rows written before encryption keep working).
    pub fn decrypt_secrets(
        &self,
        args: &Value,
        secrets: &BTreeSet<String>,
    ) -> Result<Value, SecretError> {
        open(Some(self), secrets, args.clone())
    }
}

/// Whether `value` is an encrypted envelope (by its prefix).
pub fn is_envelope(value: &Value) -> bool {
    matches!(value, Value::String(s) if s.starts_with(ENVELOPE_PREFIX))
}

/// The key id an envelope names, if `text` is one.
pub fn envelope_key_id(text: &str) -> Option<&str> {
    let rest = text.strip_prefix(ENVELOPE_PREFIX)?;
    let (id, _) = rest.split_once(':')?;
    Some(id)
}

/// The envelope's key id and its nonce + ciphertext bytes.
fn parse_envelope(text: &str) -> Option<(&str, Vec<u8>)> {
    let rest = text.strip_prefix(ENVELOPE_PREFIX)?;
    let (id, hex) = rest.split_once(':')?;
    let bytes = from_hex(hex)?;
    (bytes.len() >= NONCE_LEN + TAG_LEN).then_some((id, bytes))
}

/// Decrypts the secret fields of `args` with `keyring`; without a keyring, an encrypted secret
/// field is an error (a handler must never be given an envelope as if it were the secret).
pub(crate) fn open(
    keyring: Option<&Keyring>,
    secrets: &BTreeSet<String>,
    mut args: Value,
) -> Result<Value, SecretError> {
    if let Value::Object(map) = &mut args {
        for (name, value) in map.iter_mut() {
            let Value::String(text) = value else { continue };
            if !secrets.contains(name) || !text.starts_with(ENVELOPE_PREFIX) {
                continue;
            }
            *value = match keyring {
                Some(k) => k.decrypt_value(name, text)?,
                None => {
                    return Err(SecretError::NoKeyring {
                        field: name.clone(),
                        key_id: envelope_key_id(text).unwrap_or("?").to_owned(),
                    });
                }
            };
        }
    }
    Ok(args)
}

/// Creates a key file holding `keyring`, readable and writable by its owner only (mode 0600 from
/// the moment it exists). Fails if the file exists.
pub fn create_key_file(path: impl AsRef<Path>, keyring: &Keyring) -> Result<(), SecretError> {
    let path = path.as_ref();
    let mut file = private_options()
        .create_new(true)
        .open(path)
        .map_err(|e| SecretError::io(path, e))?;
    file.write_all(keyring.to_text().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| SecretError::io(path, e))
}

/// Replaces (or creates) a key file atomically: a private temporary file beside it, then a
/// rename, so readers see the old keys or the new ones, never half a file.
pub fn write_key_file(path: impl AsRef<Path>, keyring: &Keyring) -> Result<(), SecretError> {
    let path = path.as_ref();
    let name = path
        .file_name()
        .ok_or_else(|| SecretError::io(path, std::io::ErrorKind::InvalidInput.into()))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}-{:08x}",
        name.to_string_lossy(),
        std::process::id(),
        OsRng.next_u32()
    ));
    create_key_file(&tmp, keyring)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(SecretError::io(path, e));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable; not every platform lets a directory be opened.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Reads the key file at `path`, creating it with a new key first if it does not exist. Returns
/// the keyring and whether the file was created.
///
/// ```
/// use nightshift::secrets::load_or_create_key_file;
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("jobs.db.key");
/// let (made, created) = load_or_create_key_file(&path).unwrap();
/// assert!(created);
/// let (read, created) = load_or_create_key_file(&path).unwrap();
/// assert!(!created);
/// assert_eq!(read.primary_id(), made.primary_id());
/// ```
pub fn load_or_create_key_file(path: impl AsRef<Path>) -> Result<(Keyring, bool), SecretError> {
    let path = path.as_ref();
    match Keyring::from_file(path) {
        Err(SecretError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let keyring = Keyring::generate();
            match create_key_file(path, &keyring) {
                Ok(()) => Ok((keyring, true)),
                // Another process created it first: use theirs.
                Err(SecretError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    Ok((Keyring::from_file(path)?, false))
                }
                Err(e) => Err(e),
            }
        }
        other => other.map(|k| (k, false)),
    }
}

fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn warn_if_exposed(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "secret key file {} is readable by others (mode {:o}); run `chmod 600` on it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The default key file for a SQLite database URL: the database file's path with `.key` added
/// (`sqlite://nightshift.db?mode=rwc` → `nightshift.db.key`). `None` for PostgreSQL and for
/// in-memory SQLite.
///
/// ```
/// use std::path::PathBuf;
/// use nightshift::secrets::sqlite_key_path;
///
/// assert_eq!(
///     sqlite_key_path("sqlite:///var/lib/app/jobs.db?mode=rwc"),
///     Some(PathBuf::from("/var/lib/app/jobs.db.key"))
/// );
/// assert_eq!(sqlite_key_path("sqlite::memory:"), None);
/// assert_eq!(sqlite_key_path("postgres://db/jobs"), None);
/// ```
pub fn sqlite_key_path(database_url: &str) -> Option<PathBuf> {
    let rest = database_url.strip_prefix("sqlite:")?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") || query.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(format!("{path}.key")))
}

/// The key file to use: `key_file` when given, else the SQLite default ([`sqlite_key_path`]).
pub fn key_file_path(database_url: &str, key_file: Option<&Path>) -> Option<PathBuf> {
    key_file
        .map(Path::to_owned)
        .or_else(|| sqlite_key_path(database_url))
}

/// The keyring the `nightshift` binary runs with: the key text in `NIGHTSHIFT_SECRET_KEY` if set;
/// else the key file `key_file` (created if missing, for SQLite only); else, for SQLite, the file
/// beside the database (created on first start). PostgreSQL without a key gives `None`: the
/// nodes must share one key, so none is made up here.
///
/// An app embedding a worker can resolve its key the same way:
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use nightshift::Worker;
///
/// let url = "sqlite://jobs.db?mode=rwc";
/// let mut builder = Worker::builder().database_url(url);
/// if let Some(keyring) = nightshift::secrets::keyring_for_url(url, None)? {
///     builder = builder.secret_key(keyring);
/// }
/// let worker = builder.build().await?;
/// # Ok(()) }
/// ```
pub fn keyring_for_url(
    database_url: &str,
    key_file: Option<&Path>,
) -> Result<Option<Keyring>, SecretError> {
    let env = std::env::var(KEY_ENV).ok().filter(|v| !v.trim().is_empty());
    resolve_keyring(env.as_deref(), database_url, key_file)
}

fn resolve_keyring(
    env_key: Option<&str>,
    database_url: &str,
    key_file: Option<&Path>,
) -> Result<Option<Keyring>, SecretError> {
    if let Some(text) = env_key {
        let keyring = Keyring::parse(text).map_err(|e| match e {
            SecretError::InvalidKey(why) => SecretError::InvalidKey(format!("{KEY_ENV}: {why}")),
            other => other,
        })?;
        tracing::info!(key = keyring.primary_id(), "secret key from {KEY_ENV}");
        return Ok(Some(keyring));
    }
    let sqlite = database_url.starts_with("sqlite:");
    let Some(path) = key_file_path(database_url, key_file) else {
        return Ok(None);
    };
    if !sqlite && !path.exists() {
        return Err(SecretError::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such key file; create it once with `nightshift secrets rotate \
                 --secret-key-file PATH` and copy it to every node",
            ),
        ));
    }
    let (keyring, created) = load_or_create_key_file(&path)?;
    if created {
        tracing::info!(
            key = keyring.primary_id(),
            "created secret key file {} (mode 0600): keep it with the database and back it up; \
             without it encrypted job arguments cannot be read",
            path.display()
        );
    } else {
        tracing::info!(
            key = keyring.primary_id(),
            "secret key from {}",
            path.display()
        );
    }
    Ok(Some(keyring))
}

/// What [`rotate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotated {
    /// The key every rewritten value is now encrypted with.
    pub key_id: String,
    /// Job rows looked at.
    pub examined: u64,
    /// Job rows rewritten.
    pub rewritten: u64,
    /// Secret values encrypted for the first time (rows from before encryption).
    pub newly_encrypted: u64,
    /// Rows left as they were because a value could not be decrypted: (job id, why).
    pub unreadable: Vec<(i64, String)>,
}

impl fmt::Display for Rotated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} job row(s) examined, {} rewritten with key {} ({} value(s) encrypted for the first time)",
            self.examined, self.rewritten, self.key_id, self.newly_encrypted
        )?;
        if !self.unreadable.is_empty() {
            write!(f, "; {} row(s) left unreadable", self.unreadable.len())?;
        }
        Ok(())
    }
}

/// Re-encrypts every job row's secrets with `keyring`'s primary key, in one transaction.
///
/// Every top-level envelope is decrypted (with any key of `keyring`) and encrypted again with
/// the primary key; a plain value in a secret field of one of `kinds` is encrypted. Rows whose
/// values cannot be decrypted are left unchanged and listed in [`Rotated::unreadable`].
///
/// ```no_run
/// # async fn demo(worker: nightshift::Worker) -> anyhow::Result<()> {
/// use std::path::Path;
/// use nightshift::secrets;
///
/// let path = Path::new("jobs.db.key");
/// // A new primary key, the file's keys kept to decrypt; saved first, so a failed rotation
/// // loses nothing (`rotate_key_file` does both steps).
/// let next = secrets::next_keyring(path)?;
/// secrets::write_key_file(path, &next)?;
/// let report = secrets::rotate(worker.connection(), &worker.kinds(), &next).await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
pub async fn rotate(
    db: &DatabaseConnection,
    kinds: &[JobKind],
    keyring: &Keyring,
) -> crate::Result<Rotated> {
    let secrets: HashMap<&str, &BTreeSet<String>> = kinds
        .iter()
        .map(|k| (k.name(), k.secrets.as_ref()))
        .collect();
    crate::store::retry_busy(|| async {
        let tx = db.begin().await?;
        let mut report = Rotated {
            key_id: keyring.primary_id().to_owned(),
            ..Rotated::default()
        };
        let mut last = 0i64;
        loop {
            let rows: Vec<(i64, String, String)> = job::Entity::find()
                .select_only()
                .columns([job::Column::Id, job::Column::Kind, job::Column::Args])
                .filter(job::Column::Id.gt(last))
                .order_by_asc(job::Column::Id)
                .limit(ROTATE_BATCH)
                .lock_exclusive()
                .into_tuple()
                .all(&tx)
                .await?;
            let Some((id, _, _)) = rows.last() else { break };
            last = *id;
            for (id, kind, args) in rows {
                report.examined += 1;
                let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(&args) else {
                    continue;
                };
                let secret = secrets.get(kind.as_str());
                let mut changed = false;
                let mut failed = None;
                for (name, value) in map.iter_mut() {
                    let plain = match &*value {
                        Value::String(s) if s.starts_with(ENVELOPE_PREFIX) => {
                            if envelope_key_id(s) == Some(keyring.primary_id())
                                && keyring.decrypt_value(name, s).is_ok()
                            {
                                continue;
                            }
                            match keyring.decrypt_value(name, s) {
                                Ok(v) => v,
                                Err(e) => {
                                    failed = Some(e.to_string());
                                    break;
                                }
                            }
                        }
                        Value::Null => continue,
                        v if secret.is_some_and(|s| s.contains(name)) => {
                            report.newly_encrypted += 1;
                            v.clone()
                        }
                        _ => continue,
                    };
                    match keyring.encrypt_value(name, &plain) {
                        Ok(sealed) => {
                            *value = Value::String(sealed);
                            changed = true;
                        }
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                if let Some(why) = failed {
                    report.unreadable.push((id, why));
                    continue;
                }
                if changed {
                    let text = Value::Object(map).to_string();
                    job::Entity::update_many()
                        .col_expr(job::Column::Args, Expr::value(text))
                        .filter(job::Column::Id.eq(id))
                        .exec(&tx)
                        .await?;
                    report.rewritten += 1;
                }
            }
        }
        tx.commit().await?;
        Ok(report)
    })
    .await
}

/// SQLite keeps the bytes of rewritten rows in free pages and in its write-ahead log: after
/// encrypting rows that held plain secrets, this rewrites the whole file (`VACUUM`) and empties
/// the log so the plain values are gone from disk. Returns whether the log could be emptied
/// (another process reading at that moment can prevent it). Does nothing on PostgreSQL.
pub async fn scrub_sqlite(db: &DatabaseConnection) -> crate::Result<bool> {
    if db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        return Ok(true);
    }
    let checkpoint = || async {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                "PRAGMA wal_checkpoint(TRUNCATE)",
            ))
            .await?;
        // (busy, log frames, checkpointed frames): busy 0 means it completed.
        Ok::<_, crate::Error>(match row {
            Some(r) => r.try_get_by_index::<i64>(0)? == 0,
            None => true,
        })
    };
    checkpoint().await?;
    crate::store::retry_busy(|| async {
        db.execute_unprepared("VACUUM").await?;
        Ok(())
    })
    .await?;
    checkpoint().await
}

/// How many job rows (and recurring schedules) hold a value encrypted with each key id.
pub async fn key_usage<C: ConnectionTrait>(db: &C) -> crate::Result<BTreeMap<String, u64>> {
    let mut usage = BTreeMap::new();
    let mut last = 0i64;
    loop {
        let rows: Vec<(i64, String)> = job::Entity::find()
            .select_only()
            .columns([job::Column::Id, job::Column::Args])
            .filter(job::Column::Id.gt(last))
            .filter(job::Column::Args.contains(ENVELOPE_PREFIX))
            .order_by_asc(job::Column::Id)
            .limit(ROTATE_BATCH)
            .into_tuple()
            .all(db)
            .await?;
        let Some((id, _)) = rows.last() else { break };
        last = *id;
        for (_, args) in rows {
            let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&args) else {
                continue;
            };
            let ids: BTreeSet<&str> = map
                .values()
                .filter_map(Value::as_str)
                .filter_map(envelope_key_id)
                .collect();
            for id in ids {
                *usage.entry(id.to_owned()).or_insert(0) += 1;
            }
        }
    }
    // Recurring schedules keep their jobs' arguments sealed the same way: their keys are in
    // use too (`rotate` leaves them as they are; they stay readable while their key is kept).
    let schedules: Vec<String> = crate::entity::recurring::Entity::find()
        .select_only()
        .column(crate::entity::recurring::Column::Args)
        .filter(crate::entity::recurring::Column::Args.contains(ENVELOPE_PREFIX))
        .into_tuple()
        .all(db)
        .await?;
    for args in schedules {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&args) else {
            continue;
        };
        let ids: BTreeSet<&str> = map
            .values()
            .filter_map(Value::as_str)
            .filter_map(envelope_key_id)
            .collect();
        for id in ids {
            *usage.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    Ok(usage)
}

/// What `nightshift secrets rotate` did.
#[derive(Debug, Clone)]
pub enum KeyFileChange {
    /// A new primary key was made and the rows re-encrypted with it.
    Rotated {
        /// The key file written.
        path: PathBuf,
        /// The old keys kept, decrypt-only.
        kept: Vec<String>,
        /// The rows' side.
        rows: Rotated,
    },
    /// Old keys no row uses any more were dropped from the key file.
    Retired {
        /// The key file written.
        path: PathBuf,
        /// The keys dropped.
        dropped: Vec<String>,
        /// The old keys kept because rows still use them.
        kept: Vec<String>,
    },
}

impl fmt::Display for KeyFileChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileChange::Rotated { path, kept, rows } => {
                writeln!(f, "{rows}")?;
                for (id, why) in rows.unreadable.iter().take(10) {
                    writeln!(f, "  job {id} left as it was: {why}")?;
                }
                write!(
                    f,
                    "key file {} now holds key {} (primary)",
                    path.display(),
                    rows.key_id
                )?;
                if !kept.is_empty() {
                    write!(f, " and {} (decrypt only)", kept.join(", "))?;
                }
                write!(
                    f,
                    "\nrestart every node (and copy the key file to each) so they use the new key"
                )
            }
            KeyFileChange::Retired {
                path,
                dropped,
                kept,
            } => {
                if dropped.is_empty() {
                    write!(f, "no old key dropped from {}", path.display())?;
                } else {
                    write!(
                        f,
                        "dropped key(s) {} from {}",
                        dropped.join(", "),
                        path.display()
                    )?;
                }
                if !kept.is_empty() {
                    write!(f, "; still in use: {}", kept.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// The keyring a rotation moves to: a new primary key, and every key of the key file at `path`
/// (if it exists) after it, decrypt-only.
pub fn next_keyring(path: &Path) -> Result<Keyring, SecretError> {
    let old = match Keyring::from_file(path) {
        Ok(k) => Some(k),
        Err(SecretError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            None
        }
        Err(e) => return Err(e),
    };
    let mut next = Keyring::generate();
    for key in old.iter().flat_map(|k| k.keys.iter()) {
        next = next.with_old_key(key.clone());
    }
    Ok(next)
}

/// `nightshift secrets rotate`: writes `keyring` (see [`next_keyring`]) to the key file at
/// `path`, then re-encrypts every row with it ([`rotate`]).
///
/// The key file is written first: should the database part fail, the file still holds every old
/// key and nothing is lost; the other way round, a failed write after the commit would leave
/// rows that no key file can read.
pub async fn rotate_key_file(
    db: &DatabaseConnection,
    kinds: &[JobKind],
    path: &Path,
    keyring: &Keyring,
) -> anyhow::Result<KeyFileChange> {
    write_key_file(path, keyring)?;
    let rows = rotate(db, kinds, keyring).await?;
    if rows.newly_encrypted > 0 && !scrub_sqlite(db).await? {
        tracing::warn!(
            "the database's write-ahead log could not be emptied (another process was reading); \
             plain secrets may stay in it until its next checkpoint"
        );
    }
    Ok(KeyFileChange::Rotated {
        path: path.to_owned(),
        kept: keyring.old_keys().iter().map(|k| k.id.clone()).collect(),
        rows,
    })
}

/// `nightshift secrets rotate --retire`: drops from the key file at `path` the old keys that no
/// job row uses. Run it once every node runs with the rotated key file (a node still encrypting
/// with an old key would write rows nobody can read once that key is dropped).
pub async fn retire_keys(db: &DatabaseConnection, path: &Path) -> anyhow::Result<KeyFileChange> {
    let keyring = Keyring::from_file(path)?;
    let usage = key_usage(db).await?;
    let (kept, dropped): (Vec<&SecretKey>, Vec<&SecretKey>) = keyring
        .old_keys()
        .iter()
        .partition(|k| usage.contains_key(k.id()));
    let mut next = Keyring::new(keyring.primary().clone());
    for key in &kept {
        next = next.with_old_key((*key).clone());
    }
    if !dropped.is_empty() {
        write_key_file(path, &next)?;
    }
    Ok(KeyFileChange::Retired {
        path: path.to_owned(),
        dropped: dropped.iter().map(|k| k.id.clone()).collect(),
        kept: kept.iter().map(|k| k.id.clone()).collect(),
    })
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secrets() -> BTreeSet<String> {
        BTreeSet::from(["password".to_owned(), "pin".to_owned()])
    }

    #[test]
    fn key_ids_are_the_first_8_hex_of_sha256() {
        let key = SecretKey::from_bytes([0u8; 32]);
        // sha256 of 32 zero bytes: 66687aadf862bd77…
        assert_eq!(key.id(), "66687aad");
        assert_eq!(SecretKey::from_hex(&key.to_hex()).unwrap(), key);
        assert!(!format!("{key:?}").contains(&key.to_hex()));
    }

    #[test]
    fn bad_key_text_is_refused() {
        assert!(SecretKey::from_hex("abcd").is_err());
        assert!(SecretKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(matches!(
            Keyring::parse("# only a comment\n\n"),
            Err(SecretError::Empty(_))
        ));
    }

    #[test]
    fn key_text_allows_comments_and_keeps_order() {
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let text = format!(
            "# keys\n{}  # primary\n\n{}\n",
            a.to_hex(),
            b.to_hex().to_uppercase()
        );
        let ring = Keyring::parse(&text).unwrap();
        assert_eq!(ring.key_ids(), vec![a.id(), b.id()]);
        let env = Keyring::parse(&format!("{},{}", a.to_hex(), b.to_hex())).unwrap();
        assert_eq!(env, ring);
    }

    #[test]
    fn round_trip_for_strings_and_other_values() {
        let ring = Keyring::generate();
        let args = json!({"user": "u", "password": "hunter2", "pin": 1234, "none": null});
        let sealed = ring.encrypt_secrets(&args, &secrets()).unwrap();
        // Only the envelopes' hex may be in the text (where "1234" can turn up by chance).
        let text = sealed.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("\"pin\":1234"), "{text}");
        let envelope = sealed["password"].as_str().unwrap();
        assert!(envelope.starts_with(&format!("nsenc:v1:{}:", ring.primary_id())));
        assert!(is_envelope(&sealed["pin"]));
        assert_eq!(sealed["user"], "u");
        assert_eq!(ring.decrypt_secrets(&sealed, &secrets()).unwrap(), args);
    }

    #[test]
    fn nonces_are_random() {
        let ring = Keyring::generate();
        let a = ring.encrypt_value("password", &json!("x")).unwrap();
        let b = ring.encrypt_value("password", &json!("x")).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn encrypting_is_idempotent_and_plain_values_decrypt_as_themselves() {
        let ring = Keyring::generate();
        let once = ring
            .encrypt_secrets(&json!({"password": "p"}), &secrets())
            .unwrap();
        let twice = ring.encrypt_secrets(&once, &secrets()).unwrap();
        assert_eq!(once, twice);
        let plain = json!({"password": "written before encryption"});
        assert_eq!(ring.decrypt_secrets(&plain, &secrets()).unwrap(), plain);
    }

    #[test]
    fn a_value_moved_to_another_field_does_not_authenticate() {
        let ring = Keyring::generate();
        let sealed = ring
            .encrypt_secrets(&json!({"password": "p"}), &secrets())
            .unwrap();
        let moved = json!({"pin": sealed["password"].clone()});
        let err = ring.decrypt_secrets(&moved, &secrets()).unwrap_err();
        assert!(matches!(err, SecretError::Unauthenticated { ref field, .. } if field == "pin"));
        assert!(err.to_string().contains(ring.primary_id()));
    }

    #[test]
    fn altered_values_do_not_authenticate() {
        let ring = Keyring::generate();
        let mut envelope = ring.encrypt_value("password", &json!("secret")).unwrap();
        let last = envelope.pop().unwrap();
        envelope.push(if last == '0' { '1' } else { '0' });
        let err = ring.decrypt_value("password", &envelope).unwrap_err();
        assert!(matches!(err, SecretError::Unauthenticated { .. }), "{err}");
        let err = ring
            .decrypt_value("password", "nsenc:v1:abc:00ff")
            .unwrap_err();
        assert!(matches!(err, SecretError::Malformed { .. }), "{err}");
    }

    #[test]
    fn a_missing_key_names_the_field_and_key_id_not_the_value() {
        let writer = Keyring::generate();
        let reader = Keyring::generate();
        let sealed = writer
            .encrypt_secrets(&json!({"password": "hunter2"}), &secrets())
            .unwrap();
        let err = reader.decrypt_secrets(&sealed, &secrets()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`password`") && msg.contains(writer.primary_id()),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"));
        assert_eq!(err.field(), Some("password"));
        let err = open(None, &secrets(), sealed).unwrap_err();
        assert!(matches!(err, SecretError::NoKeyring { .. }), "{err}");
    }

    #[test]
    fn old_keys_still_decrypt() {
        let old = Keyring::generate();
        let sealed = old.encrypt_value("password", &json!("p")).unwrap();
        let ring = Keyring::generate().with_old_key(old.primary().clone());
        assert_eq!(ring.decrypt_value("password", &sealed).unwrap(), json!("p"));
        let fresh = ring.encrypt_value("password", &json!("p")).unwrap();
        assert_eq!(envelope_key_id(&fresh), Some(ring.primary_id()));
    }

    #[test]
    fn sqlite_urls_give_a_key_file_beside_the_database() {
        let p = |u| sqlite_key_path(u).map(|p| p.display().to_string());
        assert_eq!(
            p("sqlite://nightshift.db?mode=rwc").as_deref(),
            Some("nightshift.db.key")
        );
        assert_eq!(
            p("sqlite:///var/lib/ns/jobs.db").as_deref(),
            Some("/var/lib/ns/jobs.db.key")
        );
        assert_eq!(p("sqlite:jobs.db").as_deref(), Some("jobs.db.key"));
        assert_eq!(p("sqlite::memory:"), None);
        assert_eq!(p("postgres://u@h/db"), None);
    }

    #[test]
    fn env_key_wins_and_postgres_gets_no_made_up_key() {
        let key = SecretKey::generate();
        let ring = resolve_keyring(Some(&key.to_hex()), "postgres://h/db", None)
            .unwrap()
            .unwrap();
        assert_eq!(ring.primary_id(), key.id());
        assert!(
            resolve_keyring(None, "postgres://h/db", None)
                .unwrap()
                .is_none()
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.key");
        assert!(resolve_keyring(None, "postgres://h/db", Some(&missing)).is_err());
        assert!(!missing.exists());
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private_and_replaced_atomically() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db.key");
        let (ring, created) = load_or_create_key_file(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = load_or_create_key_file(&path).unwrap();
        assert!(!created);
        assert_eq!(again, ring);
        let next = next_keyring(&path).unwrap();
        assert_eq!(next.old_keys(), ring.keys.as_slice());
        write_key_file(&path, &next).unwrap();
        assert_eq!(Keyring::from_file(&path).unwrap(), next);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }
}
