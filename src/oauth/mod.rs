//! The gateway as an OAuth 2.1 resource server (MCP authorization, 2025-06-18 and later):
//! JWT access tokens of one issuer verified against its published keys ([`jwks`]) and
//! opaque ones by introspection ([`introspect`]), their
//! claims mapped to a [`Principal`], the scopes each agent needs, and the Protected Resource
//! Metadata (RFC 9728) that tells a client where to get a token.
//!
//! A token is accepted when its signature verifies with the issuer's key named by `kid`
//! (an accepted asymmetric algorithm; `alg: none` never), `iss` is the issuer, `exp` is
//! not past and `nbf` not ahead (both within the clock skew), and `aud` names this resource:
//! the configured audience, or the URL of the agent called (RFC 8707 resource indicators).

pub mod discovery;
pub mod introspect;
pub mod jwks;

use std::str::FromStr;

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
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
}

/// The resource server: the settings and the issuer's keys.
pub struct OAuth {
    spec: OAuthSpec,
    keys: jwks::KeySet,
    /// Token introspection (RFC 7662), when configured.
    introspector: Option<introspect::Introspector>,
}

/// The well-known path of protected resource metadata (RFC 9728 §3).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

impl OAuth {
    /// The resource server of `spec`; the issuer is contacted only when a token needs a key.
    pub fn new(spec: OAuthSpec) -> Self {
        let keys = jwks::KeySet::new(&spec.issuer, spec.jwks_refetch_cooldown, spec.jwks_max_age);
        let introspector = spec
            .introspection
            .clone()
            .map(introspect::Introspector::new);
        Self {
            spec,
            keys,
            introspector,
        }
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
            "authorization_servers": [self.spec.issuer],
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
    /// URLs of the agent called) and maps its claims to a principal: a JWT by its signature,
    /// anything else (or everything, with `introspect_jwts`) by introspection when configured.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] saying what is wrong; [`TokenError::Unavailable`] when the
    /// issuer's keys cannot be had.
    pub async fn verify(&self, token: &str, resources: &[String]) -> Result<Principal, TokenError> {
        let invalid = |m: String| TokenError::Invalid(m);
        let header = header_of(token);
        if let Some(introspector) = &self.introspector
            && (header.is_none() || introspector.all_tokens())
        {
            return self.introspect(introspector, token, resources).await;
        }
        let header = header.ok_or_else(|| {
            invalid(
                "the bearer token is neither a configured client's token nor a JWT access token"
                    .into(),
            )
        })?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
        if alg_name.eq_ignore_ascii_case("none") || alg_name.is_empty() {
            return Err(invalid(
                "the token is unsigned (alg \"none\"); only signed tokens are accepted".into(),
            ));
        }
        let alg = Algorithm::from_str(alg_name)
            .ok()
            .filter(|a| self.spec.algorithms.contains(a))
            .ok_or_else(|| {
                invalid(format!(
                    "the token's algorithm {alg_name:?} is not accepted ([auth.oauth] algorithms)"
                ))
            })?;
        let kid = header.get("kid").and_then(Value::as_str);
        let key = self.keys.key(kid).await.map_err(|e| match e {
            jwks::KeyError::UnknownKid(kid) => invalid(format!(
                "the token's key id {kid:?} is not among the authorization server's keys"
            )),
            jwks::KeyError::NoKid => invalid(
                "the token names no key id (kid) and the authorization server has several keys"
                    .into(),
            ),
            jwks::KeyError::Unavailable(m) => TokenError::Unavailable(m),
        })?;
        if let Some(key_alg) = &key.alg
            && key_alg != alg_name
        {
            return Err(invalid(format!(
                "the token's algorithm {alg_name} is not its key's ({key_alg})"
            )));
        }
        let mut validation = Validation::new(alg);
        validation.leeway = self.spec.clock_skew.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.spec.issuer]);
        validation.set_audience(resources);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &validation)
            .map_err(|e| invalid(self.describe(&e, resources)))?;
        self.principal(&data.claims)
    }

    /// What a verification error means, for the client.
    fn describe(&self, e: &jsonwebtoken::errors::Error, resources: &[String]) -> String {
        use jsonwebtoken::errors::ErrorKind;
        let skew = self.spec.clock_skew.as_secs();
        match e.kind() {
            ErrorKind::ExpiredSignature => {
                format!(
                    "the token has expired (exp is past, beyond the {skew} s clock skew allowed): get a new one"
                )
            }
            ErrorKind::ImmatureSignature => {
                format!(
                    "the token is not valid yet (nbf is ahead, beyond the {skew} s clock skew allowed)"
                )
            }
            ErrorKind::InvalidIssuer => {
                format!("the token was not issued by {} (iss)", self.spec.issuer)
            }
            ErrorKind::InvalidAudience => format!(
                "the token is not meant for this resource (aud): request it with resource={}",
                resources.first().map_or("", String::as_str)
            ),
            ErrorKind::InvalidSignature => {
                "the token's signature does not verify with the authorization server's key".into()
            }
            ErrorKind::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
            ErrorKind::InvalidAlgorithm => {
                "the token's algorithm does not fit the key it names".into()
            }
            _ => "the token is malformed".into(),
        }
    }

    /// The principal of verified `claims`.
    fn principal(&self, claims: &Value) -> Result<Principal, TokenError> {
        let names = &self.spec.claims;
        let subject = claim(claims, &names.subject)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                TokenError::Invalid(format!(
                    "the token has no {:?} claim naming its subject",
                    names.subject
                ))
            })?;
        let client_id = claim(claims, &names.client_id)
            .or_else(|| claims.get("azp"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Principal {
            subject: subject.to_owned(),
            client_id,
            scopes: strings(claim(claims, &names.scopes)),
            groups: strings(claim(claims, &names.groups)),
        })
    }
}

/// The JOSE header of a compact JWT, if it is one.
fn header_of(token: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (header, _, _, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next());
    if rest.is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
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
}
