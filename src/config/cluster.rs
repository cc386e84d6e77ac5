//! `[cluster]` of `switchboard.toml`: several replicas sharing state through Redis.
//!
//! Without the table nothing of cluster mode exists at run time (see [`crate::cluster`]).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{Error, Errors};

/// `[cluster]`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://...` (TLS, the server checked
    /// against the system's roots or `SSL_CERT_FILE`) or `unix:///path/to/redis.sock`, usually
    /// `"${REDIS_URL}"`.
    pub redis_url: String,
    /// This replica's name in the cluster; unique among the live replicas. Default (also
    /// when empty): the host name and the process id (`web-1-4711`).
    #[serde(default)]
    pub node_id: Option<String>,
    /// How the other replicas reach this one over HTTP (`http://10.0.0.5:8080`). Default:
    /// `http://` and the listen address, with the host name in place of an unspecified IP
    /// (`0.0.0.0`).
    #[serde(default)]
    pub advertise_url: Option<String>,
    /// Milliseconds between heartbeats (the replica's registration in Redis is renewed).
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Milliseconds after its last heartbeat that a replica that stopped renewing (killed,
    /// cut off) is dropped from the cluster. At least twice `heartbeat_ms`.
    #[serde(default = "default_node_ttl_ms")]
    pub node_ttl_ms: u64,
    /// Prefix of every Redis key, so that several clusters can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

fn default_heartbeat_ms() -> u64 {
    1000
}

fn default_node_ttl_ms() -> u64 {
    5000
}

fn default_key_prefix() -> String {
    "switchboard".into()
}

/// `[cluster]`, validated.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The Redis URL, as configured (it may hold a password: see [`Self::redis_url_redacted`]).
    pub redis_url: secrecy::SecretString,
    /// This replica's id; `None`: host name and pid, decided at start.
    pub node_id: Option<String>,
    /// This replica's address for the others; `None`: derived from the listen address.
    pub advertise_url: Option<String>,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Registration lifetime without a heartbeat.
    pub node_ttl: Duration,
    /// Key prefix.
    pub key_prefix: String,
}

impl ClusterSpec {
    /// Validates `[cluster]`.
    ///
    /// # Errors
    /// Every invalid value, naming `file` and the key.
    pub fn from_config(c: ClusterConfig, file: &Path) -> Result<Self, Errors> {
        let mut errors = Errors::default();
        let url = c.redis_url.trim();
        if url.is_empty() {
            errors.0.push(Error::key(
                file,
                "cluster.redis_url",
                "is empty: set it to redis://host:port (e.g. \"${REDIS_URL}\")",
            ));
        } else if let Err(e) = redis::Client::open(url) {
            errors.0.push(Error::key(
                file,
                "cluster.redis_url",
                format!(
                    "{:?} is not a Redis URL ({e}): expected redis://[user:password@]host[:port][/db], or rediss:// for TLS",
                    redact(url)
                ),
            ));
        }
        // Empty (e.g. "${SWITCHBOARD_NODE_ID:-}" with the variable unset): the default.
        let node_id = c.node_id.filter(|id| !id.trim().is_empty());
        if let Some(id) = &node_id
            && !valid_node_id(id)
        {
            errors.0.push(Error::key(
                file,
                "cluster.node_id",
                format!(
                    "{id:?} is not a valid node id: use 1 to 64 letters, digits, '-', '_' or '.'"
                ),
            ));
        }
        if let Some(u) = &c.advertise_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            errors.0.push(Error::key(
                file,
                "cluster.advertise_url",
                format!("{u:?} is not an HTTP URL: expected http://host:port"),
            ));
        }
        if c.heartbeat_ms < 50 {
            errors.0.push(Error::key(
                file,
                "cluster.heartbeat_ms",
                format!("{} is too small: use at least 50", c.heartbeat_ms),
            ));
        }
        if c.node_ttl_ms < 2 * c.heartbeat_ms {
            errors.0.push(Error::key(
                file,
                "cluster.node_ttl_ms",
                format!(
                    "{} is less than twice cluster.heartbeat_ms ({}): one late heartbeat would drop the replica",
                    c.node_ttl_ms, c.heartbeat_ms
                ),
            ));
        }
        if c.key_prefix.is_empty()
            || !c
                .key_prefix
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.:".contains(ch))
        {
            errors.0.push(Error::key(
                file,
                "cluster.key_prefix",
                format!(
                    "{:?} is not a valid prefix: use letters, digits, '-', '_', '.' or ':'",
                    c.key_prefix
                ),
            ));
        }
        errors.into_result(Self {
            redis_url: url.to_owned().into(),
            node_id,
            advertise_url: c.advertise_url.map(|u| u.trim_end_matches('/').to_owned()),
            heartbeat: Duration::from_millis(c.heartbeat_ms),
            node_ttl: Duration::from_millis(c.node_ttl_ms),
            key_prefix: c.key_prefix,
        })
    }

    /// The Redis URL with any password replaced by `***`, for messages and logs.
    pub fn redis_url_redacted(&self) -> String {
        use secrecy::ExposeSecret;
        redact(self.redis_url.expose_secret())
    }
}

/// Whether `id` may name a node (it becomes part of Redis keys and of URLs).
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `url` with its password (if any) replaced by `***`.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Cannot fail: the URL has a password, so it has a host.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(url: &str) -> ClusterConfig {
        ClusterConfig {
            redis_url: url.into(),
            node_id: None,
            advertise_url: None,
            heartbeat_ms: default_heartbeat_ms(),
            node_ttl_ms: default_node_ttl_ms(),
            key_prefix: default_key_prefix(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let s =
            ClusterSpec::from_config(config("redis://127.0.0.1:6379/0"), Path::new("f")).unwrap();
        assert_eq!(s.heartbeat, Duration::from_secs(1));
        assert_eq!(s.node_ttl, Duration::from_secs(5));
        assert_eq!(s.redis_url_redacted(), "redis://127.0.0.1:6379/0");
    }

    #[test]
    fn every_bad_value_is_named() {
        let mut c = config("http://nope");
        c.node_id = Some("has space".into());
        c.advertise_url = Some("10.0.0.1:80".into());
        c.heartbeat_ms = 10;
        c.node_ttl_ms = 15;
        c.key_prefix = "a b".into();
        let errors = ClusterSpec::from_config(c, Path::new("switchboard.toml")).unwrap_err();
        let keys: Vec<_> = errors.0.iter().filter_map(|e| e.key.as_deref()).collect();
        assert_eq!(
            keys,
            [
                "cluster.redis_url",
                "cluster.node_id",
                "cluster.advertise_url",
                "cluster.heartbeat_ms",
                "cluster.node_ttl_ms",
                "cluster.key_prefix"
            ]
        );
    }

    #[test]
    fn passwords_never_reach_messages() {
        let s = ClusterSpec::from_config(
            config("redis://user:s3cret@redis.internal:6379"),
            Path::new("f"),
        )
        .unwrap();
        assert!(!s.redis_url_redacted().contains("s3cret"));
        let errors =
            ClusterSpec::from_config(config("redis://:s3cret@"), Path::new("f")).unwrap_err();
        assert!(!errors.to_string().contains("s3cret"), "{errors}");
    }
}
