//! `[audit]` of `switchboard.toml`: the audit trail of every tool call at every hop, where it
//! is kept and what of the arguments is never stored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::Error;

/// `[audit]`, as written. Every key is optional: the trail is on by default, in the data
/// directory's `audit.db`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `false`: no trail at all.
    pub enabled: bool,
    /// Days records are kept; older ones are deleted hourly. 0: kept forever.
    pub retention_days: u64,
    /// Argument fields never stored: a bare name (`"password"`) is that field at any depth;
    /// a path (`"$.auth.token"`, or `"auth.token"`) is that one place. Their values are
    /// replaced by `"[redacted]"` before the record leaves the call.
    pub redact: Vec<String>,
    /// `false`: only `redact` applies, not the built-in names (password, secret, token,
    /// api_key, apikey, authorization, client_secret, access_token, refresh_token).
    pub redact_common_secrets: bool,
    /// Records waiting to be written; when full, new records are dropped (counted in
    /// `switchboard_audit_records_total{outcome="dropped"}` and logged), never the call.
    pub queue_size: usize,
    /// Also append every record as one JSON line to this file, or `"stdout"`.
    pub jsonl: Option<String>,
    /// `postgres://user:password@host:port/db`: keep the trail in this PostgreSQL database
    /// (shared by every replica given the same URL) instead of `audit.db`.
    pub url: Option<secrecy::SecretString>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention_days: 90,
            redact: Vec::new(),
            redact_common_secrets: true,
            queue_size: 10_000,
            jsonl: None,
            url: None,
        }
    }
}

/// Where the JSON-lines copy of the trail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonlTarget {
    /// The process's standard output (one record per line, apart from the logs on stderr).
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

/// `[audit]`, validated.
#[derive(Debug, Clone)]
pub struct AuditSpec {
    /// Whether calls are recorded.
    pub enabled: bool,
    /// How long records are kept; `None`: forever.
    pub retention: Option<Duration>,
    /// Redaction rules.
    pub redact: Vec<RedactRule>,
    /// Whether the built-in secret names are redacted too.
    pub redact_common_secrets: bool,
    /// Capacity of the queue to the writer.
    pub queue_size: usize,
    /// The JSON-lines copy, if any.
    pub jsonl: Option<JsonlTarget>,
    /// Where records are kept.
    pub store: StoreTarget,
}

/// Where the trail is kept.
#[derive(Debug, Clone, Default)]
pub enum StoreTarget {
    /// `audit.db` in the data directory.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`[audit] url`).
    Postgres(PostgresUrl),
}

/// `[audit] url`, parsed. Its `Debug` and `Display` show where it points, never the password.
#[derive(Clone)]
pub struct PostgresUrl {
    /// The connection settings (boxed: they are large, and rarely there).
    pub config: Box<tokio_postgres::Config>,
}

impl PostgresUrl {
    /// Parses `url` (`postgres://user:password@host:port/db?sslmode=disable`, or the
    /// `host=... user=...` form).
    ///
    /// # Errors
    /// What is wrong with it, for a human; never the URL itself (it may hold a password).
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err("empty: give postgres://user:password@host:port/database".to_owned());
        }
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            format!(
                "not a PostgreSQL URL ({e}); e.g. postgres://user:password@host:5432/switchboard"
            )
        })?;
        if config.get_hosts().is_empty() {
            return Err(
                "names no host: e.g. postgres://user:password@host:5432/switchboard".to_owned(),
            );
        }
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(
                "sslmode=require: this build connects without TLS; use sslmode=disable (or \
                 prefer) over a private network, or a TLS-terminating proxy beside the gateway"
                    .to_owned(),
            );
        }
        Ok(Self {
            config: Box::new(config),
        })
    }
}

impl std::fmt::Display for PostgresUrl {
    /// `host:port/database`, for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use tokio_postgres::config::Host;
        let ports = self.config.get_ports();
        for (i, host) in self.config.get_hosts().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match host {
                Host::Tcp(name) => f.write_str(name)?,
                Host::Unix(path) => write!(f, "{}", path.display())?,
            }
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            write!(f, ":{port}")?;
        }
        write!(f, "/{}", self.config.get_dbname().unwrap_or("(default)"))
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

impl Default for AuditSpec {
    fn default() -> Self {
        // The defaults of the config are valid.
        match validate(Path::new("switchboard.toml"), AuditConfig::default()) {
            Ok(spec) => spec,
            Err(_) => Self {
                enabled: false,
                retention: None,
                redact: Vec::new(),
                redact_common_secrets: true,
                queue_size: 10_000,
                jsonl: None,
                store: StoreTarget::Sqlite,
            },
        }
    }
}

/// Checks `[audit]`.
///
/// # Errors
/// Every problem, naming `file` and the key.
pub fn validate(file: &Path, c: AuditConfig) -> Result<AuditSpec, Vec<Error>> {
    let mut errors = Vec::new();
    if c.queue_size == 0 {
        errors.push(Error::key(file, "audit.queue_size", "must be at least 1"));
    }
    let mut redact = Vec::new();
    for (i, rule) in c.redact.iter().enumerate() {
        match RedactRule::parse(rule) {
            Ok(rule) => redact.push(rule),
            Err(e) => errors.push(Error::key(file, format!("audit.redact[{i}]"), e)),
        }
    }
    let jsonl = match c.jsonl.as_deref().map(str::trim) {
        None => None,
        Some("") => {
            errors.push(Error::key(
                file,
                "audit.jsonl",
                "empty: give a file path, or \"stdout\"",
            ));
            None
        }
        Some("stdout") => Some(JsonlTarget::Stdout),
        Some(path) => Some(JsonlTarget::File(PathBuf::from(path))),
    };
    let store = match &c.url {
        None => StoreTarget::Sqlite,
        Some(url) => match PostgresUrl::parse(secrecy::ExposeSecret::expose_secret(url)) {
            Ok(url) => StoreTarget::Postgres(url),
            Err(e) => {
                errors.push(Error::key(file, "audit.url", e));
                StoreTarget::Sqlite
            }
        },
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(AuditSpec {
        enabled: c.enabled,
        retention: (c.retention_days > 0).then(|| Duration::from_secs(c.retention_days * 86_400)),
        redact,
        redact_common_secrets: c.redact_common_secrets,
        queue_size: c.queue_size,
        jsonl,
        store,
    })
}

/// One `redact` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedactRule {
    /// A field of this name, at any depth.
    Name(String),
    /// The field at this path of object keys from the arguments' top.
    Path(Vec<String>),
}

impl RedactRule {
    /// `"password"` (a name), `"$.auth.token"` or `"auth.token"` (a path).
    ///
    /// # Errors
    /// What is wrong with `text`, for a human.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let path = trimmed.strip_prefix("$.").unwrap_or(trimmed);
        if path.is_empty() || trimmed == "$" {
            return Err(format!(
                "{text:?} names no field: use a field name (\"password\") or a path (\"$.auth.token\")"
            ));
        }
        let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
        if parts.iter().any(String::is_empty) {
            return Err(format!(
                "{text:?} has an empty step: write a path as \"$.auth.token\""
            ));
        }
        if parts.len() == 1 && !trimmed.starts_with("$.") {
            Ok(Self::Name(path.to_owned()))
        } else {
            Ok(Self::Path(parts))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> Result<AuditSpec, Vec<Error>> {
        validate(
            Path::new("switchboard.toml"),
            AuditConfig {
                url: Some(url.into()),
                ..AuditConfig::default()
            },
        )
    }

    #[test]
    fn without_url_the_trail_is_audit_db() {
        let spec = validate(Path::new("switchboard.toml"), AuditConfig::default()).unwrap();
        assert!(matches!(spec.store, StoreTarget::Sqlite));
    }

    #[test]
    fn a_postgres_url_is_parsed_and_shown_without_its_password() {
        let spec =
            with_url("postgres://audit:s3cret@db.internal:6543/trail?sslmode=disable").unwrap();
        let StoreTarget::Postgres(url) = &spec.store else {
            panic!("{spec:?}");
        };
        assert_eq!(url.to_string(), "db.internal:6543/trail");
        assert_eq!(url.config.get_user(), Some("audit"));
        assert_eq!(url.config.get_password(), Some(&b"s3cret"[..]));
        let shown = format!("{url} {url:?} {spec:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn bad_urls_are_refused_naming_file_and_key_and_never_echoing_the_password() {
        for (case, url, says) in [
            ("empty", " ", "empty"),
            ("not a url", "mysql://u:s3cret@h/db", "not a PostgreSQL URL"),
            ("no host", "postgres://u:s3cret@/db", "names no host"),
            (
                "tls required",
                "postgres://u:s3cret@h/db?sslmode=require",
                "sslmode=require",
            ),
            (
                "bad port",
                "postgres://u:s3cret@h:notaport/db",
                "not a PostgreSQL URL",
            ),
        ] {
            let errors = with_url(url).unwrap_err();
            assert_eq!(errors.len(), 1, "{case}");
            let text = errors[0].to_string();
            assert!(
                text.starts_with("switchboard.toml: audit.url: "),
                "{case}: {text}"
            );
            assert!(text.contains(says), "{case}: {text}");
            assert!(!text.contains("s3cret"), "{case}: {text}");
        }
    }
}
