//! `[auth.oauth]` of `switchboard.toml`: the gateway as an OAuth 2.1 resource server (the MCP
//! authorization spec): which issuers' access tokens it accepts, for which audience, and how
//! their claims map to a principal.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::{AgentName, Error};

/// `[auth]`: how MCP callers prove who they are, besides `[[clients]]` tokens.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `[auth.oauth]`: accept access tokens of an authorization server. None: only
    /// `[[clients]]` tokens (or open access without them).
    #[serde(default)]
    pub oauth: Option<OAuthConfig>,
}

/// `[auth.oauth]`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The authorization server's issuer identifier, or several (`["https://a", "https://b"]`):
    /// a token's `iss` says which one's keys verify it. Each one's keys are found by discovery
    /// from it (OpenID `/.well-known/openid-configuration`, else RFC 8414). `https://`, or
    /// `http://` on a loopback address only.
    pub issuer: OneOrMany,
    /// This resource's identifier: a token's `aud` must be it (or the URL of the agent it
    /// calls). Usually the gateway's public base URL.
    pub audience: String,
    /// The gateway's public base URL, for the metadata URLs it hands out. Default: the
    /// audience (which must then be an `http(s)://` URL).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Signature algorithms accepted. Default: the asymmetric ones (RS*, PS*, ES256, ES384,
    /// EdDSA). `none` and the HMAC ones are refused.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Seconds of clock difference allowed on `exp` and `nbf`. Default 60.
    #[serde(default)]
    pub clock_skew_secs: Option<u64>,
    /// Scopes every token needs, on every agent. Default: none.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Scopes a token needs on one agent, besides `required_scopes`: `servicenow = ["incidents"]`.
    #[serde(default)]
    pub agent_scopes: BTreeMap<String, Vec<String>>,
    /// Scopes advertised in the protected resource metadata. Default: the required ones.
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    /// An unknown key id refetches the issuer's key set at most once per this many seconds
    /// (a flood of forged tokens cannot hammer the authorization server). Default 30.
    #[serde(default)]
    pub jwks_refetch_cooldown_secs: Option<u64>,
    /// Seconds the key set is kept before it is fetched again. Default 3600.
    #[serde(default)]
    pub jwks_max_age_secs: Option<u64>,
    /// The gateway's client id at the authorization server, for token introspection
    /// (RFC 7662): with it, a bearer that is not a JWT is sent to the issuer's
    /// `introspection_endpoint` (found by discovery). Unset: opaque tokens are refused.
    #[serde(default)]
    pub introspection_client_id: Option<String>,
    /// Its secret (HTTP Basic authentication at the introspection endpoint). Never shown.
    #[serde(default)]
    pub introspection_client_secret: Option<secrecy::SecretString>,
    /// `true`: JWTs are introspected too (revocation is noticed), not only opaque tokens.
    /// Default `false`.
    #[serde(default)]
    pub introspect_jwts: bool,
    /// How many introspection results are kept (each until its token expires). 0: none.
    /// Default 10000.
    #[serde(default)]
    pub introspection_cache_size: Option<usize>,
    /// At most this many introspection requests per second leave this replica (a token
    /// seen before is answered from the cache and not counted); beyond it, an unknown opaque
    /// token gets 503 with `Retry-After`. Default 100.
    #[serde(default)]
    pub introspection_requests_per_second: Option<u32>,
    /// How many verified JWTs are remembered (by the token's SHA-256, until the token
    /// expires), so that a token seen before skips the signature check. 0: none. Default 10000.
    #[serde(default)]
    pub jwt_cache_size: Option<usize>,
    /// `[auth.oauth.claims]`: which claims carry the principal.
    #[serde(default)]
    pub claims: ClaimsConfig,
}

/// Token introspection (RFC 7662), validated.
#[derive(Debug, Clone)]
pub struct IntrospectionSpec {
    /// The gateway's client id at the authorization server.
    pub client_id: String,
    /// Its secret (redacted in `Debug`).
    pub client_secret: secrecy::SecretString,
    /// Whether JWTs are introspected too.
    pub all_tokens: bool,
    /// How many results are cached (and, separately, how many inactive answers).
    pub cache_size: usize,
    /// Introspection requests allowed per second.
    pub requests_per_second: std::num::NonZeroU32,
}

/// `[auth.oauth.claims]`: claim names, each a name or an array of candidate names; a
/// dotted name reads a nested claim (`realm_access.roles`) unless a claim has that very name
/// (`https://example.com/roles`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimsConfig {
    /// Who: the first of these claims the token has. Default `sub`.
    pub subject: OneOrMany,
    /// Which application: the first of these claims the token has. Default
    /// `["client_id", "azp"]` (Entra ID v1: `appid`; Okta: `cid`).
    pub client_id: OneOrMany,
    /// The scopes: every one of these claims the token has, each a space-separated string or
    /// an array. Default `scope` (Entra ID: `["scp", "roles"]`; Okta: `scp`, an array).
    pub scopes: OneOrMany,
    /// Groups or roles: every one of these claims the token has, each an array or a
    /// space-separated string. Default `groups`.
    pub groups: OneOrMany,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        let one = |n: &str| OneOrMany(vec![n.to_owned()]);
        Self {
            subject: one("sub"),
            client_id: OneOrMany(vec!["client_id".into(), "azp".into()]),
            scopes: one("scope"),
            groups: one("groups"),
        }
    }
}

/// A string or an array of strings, as written: `"sub"` or `["oid", "sub"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

impl OneOrMany {
    /// The values, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut all = Vec::new();
                while let Some(v) = seq.next_element::<String>()? {
                    all.push(v);
                }
                Ok(OneOrMany(all))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `[auth.oauth]`, validated.
#[derive(Debug, Clone)]
pub struct OAuthSpec {
    /// The issuers, as configured (a token's `iss` must equal one; the first one's
    /// introspection endpoint is asked about opaque tokens).
    pub issuers: Vec<String>,
    /// The audience.
    pub audience: String,
    /// The public base URL, without a trailing `/`.
    pub public_url: String,
    /// Accepted algorithms.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Clock skew allowed.
    pub clock_skew: Duration,
    /// Scopes needed on every agent.
    pub required_scopes: Vec<String>,
    /// Scopes needed per agent, besides those.
    pub agent_scopes: BTreeMap<String, Vec<String>>,
    /// Scopes advertised.
    pub scopes_supported: Vec<String>,
    /// Least time between two refetches for unknown key ids.
    pub jwks_refetch_cooldown: Duration,
    /// How long a fetched key set is used.
    pub jwks_max_age: Duration,
    /// Claim names.
    pub claims: ClaimsConfig,
    /// Token introspection, when configured.
    pub introspection: Option<IntrospectionSpec>,
    /// How many verified JWTs are remembered (0: none).
    pub jwt_cache_size: usize,
}

impl OAuthSpec {
    /// The scopes a token needs to call `agent`.
    pub fn scopes_for(&self, agent: &str) -> Vec<&str> {
        let mut scopes: Vec<&str> = self.required_scopes.iter().map(String::as_str).collect();
        for s in self.agent_scopes.get(agent).into_iter().flatten() {
            if !scopes.contains(&s.as_str()) {
                scopes.push(s);
            }
        }
        scopes
    }
}

/// The algorithms accepted when `algorithms` is not set.
const DEFAULT_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Validates `[auth.oauth]` of `file`.
///
/// # Errors
/// Every problem, naming `file` and the key.
pub fn validate(file: &Path, c: OAuthConfig) -> Result<OAuthSpec, Vec<Error>> {
    let mut errors = Vec::new();
    let key = |k: &str| format!("auth.oauth.{k}");
    let issuers = issuers(file, &c.issuer, &mut errors);
    let audience = c.audience.trim().to_owned();
    if audience.is_empty() {
        errors.push(Error::key(
            file,
            key("audience"),
            "must not be empty: the resource identifier tokens are issued for (the gateway's public URL)",
        ));
    }
    let public_url = match &c.public_url {
        Some(u) => {
            if let Err(e) = check_url(u, false) {
                errors.push(Error::key(file, key("public_url"), e));
            }
            u.trim_end_matches('/').to_owned()
        }
        None => {
            if !audience.is_empty() && check_url(&audience, false).is_err() {
                errors.push(Error::key(
                    file,
                    key("public_url"),
                    format!("is needed: the audience {audience:?} is not an http(s) URL, so set the gateway's public base URL here"),
                ));
            }
            audience.trim_end_matches('/').to_owned()
        }
    };
    let introspection = introspection(file, &c, &mut errors);
    let names: Vec<String> = c
        .algorithms
        .unwrap_or_else(|| DEFAULT_ALGORITHMS.map(String::from).to_vec());
    if names.is_empty() {
        errors.push(Error::key(
            file,
            key("algorithms"),
            "must name at least one algorithm",
        ));
    }
    let mut algorithms = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let at = key(&format!("algorithms[{i}]"));
        if name.eq_ignore_ascii_case("none") {
            errors.push(Error::key(
                file,
                at,
                "\"none\" (unsigned tokens) is never accepted",
            ));
        } else if name.starts_with("HS") {
            errors.push(Error::key(
                file,
                at,
                format!("{name:?} is a shared-secret algorithm; a resource server verifies with the issuer's public keys: use RS256, PS256, ES256 or EdDSA"),
            ));
        } else {
            match jsonwebtoken::Algorithm::from_str(name) {
                Ok(a) => algorithms.push(a),
                Err(_) => errors.push(Error::key(
                    file,
                    at,
                    format!(
                        "unknown algorithm {name:?}; known: {}",
                        DEFAULT_ALGORITHMS.join(", ")
                    ),
                )),
            }
        }
    }
    let mut scope_lists: Vec<(String, &Vec<String>)> =
        vec![(key("required_scopes"), &c.required_scopes)];
    for (agent, scopes) in &c.agent_scopes {
        if let Err(e) = AgentName::parse(agent) {
            errors.push(Error::key(file, key(&format!("agent_scopes.{agent}")), e));
        }
        scope_lists.push((key(&format!("agent_scopes.{agent}")), scopes));
    }
    if let Some(s) = &c.scopes_supported {
        scope_lists.push((key("scopes_supported"), s));
    }
    for (at, scopes) in &scope_lists {
        for (i, s) in scopes.iter().enumerate() {
            if s.is_empty()
                || !s
                    .bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
            {
                errors.push(Error::key(
                    file,
                    format!("{at}[{i}]"),
                    format!("{s:?} is not a scope: use visible ASCII without spaces, quotes or backslashes (RFC 6749 §3.3)"),
                ));
            }
        }
    }
    for (k, names) in [
        ("claims.subject", &c.claims.subject),
        ("claims.client_id", &c.claims.client_id),
        ("claims.scopes", &c.claims.scopes),
        ("claims.groups", &c.claims.groups),
    ] {
        if names.0.is_empty() {
            errors.push(Error::key(file, key(k), "must name at least one claim"));
        }
        for (i, name) in names.iter().enumerate() {
            if name.trim().is_empty() {
                let at = if names.0.len() == 1 {
                    key(k)
                } else {
                    key(&format!("{k}[{i}]"))
                };
                errors.push(Error::key(file, at, "must name a claim"));
            }
        }
    }
    let secs = |v: Option<u64>, default: u64| Duration::from_secs(v.unwrap_or(default));
    let jwks_max_age = secs(c.jwks_max_age_secs, 3600);
    if jwks_max_age.is_zero() {
        errors.push(Error::key(
            file,
            key("jwks_max_age_secs"),
            "must be at least 1",
        ));
    }
    let scopes_supported = c.scopes_supported.clone().unwrap_or_else(|| {
        let mut all = c.required_scopes.clone();
        for s in c.agent_scopes.values().flatten() {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
        all
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(OAuthSpec {
        issuers,
        audience,
        public_url,
        algorithms,
        clock_skew: secs(c.clock_skew_secs, 60),
        required_scopes: c.required_scopes,
        agent_scopes: c.agent_scopes,
        scopes_supported,
        jwks_refetch_cooldown: secs(c.jwks_refetch_cooldown_secs, 30),
        jwks_max_age,
        claims: c.claims,
        introspection,
        jwt_cache_size: c.jwt_cache_size.unwrap_or(10_000),
    })
}

/// The issuers of `issuer` (a string or an array), each checked; problems go to `errors`
/// naming `issuer` (one) or `issuer[i]` (an array).
fn issuers(file: &Path, issuer: &OneOrMany, errors: &mut Vec<Error>) -> Vec<String> {
    let at = |i: usize| {
        if matches!(issuer.0.as_slice(), [_]) {
            "auth.oauth.issuer".to_owned()
        } else {
            format!("auth.oauth.issuer[{i}]")
        }
    };
    if issuer.0.is_empty() {
        errors.push(Error::key(
            file,
            "auth.oauth.issuer",
            "must name at least one issuer",
        ));
    }
    for (i, url) in issuer.iter().enumerate() {
        if let Err(e) = check_url(url, true) {
            errors.push(Error::key(file, at(i), e));
        } else if issuer.0[..i]
            .iter()
            .any(|u| u.trim_end_matches('/') == url.trim_end_matches('/'))
        {
            errors.push(Error::key(file, at(i), format!("{url:?} is named twice")));
        }
    }
    issuer.0.clone()
}

/// The introspection settings of `c`, if any; problems go to `errors`.
fn introspection(
    file: &Path,
    c: &OAuthConfig,
    errors: &mut Vec<Error>,
) -> Option<IntrospectionSpec> {
    use secrecy::ExposeSecret;
    let key = |k: &str| format!("auth.oauth.{k}");
    let id = c
        .introspection_client_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let secret = c
        .introspection_client_secret
        .as_ref()
        .filter(|s| !s.expose_secret().is_empty());
    match (id, secret) {
        (Some(id), Some(secret)) => {
            let rate = c.introspection_requests_per_second.unwrap_or(100);
            let Some(requests_per_second) = std::num::NonZeroU32::new(rate) else {
                errors.push(Error::key(
                    file,
                    key("introspection_requests_per_second"),
                    "must be at least 1 (leave it out for the default, 100)",
                ));
                return None;
            };
            Some(IntrospectionSpec {
                client_id: id.to_owned(),
                client_secret: secret.clone(),
                all_tokens: c.introspect_jwts,
                cache_size: c.introspection_cache_size.unwrap_or(10_000),
                requests_per_second,
            })
        }
        (None, None) => {
            for (k, set) in [
                ("introspect_jwts", c.introspect_jwts),
                (
                    "introspection_cache_size",
                    c.introspection_cache_size.is_some(),
                ),
                (
                    "introspection_requests_per_second",
                    c.introspection_requests_per_second.is_some(),
                ),
            ] {
                if set {
                    errors.push(Error::key(
                        file,
                        key(k),
                        "needs introspection_client_id and introspection_client_secret: without them no token is introspected",
                    ));
                }
            }
            None
        }
        (Some(_), None) => {
            errors.push(Error::key(
                file,
                key("introspection_client_secret"),
                "is needed with introspection_client_id (and must not be empty): the gateway authenticates at the introspection endpoint with both",
            ));
            None
        }
        (None, Some(_)) => {
            errors.push(Error::key(
                file,
                key("introspection_client_id"),
                "is needed with introspection_client_secret (and must not be empty)",
            ));
            None
        }
    }
}

/// Whether `url` is an `https://` URL, or an `http://` one on a loopback address (`issuer`:
/// said as the issuer's rule).
fn check_url(url: &str, issuer: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("{url:?} is not a URL ({e}): expected https://host[/path]"))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{url:?} must have no query or fragment"));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        "http" if !issuer => Ok(()),
        "http" => Err(format!(
            "{url:?} uses http:// on a host that is not loopback: an issuer must be https:// (http:// only on 127.0.0.1, [::1] or localhost, for a local identity provider)"
        )),
        other => Err(format!("{url:?} has scheme {other:?}: expected https://")),
    }
}

/// Whether the URL's host is a loopback address or `localhost`.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some(host) => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

#[cfg(test)]
#[path = "oauth_tests.rs"]
mod tests;
