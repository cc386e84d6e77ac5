//! The gateway as an OAuth 2.1 resource server (MCP authorization, 2025-06-18 and later):
//! JWT access tokens of the configured issuers verified against their published keys
//! ([`jwks`], [`jwt`]; those verified before remembered, [`verified`]) and opaque ones by
//! introspection ([`introspect`]), their claims mapped to a [`Principal`], the scopes each
//! agent needs, and the Protected Resource Metadata (RFC 9728) that tells a client where to
//! get a token.
//!
//! A token is accepted when its `iss` is one of the issuers, its signature verifies with that
//! issuer's key named by `kid` (an accepted asymmetric algorithm; `alg: none` never), `exp`
//! is not past and `nbf` not ahead (both within the clock skew), and `aud` names this
//! resource: the configured audience, or the URL of the agent called (RFC 8707 resource
//! indicators).

pub mod discovery;
pub mod introspect;
pub mod jwks;
mod jwt;
pub mod verified;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::clients::Principal;
use crate::config::oauth::OAuthSpec;

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The token is not valid here; the message says why, for the client (never the token).
    Invalid(String),
    /// The authorization server's keys could not be had: the token cannot be checked now.
    Unavailable(String),
    /// The token would have to be introspected, and this replica has sent as many
    /// introspection requests as `introspection_requests_per_second` allows: retry after
    /// this long.
    Busy(Duration),
}

/// One issuer: its identifier and its keys.
struct Issuer {
    /// As configured; a token's `iss` must be exactly this.
    id: String,
    keys: jwks::KeySet,
}

/// The resource server: the settings and each issuer's keys.
pub struct OAuth {
    spec: OAuthSpec,
    /// In the configured order; never empty (validation refuses no issuer).
    issuers: Vec<Issuer>,
    /// JWTs verified before.
    verified: verified::Verified,
    /// Token introspection (RFC 7662) at the first issuer, when configured.
    introspector: Option<introspect::Introspector>,
}

/// The well-known path of protected resource metadata (RFC 9728 §3).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

impl OAuth {
    /// The resource server of `spec`; the issuer is contacted only when a token needs a key.
    pub fn new(spec: OAuthSpec) -> Self {
        let issuers = spec
            .issuers
            .iter()
            .map(|id| Issuer {
                id: id.clone(),
                keys: jwks::KeySet::new(id, spec.jwks_refetch_cooldown, spec.jwks_max_age),
            })
            .collect();
        let introspector = spec
            .introspection
            .clone()
            .map(introspect::Introspector::new);
        Self {
            verified: verified::Verified::new(spec.jwt_cache_size),
            spec,
            issuers,
            introspector,
        }
    }

    /// How many verified JWTs are remembered now.
    pub fn remembered_tokens(&self) -> usize {
        self.verified.len()
    }

    /// The settings.
    pub fn spec(&self) -> &OAuthSpec {
        &self.spec
    }

    /// The resource identifier of the MCP URL at `path` (`/agents/x/mcp`): the public URL
    /// with the path; `""` gives the gateway's own (the audience).
    pub fn resource(&self, path: &str) -> String {
        if path.is_empty() {
            self.spec.audience.clone()
        } else {
            format!("{}{path}", self.spec.public_url)
        }
    }

    /// Where the metadata of the resource at `path` is (RFC 9728 §3.1: the well-known path
    /// inserted between the host and the resource's path).
    pub fn metadata_url(&self, path: &str) -> String {
        match reqwest::Url::parse(&self.spec.public_url) {
            Ok(url) => {
                let base = url.path().trim_end_matches('/');
                format!(
                    "{}{METADATA_PATH}{base}{path}",
                    url.origin().ascii_serialization()
                )
            }
            Err(_) => format!("{}{METADATA_PATH}{path}", self.spec.public_url),
        }
    }

    /// The protected resource metadata of the resource at `path` (`""`: the gateway's),
    /// whose agent is `agent`.
    pub fn metadata(&self, path: &str, agent: Option<&str>) -> Value {
        let scopes: Vec<&str> = match agent {
            Some(agent) => {
                let mut s = self.spec.scopes_for(agent);
                for extra in &self.spec.scopes_supported {
                    if !s.contains(&extra.as_str()) {
                        s.push(extra);
                    }
                }
                s
            }
            None => self
                .spec
                .scopes_supported
                .iter()
                .map(String::as_str)
                .collect(),
        };
        serde_json::json!({
            "resource": self.resource(path),
            "authorization_servers": self.spec.issuers,
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": match agent {
                Some(a) => format!("Switchboard agent {a}"),
                None => "Switchboard".to_owned(),
            },
        })
    }

    /// The scopes `principal` lacks to call `agent`.
    pub fn missing_scopes<'a>(&'a self, principal: &Principal, agent: &str) -> Vec<&'a str> {
        self.spec
            .scopes_for(agent)
            .into_iter()
            .filter(|s| !principal.scopes.iter().any(|p| p == s))
            .collect()
    }

    /// Verifies `token` as an access token for one of `resources` (the audience and the
    /// URLs of the agent called) and maps its claims to a principal: a JWT by its signature
    /// (or from the cache of tokens verified before), anything else (or the first issuer's
    /// JWTs too, with `introspect_jwts`) by introspection when configured.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] saying what is wrong; [`TokenError::Unavailable`] when the
    /// issuer's keys or introspection cannot be had; [`TokenError::Busy`] when introspection
    /// is at its rate limit.
    pub async fn verify(&self, token: &str, resources: &[String]) -> Result<Principal, TokenError> {
        let digest = self.verified.enabled().then(|| verified::digest(token));
        if let Some(digest) = &digest
            && let Some(principal) = self.remembered(digest, resources)
        {
            return Ok(principal);
        }
        let header = jwt::header_of(token);
        if let Some(introspector) = &self.introspector {
            let introspect = match &header {
                None => true,
                // Introspection is the first issuer's: its JWTs go there with
                // `introspect_jwts`, the other issuers' are verified by signature.
                Some(_) => {
                    introspector.all_tokens()
                        && (self.issuers.len() == 1
                            || jwt::unverified_issuer(token).as_deref()
                                == Some(self.spec.issuers[0].as_str()))
                }
            };
            if introspect {
                return self.introspect(introspector, token, resources).await;
            }
        }
        let header = header.ok_or_else(|| {
            TokenError::Invalid(
                "the bearer token is neither a configured client's token nor a JWT access token"
                    .into(),
            )
        })?;
        self.verify_jwt(token, &header, resources, digest).await
    }

    /// The principal of `digest`'s token if it was verified before and would pass again now
    /// for one of `resources` (see [`verified`]); `None` sends it through the full check.
    fn remembered(&self, digest: &[u8; 32], resources: &[String]) -> Option<Principal> {
        let now = now();
        let skew = self.spec.clock_skew.as_secs();
        let found = self.verified.with(digest, |e| {
            let live = now <= e.exp.saturating_add(skew)
                && self
                    .issuers
                    .get(e.issuer)
                    .is_some_and(|i| i.keys.holds(&e.key));
            if !live {
                return Err(());
            }
            Ok(e.audiences
                .iter()
                .any(|a| resources.contains(a))
                .then(|| e.principal.clone()))
        })?;
        match found {
            Ok(principal) => principal,
            Err(()) => {
                self.verified.remove(digest);
                None
            }
        }
    }

    /// The principal of verified `claims`.
    fn principal(&self, claims: &Value) -> Result<Principal, TokenError> {
        self.principal_of(claims, None)
    }

    /// The principal of verified `claims`; without a subject claim, `fallback` (if any) is
    /// the subject.
    fn principal_of(
        &self,
        claims: &Value,
        fallback: Option<&str>,
    ) -> Result<Principal, TokenError> {
        let names = &self.spec.claims;
        let first = |names: &crate::config::oauth::OneOrMany| {
            names.iter().find_map(|n| {
                claim(claims, n)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            })
        };
        let subject = first(&names.subject).or(fallback).ok_or_else(|| {
            TokenError::Invalid(format!(
                "the token has no {} claim naming its subject",
                names
                    .subject
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))
        })?;
        let all = |names: &crate::config::oauth::OneOrMany| {
            let mut out: Vec<String> = Vec::new();
            for name in names.iter() {
                for v in strings(claim(claims, name)) {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
            }
            out
        };
        Ok(Principal {
            subject: subject.to_owned(),
            client_id: first(&names.client_id).map(str::to_owned),
            scopes: all(&names.scopes),
            groups: all(&names.groups),
        })
    }
}

/// Seconds since the epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The claim at `path` (`realm_access.roles` reads a nested one; a claim whose own name has
/// dots is found first).
fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, k| v.get(k))
}

/// A space-separated string or an array of strings, as a list.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::Engine;

    fn oauth(public_url: &str) -> OAuth {
        let c: crate::config::oauth::OAuthConfig = toml::from_str(&format!(
            "issuer = \"https://idp.example.com\"\naudience = \"api://gw\"\npublic_url = {public_url:?}\nrequired_scopes = [\"mcp\"]\n[agent_scopes]\nsn = [\"inc\"]\n[claims]\nscopes = \"scp\"\ngroups = \"realm_access.roles\""
        ))
        .unwrap();
        OAuth::new(crate::config::oauth::validate(std::path::Path::new("s.toml"), c).unwrap())
    }

    #[test]
    fn metadata_urls_insert_the_well_known_path_before_the_resource_path() {
        let o = oauth("https://gw.example.com/switchboard/");
        assert_eq!(
            o.metadata_url("/agents/sn/mcp"),
            "https://gw.example.com/.well-known/oauth-protected-resource/switchboard/agents/sn/mcp"
        );
        assert_eq!(
            o.resource("/agents/sn/mcp"),
            "https://gw.example.com/switchboard/agents/sn/mcp"
        );
        assert_eq!(o.resource(""), "api://gw");
        let m = o.metadata("/agents/sn/sse", Some("sn"));
        assert_eq!(
            m["resource"],
            "https://gw.example.com/switchboard/agents/sn/sse"
        );
        assert_eq!(m["scopes_supported"], serde_json::json!(["mcp", "inc"]));
        assert_eq!(
            m["authorization_servers"],
            serde_json::json!(["https://idp.example.com"])
        );
    }

    #[test]
    fn claims_map_to_a_principal_and_scopes_are_checked() {
        let o = oauth("https://gw.example.com");
        let p = o
            .principal(&serde_json::json!({"sub": "alice", "azp": "app", "scp": "mcp other", "realm_access": {"roles": ["ops"]}}))
            .unwrap();
        assert_eq!(p.subject, "alice");
        assert_eq!(p.client_id.as_deref(), Some("app"));
        assert_eq!(p.groups, ["ops"]);
        assert!(o.missing_scopes(&p, "other").is_empty());
        assert_eq!(o.missing_scopes(&p, "sn"), ["inc"]);
        assert!(o.principal(&serde_json::json!({"scp": "mcp"})).is_err());
    }

    #[tokio::test]
    async fn unsigned_and_foreign_tokens_are_refused_before_any_fetch() {
        let o = oauth("https://gw.example.com");
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"sub":"x"}"#));
        let hs = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"HS256"}"#),
            b64(r#"{"sub":"x"}"#)
        );
        for (token, says) in [
            (none.as_str(), "unsigned"),
            (hs.as_str(), "not accepted"),
            ("opaque-token", "neither"),
        ] {
            match o.verify(token, &[]).await {
                Err(TokenError::Invalid(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("{token}: {other:?}"),
            }
        }
    }

    #[test]
    fn claim_candidates_fit_what_identity_providers_emit() {
        let with = |claims: &str| {
            let c: crate::config::oauth::OAuthConfig = toml::from_str(&format!(
                "issuer = [\"https://a.example.com\", \"https://b.example.com\"]\naudience = \"https://gw.example.com\"\n[claims]\n{claims}"
            ))
            .unwrap();
            OAuth::new(crate::config::oauth::validate(std::path::Path::new("s.toml"), c).unwrap())
        };
        // Entra ID: a user's token (scp, a string) and an application's (roles, no scp).
        let entra = with(
            "subject = \"oid\"\nclient_id = [\"azp\", \"appid\"]\nscopes = [\"scp\", \"roles\"]\ngroups = \"groups\"",
        );
        let user = entra
            .principal(&serde_json::json!({"oid": "u-1", "sub": "pairwise", "azp": "app-1", "scp": "MCP.Tools User.Read", "roles": ["Admin"]}))
            .unwrap();
        assert_eq!(
            (user.subject.as_str(), user.client_id.as_deref()),
            ("u-1", Some("app-1"))
        );
        assert_eq!(user.scopes, ["MCP.Tools", "User.Read", "Admin"]);
        let app = entra
            .principal(
                &serde_json::json!({"oid": "sp-1", "appid": "app-2", "roles": ["MCP.Tools"]}),
            )
            .unwrap();
        assert_eq!(
            (app.client_id.as_deref(), app.scopes.as_slice()),
            (Some("app-2"), &["MCP.Tools".to_owned()][..])
        );
        // Okta: scp an array, cid the client. Auth0: a namespaced claim and permissions.
        let okta = with("client_id = \"cid\"\nscopes = \"scp\"");
        let p = okta
            .principal(
                &serde_json::json!({"sub": "a@x", "cid": "0oa1", "scp": ["mcp:tools", "openid"]}),
            )
            .unwrap();
        assert_eq!((p.client_id.as_deref(), p.scopes.len()), (Some("0oa1"), 2));
        let auth0 = with("groups = [\"https://gateway.example.com/roles\", \"permissions\"]");
        let p = auth0
            .principal(&serde_json::json!({"sub": "auth0|1", "azp": "abc", "scope": "mcp:tools", "https://gateway.example.com/roles": ["ops"], "permissions": ["mcp:tools", "ops"]}))
            .unwrap();
        assert_eq!(p.client_id.as_deref(), Some("abc"), "client_id, then azp");
        assert_eq!(p.groups, ["ops", "mcp:tools"], "the union, without repeats");
        // Both issuers are advertised.
        assert_eq!(
            entra.metadata("", None)["authorization_servers"],
            serde_json::json!(["https://a.example.com", "https://b.example.com"])
        );
    }

    #[tokio::test]
    async fn with_several_issuers_a_token_of_none_of_them_is_refused_before_any_fetch() {
        let c: crate::config::oauth::OAuthConfig = toml::from_str(
            "issuer = [\"https://a.example.com\", \"https://b.example.com\"]\naudience = \"https://gw.example.com\"",
        )
        .unwrap();
        let o =
            OAuth::new(crate::config::oauth::validate(std::path::Path::new("s.toml"), c).unwrap());
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        for claims in [r#"{"iss":"https://c.example.com"}"#, r#"{"sub":"x"}"#] {
            let token = format!(
                "{}.{}.sig",
                b64(r#"{"alg":"RS256","kid":"k"}"#),
                b64(claims)
            );
            match o.verify(&token, &[]).await {
                Err(TokenError::Invalid(m)) => assert!(
                    m.contains("not issued by any of https://a.example.com, https://b.example.com"),
                    "{m}"
                ),
                other => panic!("{claims}: {other:?}"),
            }
        }
    }
}
