//! `[tools.auth]` of a `type = "mcp"` tool: how the gateway authenticates toward the upstream
//! MCP server. `none` (the default: nothing, or the static `headers`), `client_credentials`
//! (the gateway's own token) or `token_exchange` (RFC 8693: a token for the caller, obtained
//! with the caller's access token as subject). Validated key by key; the secret is never shown.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// How the gateway authenticates toward an upstream MCP server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// No token (the static `headers` may still carry a credential).
    #[default]
    None,
    /// The gateway's own access token, by the client credentials grant.
    ClientCredentials,
    /// A token for the caller, by RFC 8693 token exchange of the caller's access token.
    TokenExchange,
}

impl AuthKind {
    /// The `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::None => "none",
            AuthKind::ClientCredentials => "client_credentials",
            AuthKind::TokenExchange => "token_exchange",
        }
    }
}

/// `[tools.auth]`. One flat table (not a serde-tagged enum, which would lose the key paths of
/// errors); [`Self::validate`] says which keys a `type` needs and allows.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamAuthConfig {
    /// `none`, `client_credentials` or `token_exchange`.
    #[serde(rename = "type", default)]
    pub kind: AuthKind,
    /// The authorization server; its `token_endpoint` is found by discovery.
    pub issuer: Option<String>,
    /// The token endpoint itself, instead of `issuer`.
    pub token_url: Option<String>,
    /// The gateway's client id at the authorization server.
    pub client_id: Option<String>,
    /// Its secret (HTTP Basic, `client_secret_basic`). Never logged or shown.
    pub client_secret: Option<SecretString>,
    /// Scopes asked for (`scope`, space-separated on the wire).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The RFC 8707 resource indicator (the token's audience); default: the upstream's `url`.
    pub resource: Option<String>,
    /// RFC 8693 `audience` (a logical name of the upstream), sent besides `resource`.
    pub audience: Option<String>,
    /// `token_exchange`: most upstream sessions kept at once (one per caller's token).
    pub max_sessions: Option<usize>,
    /// `token_exchange`: a caller's session unused this long is closed.
    pub session_idle_secs: Option<u64>,
}

/// Default of `max_sessions`.
pub const DEFAULT_MAX_SESSIONS: usize = 100;
/// Default of `session_idle_secs`.
pub const DEFAULT_SESSION_IDLE_SECS: u64 = 300;

impl fmt::Debug for UpstreamAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamAuthConfig")
            .field("type", &self.kind.as_str())
            .field("issuer", &self.issuer)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("scopes", &self.scopes)
            .field("resource", &self.resource)
            .field("audience", &self.audience)
            .field("max_sessions", &self.max_sessions)
            .field("session_idle_secs", &self.session_idle_secs)
            .finish()
    }
}

impl UpstreamAuthConfig {
    /// Whether a token is obtained at all (`client_credentials` or `token_exchange`).
    pub fn uses_tokens(&self) -> bool {
        self.kind != AuthKind::None
    }

    /// Whether the table sets nothing (absent, or `type = "none"` alone).
    pub fn is_empty(&self) -> bool {
        self.kind == AuthKind::None
            && self.issuer.is_none()
            && self.token_url.is_none()
            && self.client_id.is_none()
            && self.client_secret.is_none()
            && self.scopes.is_empty()
            && self.resource.is_none()
            && self.audience.is_none()
            && self.max_sessions.is_none()
            && self.session_idle_secs.is_none()
    }

    /// Checks what serde cannot: `(key within the table, message)` pairs. A token kind needs
    /// `client_id`, `client_secret` and one of `issuer`/`token_url` (`https://`, or `http://`
    /// on loopback: the secret is sent there); `none` takes no other key; the session keys
    /// are for `token_exchange` only. Messages never include the secret.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut error = |key: &str, message: String| errors.push((key.to_owned(), message));
        let kind = self.kind.as_str();
        if self.kind == AuthKind::None {
            for (key, given) in [
                ("issuer", self.issuer.is_some()),
                ("token_url", self.token_url.is_some()),
                ("client_id", self.client_id.is_some()),
                ("client_secret", self.client_secret.is_some()),
                ("scopes", !self.scopes.is_empty()),
                ("resource", self.resource.is_some()),
                ("audience", self.audience.is_some()),
            ] {
                if given {
                    error(
                        key,
                        "applies only with type = \"client_credentials\" or \"token_exchange\""
                            .to_owned(),
                    );
                }
            }
        } else {
            match (&self.issuer, &self.token_url) {
                (None, None) => error(
                    "issuer",
                    format!(
                        "missing: type = \"{kind}\" needs the authorization server: issuer (its token_endpoint found by discovery) or token_url"
                    ),
                ),
                (Some(_), Some(_)) => {
                    error("token_url", "give issuer or token_url, not both".to_owned())
                }
                (Some(url), None) => {
                    if let Err(m) = check_endpoint(url, "an issuer") {
                        error("issuer", m);
                    }
                }
                (None, Some(url)) => {
                    if let Err(m) = check_endpoint(url, "a token endpoint") {
                        error("token_url", m);
                    }
                }
            }
            if self
                .client_id
                .as_deref()
                .is_none_or(|id| id.trim().is_empty())
            {
                error(
                    "client_id",
                    format!(
                        "missing or empty: type = \"{kind}\" needs the gateway's client id at the authorization server"
                    ),
                );
            }
            if self
                .client_secret
                .as_ref()
                .is_none_or(|s| s.expose_secret().is_empty())
            {
                error(
                    "client_secret",
                    format!("missing or empty: type = \"{kind}\" needs the client's secret"),
                );
            }
        }
        for (i, scope) in self.scopes.iter().enumerate() {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                error(
                    &format!("scopes[{i}]"),
                    format!("{scope:?} is not a scope: one scope per entry, without spaces"),
                );
            }
        }
        if let Some(resource) = &self.resource {
            match reqwest::Url::parse(resource) {
                Ok(url) if url.fragment().is_none() => {}
                _ => error(
                    "resource",
                    format!(
                        "{resource:?} is not an absolute URI without a fragment (RFC 8707), e.g. https://upstream.example.com/mcp"
                    ),
                ),
            }
        }
        if self
            .audience
            .as_deref()
            .is_some_and(|a| a.trim().is_empty())
        {
            error("audience", "must not be empty".to_owned());
        }
        for (key, value) in [
            ("max_sessions", self.max_sessions.map(|v| v as u64)),
            ("session_idle_secs", self.session_idle_secs),
        ] {
            match value {
                Some(_) if self.kind != AuthKind::TokenExchange => error(
                    key,
                    "applies only with type = \"token_exchange\" (one upstream session per caller)"
                        .to_owned(),
                ),
                Some(0) => error(key, "must be at least 1".to_owned()),
                _ => {}
            }
        }
        errors
    }
}

/// Whether `url` is `https://`, or `http://` on a loopback host (`what`: "an issuer").
fn check_endpoint(url: &str, what: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("{url:?} is not a URL ({e}): expected https://host[/path]"))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{url:?} must have no query or fragment"));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if crate::config::oauth::is_loopback(&parsed) => Ok(()),
        "http" => Err(format!(
            "{url:?} uses http:// on a host that is not loopback: {what} must be https:// (http:// only on 127.0.0.1, [::1] or localhost, for a local identity provider)"
        )),
        other => Err(format!("{url:?} has scheme {other:?}: expected https://")),
    }
}
