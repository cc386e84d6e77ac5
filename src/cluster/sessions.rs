//! Streamable HTTP sessions shared by the replicas.
//!
//! A session opened on one replica is recorded in Redis (`<prefix>:session:<id>`, a JSON
//! [`SharedSession`]: its agent, its owner, the client's `initialize` parameters) with the
//! idle timeout as TTL, renewed while the session is used. A replica that gets a request for
//! a session it does not hold *adopts* it: it loads the record, checks agent and owner, and
//! enters it in its registry as a parked session, so that rmcp's restore path starts an
//! engine from the handshake, with no new `initialize` from the client.
//!
//! Ending a session (client `DELETE`, admin kill) deletes the record, leaves a tombstone
//! (`<prefix>:ended:<id>`, for the idle timeout) and publishes the id on `<prefix>:ended`;
//! every replica holding a copy ends it, so the next request anywhere gets 404. A replica
//! that was cut off from Redis meanwhile finds the tombstones when it is back. Idle timeouts and parking stay local: a replica drops its idle copy, the record lives
//! on while another replica serves the session, and expires when nobody does.

use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use rmcp::model::InitializeRequestParams;
use serde::{Deserialize, Serialize};

use super::{Cluster, Error, unix_ms};
use crate::clients::ClientKey;

/// A Streamable HTTP session as the cluster knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedSession {
    /// The agent it belongs to.
    pub agent: String,
    /// Who opened it: `client:<name>` or `ip:<address>` (open access).
    pub owner: String,
    /// The replica that opened it.
    pub node: String,
    /// When it was opened, Unix milliseconds.
    pub created_at_ms: u64,
    /// The client's `initialize` parameters, replayed to start an engine anywhere.
    pub initialize: InitializeRequestParams,
}

/// `client:<name>`, `ip:<address>` or `principal:<subject>`: how a session's owner is
/// written in Redis.
pub fn owner_tag(key: &ClientKey) -> String {
    match key {
        ClientKey::Named(name) => format!("client:{name}"),
        ClientKey::Ip(ip) => format!("ip:{ip}"),
        ClientKey::Principal(subject) => format!("principal:{subject}"),
    }
}

impl Cluster {
    /// Records session `id` for the other replicas, for `ttl` unless renewed.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn save_session(
        &self,
        id: &str,
        agent: &str,
        owner: &ClientKey,
        initialize: InitializeRequestParams,
        ttl: Duration,
    ) -> Result<(), Error> {
        let record = SharedSession {
            agent: agent.to_owned(),
            owner: owner_tag(owner),
            node: self.node_id(),
            created_at_ms: unix_ms(std::time::SystemTime::now()),
            initialize,
        };
        let value = serde_json::to_string(&record).unwrap_or_default();
        let mut redis = self.0.redis.clone();
        let _: () = redis
            .pset_ex(self.session_key(id), value, millis(ttl))
            .await?;
        Ok(())
    }

    /// Session `id`'s record, if it is live in the cluster.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn load_session(&self, id: &str) -> Result<Option<SharedSession>, Error> {
        let mut redis = self.0.redis.clone();
        let value: Option<String> = redis.get(self.session_key(id)).await?;
        Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Keeps session `id` alive for another `ttl`.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn touch_session(&self, id: &str, ttl: Duration) -> Result<(), Error> {
        let mut redis = self.0.redis.clone();
        let _: bool = redis
            .pexpire(
                self.session_key(id),
                i64::try_from(millis(ttl)).unwrap_or(i64::MAX),
            )
            .await?;
        Ok(())
    }

    /// Ends session `id` everywhere: deletes its record, leaves a tombstone for `ttl` (a
    /// replica cut off from Redis right now learns of the end when it is back: see
    /// [`Cluster::ended_sessions`]) and tells every replica. Returns whether the cluster
    /// knew it.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn end_session(&self, id: &str, ttl: Duration) -> Result<bool, Error> {
        let mut redis = self.0.redis.clone();
        let (deleted, (), _): (usize, (), usize) = redis::pipe()
            .atomic()
            .del(self.session_key(id))
            .pset_ex(self.ended_key(id), "1", millis(ttl))
            .publish(self.key("ended"), id)
            .query_async(&mut redis)
            .await?;
        Ok(deleted > 0)
    }

    /// Which of `ids` were ended somewhere in the cluster within the last idle timeout
    /// (their tombstones), in the order given.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn ended_sessions(&self, ids: &[&str]) -> Result<Vec<bool>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.ended_key(id)).collect();
        let mut redis = self.0.redis.clone();
        let values: Vec<Option<String>> = redis.mget(&keys).await?;
        Ok(values.into_iter().map(|v| v.is_some()).collect())
    }

    /// Runs until dropped: calls `on_ended` with the id of every session ended anywhere in
    /// the cluster (this replica's own included). Reconnects after losing Redis; sessions
    /// ended while it was away are not announced again here: the tombstones say it (see
    /// [`Cluster::ended_sessions`]).
    pub async fn watch_ended<F, Fut>(&self, on_ended: F)
    where
        F: Fn(String) -> Fut + Send + Sync,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let channel = self.key("ended");
        loop {
            match self.0.client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            if let Ok(id) = message.get_payload::<String>() {
                                on_ended(id).await;
                            }
                        }
                        tracing::warn!("Lost the cluster's session-end channel; reconnecting.");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Cannot subscribe to the cluster's session-end channel.")
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "Cannot reach Redis for the session-end channel.")
                }
            }
            tokio::time::sleep(self.heartbeat()).await;
        }
    }

    fn session_key(&self, id: &str) -> String {
        self.key(&format!("session:{id}"))
    }

    fn ended_key(&self, id: &str) -> String {
        self.key(&format!("ended:{id}"))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
