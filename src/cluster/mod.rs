//! Cluster mode: several replicas behind one load balancer, sharing state through Redis.
//!
//! Only built when `switchboard.toml` has `[cluster]`; a single process never touches any of
//! this. What lives here:
//!
//! - **Membership** ([`Cluster`]): each replica registers itself (`<prefix>:node:<id>`, a
//!   JSON [`NodeRecord`] with a TTL, and its id in the set `<prefix>:nodes`) and renews the
//!   registration every heartbeat. A replica that stops renewing (killed, cut off from Redis)
//!   drops out when its key expires. `GET /admin/cluster` lists the live ones.
//! - **Health**: the heartbeat's outcome is the replica's view of Redis. While it fails,
//!   `/readyz` answers 503 and the replica keeps retrying; it recovers on its own.
//!
//! - **Sessions** ([`sessions`]): Streamable HTTP sessions any replica can serve.
//! - **Resumption** ([`events`]): Streamable HTTP stream events kept in Redis, so that a
//!   client resumes (`Last-Event-ID`) on any replica.
//! - **Forwarding** ([`forward`]): legacy POSTs that land away from their stream's replica,
//!   operators' decisions on approvals waiting on another replica, and the other replicas'
//!   parts of the admin API's cluster-wide lists (sessions, pending approvals).
//! - **Limits** ([`limits`]): request and agent-run rates per client across the replicas.
//!
//! Keys, all under the configured prefix: `node:<id>` (string, PX = node TTL), `nodes` (set),
//! `session:<id>` (string, PX = idle timeout), `limit:<kind>:<client>` (GCRA state),
//! `events:<stream id>` (list, PX = 5 min), `hop-secret`; channel `ended` (ids of ended sessions).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::config::cluster::{ClusterSpec, valid_node_id};

pub mod events;
pub mod forward;
pub mod limits;
pub mod sessions;
pub mod tasks;
pub mod usage;

/// How long one Redis command may take before it counts as failed: a Redis on a loaded
/// host (the replicas, Redis and the balancer on two busy cores) can take a second; what
/// waits on it (a session's first request on this replica, a stream event) degrades, or
/// retries, rather than failing, so a long wait is the lesser harm.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What one heartbeat found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// Redis answered.
    pub healthy: bool,
    /// Redis answered after failing before.
    pub came_back: bool,
    /// Redis answered without the cluster's data (it restarted empty).
    pub emptied: bool,
}

impl Heartbeat {
    /// Whether this replica must announce what it holds again.
    pub fn must_reannounce(self) -> bool {
        self.came_back || self.emptied
    }
}

/// Why cluster mode could not start, or a Redis operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis did not answer at start.
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable {
        /// The URL, password redacted.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// Another live replica already uses this node id.
    #[error(
        "another live replica is registered as node {0:?}: give each replica its own cluster.node_id (or leave it unset)"
    )]
    NodeIdTaken(String),
    /// The default node id could not be built from the host name.
    #[error("cannot derive a node id from the host name {0:?}: set cluster.node_id")]
    NoNodeId(String),
    /// A Redis command failed (connection lost, timeout, ...).
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// What a replica publishes about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node id.
    pub id: String,
    /// Where the other replicas reach it.
    pub url: String,
    /// Random per process: tells a restarted replica with the same id from the old one.
    pub instance: String,
    /// Gateway version.
    pub version: String,
    /// Start time, Unix milliseconds.
    pub started_at_ms: u64,
    /// Last heartbeat, Unix milliseconds.
    pub heartbeat_at_ms: u64,
    /// Live sessions on this replica at its last heartbeat.
    pub sessions: u64,
}

/// This replica's membership in the cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

struct Inner {
    settings: ClusterSpec,
    /// For connections of their own (pub/sub).
    client: redis::Client,
    /// Commands, multiplexed; reconnects on its own.
    redis: ConnectionManager,
    /// This replica's record (the heartbeat updates `heartbeat_at_ms` and `sessions`).
    me: std::sync::Mutex<NodeRecord>,
    /// Whether the last heartbeat reached Redis.
    healthy: AtomicBool,
    /// Set by [`Cluster::leave`]: no heartbeat registers the replica again.
    left: AtomicBool,
    /// Held by a heartbeat while it writes, and by [`Cluster::leave`]: a heartbeat in
    /// flight cannot land after the registration was removed.
    registration: tokio::sync::Mutex<()>,
    /// The secret replicas prove themselves with on a hop to another replica (kept in
    /// Redis: whoever can read Redis is part of the cluster anyway).
    hop_secret: String,
    /// For hops to other replicas.
    http: reqwest::Client,
}

impl Cluster {
    /// Connects to Redis and registers this replica, reachable at `advertise_url`.
    ///
    /// A node id held by another live replica is waited on for one TTL (a replica restarted
    /// with a fixed id finds its previous registration still there until it expires).
    ///
    /// # Errors
    /// [`Error::Unreachable`] when Redis does not answer, [`Error::NodeIdTaken`] when another
    /// replica keeps the id alive.
    pub async fn join(
        settings: ClusterSpec,
        advertise_url: String,
        host_name: &str,
    ) -> Result<Self, Error> {
        use secrecy::ExposeSecret;
        // Before any client: `rediss://` needs the TLS provider too.
        crate::net::install_crypto_provider();
        let url = settings.redis_url_redacted();
        let unreachable = |e: &dyn std::fmt::Display| Error::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let client =
            redis::Client::open(settings.redis_url.expose_secret()).map_err(|e| unreachable(&e))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let mut redis = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| unreachable(&e))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut redis)
            .await
            .map_err(|e| unreachable(&e))?;
        let hop_secret = shared_secret(&mut redis, &settings.key_prefix)
            .await
            .map_err(|e| unreachable(&e))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| unreachable(&e))?;
        let id = match &settings.node_id {
            Some(id) => id.clone(),
            None => default_node_id(host_name)?,
        };
        let now = unix_ms(SystemTime::now());
        let me = NodeRecord {
            id,
            url: advertise_url,
            instance: uuid::Uuid::new_v4().to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at_ms: now,
            heartbeat_at_ms: now,
            sessions: 0,
        };
        let cluster = Self(Arc::new(Inner {
            settings,
            client,
            redis,
            me: std::sync::Mutex::new(me),
            healthy: AtomicBool::new(true),
            left: AtomicBool::new(false),
            registration: tokio::sync::Mutex::new(()),
            hop_secret,
            http,
        }));
        cluster.register().await?;
        Ok(cluster)
    }

    /// Claims this replica's key (`SET NX`), waiting up to one TTL for a stale one to expire.
    async fn register(&self) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + self.0.settings.node_ttl + self.heartbeat();
        loop {
            let record = self.record();
            let mut redis = self.0.redis.clone();
            let claimed: Option<String> = redis
                .set_options(
                    self.node_key(&record.id),
                    serde_json::to_string(&record).unwrap_or_default(),
                    redis::SetOptions::default()
                        .conditional_set(redis::ExistenceCheck::NX)
                        .with_expiration(redis::SetExpiry::PX(self.ttl_ms())),
                )
                .await?;
            if claimed.is_some() {
                let _: () = redis.sadd(self.key("nodes"), &record.id).await?;
                tracing::info!(node = %record.id, url = %record.url, redis = %self.0.settings.redis_url_redacted(), "Joined the cluster.");
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::NodeIdTaken(record.id));
            }
            tracing::warn!(node = %record.id, "This node id is still registered (a previous run, or another replica); waiting for it to expire.");
            tokio::time::sleep(self.heartbeat()).await;
        }
    }

    /// Renews this replica's registration; records whether Redis answered. Does nothing
    /// once the replica has left. Says whether Redis is back after failing, or answered with
    /// its data gone (a restart without persistence): then what this replica holds must be
    /// announced again.
    pub async fn heartbeat_once(&self, sessions: u64) -> Heartbeat {
        let _writing = self.0.registration.lock().await;
        if self.0.left.load(Ordering::Acquire) {
            return Heartbeat::default();
        }
        let record = {
            let mut me = self.me();
            me.heartbeat_at_ms = unix_ms(SystemTime::now());
            me.sessions = sessions;
            me.clone()
        };
        let mut redis = self.0.redis.clone();
        let result: Result<bool, redis::RedisError> = async {
            let _: () = redis
                .pset_ex(
                    self.node_key(&record.id),
                    serde_json::to_string(&record).unwrap_or_default(),
                    self.ttl_ms(),
                )
                .await?;
            let _: () = redis.sadd(self.key("nodes"), &record.id).await?;
            // A Redis that restarted empty gets the secret back from the replicas; that it
            // had to is how a replica learns the data is gone.
            let restored: Option<String> = redis
                .set_options(
                    self.key("hop-secret"),
                    self.hop_secret(),
                    redis::SetOptions::default().conditional_set(redis::ExistenceCheck::NX),
                )
                .await?;
            Ok(restored.is_some())
        }
        .await;
        let was_healthy = self.0.healthy.swap(result.is_ok(), Ordering::Relaxed);
        match result {
            Err(e) => {
                if was_healthy {
                    tracing::error!(error = %e, redis = %self.0.settings.redis_url_redacted(), "Lost Redis: this replica is not ready until it is back.");
                }
                Heartbeat::default()
            }
            Ok(emptied) => {
                if !was_healthy {
                    tracing::info!(redis = %self.0.settings.redis_url_redacted(), "Redis is back: this replica is ready again.");
                }
                if emptied {
                    tracing::warn!(redis = %self.0.settings.redis_url_redacted(), "Redis lost its data (restarted without persistence?): announcing this replica's sessions again.");
                }
                Heartbeat {
                    healthy: true,
                    came_back: !was_healthy,
                    emptied,
                }
            }
        }
    }

    /// The live replicas, by id, from Redis. Entries whose registration expired are
    /// removed from the member set on the way.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, Error> {
        let mut redis = self.0.redis.clone();
        let mut ids: Vec<String> = redis.smembers(self.key("nodes")).await?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.node_key(id)).collect();
        let values: Vec<Option<String>> = redis.mget(&keys).await?;
        let mut nodes = Vec::new();
        let mut gone = Vec::new();
        for (id, value) in ids.into_iter().zip(values) {
            match value.and_then(|v| serde_json::from_str::<NodeRecord>(&v).ok()) {
                Some(record) => nodes.push(record),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            let _: Result<(), _> = redis.srem(self.key("nodes"), &gone).await;
        }
        Ok(nodes)
    }

    /// Removes this replica's registration (on shutdown), if it is still its own; no
    /// heartbeat renews it afterwards.
    pub async fn leave(&self) {
        let _writing = self.0.registration.lock().await;
        self.0.left.store(true, Ordering::Release);
        let record = self.record();
        let mut redis = self.0.redis.clone();
        let result: Result<i64, _> = redis::Script::new(
            r"local v = redis.call('GET', KEYS[1])
              if v and cjson.decode(v).instance == ARGV[1] then
                redis.call('DEL', KEYS[1])
                redis.call('SREM', KEYS[2], ARGV[2])
                return 1
              end
              return 0",
        )
        .key(self.node_key(&record.id))
        .key(self.key("nodes"))
        .arg(&record.instance)
        .arg(&record.id)
        .invoke_async(&mut redis)
        .await;
        match result {
            Ok(_) => tracing::info!(node = %record.id, "Left the cluster."),
            Err(e) => {
                tracing::warn!(node = %record.id, error = %e, "Could not deregister; the registration expires on its own.");
            }
        }
    }

    /// The address of live replica `id`, if it is one.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn node_url(&self, id: &str) -> Result<Option<String>, Error> {
        let mut redis = self.0.redis.clone();
        let value: Option<String> = redis.get(self.node_key(id)).await?;
        Ok(value
            .and_then(|v| serde_json::from_str::<NodeRecord>(&v).ok())
            .map(|r| r.url))
    }

    /// The secret that marks a request as a hop from another replica.
    pub fn hop_secret(&self) -> &str {
        &self.0.hop_secret
    }

    /// The HTTP client for hops to other replicas.
    pub fn http(&self) -> &reqwest::Client {
        &self.0.http
    }

    /// Whether the last heartbeat reached Redis.
    pub fn is_healthy(&self) -> bool {
        self.0.healthy.load(Ordering::Relaxed)
    }

    /// This replica's id.
    pub fn node_id(&self) -> String {
        self.me().id.clone()
    }

    /// This replica's current record.
    pub fn record(&self) -> NodeRecord {
        self.me().clone()
    }

    /// The configured heartbeat period.
    pub fn heartbeat(&self) -> Duration {
        self.0.settings.heartbeat
    }

    /// The configured node TTL.
    pub fn node_ttl(&self) -> Duration {
        self.0.settings.node_ttl
    }

    /// The Redis URL, password redacted.
    pub fn redis_url(&self) -> String {
        self.0.settings.redis_url_redacted()
    }

    fn me(&self) -> std::sync::MutexGuard<'_, NodeRecord> {
        self.0
            .me
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.0.settings.node_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.0.settings.key_prefix)
    }

    fn node_key(&self, id: &str) -> String {
        self.key(&format!("node:{id}"))
    }
}

/// The cluster's hop secret: made by the first replica, read by the others.
async fn shared_secret(
    redis: &mut ConnectionManager,
    prefix: &str,
) -> Result<String, redis::RedisError> {
    let key = format!("{prefix}:hop-secret");
    let candidate = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let _: Option<String> = redis
        .set_options(
            &key,
            candidate,
            redis::SetOptions::default().conditional_set(redis::ExistenceCheck::NX),
        )
        .await?;
    redis.get(&key).await
}

/// `host-pid`, with anything a node id may not hold dropped from the host name.
fn default_node_id(host_name: &str) -> Result<String, Error> {
    let host: String = host_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(48)
        .collect();
    let id = format!("{host}-{}", std::process::id());
    if host.is_empty() || !valid_node_id(&id) {
        return Err(Error::NoNodeId(host_name.to_owned()));
    }
    Ok(id)
}

/// The machine's host name: `/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The URL other replicas use to reach a replica listening on `addr`: `configured` if set,
/// else `http://addr`, with the host name in place of an unspecified IP.
pub fn advertise_url(configured: Option<&str>, addr: std::net::SocketAddr, host: &str) -> String {
    match configured {
        Some(url) => url.to_owned(),
        None if addr.ip().is_unspecified() => format!("http://{host}:{}", addr.port()),
        None => format!("http://{addr}"),
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_node_id_is_host_and_pid() {
        let id = default_node_id("web-1.example").unwrap();
        assert_eq!(id, format!("web-1.example-{}", std::process::id()));
        let id = default_node_id("h\u{e9}te 1").unwrap();
        assert!(id.starts_with("hte1-"), "{id}");
        assert!(matches!(
            default_node_id("\u{e9}\u{e9}"),
            Err(Error::NoNodeId(_))
        ));
    }

    #[test]
    fn advertise_url_prefers_the_configured_one_then_the_listen_address() {
        let any: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let lo: std::net::SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(
            advertise_url(Some("http://gw-1:8080"), any, "h"),
            "http://gw-1:8080"
        );
        assert_eq!(advertise_url(None, any, "gw-2"), "http://gw-2:8080");
        assert_eq!(advertise_url(None, lo, "h"), "http://127.0.0.1:9000");
    }
}
