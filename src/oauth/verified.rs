//! JWTs verified before, remembered so that a client's repeated token skips the signature
//! check (an RSA-2048 verification is most of a JWT's cost). Keyed by the token's SHA-256
//! (the token itself is never kept); each entry holds what verification found (the
//! principal, the audiences, `exp`) and the key that verified it.
//!
//! An entry is used only while a fresh verification would still accept the token:
//! - until its `exp` plus the clock skew, as a full check would allow (and never longer);
//! - while the key that verified it is still one of its issuer's keys in the key set in use
//!   ([`super::jwks::KeySet::holds`]): a key the issuer no longer publishes (rotated out or
//!   withdrawn) stops its tokens at the next refetch of the key set, exactly as without the
//!   cache, and a key set older than `jwks_max_age_secs` sends the token through the full
//!   check (which refetches).
//!
//! The audience is checked on every request (one token may serve several resources); a
//! miss on it goes through the full check, whose refusal says why. Tokens that fail are not
//! remembered. At most `jwt_cache_size` entries: when full, the expired ones go, then a tenth
//! of the rest, those expiring soonest (so pruning is paid once per many insertions).

use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use super::jwks::Key;
use crate::clients::Principal;

/// What verifying one token found.
pub struct Entry {
    /// Its principal.
    pub principal: Principal,
    /// Its `aud` values.
    pub audiences: Vec<String>,
    /// Its `exp`, in seconds since the epoch.
    pub exp: u64,
    /// The index of its issuer in the configured list.
    pub issuer: usize,
    /// The key that verified its signature.
    pub key: Arc<Key>,
}

/// The cache of verified tokens.
pub struct Verified {
    entries: DashMap<[u8; 32], Entry>,
    capacity: usize,
    /// Held while pruning, so that concurrent insertions into a full cache prune once.
    /// A `std` mutex: held for a synchronous sweep, never across an `.await`.
    pruning: Mutex<()>,
}

/// The cache key of `token`.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Verified {
    /// A cache of at most `capacity` tokens (0: nothing is remembered).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: DashMap::new(),
            capacity,
            pruning: Mutex::new(()),
        }
    }

    /// Whether tokens are remembered at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// How many tokens are remembered now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `f` of the entry of `key`, if there is one. The entry is read under its shard's lock:
    /// `f` must be quick and must not touch this cache.
    pub fn with<R>(&self, key: &[u8; 32], f: impl FnOnce(&Entry) -> R) -> Option<R> {
        self.entries.get(key).map(|e| f(&e))
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &[u8; 32]) {
        self.entries.remove(key);
    }

    /// Remembers `entry` under `key`, making room first when the cache is full. `now` and
    /// `skew` (seconds) tell which entries have expired.
    pub fn insert(&self, key: [u8; 32], entry: Entry, now: u64, skew: u64) {
        if self.capacity == 0 || now > entry.exp.saturating_add(skew) {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.prune(now, skew);
        }
        self.entries.insert(key, entry);
    }

    /// Drops the expired entries, then, while still over nine tenths of the capacity, those
    /// expiring soonest.
    fn prune(&self, now: u64, skew: u64) {
        // Another insertion is pruning: this one may overshoot by one entry meanwhile.
        let Ok(_guard) = self.pruning.try_lock() else {
            return;
        };
        self.entries
            .retain(|_, e| now <= e.exp.saturating_add(skew));
        let target = self.capacity - self.capacity.div_ceil(10);
        let len = self.entries.len();
        if len <= target {
            return;
        }
        let mut exps: Vec<u64> = self.entries.iter().map(|e| e.exp).collect();
        let excess = len - target;
        let (_, threshold, _) = exps.select_nth_unstable(excess - 1);
        let threshold = *threshold;
        let mut removed = 0;
        self.entries.retain(|_, e| {
            if removed < excess && e.exp <= threshold {
                removed += 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn key() -> Arc<Key> {
        Arc::new(Key::for_tests())
    }

    fn entry(exp: u64, key: &Arc<Key>) -> Entry {
        Entry {
            principal: Principal {
                subject: "alice".into(),
                client_id: None,
                scopes: Vec::new(),
                groups: Vec::new(),
            },
            audiences: vec!["https://gw".into()],
            exp,
            issuer: 0,
            key: Arc::clone(key),
        }
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_soonest_expiring_first() {
        let k = key();
        let cache = Verified::new(10);
        for i in 0..10u8 {
            cache.insert([i; 32], entry(NOW + 100 + u64::from(i), &k), NOW, 0);
        }
        assert_eq!(cache.len(), 10);
        cache.insert([99; 32], entry(NOW + 500, &k), NOW, 0);
        assert!(cache.len() <= 10, "{}", cache.len());
        assert!(cache.with(&[99; 32], |_| ()).is_some(), "the new one is in");
        assert!(cache.with(&[0; 32], |_| ()).is_none(), "the soonest went");
        assert!(cache.with(&[9; 32], |_| ()).is_some(), "the latest stayed");
    }

    #[test]
    fn expired_tokens_are_not_remembered_and_expired_entries_go_first() {
        let k = key();
        let cache = Verified::new(3);
        cache.insert([1; 32], entry(NOW - 20, &k), NOW, 10);
        assert!(cache.is_empty(), "past exp + skew: not remembered");
        cache.insert([1; 32], entry(NOW - 5, &k), NOW, 10);
        cache.insert([2; 32], entry(NOW + 900, &k), NOW, 10);
        cache.insert([3; 32], entry(NOW + 800, &k), NOW, 10);
        // Later, [1] has expired: it goes, not the soonest-expiring live one.
        cache.insert([4; 32], entry(NOW + 700, &k), NOW + 60, 10);
        assert!(cache.with(&[1; 32], |_| ()).is_none());
        for live in [2u8, 3, 4] {
            assert!(cache.with(&[live; 32], |_| ()).is_some(), "{live}");
        }
        let off = Verified::new(0);
        off.insert([1; 32], entry(NOW + 60, &k), NOW, 0);
        assert!(!off.enabled() && off.is_empty());
    }

    #[test]
    fn the_key_is_the_tokens_sha256() {
        assert_eq!(digest("a"), digest("a"));
        assert_ne!(digest("a.b.c"), digest("a.b.d"));
    }
}
