//! Opaque access tokens (and, with `introspect_jwts`, every token): asked of the issuer's
//! introspection endpoint (RFC 7662), found by discovery, with the gateway's own client
//! credentials (HTTP Basic, RFC 6749 §2.3.1). The answer must say `active: true`; its `iss`
//! (when given) must be the issuer, its `exp` not past, its `aud` this resource, and its
//! claims map to the principal as a JWT's do.
//!
//! With several issuers, introspection is the first one's: its credentials, its endpoint.
//!
//! Answers are cached until the token expires, keyed by the SHA-256 of the token (the token
//! itself is never kept), in a bounded map: when full, expired entries go first, then the
//! one expiring soonest. A refusal (inactive, or an answer that does not pass) is cached for
//! [`REFUSED_FOR`] in a second map of the same bound, so that a token found bad is not asked
//! about again at once.
//!
//! Requests to the endpoint are bounded per replica (`introspection_requests_per_second`,
//! governor's GCRA, a burst of one second's worth): a flood of made-up opaque tokens costs
//! the authorization server at most that, and the tokens beyond it get
//! [`TokenError::Busy`] (503 with `Retry-After`) without a request; cached answers are not
//! counted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use secrecy::ExposeSecret;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{OAuth, TokenError, now, strings};
use crate::clients::Principal;
use crate::config::oauth::IntrospectionSpec;

/// How long a refusal is remembered.
pub const REFUSED_FOR: Duration = Duration::from_secs(30);

/// What introspection said of one token, while it lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Introspected {
    pub principal: Principal,
    /// The token's audiences (`aud`).
    pub audiences: Vec<String>,
    /// Its `exp`, in seconds since the epoch.
    pub exp: u64,
}

/// The introspection client, its caches and its rate limit.
pub struct Introspector {
    spec: IntrospectionSpec,
    /// Active answers. `std` mutexes: held for a map operation, never across an `.await`.
    cache: Mutex<HashMap<[u8; 32], Introspected>>,
    /// Refusals: what was said, and until when.
    refused: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    limiter: DefaultDirectRateLimiter,
}

impl Introspector {
    /// An introspector with `spec`'s credentials, cache size and rate.
    pub fn new(spec: IntrospectionSpec) -> Self {
        let limiter = DefaultDirectRateLimiter::direct(Quota::per_second(spec.requests_per_second));
        Self {
            spec,
            cache: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            limiter,
        }
    }

    /// What was said of `key` when it was refused, if that is recent.
    fn refusal(&self, key: &[u8; 32], now: Instant) -> Option<String> {
        let mut refused = self.refused.lock().ok()?;
        match refused.get(key) {
            Some((m, until)) if now < *until => Some(m.clone()),
            Some(_) => {
                refused.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers that `key` was refused with `message`, until [`REFUSED_FOR`] from `now`.
    fn refuse(&self, key: [u8; 32], message: &str, now: Instant) {
        let size = self.spec.cache_size;
        let Ok(mut refused) = self.refused.lock() else {
            return;
        };
        if size == 0 {
            return;
        }
        if refused.len() >= size && !refused.contains_key(&key) {
            refused.retain(|_, (_, until)| now < *until);
            // Still full of live refusals: the oldest go (a tenth, so this is rare).
            if refused.len() >= size {
                let mut untils: Vec<Instant> = refused.values().map(|(_, u)| *u).collect();
                let excess = refused.len() - (size - size.div_ceil(10));
                let (_, threshold, _) = untils.select_nth_unstable(excess.max(1) - 1);
                let threshold = *threshold;
                refused.retain(|_, (_, until)| *until > threshold);
            }
        }
        refused.insert(key, (message.to_owned(), now + REFUSED_FOR));
    }

    /// Takes one request from the rate limit, or says how long until one is free.
    fn admit(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Whether JWTs are introspected too.
    pub fn all_tokens(&self) -> bool {
        self.spec.all_tokens
    }

    /// How many answers are cached now.
    pub fn cached(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    fn lookup(&self, key: &[u8; 32], now: u64, skew: u64) -> Option<Introspected> {
        let mut cache = self.cache.lock().ok()?;
        match cache.get(key) {
            Some(e) if now <= e.exp.saturating_add(skew) => Some(e.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    fn store(&self, key: [u8; 32], entry: Introspected, now: u64, skew: u64) {
        let size = self.spec.cache_size;
        if size == 0 {
            return;
        }
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= size && !cache.contains_key(&key) {
            cache.retain(|_, e| now <= e.exp.saturating_add(skew));
            while cache.len() >= size {
                let Some(soonest) = cache.iter().min_by_key(|(_, e)| e.exp).map(|(k, _)| *k) else {
                    break;
                };
                cache.remove(&soonest);
            }
        }
        cache.insert(key, entry);
    }
}

/// `s` as `application/x-www-form-urlencoded` (RFC 6749 §2.3.1: client credentials in HTTP
/// Basic are encoded so first).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl OAuth {
    /// Verifies `token` by introspection (or the cache) for one of `resources`.
    pub(super) async fn introspect(
        &self,
        introspector: &Introspector,
        token: &str,
        resources: &[String],
    ) -> Result<Principal, TokenError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let skew = self.spec.clock_skew.as_secs();
        let entry = match introspector.lookup(&key, now(), skew) {
            Some(entry) => entry,
            None => {
                if let Some(message) = introspector.refusal(&key, Instant::now()) {
                    return Err(TokenError::Invalid(message));
                }
                introspector.admit().map_err(TokenError::Busy)?;
                let answer = self.ask(introspector, token).await?;
                match self.introspected(&answer, now()) {
                    Ok(entry) => {
                        introspector.store(key, entry.clone(), now(), skew);
                        entry
                    }
                    Err(TokenError::Invalid(message)) => {
                        introspector.refuse(key, &message, Instant::now());
                        return Err(TokenError::Invalid(message));
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if !entry.audiences.iter().any(|a| resources.contains(a)) {
            return Err(TokenError::Invalid(format!(
                "the token is not meant for this resource (aud): request it with resource={}",
                resources.first().map_or("", String::as_str)
            )));
        }
        Ok(entry.principal)
    }

    /// The introspection endpoint's answer about `token`.
    async fn ask(&self, introspector: &Introspector, token: &str) -> Result<Value, TokenError> {
        let unavailable = TokenError::Unavailable;
        let Some(issuer) = self.issuers.first() else {
            return Err(unavailable("no issuer is configured".into()));
        };
        let endpoint = issuer
            .keys
            .introspection_endpoint()
            .await
            .map_err(unavailable)?;
        let http = issuer.keys.http().map_err(unavailable)?;
        let spec = &introspector.spec;
        let response = http
            .post(&endpoint)
            .basic_auth(
                form_encode(&spec.client_id),
                Some(form_encode(spec.client_secret.expose_secret())),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| {
                let cause = crate::net::network_cause(&e)
                    .map_or_else(|| crate::net::innermost(&e).to_string(), str::to_owned);
                format!("{endpoint}: {cause}")
            });
        let response = match response {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let m = format!(
                    "the introspection endpoint {endpoint} answered {} (are introspection_client_id and introspection_client_secret right?)",
                    r.status()
                );
                tracing::warn!(issuer = %issuer.id, error = %m, "Token introspection failed.");
                return Err(unavailable(m));
            }
            Err(m) => {
                tracing::warn!(issuer = %issuer.id, error = %m, "Token introspection failed.");
                return Err(unavailable(m));
            }
        };
        response.json().await.map_err(|e| {
            unavailable(format!(
                "the introspection endpoint {endpoint} did not answer JSON: {e}"
            ))
        })
    }

    /// What an introspection `answer` means at `now` (seconds since the epoch): the token's
    /// principal, audiences and expiry, or why it is refused. The audience is checked per
    /// request (one token may serve several resources).
    pub(super) fn introspected(
        &self,
        answer: &Value,
        now: u64,
    ) -> Result<Introspected, TokenError> {
        let invalid = |m: String| TokenError::Invalid(m);
        if answer.get("active").and_then(Value::as_bool) != Some(true) {
            return Err(invalid(
                "the authorization server says the token is not active (revoked, expired or unknown): get a new one".into(),
            ));
        }
        let asked = self.spec.issuers.first().map_or("", String::as_str);
        if let Some(iss) = answer.get("iss")
            && iss.as_str().map(|s| s.trim_end_matches('/')) != Some(asked.trim_end_matches('/'))
        {
            return Err(invalid(format!(
                "the token was not issued by {asked} (iss)"
            )));
        }
        let skew = self.spec.clock_skew.as_secs();
        let exp = answer
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid("the token has no exp claim".into()))?;
        if now > exp.saturating_add(skew) {
            return Err(invalid(format!(
                "the token has expired (exp is past, beyond the {skew} s clock skew allowed): get a new one"
            )));
        }
        if let Some(nbf) = answer.get("nbf").and_then(Value::as_u64)
            && nbf > now.saturating_add(skew)
        {
            return Err(invalid(format!(
                "the token is not valid yet (nbf is ahead, beyond the {skew} s clock skew allowed)"
            )));
        }
        let audiences = strings(answer.get("aud"));
        if audiences.is_empty() {
            return Err(invalid("the token has no aud claim".into()));
        }
        // RFC 7662 makes `sub` optional; a token of the client credentials grant has no
        // resource owner, and its subject is the client (RFC 9068 §2.2, as the same server
        // writes it into its JWTs).
        let names = &self.spec.claims;
        let client = names
            .client_id
            .iter()
            .find_map(|n| super::claim(answer, n))
            .or_else(|| answer.get("client_id"))
            .and_then(Value::as_str);
        let principal = self.principal_of(answer, client)?;
        Ok(Introspected {
            principal,
            audiences,
            exp,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn oauth(cache_size: usize) -> OAuth {
        let c: crate::config::oauth::OAuthConfig = toml::from_str(&format!(
            "issuer = \"https://idp.example.com\"\naudience = \"https://gw.example.com\"\nclock_skew_secs = 10\nintrospection_client_id = \"gw\"\nintrospection_client_secret = \"s\"\nintrospection_cache_size = {cache_size}"
        ))
        .unwrap();
        OAuth::new(crate::config::oauth::validate(std::path::Path::new("s.toml"), c).unwrap())
    }

    const NOW: u64 = 1_800_000_000;

    fn good() -> Value {
        json!({"active": true, "iss": "https://idp.example.com", "exp": NOW + 60,
               "aud": "https://gw.example.com", "sub": "alice", "client_id": "app",
               "scope": "mcp:tools other"})
    }

    fn refused(o: &OAuth, patch: Value) -> String {
        let mut a = good();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                a.as_object_mut().unwrap().remove(k);
            } else {
                a[k] = v.clone();
            }
        }
        match o.introspected(&a, NOW) {
            Err(TokenError::Invalid(m)) => m,
            other => panic!("{patch}: {other:?}"),
        }
    }

    #[test]
    fn an_active_answer_maps_to_the_principal_and_anything_else_is_refused() {
        let o = oauth(10);
        let e = o.introspected(&good(), NOW).unwrap();
        assert_eq!(e.principal.subject, "alice");
        assert_eq!(e.principal.client_id.as_deref(), Some("app"));
        assert_eq!(e.principal.scopes, ["mcp:tools", "other"]);
        assert_eq!(
            (e.audiences.as_slice(), e.exp),
            (&["https://gw.example.com".to_owned()][..], NOW + 60)
        );
        // A client credentials token: no sub, the client is the subject.
        let mut cc = good();
        cc.as_object_mut().unwrap().remove("sub");
        assert_eq!(o.introspected(&cc, NOW).unwrap().principal.subject, "app");
        for (patch, says) in [
            (json!({"active": false}), "not active"),
            (json!({"active": "true"}), "not active"),
            (json!({"iss": "https://evil.example.com"}), "not issued by"),
            (json!({"exp": NOW - 11}), "expired"),
            (json!({"exp": null}), "no exp"),
            (json!({"nbf": NOW + 11}), "not valid yet"),
            (json!({"aud": null}), "no aud"),
            (json!({"sub": null, "client_id": null}), "subject"),
        ] {
            let m = refused(&o, patch.clone());
            assert!(m.contains(says), "{patch}: {m}");
        }
        // Within the clock skew.
        let mut late = good();
        late["exp"] = json!(NOW - 9);
        assert!(o.introspected(&late, NOW).is_ok());
    }

    #[test]
    fn the_cache_is_bounded_keyed_by_hash_and_forgets_expired_answers() {
        let o = oauth(2);
        let Some(i) = o.introspector.as_ref() else {
            panic!("introspection is configured")
        };
        let entry = |exp: u64| Introspected {
            exp,
            ..o.introspected(&good(), NOW).unwrap()
        };
        i.store([1; 32], entry(NOW + 100), NOW, 0);
        i.store([2; 32], entry(NOW + 50), NOW, 0);
        i.store([3; 32], entry(NOW + 200), NOW, 0);
        assert_eq!(i.cached(), 2);
        assert!(
            i.lookup(&[2; 32], NOW, 0).is_none(),
            "the soonest to expire went"
        );
        assert!(i.lookup(&[1; 32], NOW, 0).is_some());
        assert!(i.lookup(&[1; 32], NOW + 101, 0).is_none(), "expired");
        assert_eq!(i.cached(), 1);
        let none = oauth(0);
        let Some(n) = none.introspector.as_ref() else {
            panic!("introspection is configured")
        };
        n.store([1; 32], entry(NOW + 100), NOW, 0);
        assert_eq!(n.cached(), 0);
    }

    #[test]
    fn credentials_are_form_encoded_for_basic_auth() {
        assert_eq!(form_encode("gw-1.a_b*"), "gw-1.a_b*");
        assert_eq!(form_encode("p@ss w:rd/é"), "p%40ss%20w%3Ard%2F%C3%A9");
    }

    #[test]
    fn refusals_are_remembered_briefly_and_requests_are_rate_limited() {
        let o = oauth(2);
        let Some(i) = o.introspector.as_ref() else {
            panic!("introspection is configured")
        };
        let t0 = Instant::now();
        i.refuse([1; 32], "not active", t0);
        assert_eq!(i.refusal(&[1; 32], t0).as_deref(), Some("not active"));
        assert_eq!(i.refusal(&[1; 32], t0 + REFUSED_FOR), None, "forgotten");
        for k in 1..=3u8 {
            i.refuse([k; 32], "no", t0);
        }
        assert!(i.refused.lock().unwrap().len() <= 2, "bounded");
        assert!(i.refusal(&[3; 32], t0).is_some(), "the newest stays");
        // Default 100 per second: a burst of 100, then a wait.
        for n in 0..100 {
            assert!(i.admit().is_ok(), "request {n}");
        }
        let wait = i.admit().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(10),
            "{wait:?}"
        );
    }
}
