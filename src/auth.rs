//! Secrets compared safely: tokens are compared as SHA-256 digests in constant time, so
//! neither their content nor their length leaks through timing.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The SHA-256 digest of `token`.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `presented` is `expected`, in time independent of both.
pub fn token_matches(presented: &str, expected: &SecretString) -> bool {
    digest_matches(&digest(presented), &digest(expected.expose_secret()))
}

/// Constant-time equality of two digests.
pub fn digest_matches(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` header, if any.
pub fn bearer(headers: &poem::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(poem::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether `req` comes from a loopback peer: without an admin token, the admin API, the
/// console and `/metrics` answer only those.
pub fn from_loopback(req: &poem::Request) -> bool {
    req.remote_addr()
        .as_socket_addr()
        .is_some_and(|a| a.ip().is_loopback())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_exactly() {
        let secret: SecretString = "s3cret".to_owned().into();
        assert!(token_matches("s3cret", &secret));
        assert!(!token_matches("s3cret ", &secret));
        assert!(!token_matches("s3cre", &secret));
        assert!(!token_matches("", &secret));
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        let mut h = poem::http::HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", "bearer  xyz ".parse().unwrap());
        assert_eq!(bearer(&h), Some("xyz"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
