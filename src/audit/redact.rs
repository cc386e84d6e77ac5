//! What of a call's arguments the trail keeps: everything but the fields `[audit] redact`
//! names (and, unless turned off, the common secret names), whose values become
//! `"[redacted]"`; and the SHA-256 of the arguments as received, so that a record can be
//! matched with a known call without keeping what was redacted.

use std::collections::HashSet;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::audit::RedactRule;

/// The value that replaces a redacted one.
pub const REDACTED: &str = "[redacted]";

/// Field names redacted at any depth unless `redact_common_secrets = false`.
pub const COMMON_SECRETS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "authorization",
];

/// Arguments larger than this (serialized, after redaction) are not kept, only their digest.
pub const MAX_KEPT_BYTES: usize = 16 * 1024;

/// The redaction rules, ready to apply.
#[derive(Debug, Clone, Default)]
pub struct Redaction {
    /// Lowercased names, redacted at any depth.
    names: HashSet<String>,
    /// Paths of object keys from the top.
    paths: Vec<Vec<String>>,
}

impl Redaction {
    /// The rules of `[audit] redact`, plus [`COMMON_SECRETS`] when `common`.
    pub fn new(rules: &[RedactRule], common: bool) -> Self {
        let mut names: HashSet<String> = HashSet::new();
        if common {
            names.extend(COMMON_SECRETS.iter().map(|s| (*s).to_owned()));
        }
        let mut paths = Vec::new();
        for rule in rules {
            match rule {
                RedactRule::Name(name) => {
                    names.insert(name.to_lowercase());
                }
                RedactRule::Path(path) => paths.push(path.clone()),
            }
        }
        Self { names, paths }
    }

    /// The arguments to keep as the trail stores them (JSON text), and the SHA-256 (hex) of
    /// `arguments` as given. The text the digest is taken of is kept as it is when no rule
    /// applies (the usual case), so a call's arguments are serialised once, not copied.
    pub fn record(&self, arguments: &Map<String, Value>) -> (Arguments, String) {
        let received = serde_json::value::to_raw_value(arguments).unwrap_or_default();
        let digest = hex(&Sha256::digest(received.get().as_bytes()));
        let kept = if self.applies_to(arguments) {
            Arguments::from_value(&self.kept(arguments, received.get().len()))
        } else if received.get().len() > MAX_KEPT_BYTES {
            Arguments::from_value(&too_large(received.get().len()))
        } else {
            Arguments(received)
        };
        (kept, digest)
    }

    /// Whether a rule redacts something of `arguments`.
    fn applies_to(&self, arguments: &Map<String, Value>) -> bool {
        (!self.names.is_empty() && has_name(arguments, &self.names))
            || self.paths.iter().any(|path| has_path(arguments, path))
    }

    /// The arguments to keep, and the SHA-256 (hex) of `arguments` as given.
    pub fn apply(&self, arguments: &Map<String, Value>) -> (Value, String) {
        let (digest, received) = match serde_json::to_vec(arguments) {
            Ok(bytes) => (hex(&Sha256::digest(&bytes)), bytes.len()),
            Err(_) => (String::new(), 0),
        };
        (self.kept(arguments, received), digest)
    }

    /// `arguments` (`received` bytes serialised) redacted, or the note that they are too
    /// large to keep.
    fn kept(&self, arguments: &Map<String, Value>, received: usize) -> Value {
        let mut kept = Value::Object(arguments.clone());
        if !self.names.is_empty() {
            redact_names(&mut kept, &self.names);
        }
        for path in &self.paths {
            redact_path(&mut kept, path);
        }
        // Redaction changes the size by a few bytes per field: only arguments near the limit
        // are measured again.
        let size = if received + 1024 > MAX_KEPT_BYTES {
            serde_json::to_vec(&kept).map_or(0, |b| b.len())
        } else {
            received
        };
        if size > MAX_KEPT_BYTES {
            kept = too_large(size);
        }
        kept
    }
}

fn too_large(size: usize) -> Value {
    Value::String(format!(
        "[{size} bytes: too large to keep; see arguments_sha256]"
    ))
}

/// A record's arguments: JSON text, written to the stores and the JSON-lines copy as it is.
#[derive(Clone)]
pub struct Arguments(Box<RawValue>);

impl Arguments {
    /// `text`, if it is JSON; otherwise the text as a JSON string (a store's damaged row).
    pub fn from_json(text: &str) -> Self {
        match serde_json::from_str::<Box<RawValue>>(text) {
            Ok(raw) => Self(raw),
            Err(_) => Self::from_value(&Value::String(text.to_owned())),
        }
    }

    /// `value`'s text.
    pub fn from_value(value: &Value) -> Self {
        Self(serde_json::value::to_raw_value(value).unwrap_or_default())
    }

    /// A value read back from a store.
    pub fn from_raw(raw: Box<RawValue>) -> Self {
        Self(raw)
    }

    /// As the `serde_json` type (for stores that take it).
    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// The JSON text.
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// As a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.text()).unwrap_or(Value::Null)
    }
}

impl PartialEq for Arguments {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl std::fmt::Debug for Arguments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl serde::Serialize for Arguments {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

fn has_name(map: &Map<String, Value>, names: &HashSet<String>) -> bool {
    map.iter()
        .any(|(key, v)| is_named(key, names) || has_name_in(v, names))
}

fn has_name_in(value: &Value, names: &HashSet<String>) -> bool {
    match value {
        Value::Object(map) => has_name(map, names),
        Value::Array(items) => items.iter().any(|item| has_name_in(item, names)),
        _ => false,
    }
}

/// Whether `key` is one of `names` (lowercased), in any case.
fn is_named(key: &str, names: &HashSet<String>) -> bool {
    if key.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        names.contains(&key.to_lowercase())
    } else {
        names.contains(key)
    }
}

fn has_path(value: &Map<String, Value>, path: &[String]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    match (value.get(first), rest.is_empty()) {
        (Some(_), true) => true,
        (Some(Value::Object(map)), false) => has_path(map, rest),
        _ => false,
    }
}

fn redact_names(value: &mut Value, names: &HashSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_named(key, names) {
                    *v = Value::String(REDACTED.to_owned());
                } else {
                    redact_names(v, names);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_names(v, names)),
        _ => {}
    }
}

fn redact_path(value: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Value::Object(map) = value else {
        return;
    };
    let Some(v) = map.get_mut(first) else {
        return;
    };
    if rest.is_empty() {
        *v = Value::String(REDACTED.to_owned());
    } else {
        redact_path(v, rest);
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(texts: &[&str]) -> Vec<RedactRule> {
        texts
            .iter()
            .map(|t| RedactRule::parse(t).unwrap())
            .collect()
    }

    #[test]
    fn names_anywhere_paths_in_one_place_and_common_secrets() {
        let r = Redaction::new(&rules(&["ssn", "$.contact.phone"]), true);
        let args = json!({
            "ssn": "123", "password": "p", "Token": "t",
            "nested": {"ssn": "456", "list": [{"ssn": "789", "keep": 1}]},
            "contact": {"phone": "555", "email": "a@b"},
            "phone": "kept at the top",
        });
        let (kept, digest) = r.apply(args.as_object().unwrap());
        assert_eq!(
            kept,
            json!({
                "ssn": REDACTED, "password": REDACTED, "Token": REDACTED,
                "nested": {"ssn": REDACTED, "list": [{"ssn": REDACTED, "keep": 1}]},
                "contact": {"phone": REDACTED, "email": "a@b"},
                "phone": "kept at the top",
            })
        );
        // The digest is of the arguments as given, so it differs from the kept ones'.
        let expected = hex(&Sha256::digest(serde_json::to_vec(&args).unwrap()));
        assert_eq!(digest, expected);
    }

    #[test]
    fn common_secrets_can_be_turned_off_and_huge_arguments_are_not_kept() {
        let r = Redaction::new(&[], false);
        let (kept, _) = r.apply(json!({"token": "t"}).as_object().unwrap());
        assert_eq!(kept, json!({"token": "t"}));
        let big = "x".repeat(MAX_KEPT_BYTES + 1);
        let (kept, digest) = r.apply(json!({"text": big}).as_object().unwrap());
        assert!(
            kept.as_str().unwrap().contains("too large to keep"),
            "{kept}"
        );
        assert_eq!(digest.len(), 64);
    }

    #[test]
    fn records_keep_the_received_text_unless_a_rule_applies() {
        let r = Redaction::new(&rules(&["$.contact.phone"]), true);
        for (args, expected) in [
            (
                json!({"query": "VPN", "limit": 5}),
                json!({"query": "VPN", "limit": 5}),
            ),
            (
                json!({"list": [[{"Api_Key": "k"}]], "contact": {"phone": "555"}}),
                json!({"list": [[{"Api_Key": REDACTED}]], "contact": {"phone": REDACTED}}),
            ),
            (
                json!({"contact": {"email": "a@b"}}),
                json!({"contact": {"email": "a@b"}}),
            ),
        ] {
            let map = args.as_object().unwrap();
            let (kept, digest) = r.record(map);
            assert_eq!(kept.to_value(), expected);
            assert_eq!((kept.to_value(), digest.clone()), r.apply(map));
            assert_eq!(
                digest,
                hex(&Sha256::digest(serde_json::to_vec(&args).unwrap()))
            );
        }
        let big = json!({"text": "x".repeat(MAX_KEPT_BYTES + 1)});
        let (kept, _) = r.record(big.as_object().unwrap());
        assert!(kept.text().contains("too large to keep"), "{kept:?}");
    }

    #[test]
    fn rules_are_parsed_as_names_or_paths() {
        assert_eq!(
            RedactRule::parse("password").unwrap(),
            RedactRule::Name("password".into())
        );
        assert_eq!(
            RedactRule::parse("$.password").unwrap(),
            RedactRule::Path(vec!["password".into()])
        );
        assert_eq!(
            RedactRule::parse("auth.token").unwrap(),
            RedactRule::Path(vec!["auth".into(), "token".into()])
        );
        for bad in ["", "$", "$.", "a..b", "."] {
            assert!(RedactRule::parse(bad).is_err(), "{bad:?}");
        }
    }
}
