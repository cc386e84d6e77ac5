//! Cluster mode: Streamable HTTP sessions any replica can serve.
//!
//! A session opened here is recorded in Redis ([`SessionStore::share`]) with its agent, its
//! owner and the client's `initialize` parameters; a replica that gets a request for a
//! session it does not hold takes it in ([`SessionStore::adopt`]) as a parked session, whose
//! engine then starts from the recorded handshake (the client never re-initializes). Ending a
//! session anywhere ends it everywhere ([`SessionStore::end_everywhere`],
//! [`SessionStore::watch_ended`]). Legacy SSE sessions are not shared: their stream is on one
//! replica, and POSTs that land elsewhere are forwarded to it (see `mcp::edge`).

use std::sync::Arc;
use std::time::Duration;

use super::{Busy, Engine, Entry, Peer, SessionStats, SessionStore, Transport};
use crate::clients::ClientKey;
use crate::cluster::Cluster;

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.pending_ends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tells the cluster session `id` ended (record deleted, tombstone, every replica told);
    /// while Redis does not answer, keeps it for [`SessionStore::reconcile`].
    async fn end_in_cluster(&self, id: &str) {
        if let Err(e) = self.cluster.end_session(id, self.ttl).await {
            tracing::warn!(session = %id, error = %e, "Ended a session here; the other replicas are told when Redis is back.");
            self.pending().push(id.to_owned());
        }
    }
}

/// The replicas a store shares its sessions with.
#[derive(Clone)]
pub(super) struct Shared {
    cluster: Cluster,
    /// A shared record lives this long unused (the idle timeout).
    ttl: Duration,
    /// Takeovers and remote ends are counted here.
    metrics: Arc<crate::metrics::Metrics>,
    /// Sessions ended here while Redis did not answer: the cluster is told when it is back.
    pending_ends: Arc<std::sync::Mutex<Vec<String>>>,
}

/// A Streamable HTTP session held here, as the cluster records it: id, agent, owner and the
/// client's `initialize` parameters.
type Held = (
    Arc<str>,
    Arc<str>,
    ClientKey,
    Arc<rmcp::model::InitializeRequestParams>,
);

/// Why a session opened elsewhere could not be taken in.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// It is another client's or another agent's: as far as the caller knows, it does not
    /// exist.
    #[error("session {0} not found")]
    NotYours(String),
    /// Redis did not answer.
    #[error("session {id} is not on this replica and looking it up failed ({reason})")]
    Unavailable {
        /// The session.
        id: String,
        /// What Redis said.
        reason: String,
    },
}

impl SessionStore {
    /// A store that shares its Streamable HTTP sessions with the replicas of `cluster`;
    /// a shared record lives `idle_timeout` unused.
    pub fn shared(
        cluster: Cluster,
        idle_timeout: Duration,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            map: Arc::default(),
            shared: Some(Shared {
                cluster,
                ttl: idle_timeout,
                metrics,
                pending_ends: Arc::default(),
            }),
        }
    }

    /// Records session `id` of `agent` and `owner`, just opened here, so that any replica
    /// can serve it (cluster mode; nothing otherwise).
    pub async fn share(&self, id: &str, agent: &str, owner: &ClientKey) {
        let (Some(shared), Some(handshake)) = (&self.shared, self.handshake(id)) else {
            return;
        };
        if let Err(e) = shared
            .cluster
            .save_session(id, agent, owner, (*handshake).clone(), shared.ttl)
            .await
        {
            tracing::warn!(session = %id, error = %e, "Cannot record the session in Redis: only this replica can serve it.");
        }
    }

    /// Keeps the shared record of session `id` alive while it is used (renewed at most
    /// every tenth of the idle timeout; a failure is left to the next).
    pub async fn renew(&self, id: &str, stats: &SessionStats) {
        let Some(shared) = &self.shared else {
            return;
        };
        if stats.shared_touch_due(shared.ttl / 10) {
            let _ = shared.cluster.touch_session(id, shared.ttl).await;
        }
    }

    /// Takes in session `id` of `agent`, opened on another replica, for `caller` seen from
    /// `peer`, served here by `engine`. `Ok(None)`: single-node mode, or the cluster does not
    /// know the session.
    ///
    /// # Errors
    /// See [`AdoptError`].
    pub async fn adopt(
        &self,
        id: &str,
        agent: &Arc<str>,
        caller: &ClientKey,
        peer: Peer,
        engine: Arc<dyn Engine>,
    ) -> Result<Option<Busy>, AdoptError> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        // A read: one hiccup of Redis (a timeout on a loaded host, a reconnect) is retried
        // once before the request fails.
        let record = match shared.cluster.load_session(id).await {
            Ok(record) => record,
            Err(e) => {
                tracing::debug!(session = %id, error = %e, "Looking up a session in Redis failed; trying again.");
                shared
                    .cluster
                    .load_session(id)
                    .await
                    .map_err(|e| AdoptError::Unavailable {
                        id: id.to_owned(),
                        reason: e.to_string(),
                    })?
            }
        };
        let Some(record) = record else {
            return Ok(None);
        };
        if *record.agent != **agent || record.owner != crate::cluster::sessions::owner_tag(caller) {
            return Err(AdoptError::NotYours(id.to_owned()));
        }
        let _ = shared.cluster.touch_session(id, shared.ttl).await;
        let id: Arc<str> = Arc::from(id);
        // Two requests of the session may arrive here at once: one takes it over, the other
        // finds it taken.
        let mut took_over = false;
        let entry = self.map.entry(id.clone()).or_insert_with(|| {
            took_over = true;
            tracing::info!(session = %id, agent = %agent, transport = Transport::StreamableHttp.as_str(), "Session taken over from another replica.");
            let stats = Arc::new(SessionStats::new(peer));
            stats.set_client(caller.name().cloned());
            stats.record_handshake(&record.initialize);
            stats.mark_parked();
            Entry {
                agent: agent.clone(),
                transport: Transport::StreamableHttp,
                stats,
                engine,
                handshake: Some(Arc::new(record.initialize)),
                owner: Some(caller.clone()),
                _slot: None,
            }
        });
        let busy = entry.stats.enter();
        drop(entry);
        if took_over {
            shared.metrics.cluster_event("session_taken_over");
        }
        Ok(Some(busy))
    }

    /// A client ended session `id` here (its DELETE): in cluster mode, every other replica's
    /// copy ends too.
    pub async fn ended_by_client(&self, id: &str) {
        self.remove(id);
        if let Some(shared) = &self.shared {
            shared.end_in_cluster(id).await;
        }
    }

    /// Ends session `id` wherever it lives: here, and in cluster mode on every replica.
    /// Returns whether it existed.
    ///
    /// # Errors
    /// Cluster mode: the session is not here and Redis does not answer (if it is here, it
    /// is ended here and the other replicas' copies end at their idle timeout).
    pub async fn end_everywhere(&self, id: &str) -> Result<bool, crate::cluster::Error> {
        let here = self.end(id).await;
        let Some(shared) = &self.shared else {
            return Ok(here);
        };
        let cluster = &shared.cluster;
        // A legacy session has no shared record: ask the replicas whether one holds it.
        let elsewhere = !here
            && cluster
                .get_from_others(&format!(
                    "/admin/sessions/{}?scope=local",
                    crate::net::percent_encode(id)
                ))
                .await
                .is_ok_and(|answers| answers.iter().any(|(_, a)| matches!(a, Ok((200, _)))));
        match cluster.end_session(id, shared.ttl).await {
            Ok(known) => Ok(here || known || elsewhere),
            Err(e) if here => {
                tracing::warn!(session = %id, error = %e, "Ended a session here; the other replicas are told when Redis is back.");
                shared.pending().push(id.to_owned());
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Cluster mode, when Redis is back after failing or lost its data: tells the cluster of
    /// the sessions ended here meanwhile, ends the copies of sessions ended elsewhere
    /// meanwhile (their tombstones), and records every other Streamable HTTP session held
    /// here again, so that any replica can serve it.
    pub async fn reconcile(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let pending = std::mem::take(&mut *shared.pending());
        for id in pending {
            shared.end_in_cluster(&id).await;
        }
        let held: Vec<Held> = self
            .map
            .iter()
            .filter_map(|e| {
                Some((
                    e.key().clone(),
                    e.agent.clone(),
                    e.owner.clone()?,
                    e.handshake.clone()?,
                ))
            })
            .collect();
        let ids: Vec<&str> = held.iter().map(|(id, ..)| &**id).collect();
        let ended = match shared.cluster.ended_sessions(&ids).await {
            Ok(ended) => ended,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot reconcile sessions with the cluster; trying again at the next heartbeat that finds Redis back.");
                return;
            }
        };
        let (mut ended_here, mut announced) = (0, 0);
        for ((id, agent, owner, handshake), ended) in held.iter().zip(ended) {
            if ended {
                if self.end(id).await {
                    ended_here += 1;
                    tracing::info!(session = %id, "Session ended on another replica while this one was cut off from Redis.");
                }
            } else if shared
                .cluster
                .save_session(id, agent, owner, (**handshake).clone(), shared.ttl)
                .await
                .is_ok()
            {
                announced += 1;
            }
        }
        tracing::info!(
            announced,
            ended = ended_here,
            "Reconciled sessions with the cluster."
        );
    }

    /// Cluster mode: ends this replica's copy of every session ended elsewhere, for as long
    /// as the returned future runs (nothing to do in single-node mode).
    pub async fn watch_ended(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let store = self.clone();
        shared
            .cluster
            .watch_ended(move |id| {
                let store = store.clone();
                async move {
                    if store.end(&id).await {
                        if let Some(shared) = &store.shared {
                            shared.metrics.cluster_event("session_ended_elsewhere");
                        }
                        tracing::info!(session = %id, "Session ended on another replica.");
                    }
                }
            })
            .await;
    }
}
