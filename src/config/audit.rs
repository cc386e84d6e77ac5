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
    /// `switchboard_audit_records_dropped_total` and logged), never the call.
    pub queue_size: usize,
    /// Also append every record as one JSON line to this file, or `"stdout"`.
    pub jsonl: Option<String>,
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
