//! The issuer's signing keys: found by discovery (OpenID `/.well-known/openid-configuration`,
//! then RFC 8414 `/.well-known/oauth-authorization-server`), fetched from its `jwks_uri`,
//! cached, and fetched again when too old or when a token names a key id the cache lacks, at
//! most once per cooldown (so a flood of tokens with made-up key ids costs the authorization
//! server one request per cooldown, not one per token).
//!
//! A key the issuer still publishes unchanged keeps its identity (the same `Arc<Key>`)
//! across refetches, so the cache of verified tokens ([`super::verified`]) can ask whether
//! the key that verified a token is still one of the issuer's ([`KeySet::holds`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};

use sha2::{Digest, Sha256};

use super::discovery;

/// One verification key of the issuer.
pub struct Key {
    /// The key.
    pub key: DecodingKey,
    /// The algorithm the key set names for it (`alg`), if any: a token's must then be it.
    pub alg: Option<String>,
    /// The SHA-256 of the key set's entry for it, to tell an unchanged key on a refetch.
    fingerprint: [u8; 32],
}

/// The keys fetched last, by key id (`""` for a key without one).
#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Arc<Key>>,
    fetched_at: Option<Instant>,
}

/// Fetches made, and when, guarded by one lock so that concurrent misses make one fetch.
#[derive(Default)]
struct Fetches {
    /// The issuer's metadata, once discovered.
    discovered: Option<Discovered>,
    /// When discovery for introspection last failed.
    last_discovery_failure: Option<Instant>,
    /// When an unknown key id last caused a fetch.
    last_refetch: Option<Instant>,
    /// When a fetch last failed.
    last_failure: Option<Instant>,
}

/// What discovery found in the issuer's metadata.
#[derive(Debug, Clone)]
struct Discovered {
    /// `jwks_uri`.
    jwks_uri: Option<String>,
    /// `introspection_endpoint` (RFC 7662, RFC 8414).
    introspection_endpoint: Option<String>,
}

/// Why no key could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The key set has no key with the token's key id (after one refetch, or within the
    /// cooldown).
    UnknownKid(String),
    /// The token names no key id and the key set has more than one key.
    NoKid,
    /// Discovery or the key set failed; the message says where and why.
    Unavailable(String),
}

/// Least time between two attempts after a failed fetch.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Longest time one discovery or key set request may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The issuer's key set, cached.
pub struct KeySet {
    /// The HTTP client, or why it could not be built (said on every fetch).
    http: Result<reqwest::Client, String>,
    issuer: String,
    cooldown: Duration,
    max_age: Duration,
    /// Read without a lock on every request.
    keys: ArcSwap<Keys>,
    /// Held while fetching.
    fetches: tokio::sync::Mutex<Fetches>,
}

impl KeySet {
    /// The key set of `issuer`; nothing is fetched until a token needs a key.
    pub fn new(issuer: &str, cooldown: Duration, max_age: Duration) -> Self {
        // reqwest panics building a client before a TLS provider is installed; installing
        // it again is harmless.
        crate::net::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {}", crate::net::innermost(&e)));
        Self {
            http,
            issuer: issuer.to_owned(),
            cooldown,
            max_age,
            keys: ArcSwap::from_pointee(Keys::default()),
            fetches: tokio::sync::Mutex::new(Fetches::default()),
        }
    }

    /// Whether `key` is one of the issuer's keys now: in the key set fetched last, and that
    /// set not older than the maximum age. Lock-free; never fetches.
    pub fn holds(&self, key: &Arc<Key>) -> bool {
        let keys = self.keys.load();
        keys.fetched_at.is_some_and(|t| t.elapsed() <= self.max_age)
            && keys.by_kid.values().any(|k| Arc::ptr_eq(k, key))
    }

    /// The key with id `kid` (or the only key, for a token without one).
    ///
    /// # Errors
    /// See [`KeyError`].
    pub async fn key(&self, kid: Option<&str>) -> Result<Arc<Key>, KeyError> {
        let keys = self.keys.load();
        let fresh = |k: &Keys| k.fetched_at.is_some_and(|t| t.elapsed() <= self.max_age);
        if fresh(&keys)
            && let Some(key) = find(&keys, kid)?
        {
            return Ok(key);
        }
        drop(keys);
        let mut fetches = self.fetches.lock().await;
        // Another request may have fetched while this one waited.
        let keys = self.keys.load_full();
        if fresh(&keys) {
            if let Some(key) = find(&keys, kid)? {
                return Ok(key);
            }
            // A fresh set without the key: refetch once per cooldown.
            if fetches
                .last_refetch
                .is_some_and(|t| t.elapsed() < self.cooldown)
            {
                return Err(unknown(kid));
            }
            fetches.last_refetch = Some(Instant::now());
        } else if fetches
            .last_failure
            .is_some_and(|t| t.elapsed() < RETRY_AFTER_FAILURE.min(self.cooldown))
        {
            // The last attempt failed moments ago: do not hammer the server. Keys that
            // are merely old are still used meanwhile.
            return match find(&keys, kid)? {
                Some(key) => Ok(key),
                None => Err(KeyError::Unavailable(
                    "the authorization server's keys could not be fetched moments ago; retry shortly".into(),
                )),
            };
        }
        match self.fetch(&mut fetches).await {
            Ok(new) => {
                fetches.last_failure = None;
                let found = find(&new, kid);
                self.keys.store(Arc::new(new));
                found?.ok_or_else(|| unknown(kid))
            }
            Err(e) => {
                fetches.last_failure = Some(Instant::now());
                tracing::warn!(issuer = %self.issuer, error = %e, "Could not fetch the authorization server's keys.");
                match find(&keys, kid)? {
                    Some(key) => Ok(key),
                    None => Err(KeyError::Unavailable(e)),
                }
            }
        }
    }

    /// The HTTP client, or why there is none.
    ///
    /// # Errors
    /// When it could not be built.
    pub fn http(&self) -> Result<&reqwest::Client, String> {
        self.http.as_ref().map_err(Clone::clone)
    }

    /// The issuer's `introspection_endpoint`, discovered once (with the key set's URL).
    ///
    /// # Errors
    /// Discovery failed (then it is not tried again for a few seconds), or the metadata names
    /// no introspection endpoint.
    pub async fn introspection_endpoint(&self) -> Result<String, String> {
        let mut fetches = self.fetches.lock().await;
        if fetches.discovered.is_none() {
            if fetches
                .last_discovery_failure
                .is_some_and(|t| t.elapsed() < RETRY_AFTER_FAILURE)
            {
                return Err(
                    "discovery of the authorization server failed moments ago; retry shortly"
                        .into(),
                );
            }
            match self.discover().await {
                Ok(d) => fetches.discovered = Some(d),
                Err(e) => {
                    fetches.last_discovery_failure = Some(Instant::now());
                    tracing::warn!(issuer = %self.issuer, error = %e, "Could not discover the authorization server.");
                    return Err(e);
                }
            }
        }
        fetches
            .discovered
            .as_ref()
            .and_then(|d| d.introspection_endpoint.clone())
            .ok_or_else(|| {
                format!(
                    "the metadata of {} names no introspection_endpoint",
                    self.issuer
                )
            })
    }

    /// Discovers the key set's URL (once) and fetches it.
    async fn fetch(&self, fetches: &mut Fetches) -> Result<Keys, String> {
        let discovered = match &fetches.discovered {
            Some(d) => d.clone(),
            None => {
                let d = self.discover().await?;
                fetches.discovered = Some(d.clone());
                d
            }
        };
        let uri = discovered
            .jwks_uri
            .ok_or_else(|| format!("the metadata of {} names no jwks_uri", self.issuer))?;
        let body: serde_json::Value = self.get_json(&uri).await?;
        let entries = body
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| format!("the key set at {uri} has no \"keys\" array"))?;
        let before = self.keys.load();
        let mut by_kid = HashMap::new();
        for entry in entries {
            // Keys this crate cannot read (other types, encryption keys) are skipped, not
            // fatal: identity providers publish those beside their signing keys.
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let alg = jwk.common.key_algorithm.map(|a| format!("{a:?}"));
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            let fingerprint: [u8; 32] = Sha256::digest(entry.to_string().as_bytes()).into();
            // The same key as before stays the same `Arc`: tokens it verified stay cached.
            let key = match before.by_kid.get(&kid) {
                Some(old) if old.fingerprint == fingerprint => Arc::clone(old),
                _ => Arc::new(Key {
                    key,
                    alg,
                    fingerprint,
                }),
            };
            by_kid.insert(kid, key);
        }
        tracing::info!(issuer = %self.issuer, keys = by_kid.len(), "Fetched the authorization server's keys.");
        Ok(Keys {
            by_kid,
            fetched_at: Some(Instant::now()),
        })
    }

    /// The `jwks_uri` and `introspection_endpoint` of the issuer's metadata
    /// ([`discovery::metadata`]).
    async fn discover(&self) -> Result<Discovered, String> {
        let http = self.http.as_ref().map_err(Clone::clone)?;
        let doc = discovery::metadata(http, &self.issuer, &["jwks_uri", "introspection_endpoint"])
            .await?;
        let found = |k: &str| doc.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        Ok(Discovered {
            jwks_uri: found("jwks_uri"),
            introspection_endpoint: found("introspection_endpoint"),
        })
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        discovery::get_json(self.http.as_ref().map_err(Clone::clone)?, url).await
    }
}

#[cfg(test)]
impl Key {
    /// A key that verifies nothing, for tests of what holds keys.
    pub fn for_tests() -> Self {
        Self {
            key: DecodingKey::from_secret(b"test"),
            alg: None,
            fingerprint: [0; 32],
        }
    }
}

fn find(keys: &Keys, kid: Option<&str>) -> Result<Option<Arc<Key>>, KeyError> {
    match kid {
        Some(kid) => Ok(keys.by_kid.get(kid).cloned()),
        None if keys.by_kid.len() == 1 => Ok(keys.by_kid.values().next().cloned()),
        None if keys.by_kid.is_empty() => Ok(None),
        None => Err(KeyError::NoKid),
    }
}

fn unknown(kid: Option<&str>) -> KeyError {
    KeyError::UnknownKid(kid.unwrap_or("").to_owned())
}
