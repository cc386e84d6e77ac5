//! `[[tools]] type = "mcp"`: an upstream MCP server reached by URL (Streamable HTTP: headers
//! and how the gateway authenticates toward it, `[tools.auth]`, [`UpstreamAuthConfig`]) or
//! started by the gateway and spoken to over stdio (`command`, `args`, `env`, `cwd`,
//! `process`); its prefix and allow-list; validated.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use poem::http::{HeaderName, HeaderValue, Uri};
use serde::Deserialize;

use super::auth_config::UpstreamAuthConfig;

/// Headers that the MCP client sets itself; a configured value would clash with them.
const RESERVED_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "content-length",
    "host",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

/// How many processes a stdio upstream runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessMode {
    /// One process for every caller of the agent.
    #[default]
    PerAgent,
    /// One process per MCP session (for servers that keep per-client state).
    PerSession,
}

impl ProcessMode {
    /// The `process` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessMode::PerAgent => "per_agent",
            ProcessMode::PerSession => "per_session",
        }
    }
}

/// Default of `max_processes` (`process = "per_session"`).
pub const DEFAULT_MAX_PROCESSES: usize = 20;

/// `[[tools]] type = "mcp"`: exactly one of `url` and `command`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamToolConfig {
    /// The upstream server's Streamable HTTP URL, e.g. `http://localhost:9000/mcp`.
    pub url: Option<String>,
    /// The program the gateway starts and speaks MCP to over stdio, instead of `url`.
    pub command: Option<String>,
    /// `command`'s arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Variables set for `command`, besides the few it inherits (`PATH`, `HOME`, ...).
    /// Values may carry secrets: never logged or shown.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `command`'s working directory; default: the gateway's.
    pub cwd: Option<String>,
    /// `per_agent` (default: one process for every caller) or `per_session` (one per MCP
    /// session, for servers that keep per-client state).
    #[serde(default)]
    pub process: ProcessMode,
    /// `per_session`: most processes running at once. Default 20.
    pub max_processes: Option<usize>,
    /// Headers sent with every request (e.g. `Authorization = "Bearer ${TOKEN}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Prepended to every upstream tool name (e.g. `"github_"`), to avoid clashes.
    #[serde(default)]
    pub prefix: String,
    /// Only these upstream tools (names before the prefix); default: all.
    pub allow: Option<Vec<String>>,
    /// Timeout of one upstream call, in seconds. Default 60.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How the gateway authenticates toward the upstream (`[tools.auth]`); default: `none`.
    #[serde(default)]
    pub auth: UpstreamAuthConfig,
}

fn default_timeout() -> u64 {
    60
}

impl Default for UpstreamToolConfig {
    fn default() -> Self {
        Self {
            url: None,
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            process: ProcessMode::default(),
            max_processes: None,
            headers: BTreeMap::new(),
            prefix: String::new(),
            allow: None,
            timeout_secs: default_timeout(),
            auth: UpstreamAuthConfig::default(),
        }
    }
}

/// Redacts the header and `env` values: they usually carry credentials.
impl fmt::Debug for UpstreamToolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|name| (name.as_str(), "[redacted]"))
            .collect();
        let env: BTreeMap<&str, &str> = self
            .env
            .keys()
            .map(|name| (name.as_str(), "[redacted]"))
            .collect();
        f.debug_struct("UpstreamToolConfig")
            .field("url", &self.url)
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &env)
            .field("cwd", &self.cwd)
            .field("process", &self.process)
            .field("max_processes", &self.max_processes)
            .field("headers", &headers)
            .field("prefix", &self.prefix)
            .field("allow", &self.allow)
            .field("timeout_secs", &self.timeout_secs)
            .field("auth", &self.auth)
            .finish()
    }
}

impl UpstreamToolConfig {
    /// Checks what serde cannot: `(key, message)` pairs.
    ///
    /// Exactly one of `url` and `command`. `url` must be an absolute `http`/`https` URL;
    /// header names and values must be legal HTTP and not headers the MCP client sets
    /// itself; `command` must not be empty, and it, `args`, `env` and `cwd` must be what the
    /// operating system takes; the keys of one kind are refused with the other (`headers`
    /// and `[tools.auth]` with `command`; `args`, `env`, `cwd`, `process`, `max_processes`
    /// with `url`). `prefix` may only use `A-Z`, `a-z`, `0-9`, `_` and `-`; `allow`
    /// entries must not be empty; `timeout_secs` must be at least 1. Messages never include
    /// a header's or a variable's value.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        match (&self.url, &self.command) {
            (Some(url), None) => {
                self.validate_url(url, &mut errors);
                self.refuse_stdio_keys(&mut errors);
            }
            (None, Some(command)) => {
                self.validate_command(command, &mut errors);
                self.refuse_http_keys(&mut errors);
            }
            (Some(_), Some(_)) => errors.push((
                "command".to_owned(),
                "give either url (an MCP server over Streamable HTTP) or command (one the gateway starts and speaks to over stdio), not both".to_owned(),
            )),
            (None, None) => errors.push((
                "url".to_owned(),
                "missing: give url (an MCP server over Streamable HTTP) or command (one the gateway starts and speaks to over stdio)".to_owned(),
            )),
        }
        self.validate_common(&mut errors);
        errors
    }

    /// Whether the upstream is a process the gateway starts (`command`).
    pub fn is_stdio(&self) -> bool {
        self.command.is_some()
    }

    /// How logs and errors name the upstream: its URL, or its command (never its arguments
    /// or environment, which may carry credentials).
    pub fn target(&self) -> String {
        match (&self.url, &self.command) {
            (Some(url), _) => url.clone(),
            (None, Some(command)) => format!("{command:?} (stdio)"),
            (None, None) => "(no url)".to_owned(),
        }
    }

    /// Whether `other` starts the same process the same way and offers its tools the same
    /// way: a reload that keeps such an entry keeps its running processes.
    pub fn same_process(&self, other: &Self) -> bool {
        self.is_stdio()
            && self.command == other.command
            && self.args == other.args
            && self.env == other.env
            && self.cwd == other.cwd
            && self.process == other.process
            && self.max_processes == other.max_processes
            && self.prefix == other.prefix
            && self.allow == other.allow
            && self.timeout_secs == other.timeout_secs
            && other.url.is_none()
            && other.headers.is_empty()
            && other.auth.is_empty()
    }

    /// `url`'s own checks.
    fn validate_url(&self, url: &str, errors: &mut Vec<(String, String)>) {
        if let Err(message) = check_url(url) {
            errors.push(("url".to_owned(), message));
        } else if self.auth.uses_tokens()
            && let Ok(parsed) = reqwest::Url::parse(url)
            && parsed.scheme() == "http"
            && !crate::config::oauth::is_loopback(&parsed)
        {
            errors.push((
                "url".to_owned(),
                format!(
                    "{url:?} uses http:// on a host that is not loopback, and auth.type = \"{}\" sends it an access token: use https:// (http:// only on 127.0.0.1, [::1] or localhost)",
                    self.auth.kind.as_str()
                ),
            ));
        }
        let mut seen_names = std::collections::HashSet::new();
        for (name, value) in &self.headers {
            let key = format!("headers.{name}");
            if !seen_names.insert(name.to_ascii_lowercase()) {
                errors.push((
                    key,
                    format!("{name:?} is given twice (header names ignore case)"),
                ));
                continue;
            }
            match HeaderName::from_bytes(name.as_bytes()) {
                Err(_) => errors.push((key, format!("{name:?} is not a valid HTTP header name"))),
                Ok(header) if RESERVED_HEADERS.contains(&header.as_str()) => errors.push((
                    key,
                    format!("{name:?} is set by the MCP client itself and cannot be configured"),
                )),
                Ok(header) if header == poem::http::header::AUTHORIZATION && self.auth.uses_tokens() => errors.push((
                    key,
                    format!(
                        "{name:?} clashes with auth.type = \"{}\": the gateway sends the token it obtains; remove the header",
                        self.auth.kind.as_str()
                    ),
                )),
                Ok(_) => {
                    if HeaderValue::from_str(value).is_err() {
                        errors.push((
                            key,
                            "the value is not a valid HTTP header value (control characters or non-ASCII text)"
                                .to_owned(),
                        ));
                    }
                }
            }
        }
        errors.extend(
            self.auth
                .validate()
                .into_iter()
                .map(|(key, message)| (format!("auth.{key}"), message)),
        );
    }

    /// `command`'s own checks: a program, and arguments, variables and a directory the
    /// operating system can take.
    fn validate_command(&self, command: &str, errors: &mut Vec<(String, String)>) {
        let mut error = |key: String, message: &str| errors.push((key, message.to_owned()));
        if command.trim().is_empty() {
            error(
                "command".to_owned(),
                "must not be empty: the program to start, e.g. \"npx\" or \"/usr/local/bin/my-mcp-server\"",
            );
        } else if command.contains('\0') {
            error("command".to_owned(), "must not contain a NUL character");
        }
        for (i, arg) in self.args.iter().enumerate() {
            if arg.contains('\0') {
                error(format!("args[{i}]"), "must not contain a NUL character");
            }
        }
        for (name, value) in &self.env {
            let key = format!("env.{name}");
            if name.is_empty() || name.contains(['=', '\0']) {
                error(
                    key,
                    "is not a variable name: it must be non-empty, without '=' or NUL",
                );
            } else if value.contains('\0') {
                // The value may be a secret: never shown.
                error(key, "the value must not contain a NUL character");
            }
        }
        if let Some(cwd) = &self.cwd
            && (cwd.trim().is_empty() || cwd.contains('\0'))
        {
            error(
                "cwd".to_owned(),
                "must be a directory (non-empty, without NUL); leave it out for the gateway's own",
            );
        }
        match (self.process, self.max_processes) {
            (ProcessMode::PerAgent, Some(_)) => error(
                "max_processes".to_owned(),
                "applies only with process = \"per_session\" (one process per MCP session)",
            ),
            (ProcessMode::PerSession, Some(0)) => {
                error("max_processes".to_owned(), "must be at least 1");
            }
            _ => {}
        }
    }

    /// The keys of a `command` upstream, refused next to `url`.
    fn refuse_stdio_keys(&self, errors: &mut Vec<(String, String)>) {
        for (key, given) in [
            ("args", !self.args.is_empty()),
            ("env", !self.env.is_empty()),
            ("cwd", self.cwd.is_some()),
            ("process", self.process != ProcessMode::PerAgent),
            ("max_processes", self.max_processes.is_some()),
        ] {
            if given {
                errors.push((
                    key.to_owned(),
                    "applies only with command (an upstream the gateway starts over stdio), not with url".to_owned(),
                ));
            }
        }
    }

    /// The keys of a `url` upstream, refused next to `command`.
    fn refuse_http_keys(&self, errors: &mut Vec<(String, String)>) {
        if !self.headers.is_empty() {
            errors.push((
                "headers".to_owned(),
                "applies only with url: a command upstream is spoken to over stdio, not HTTP; pass its settings in env".to_owned(),
            ));
        }
        if !self.auth.is_empty() {
            errors.push((
                "auth".to_owned(),
                "[tools.auth] applies only with url: a command upstream is spoken to over stdio, where there is no token to send; pass its credentials in env".to_owned(),
            ));
        }
    }

    /// The checks of the keys both kinds share.
    fn validate_common(&self, errors: &mut Vec<(String, String)>) {
        if !self
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            errors.push((
                "prefix".to_owned(),
                format!(
                    "{:?} is not a valid tool name prefix: use only A-Z, a-z, 0-9, '_' and '-'",
                    self.prefix
                ),
            ));
        }
        if let Some(allow) = &self.allow {
            for (i, name) in allow.iter().enumerate() {
                if name.trim().is_empty() {
                    errors.push((
                        format!("allow[{i}]"),
                        "an allowed tool name must not be empty".to_owned(),
                    ));
                }
            }
        }
        if self.timeout_secs == 0 {
            errors.push((
                "timeout_secs".to_owned(),
                "must be at least 1 (seconds)".to_owned(),
            ));
        }
    }

    /// The configured headers in the client's form, values marked sensitive.
    pub(crate) fn header_map(&self) -> Result<HashMap<HeaderName, HeaderValue>, String> {
        self.headers
            .iter()
            .map(|(name, value)| {
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("header {name:?} is not a valid HTTP header name"))?;
                let mut value = HeaderValue::from_str(value).map_err(|_| {
                    format!("the value of header {name:?} is not a valid HTTP header value")
                })?;
                value.set_sensitive(true);
                Ok((header, value))
            })
            .collect()
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "{url:?} uses the {other:?} scheme: an upstream MCP server must be reached over http or https"
            ));
        }
        None => {
            return Err(format!(
                "{url:?} is not an absolute URL: write it as http://host:port/path"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "config_tests.rs"]
mod tests;
