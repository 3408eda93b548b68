//! The `nightshift` binary's settings: a flag wins over the environment, the environment over
//! `nightshift.toml`, the file over the default.
//!
//! Each setting is declared once, in [`SETTINGS`]: its file key (also its clap id), flag,
//! environment variable, default and help. clap parses flags and environment into `ArgMatches`;
//! [`Config::load`] fills what neither gave from the file (`--config PATH`, `NIGHTSHIFT_CONFIG`,
//! else `./nightshift.toml` when it exists) and checks every value before anything starts, naming
//! the key and where the value came from (`nightshift.toml: concurrency: must be at least 1`).
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches};
use nightshift::DEFAULT_DATABASE_URL;

/// The file read when neither `--config` nor `NIGHTSHIFT_CONFIG` names one (missing is fine).
pub const DEFAULT_FILE: &str = "nightshift.toml";

/// One setting of the binary.
pub struct Spec {
    /// Its key in the file, and its clap id.
    pub key: &'static str,
    /// Its long flag (without `--`), if it has one.
    pub flag: Option<&'static str>,
    pub env: &'static str,
    /// `None`: a switch (a flag without a value; `true`/`false` in the environment and file).
    pub value_name: Option<&'static str>,
    /// Also what a switch is when not given (`"false"`).
    pub default: Option<&'static str>,
    pub help: &'static str,
}

/// Every setting, in the order `nightshift config` prints them.
pub const SETTINGS: &[Spec] = &[
    Spec {
        key: "database_url",
        flag: Some("database-url"),
        env: "NIGHTSHIFT_DATABASE_URL",
        value_name: Some("URL"),
        default: Some(DEFAULT_DATABASE_URL),
        help: "`sqlite://…` or `postgres://…`",
    },
    Spec {
        key: "bind",
        flag: Some("bind"),
        env: "NIGHTSHIFT_BIND",
        value_name: Some("HOST:PORT"),
        default: Some("127.0.0.1:8080"),
        help: "Address the admin listens on",
    },
    Spec {
        key: "concurrency",
        flag: Some("concurrency"),
        env: "NIGHTSHIFT_CONCURRENCY",
        value_name: Some("N"),
        default: Some("8"),
        help: "Jobs run at once on this node",
    },
    Spec {
        key: "drain_timeout",
        flag: Some("drain-timeout"),
        env: "NIGHTSHIFT_DRAIN_TIMEOUT",
        value_name: Some("SECONDS"),
        default: Some("25"),
        help: "At shutdown (SIGTERM, Ctrl-C), how many seconds running jobs may take to finish \
               before they are interrupted and go back to the queue",
    },
    Spec {
        key: "secret_key_file",
        flag: Some("secret-key-file"),
        env: nightshift::secrets::KEY_FILE_ENV,
        value_name: Some("PATH"),
        default: None,
        help: "Key file for secret job arguments (one key per line, the first encrypts). Default \
               for SQLite: `<database file>.key`, created on first start. `NIGHTSHIFT_SECRET_KEY` \
               (the key itself, hex) wins over it",
    },
    Spec {
        key: "retention_done_days",
        flag: Some("retention-done-days"),
        env: "NIGHTSHIFT_RETENTION_DONE_DAYS",
        value_name: Some("DAYS"),
        default: Some("14"),
        help: "Days a job that ended done is kept (with its log and results) before the pruner deletes it; 0 keeps it for ever",
    },
    Spec {
        key: "retention_errors_days",
        flag: Some("retention-errors-days"),
        env: "NIGHTSHIFT_RETENTION_ERRORS_DAYS",
        value_name: Some("DAYS"),
        default: Some("90"),
        help: "Days a job that ended in exception or killed is kept; 0 keeps it for ever",
    },
    Spec {
        key: "retention_cancelled_days",
        flag: Some("retention-cancelled-days"),
        env: "NIGHTSHIFT_RETENTION_CANCELLED_DAYS",
        value_name: Some("DAYS"),
        default: Some("14"),
        help: "Days a cancelled job is kept; 0 keeps it for ever",
    },
    Spec {
        key: "retention_audit_days",
        flag: Some("retention-audit-days"),
        env: "NIGHTSHIFT_RETENTION_AUDIT_DAYS",
        value_name: Some("DAYS"),
        default: Some("365"),
        help: "Days an audit log entry is kept; 0 keeps it for ever",
    },
    Spec {
        key: "no_demo",
        flag: Some("no-demo"),
        env: "NIGHTSHIFT_NO_DEMO",
        value_name: None,
        default: Some("false"),
        help: "Do not register the demo job kinds",
    },
    Spec {
        key: "no_workers",
        flag: Some("no-workers"),
        env: "NIGHTSHIFT_NO_WORKERS",
        value_name: None,
        default: Some("false"),
        help: "Serve the admin only; run no jobs on this node",
    },
    Spec {
        key: "secure_cookies",
        flag: Some("secure-cookies"),
        env: "NIGHTSHIFT_SECURE_COOKIES",
        value_name: None,
        default: Some("false"),
        help: "Mark the session cookie `Secure` (when served over HTTPS, or behind a TLS proxy)",
    },
    Spec {
        key: "metrics_bind",
        flag: Some("metrics-bind"),
        env: "NIGHTSHIFT_METRICS_BIND",
        value_name: Some("HOST:PORT"),
        default: None,
        help: "Also serve `/metrics` alone on this address (scrapers still need an API token)",
    },
    Spec {
        key: "log_format",
        flag: Some("log-format"),
        env: "NIGHTSHIFT_LOG_FORMAT",
        value_name: Some("text|json"),
        default: Some("text"),
        help: "Log lines as text, or as one JSON object per line",
    },
    Spec {
        key: "log_filter",
        flag: None,
        env: "RUST_LOG",
        value_name: Some("FILTER"),
        default: Some("info"),
        help: "Which log lines to write (tracing-subscriber's EnvFilter syntax)",
    },
];

/// The spec of `key` (a key of [`SETTINGS`]).
fn spec(key: &str) -> &'static Spec {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("no setting {key}"))
}

/// The clap argument of setting `key`: its flag, read from its environment variable as well. It
/// has no clap default: a value clap did not get is looked up in the file.
fn arg(key: &'static str) -> Arg {
    let s = spec(key);
    let flag = s.flag.expect("a setting with a flag");
    let mut help = s.help.to_owned();
    if let Some(default) = s.default.filter(|_| s.value_name.is_some()) {
        help.push_str(&format!(" [default: {default}]"));
    }
    let arg = Arg::new(key).long(flag).env(s.env).help(help);
    match s.value_name {
        Some(name) => arg.value_name(name).action(ArgAction::Set),
        // A switch: on the command line it takes no value; from the environment the text is
        // kept as it is and checked here (`NIGHTSHIFT_NO_DEMO: expected true or false, …`).
        None => arg
            .action(ArgAction::SetTrue)
            .value_parser(clap::builder::StringValueParser::new()),
    }
}

/// Declares a set of settings as a clap argument group that commands flatten. The values are
/// not kept here: [`Config::load`] reads them from the `ArgMatches`, with where they came from.
macro_rules! settings_args {
    ($(#[$meta:meta])* $name:ident: $($key:literal),+ $(,)?) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name;

        impl clap::FromArgMatches for $name {
            fn from_arg_matches(_: &ArgMatches) -> Result<Self, clap::Error> {
                Ok($name)
            }
            fn update_from_arg_matches(&mut self, _: &ArgMatches) -> Result<(), clap::Error> {
                Ok(())
            }
        }

        impl clap::Args for $name {
            fn augment_args(cmd: clap::Command) -> clap::Command {
                cmd$(.arg(arg($key)))+
            }
            fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
                Self::augment_args(cmd)
            }
        }
    };
}

settings_args!(
    /// `--database-url`.
    DbArgs: "database_url"
);
settings_args!(
    /// `--database-url`, `--secret-key-file`.
    KeyArgs: "database_url", "secret_key_file"
);
settings_args!(
    /// What a worker node takes.
    WorkerArgs: "database_url", "secret_key_file", "concurrency", "drain_timeout", "no_demo",
        "retention_done_days", "retention_errors_days", "retention_cancelled_days",
        "retention_audit_days"
);
settings_args!(
    /// What `serve` takes: a worker node's settings and the admin's.
    ServeArgs: "database_url", "secret_key_file", "concurrency", "drain_timeout", "no_demo",
        "bind", "no_workers", "secure_cookies", "metrics_bind", "retention_done_days",
        "retention_errors_days", "retention_cancelled_days", "retention_audit_days"
);

/// `--config` and `--log-format`, taken by every command.
#[derive(Clone, Copy, Debug)]
pub struct GlobalArgs;

impl clap::FromArgMatches for GlobalArgs {
    fn from_arg_matches(_: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(GlobalArgs)
    }
    fn update_from_arg_matches(&mut self, _: &ArgMatches) -> Result<(), clap::Error> {
        Ok(())
    }
}

impl clap::Args for GlobalArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.arg(
            Arg::new("config")
                .long("config")
                .env("NIGHTSHIFT_CONFIG")
                .value_name("PATH")
                .value_parser(clap::builder::OsStringValueParser::new())
                .global(true)
                .help(
                    "Settings file (TOML); it must exist. Without it, ./nightshift.toml is read \
                     if present. Flags and environment win over it",
                ),
        )
        .arg(arg("log_format").global(true))
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env(&'static str),
    File(String),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag --{flag}"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::File(path) => write!(f, "file {path}"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Clone, Debug)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// A setting refused at start-up: `<where>: <what is wrong>`, one line.
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The effective settings of this run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file read, as it was named (`None`: no file).
    pub file: Option<String>,
    pub database_url: Setting<String>,
    pub bind: Setting<String>,
    pub concurrency: Setting<usize>,
    pub drain_timeout: Setting<u64>,
    /// Days finished jobs and audit entries are kept (0: for ever), by state.
    pub retention_done_days: Setting<u64>,
    pub retention_errors_days: Setting<u64>,
    pub retention_cancelled_days: Setting<u64>,
    pub retention_audit_days: Setting<u64>,
    pub secret_key_file: Setting<Option<PathBuf>>,
    pub no_demo: Setting<bool>,
    pub no_workers: Setting<bool>,
    pub secure_cookies: Setting<bool>,
    /// Where `/metrics` is also served alone, if anywhere.
    pub metrics_bind: Setting<Option<String>>,
    pub log_format: Setting<LogFormat>,
    pub log_filter: Setting<String>,
}

impl Config {
    /// Resolves every setting from `matches` (flags and environment, as clap parsed them), the
    /// file and the defaults; `log_filter` is the default log filter of this command.
    pub fn load(matches: &ArgMatches, log_filter: &'static str) -> Result<Config, ConfigError> {
        let file = read_file(matches)?;
        let mut leaf = matches;
        while let Some((_, sub)) = leaf.subcommand() {
            leaf = sub;
        }
        let r = Resolver {
            leaf,
            top: matches,
            file: file.as_ref(),
        };
        Ok(Config {
            database_url: r.get("database_url", string_setting(database_url))?,
            bind: r.get("bind", string_setting(bind))?,
            concurrency: r.get("concurrency", count(1))?,
            drain_timeout: r.get("drain_timeout", count(0))?.map(|n| n as u64),
            retention_done_days: r.get("retention_done_days", count(0))?.map(|n| n as u64),
            retention_errors_days: r.get("retention_errors_days", count(0))?.map(|n| n as u64),
            retention_cancelled_days: r
                .get("retention_cancelled_days", count(0))?
                .map(|n| n as u64),
            retention_audit_days: r.get("retention_audit_days", count(0))?.map(|n| n as u64),
            secret_key_file: r.optional("secret_key_file", string_setting(path))?,
            no_demo: r.get("no_demo", switch())?,
            no_workers: r.get("no_workers", switch())?,
            secure_cookies: r.get("secure_cookies", switch())?,
            metrics_bind: r.optional("metrics_bind", string_setting(bind))?,
            log_format: r.get("log_format", string_setting(log_format))?,
            log_filter: r.log_filter(log_filter)?,
            file: file.map(|f| f.name),
        })
    }

    /// Whether `NIGHTSHIFT_SECRET_KEY` holds a key (it wins over `secret_key_file`).
    pub fn secret_key_in_env() -> bool {
        std::env::var(nightshift::secrets::KEY_ENV).is_ok_and(|v| !v.trim().is_empty())
    }

    /// The settings as `(key, value, source)`; a password in the database URL is masked, and
    /// the secret key itself is never among them.
    fn entries(&self) -> Vec<(&'static str, Option<toml::Value>, &Source)> {
        use toml::Value;
        let s = |v: &Setting<String>| Some(Value::String(v.value.clone()));
        let b = |v: &Setting<bool>| Some(Value::Boolean(v.value));
        vec![
            (
                "database_url",
                Some(Value::String(redact_url(&self.database_url.value))),
                &self.database_url.source,
            ),
            ("bind", s(&self.bind), &self.bind.source),
            (
                "concurrency",
                Some(Value::Integer(self.concurrency.value as i64)),
                &self.concurrency.source,
            ),
            (
                "drain_timeout",
                Some(Value::Integer(self.drain_timeout.value as i64)),
                &self.drain_timeout.source,
            ),
            (
                "retention_done_days",
                Some(Value::Integer(self.retention_done_days.value as i64)),
                &self.retention_done_days.source,
            ),
            (
                "retention_errors_days",
                Some(Value::Integer(self.retention_errors_days.value as i64)),
                &self.retention_errors_days.source,
            ),
            (
                "retention_cancelled_days",
                Some(Value::Integer(self.retention_cancelled_days.value as i64)),
                &self.retention_cancelled_days.source,
            ),
            (
                "retention_audit_days",
                Some(Value::Integer(self.retention_audit_days.value as i64)),
                &self.retention_audit_days.source,
            ),
            (
                "secret_key_file",
                self.secret_key_file
                    .value
                    .as_ref()
                    .map(|p| Value::String(p.display().to_string())),
                &self.secret_key_file.source,
            ),
            ("no_demo", b(&self.no_demo), &self.no_demo.source),
            ("no_workers", b(&self.no_workers), &self.no_workers.source),
            (
                "secure_cookies",
                b(&self.secure_cookies),
                &self.secure_cookies.source,
            ),
            (
                "metrics_bind",
                self.metrics_bind.value.clone().map(Value::String),
                &self.metrics_bind.source,
            ),
            (
                "log_format",
                Some(Value::String(self.log_format.value.to_string())),
                &self.log_format.source,
            ),
            ("log_filter", s(&self.log_filter), &self.log_filter.source),
        ]
    }

    /// The effective settings as a TOML file, each line commented with where its value came
    /// from: `nightshift config` prints it; saved as a `nightshift.toml` (with a masked password
    /// put back), it gives the same settings.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# Effective settings: flag > environment > file > default.\n");
        match &self.file {
            Some(name) => out.push_str(&format!("# Read from {name}.\n")),
            None => out.push_str(&format!("# No settings file ({DEFAULT_FILE} not found).\n")),
        }
        let lines: Vec<(String, String)> = self
            .entries()
            .into_iter()
            .map(|(key, value, source)| match value {
                Some(v) => (format!("{key} = {v}"), source.to_string()),
                None => (format!("# {key} ="), self.unset_note(key)),
            })
            .collect();
        let width = lines
            .iter()
            .map(|(l, _)| l.chars().count())
            .max()
            .unwrap_or(0);
        for (line, note) in lines {
            let pad = width - line.chars().count();
            out.push_str(&format!("{line}{:pad$}  # {note}\n", ""));
        }
        if Self::secret_key_in_env() {
            out.push_str(&format!(
                "# The secret key is set in {} (not shown); it wins over secret_key_file.\n",
                nightshift::secrets::KEY_ENV
            ));
        }
        out
    }

    /// The effective settings as JSON: `{"<key>": {"value": …, "source": "…"}, …, "file": …}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("file".into(), self.file.clone().into());
        for (key, value, source) in self.entries() {
            let value = match value {
                Some(v) => serde_json::to_value(v).unwrap_or_default(),
                None => serde_json::Value::Null,
            };
            map.insert(
                key.into(),
                serde_json::json!({ "value": value, "source": source.to_string() }),
            );
        }
        map.insert("secret_key_in_env".into(), Self::secret_key_in_env().into());
        serde_json::Value::Object(map)
    }

    /// What a setting without a value means.
    fn unset_note(&self, key: &str) -> String {
        match key {
            "secret_key_file" => {
                match nightshift::secrets::sqlite_key_path(&self.database_url.value) {
                    Some(p) => format!("default: {} (beside the SQLite database)", p.display()),
                    None => "default: none (secret arguments are stored in plain text)".into(),
                }
            }
            _ => "not set".into(),
        }
    }
}

impl<T> Setting<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Setting<U> {
        Setting {
            value: f(self.value),
            source: self.source,
        }
    }
}

/// The settings file as read.
struct File {
    /// The path as it was named (`nightshift.toml`, `/etc/nightshift.toml`).
    name: String,
    table: toml::Table,
}

/// Reads the file `--config`/`NIGHTSHIFT_CONFIG` names (it must exist), else `./nightshift.toml`
/// if there is one; refuses a syntax error and unknown keys.
fn read_file(matches: &ArgMatches) -> Result<Option<File>, ConfigError> {
    let given = matches
        .get_one::<std::ffi::OsString>("config")
        .and_then(|path| {
            let named_by = match matches.value_source("config")? {
                ValueSource::CommandLine => "--config",
                // Empty, as every other setting's variable, is unset.
                ValueSource::EnvVariable if path.is_empty() => return None,
                ValueSource::EnvVariable => "NIGHTSHIFT_CONFIG",
                _ => return None,
            };
            Some((PathBuf::from(path), named_by))
        });
    let (path, named_by) = match given {
        Some((path, by)) => (path, Some(by)),
        None if Path::new(DEFAULT_FILE).exists() => (PathBuf::from(DEFAULT_FILE), None),
        None => return Ok(None),
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let cause = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            _ => e.to_string(),
        };
        ConfigError(match named_by {
            Some(by) => format!("{by}: {name}: {cause}"),
            None => format!("{name}: cannot read: {cause}"),
        })
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                format!("line {line}, column {column}: ")
            })
            .unwrap_or_default();
        let message = e.message().trim().replace('\n', "; ");
        ConfigError(format!("{name}: {at}{message}"))
    })?;
    if let Some(key) = table.keys().find(|k| SETTINGS.iter().all(|s| s.key != *k)) {
        let known: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        return Err(ConfigError(format!(
            "{name}: {key}: unknown setting (the settings are {})",
            known.join(", ")
        )));
    }
    Ok(Some(File { name, table }))
}

/// How one setting's value is read: from text (a flag, the environment, a default) and from a
/// TOML value (the file). Errors say what is wrong; the caller adds where.
struct Parse<T> {
    text: FromText<T>,
    /// Given `text`, for values the file holds as strings.
    toml: fn(&toml::Value, FromText<T>) -> Result<T, String>,
}

type FromText<T> = fn(&str) -> Result<T, String>;

fn string_setting<T>(text: FromText<T>) -> Parse<T> {
    Parse {
        text,
        toml: |v, text| match v {
            toml::Value::String(s) => text(s),
            other => Err(format!("expected a string, found {}", describe(other))),
        },
    }
}

/// A whole number of at least `min` (0 or 1).
fn count(min: usize) -> Parse<usize> {
    fn at_least_0(s: &str) -> Result<usize, String> {
        whole_number(s, 0)
    }
    fn at_least_1(s: &str) -> Result<usize, String> {
        whole_number(s, 1)
    }
    Parse {
        text: if min == 0 { at_least_0 } else { at_least_1 },
        toml: |v, text| match v {
            toml::Value::Integer(n) => text(&n.to_string()),
            other => Err(format!(
                "expected a whole number, found {}",
                describe(other)
            )),
        },
    }
}

fn whole_number(s: &str, min: usize) -> Result<usize, String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('-')
        && rest.chars().all(|c| c.is_ascii_digit())
        && !rest.is_empty()
    {
        return Err(format!("must be at least {min}"));
    }
    let n: usize = s
        .parse()
        .map_err(|_| format!("expected a whole number, found {}", quote(s)))?;
    if n < min {
        return Err(format!("must be at least {min}"));
    }
    Ok(n)
}

fn switch() -> Parse<bool> {
    Parse {
        text: |s| match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(format!("expected true or false, found {}", quote(s))),
        },
        toml: |v, _| match v {
            toml::Value::Boolean(b) => Ok(*b),
            other => Err(format!("expected true or false, found {}", describe(other))),
        },
    }
}

fn database_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    let scheme = s.split_once(':').map(|(scheme, _)| scheme);
    match scheme {
        Some("sqlite" | "postgres" | "postgresql") => Ok(s.to_owned()),
        // Only the scheme is quoted: the rest may hold a password.
        Some(scheme) if !scheme.is_empty() && !scheme.contains(['/', '@']) => Err(format!(
            "unsupported database {}: expected sqlite://… or postgres://…",
            quote(scheme)
        )),
        _ => Err("expected a URL: sqlite://FILE?mode=rwc or postgres://USER@HOST/DATABASE".into()),
    }
}

/// `HOST:PORT`: an IP address and port, or a host name and port.
fn bind(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    let bad = || {
        format!(
            "expected HOST:PORT (e.g. 127.0.0.1:8080, 0.0.0.0:8080, [::]:8080), found {}",
            quote(s)
        )
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !host_ok || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(s.to_owned())
}

fn path(s: &str) -> Result<PathBuf, String> {
    if s.trim().is_empty() {
        return Err("expected a file path, found an empty string".into());
    }
    Ok(PathBuf::from(s))
}

fn log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("expected \"text\" or \"json\", found {}", quote(s))),
    }
}

fn log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("not a log filter ({e}), e.g. \"info\" or \"info,nightshift=debug\""))
}

/// Text quoted for an error message, cut at 60 characters.
fn quote(s: &str) -> String {
    let cut: String = s.chars().take(60).collect();
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// A TOML value's type (and the value, short), for an error message.
fn describe(v: &toml::Value) -> String {
    let kind = match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    };
    match v {
        toml::Value::Array(_) | toml::Value::Table(_) => kind.to_owned(),
        toml::Value::String(s) => format!("{kind} ({})", quote(s)),
        other => format!("{kind} ({other})"),
    }
}

/// Finds each setting's value: flag or environment (as clap parsed them), file, default.
struct Resolver<'a> {
    /// The matches of the subcommand that runs (its own flags).
    leaf: &'a ArgMatches,
    /// The top-level matches (global flags).
    top: &'a ArgMatches,
    file: Option<&'a File>,
}

impl Resolver<'_> {
    fn get<T>(&self, key: &'static str, parse: Parse<T>) -> Result<Setting<T>, ConfigError> {
        let setting = self.optional(key, parse)?;
        let value = setting
            .value
            .unwrap_or_else(|| panic!("{key} has a default"));
        Ok(Setting {
            value,
            source: setting.source,
        })
    }

    fn optional<T>(
        &self,
        key: &'static str,
        parse: Parse<T>,
    ) -> Result<Setting<Option<T>>, ConfigError> {
        let spec = spec(key);
        if let Some((text, source)) = self.given(spec) {
            let named = match &source {
                Source::Flag(flag) => format!("--{flag}"),
                Source::Env(var) => (*var).to_owned(),
                _ => unreachable!(),
            };
            let value = (parse.text)(&text).map_err(|e| ConfigError(format!("{named}: {e}")))?;
            return Ok(Setting {
                value: Some(value),
                source,
            });
        }
        if let Some(file) = self.file
            && let Some(v) = file.table.get(key)
        {
            let value = (parse.toml)(v, parse.text)
                .map_err(|e| ConfigError(format!("{}: {key}: {e}", file.name)))?;
            return Ok(Setting {
                value: Some(value),
                source: Source::File(file.name.clone()),
            });
        }
        let value = spec
            .default
            .map(|d| (parse.text)(d).unwrap_or_else(|e| panic!("default of {key}: {e}")));
        Ok(Setting {
            value,
            source: Source::Default,
        })
    }

    /// The value clap got for `spec` from a flag or the environment (an empty variable counts
    /// as unset), if this command takes it.
    fn given(&self, spec: &'static Spec) -> Option<(String, Source)> {
        [self.leaf, self.top].into_iter().find_map(|m| {
            let text = m.try_get_one::<String>(spec.key).ok().flatten()?;
            match m.value_source(spec.key)? {
                ValueSource::CommandLine => Some((text.clone(), Source::Flag(spec.flag?))),
                ValueSource::EnvVariable if text.is_empty() => None,
                ValueSource::EnvVariable => Some((text.clone(), Source::Env(spec.env))),
                _ => None,
            }
        })
    }

    /// `RUST_LOG`, else the file's `log_filter`, else this command's default.
    fn log_filter(&self, default: &'static str) -> Result<Setting<String>, ConfigError> {
        let spec = spec("log_filter");
        if let Ok(text) = std::env::var(spec.env)
            && !text.trim().is_empty()
        {
            let value = log_filter(&text).map_err(|e| ConfigError(format!("{}: {e}", spec.env)))?;
            return Ok(Setting {
                value,
                source: Source::Env(spec.env),
            });
        }
        let setting = self.optional("log_filter", string_setting(log_filter))?;
        Ok(match setting.value {
            Some(value) if setting.source != Source::Default => Setting {
                value,
                source: setting.source,
            },
            _ => Setting {
                value: default.to_owned(),
                source: Source::Default,
            },
        })
    }
}

/// `url` with the password in it (`user:PASSWORD@`, `?password=…`) replaced by `••••••`.
pub fn redact_url(url: &str) -> String {
    const MASK: &str = "••••••";
    let mut out = url.to_owned();
    if let Some(start) = url.find("://").map(|i| i + 3) {
        let rest = &url[start..];
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            out = format!("{}{}:{MASK}{}", &url[..start], &rest[..colon], &rest[at..]);
        }
    }
    if let Some((head, query)) = out.split_once('?') {
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => {
                    format!("{k}={MASK}")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}?{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_parses() {
        // `Resolver::get` panics on a default its own parser refuses; check them all here.
        assert_eq!(
            database_url(DEFAULT_DATABASE_URL).unwrap(),
            DEFAULT_DATABASE_URL
        );
        bind(spec("bind").default.unwrap()).unwrap();
        whole_number(spec("concurrency").default.unwrap(), 1).unwrap();
        whole_number(spec("drain_timeout").default.unwrap(), 0).unwrap();
        log_format(spec("log_format").default.unwrap()).unwrap();
        log_filter(spec("log_filter").default.unwrap()).unwrap();
        for key in ["no_demo", "no_workers", "secure_cookies"] {
            assert_eq!((switch().text)(spec(key).default.unwrap()), Ok(false));
        }
    }

    #[test]
    fn bind_addresses() {
        for ok in [
            "127.0.0.1:8080",
            "0.0.0.0:0",
            "[::]:8080",
            "localhost:80",
            "my-host.lan:1",
        ] {
            assert!(bind(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "8080",
            "127.0.0.1",
            "127.0.0.1:99999",
            "host:port",
            ":80",
            "a b:1",
        ] {
            assert!(bind(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(whole_number("4", 1), Ok(4));
        assert_eq!(whole_number("0", 1), Err("must be at least 1".into()));
        assert_eq!(whole_number("-3", 1), Err("must be at least 1".into()));
        assert!(whole_number("four", 1).unwrap_err().contains("\"four\""));
        assert_eq!(whole_number("0", 0), Ok(0));
    }

    #[test]
    fn database_urls_never_quote_more_than_the_scheme() {
        assert!(database_url("postgres://u:p@h/db").is_ok());
        assert!(database_url("sqlite::memory:").is_ok());
        let e = database_url("mysql://root:hunter2@db/app").unwrap_err();
        assert!(e.contains("\"mysql\"") && !e.contains("hunter2"), "{e}");
        let e = database_url("root:hunter2@db").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/app"),
            "postgres://app:••••••@db:5432/app"
        );
        assert_eq!(redact_url("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(
            redact_url("postgres://db/app?user=a&password=s3cret&sslmode=require"),
            "postgres://db/app?user=a&password=••••••&sslmode=require"
        );
        assert_eq!(redact_url(DEFAULT_DATABASE_URL), DEFAULT_DATABASE_URL);
    }
}
