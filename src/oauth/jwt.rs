//! A JWT access token checked in full: its issuer chosen by its (still unverified) `iss`,
//! that issuer's key named by `kid`, the signature, `iss`, `exp`, `nbf` and `aud`; then its
//! principal, remembered for next time ([`super::verified`]).

use std::str::FromStr;

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::{OAuth, TokenError, jwks, now, strings, verified};
use crate::clients::Principal;

/// A JOSE header, as parsed.
pub(super) type Header = serde_json::Map<String, Value>;

impl OAuth {
    /// Verifies the JWT `token` (whose header is `header`) for one of `resources`; its
    /// result is remembered under `digest` when given.
    pub(super) async fn verify_jwt(
        &self,
        token: &str,
        header: &Header,
        resources: &[String],
        digest: Option<[u8; 32]>,
    ) -> Result<Principal, TokenError> {
        let invalid = |m: String| TokenError::Invalid(m);
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
        let index = self.issuer_index(token)?;
        let Some(issuer) = self.issuers.get(index) else {
            return Err(invalid(self.not_issued_by()));
        };
        let kid = header.get("kid").and_then(Value::as_str);
        let key = issuer.keys.key(kid).await.map_err(|e| match e {
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
        validation.set_issuer(&[&issuer.id]);
        validation.set_audience(resources);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &validation)
            .map_err(|e| invalid(self.describe(&e, resources)))?;
        let principal = self.principal(&data.claims)?;
        if let Some(digest) = digest
            && let Some(exp) = data.claims.get("exp").and_then(Value::as_f64)
            && exp >= 0.0
        {
            let entry = verified::Entry {
                principal: principal.clone(),
                audiences: strings(data.claims.get("aud")),
                // Whole seconds, rounded down: the entry never outlives the token.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                exp: exp.floor() as u64,
                issuer: index,
                key,
            };
            self.verified
                .insert(digest, entry, now(), self.spec.clock_skew.as_secs());
        }
        Ok(principal)
    }

    /// Which configured issuer `token` names: the only one, or the one its `iss` is (read
    /// before the signature is checked, only to choose the keys; the check then requires it).
    fn issuer_index(&self, token: &str) -> Result<usize, TokenError> {
        if self.issuers.len() == 1 {
            return Ok(0);
        }
        let iss = unverified_issuer(token);
        self.issuers
            .iter()
            .position(|i| Some(i.id.as_str()) == iss.as_deref())
            .ok_or_else(|| TokenError::Invalid(self.not_issued_by()))
    }

    /// The refusal of a token of another issuer.
    fn not_issued_by(&self) -> String {
        match self.spec.issuers.as_slice() {
            [one] => format!("the token was not issued by {one} (iss)"),
            all => format!(
                "the token was not issued by any of {} (iss)",
                all.join(", ")
            ),
        }
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
            ErrorKind::InvalidIssuer => self.not_issued_by(),
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
}

/// The JOSE header of a compact JWT, if it is one.
pub(super) fn header_of(token: &str) -> Option<Header> {
    let mut parts = token.split('.');
    let (header, _, _, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next());
    if rest.is_some() {
        return None;
    }
    serde_json::from_slice(&decode_part(header)?).ok()
}

/// The `iss` a compact JWT claims, unverified: only to choose whose keys check it.
pub(super) fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice::<Iss>(&decode_part(payload)?)
        .ok()?
        .iss
}

fn decode_part(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}
