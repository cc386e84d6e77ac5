//! `[[tools]] type = "mcp"`: an upstream MCP server's URL, headers, prefix, allow-list and
//! how the gateway authenticates toward it (`[tools.auth]`, [`UpstreamAuthConfig`]), validated.

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

/// `[[tools]] type = "mcp"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamToolConfig {
    /// The upstream server's Streamable HTTP URL, e.g. `http://localhost:9000/mcp`.
    pub url: String,
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

/// Redacts the header values: they usually carry credentials.
impl fmt::Debug for UpstreamToolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|name| (name.as_str(), "[redacted]"))
            .collect();
        f.debug_struct("UpstreamToolConfig")
            .field("url", &self.url)
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
    /// `url` must be an absolute `http`/`https` URL; header names and values must be legal
    /// HTTP and not headers the MCP client sets itself; `prefix` may only use `A-Z`, `a-z`,
    /// `0-9`, `_` and `-`; `allow` entries must not be empty; `timeout_secs` must be at
    /// least 1. Messages never include a header's value.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if let Err(message) = check_url(&self.url) {
            errors.push(("url".to_owned(), message));
        } else if self.auth.uses_tokens()
            && let Ok(url) = reqwest::Url::parse(&self.url)
            && url.scheme() == "http"
            && !crate::config::oauth::is_loopback(&url)
        {
            errors.push((
                "url".to_owned(),
                format!(
                    "{:?} uses http:// on a host that is not loopback, and auth.type = \"{}\" sends it an access token: use https:// (http:// only on 127.0.0.1, [::1] or localhost)",
                    self.url,
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
        errors.extend(
            self.auth
                .validate()
                .into_iter()
                .map(|(key, message)| (format!("auth.{key}"), message)),
        );
        if self.timeout_secs == 0 {
            errors.push((
                "timeout_secs".to_owned(),
                "must be at least 1 (seconds)".to_owned(),
            ));
        }
        errors
    }

    /// The configured headers in the client's form, values marked sensitive.
    pub(super) fn header_map(&self) -> Result<HashMap<HeaderName, HeaderValue>, String> {
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
