//! `AppState`: what every request handler shares.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::agents::AgentRegistry;
use crate::agents::registry::ReloadReport;
use crate::clients::Clients;
use crate::config::ServerSettings;
use crate::mcp::streamable::TrackedSessions;
use crate::mcp::{AgentEndpoint, handler::AgentServer, streamable};
use crate::sessions::SessionStore;

/// Shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The agents being served, swapped whole on reload (readers never see half a reload).
#[derive(Default)]
struct Served {
    /// One MCP endpoint per agent, by name.
    endpoints: HashMap<Arc<str>, Arc<AgentEndpoint>>,
    /// Problems of the last reload, by file.
    errors: BTreeMap<PathBuf, Vec<String>>,
}

struct Inner {
    /// Validated `[server]` settings; immutable.
    settings: ServerSettings,
    /// The agents being served; replaced atomically by [`AppState::reload`].
    served: ArcSwap<Served>,
    /// The registry the endpoints come from; a tokio mutex, so reloads run one at a time.
    registry: tokio::sync::Mutex<AgentRegistry>,
    /// Each agent's Streamable HTTP session manager, kept across reloads so that sessions
    /// opened before a change keep working. A `std` mutex: never held across `.await`.
    managers: Mutex<HashMap<Arc<str>, Arc<TrackedSessions>>>,
    /// Live sessions of both transports; mutated by the transports as sessions start/end.
    sessions: SessionStore,
    /// Root cancellation token: cancelled on shutdown, which ends every session.
    cancel: CancellationToken,
    /// Cancelled when shutdown's grace period is over: calls still running are answered
    /// with an error (before the sessions end).
    stop_calls: CancellationToken,
    /// Set when shutdown begins: readiness fails and new MCP requests get 503.
    draining: std::sync::atomic::AtomicBool,
    /// The clients and their limiters (governor keeps its own state).
    clients: Clients,
    /// Prometheus metrics, shared with the agents.
    metrics: Arc<crate::metrics::Metrics>,
    /// Background tasks (limiter pruning, the agents-directory watcher); aborted on drop.
    tasks: Mutex<Vec<AbortOnDrop>>,
    /// The file watcher, kept alive while the state lives.
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
    /// This replica's cluster membership; `None` in single-node mode.
    cluster: Option<crate::cluster::Cluster>,
}

/// Aborts a background task when dropped, so it never outlives its owner.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl AppState {
    /// State serving the agents of `registry`, alone.
    pub fn new(settings: ServerSettings, registry: AgentRegistry) -> Self {
        Self::with_cluster(settings, registry, None)
    }

    /// State serving the agents of `registry`, as a member of `cluster` if given.
    pub fn with_cluster(
        settings: ServerSettings,
        registry: AgentRegistry,
        cluster: Option<crate::cluster::Cluster>,
    ) -> Self {
        let clients = Clients::new(&settings.clients, settings.limits);
        let metrics = registry.resources().metrics.clone();
        let state = Self(Arc::new(Inner {
            settings,
            served: ArcSwap::from_pointee(Served::default()),
            registry: tokio::sync::Mutex::new(registry),
            managers: Mutex::new(HashMap::new()),
            sessions: SessionStore::default(),
            cancel: CancellationToken::new(),
            stop_calls: CancellationToken::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            clients,
            metrics,
            tasks: Mutex::new(Vec::new()),
            watcher: Mutex::new(None),
            cluster,
        }));
        let endpoints = match state.0.registry.try_lock() {
            Ok(registry) => registry
                .iter()
                .map(|agent| (agent.name().as_arc().clone(), state.endpoint(agent)))
                .collect(),
            // Nobody else has the registry yet: `try_lock` cannot fail here.
            Err(_) => HashMap::new(),
        };
        state.0.served.store(Arc::new(Served {
            endpoints,
            errors: BTreeMap::new(),
        }));
        state.spawn_pruner();
        state.spawn_sweeper();
        state.spawn_heartbeat();
        state.spawn_session_end_watcher();
        state
    }

    /// In cluster mode, ends this replica's copy of every session ended elsewhere.
    fn spawn_session_end_watcher(&self) {
        let Some(cluster) = self.0.cluster.clone() else {
            return;
        };
        let weak = Arc::downgrade(&self.0);
        self.spawn_owned(async move {
            cluster
                .watch_ended(|id| {
                    let weak = weak.clone();
                    async move {
                        if let Some(inner) = weak.upgrade() {
                            let state = AppState(inner);
                            if state.end_local_session(&id).await {
                                state.metrics().cluster_event("session_ended_elsewhere");
                                tracing::info!(session = %id, "Session ended on another replica.");
                            }
                        }
                    }
                })
                .await;
        });
    }

    /// Runs `task` for as long as the state lives (aborted when it is dropped). Without a
    /// runtime (e.g. building the state for a spec) there is nothing to run it on.
    fn spawn_owned(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.own(rt.spawn(task));
        }
    }

    /// Aborts `task` when the state is dropped.
    fn own(&self, task: tokio::task::JoinHandle<()>) {
        self.0
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(AbortOnDrop(task.abort_handle()));
    }

    /// Ends session `id` on this replica only: its stream closes, its engine stops, its
    /// calls are cancelled. Returns whether it was here.
    pub async fn end_local_session(&self, id: &str) -> bool {
        let Some(endpoint) = self.sessions().get(id).and_then(|s| self.agent(&s.agent)) else {
            return false;
        };
        endpoint.end_session(self, id).await
    }

    /// Ends session `id` wherever it lives: here, and in cluster mode on every replica.
    /// Returns whether it existed.
    ///
    /// # Errors
    /// Cluster mode: the session is not here and Redis does not answer (if it is here, it
    /// is ended here and the other replicas' copies end at their idle timeout).
    pub async fn end_session_everywhere(&self, id: &str) -> Result<bool, crate::cluster::Error> {
        let here = self.end_local_session(id).await;
        let Some(cluster) = self.cluster() else {
            return Ok(here);
        };
        // A legacy session has no shared record: ask the replicas whether one holds it.
        let elsewhere = !here
            && cluster
                .get_from_others(&format!(
                    "/admin/sessions/{}?scope=local",
                    crate::net::percent_encode(id)
                ))
                .await
                .is_ok_and(|answers| answers.iter().any(|(_, a)| matches!(a, Ok((200, _)))));
        match cluster.end_session(id).await {
            Ok(known) => Ok(here || known || elsewhere),
            Err(e) if here => {
                tracing::warn!(session = %id, error = %e, "Ended a session here but could not tell the other replicas.");
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Takes a session slot of `caller` within its `max_sessions`: counted over the cluster
    /// in cluster mode (the other replicas' counts are at most a heartbeat old), else (or
    /// while Redis is away) on this replica.
    ///
    /// # Errors
    /// [`crate::clients::Refusal::RateLimited`] (`max_sessions`) when all are taken.
    pub async fn open_session(
        &self,
        caller: &crate::clients::Caller,
    ) -> Result<crate::clients::SessionSlot, crate::clients::Refusal> {
        let clients = self.clients();
        let Some(cluster) = self.cluster().filter(|c| c.is_healthy()) else {
            return clients.open_session(caller);
        };
        let owner = crate::cluster::sessions::owner_tag(&caller.key);
        let max = clients.limits_of(caller).max_sessions;
        let elsewhere = match cluster.sessions_elsewhere(&owner).await {
            Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
            Err(e) => {
                tracing::debug!(error = %e, "Shared session counts unavailable; counting locally.");
                0
            }
        };
        let slot = clients.open_session_within(caller, max.saturating_sub(elsewhere))?;
        let here = clients
            .session_counts()
            .into_iter()
            .find(|(k, _)| *k == caller.key)
            .map_or(1, |(_, n)| n);
        let _ = cluster.publish_session_counts(&[(owner, here)]).await;
        Ok(slot)
    }

    /// Counts one MCP request of `caller` against its `requests_per_minute`: across the
    /// cluster in cluster mode (Redis), else (or while Redis is away) on this replica.
    ///
    /// # Errors
    /// [`crate::clients::Refusal::RateLimited`] when over the limit.
    pub async fn check_request(
        &self,
        caller: &crate::clients::Caller,
    ) -> Result<(), crate::clients::Refusal> {
        self.check_rate(caller, false).await
    }

    /// Counts one agent run of `caller` against its `agent_runs_per_minute`, as
    /// [`Self::check_request`] does requests.
    ///
    /// # Errors
    /// [`crate::clients::Refusal::RateLimited`] when over the limit.
    pub async fn check_agent_run(
        &self,
        caller: &crate::clients::Caller,
    ) -> Result<(), crate::clients::Refusal> {
        self.check_rate(caller, true).await
    }

    async fn check_rate(
        &self,
        caller: &crate::clients::Caller,
        run: bool,
    ) -> Result<(), crate::clients::Refusal> {
        let clients = self.clients();
        if let Some(cluster) = self.cluster().filter(|c| c.is_healthy()) {
            let limits = clients.limits_of(caller);
            let owner = crate::cluster::sessions::owner_tag(&caller.key);
            let (name, per_minute, burst) = if run {
                let n = limits.agent_runs_per_minute.get();
                (format!("runs:{owner}"), n, n)
            } else {
                (
                    format!("requests:{owner}"),
                    limits.requests_per_minute.get(),
                    limits.burst.get(),
                )
            };
            match cluster.rate_check(&name, per_minute, burst).await {
                Ok(outcome) => return clients.record(caller, run, outcome),
                // Redis just went away: this replica's own limiter protects the agents
                // until it is back.
                Err(e) => {
                    tracing::debug!(error = %e, "Shared limit unavailable; limiting locally.")
                }
            }
        }
        if run {
            clients.check_agent_run(caller)
        } else {
            clients.check_request(caller)
        }
    }

    /// Cluster mode: records a session just opened here, so any replica can serve it.
    pub async fn share_session(&self, id: &str, agent: &str, owner: &crate::clients::ClientKey) {
        let (Some(cluster), Some(handshake)) = (self.cluster(), self.sessions().handshake(id))
        else {
            return;
        };
        let ttl = self.0.settings.session_idle_timeout;
        if let Err(e) = cluster
            .save_session(id, agent, owner, (*handshake).clone(), ttl)
            .await
        {
            tracing::warn!(session = %id, error = %e, "Cannot record the session in Redis: only this replica can serve it.");
        }
    }

    /// Cluster mode: keeps the shared record of session `stats` alive while it is used
    /// (renewed at most every tenth of the idle timeout; a failure is left to the next).
    pub async fn renew_shared_session(&self, id: &str, stats: &crate::sessions::SessionStats) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let ttl = self.0.settings.session_idle_timeout;
        if stats.shared_touch_due(ttl / 10) {
            let _ = cluster.touch_session(id, ttl).await;
        }
    }

    /// Cluster mode: takes in session `id` of `agent`, opened on another replica, for
    /// `caller` (the request's `peer`). `Ok(None)`: single-node mode, or the cluster does not know the session.
    ///
    /// # Errors
    /// [`crate::error::Error::SessionNotFound`] when it is another client's or another
    /// agent's; [`crate::error::Error::ClusterUnavailable`] when Redis does not answer.
    pub async fn adopt_shared_session(
        &self,
        id: &str,
        agent: &Arc<str>,
        caller: &crate::clients::ClientKey,
        peer: crate::sessions::Peer,
    ) -> Result<Option<crate::sessions::Busy>, crate::error::Error> {
        use crate::error::Error;
        let Some(cluster) = self.cluster() else {
            return Ok(None);
        };
        let record = cluster.load_session(id).await.map_err(|e| {
            Error::ClusterUnavailable(format!(
                "session {id} is not on this replica and looking it up failed ({e})"
            ))
        })?;
        let Some(record) = record else {
            return Ok(None);
        };
        if *record.agent != **agent || record.owner != crate::cluster::sessions::owner_tag(caller) {
            return Err(Error::SessionNotFound(id.to_owned()));
        }
        let ttl = self.0.settings.session_idle_timeout;
        let _ = cluster.touch_session(id, ttl).await;
        let stats = self.sessions().adopt(
            Arc::from(id),
            agent.clone(),
            caller.clone(),
            peer,
            record.initialize,
        );
        self.metrics().cluster_event("session_taken_over");
        Ok(Some(stats.enter()))
    }

    /// This replica's cluster membership; `None` in single-node mode.
    pub fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        self.0.cluster.as_ref()
    }

    /// In cluster mode, renews this replica's registration every heartbeat (with its live
    /// session count) for as long as the state lives.
    fn spawn_heartbeat(&self) {
        let Some(cluster) = self.0.cluster.clone() else {
            return;
        };
        let weak = Arc::downgrade(&self.0);
        self.spawn_owned(async move {
            let mut tick = tokio::time::interval(cluster.heartbeat());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let sessions = inner.sessions.len() as u64;
                let counts: Vec<(String, u64)> = inner
                    .clients
                    .session_counts()
                    .into_iter()
                    .map(|(key, n)| (crate::cluster::sessions::owner_tag(&key), n))
                    .collect();
                let metrics = inner.metrics.clone();
                drop(inner);
                cluster.heartbeat_once(sessions).await;
                metrics.cluster_redis_up(cluster.is_healthy());
                if cluster.is_healthy() {
                    let _ = cluster.publish_session_counts(&counts).await;
                }
            }
        });
    }

    /// The MCP endpoint of `agent`, reusing its session manager if it had one.
    fn endpoint(&self, agent: &Arc<crate::agents::Agent>) -> Arc<AgentEndpoint> {
        let name: Arc<str> = agent.name().as_arc().clone();
        let server = AgentServer::new(agent.clone(), self.0.stop_calls.clone());
        let manager = self
            .0
            .managers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&name)
            .cloned();
        let (streamable, streamable_sessions) = streamable::service(
            server.clone(),
            name.clone(),
            self.0.sessions.clone(),
            &self.0.settings,
            self.0.cancel.child_token(),
            manager,
            self.0.cluster.clone(),
        );
        self.0
            .managers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.clone(), streamable_sessions.clone());
        Arc::new(AgentEndpoint {
            agent: agent.clone(),
            name,
            server,
            streamable,
            streamable_sessions,
        })
    }

    fn spawn_pruner(&self) {
        let weak = Arc::downgrade(&self.0);
        self.spawn_owned(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(inner) => inner.clients.prune(),
                    None => return,
                }
            }
        });
    }

    /// Parks idle sessions' engines and ends Streamable HTTP sessions idle past the idle
    /// timeout, a few times a second (see [`crate::sessions`]).
    fn spawn_sweeper(&self) {
        let period =
            self.0
                .settings
                .session_park_after
                .map_or(std::time::Duration::from_secs(1), |d| {
                    (d / 4).clamp(
                        std::time::Duration::from_millis(50),
                        std::time::Duration::from_secs(1),
                    )
                });
        let weak = Arc::downgrade(&self.0);
        self.spawn_owned(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                AppState(inner).sweep().await;
            }
        });
    }

    /// One pass of the sweeper.
    async fn sweep(&self) {
        use futures::StreamExt;
        if self.is_draining() {
            return;
        }
        let settings = &self.0.settings;
        let sweep = self
            .0
            .sessions
            .sweep(settings.session_park_after, settings.session_idle_timeout);
        let mut parked = sweep.park_legacy.iter().filter(|s| s.park()).count();
        let managers: Vec<_> = sweep
            .park_streamable
            .into_iter()
            .filter_map(|(id, agent, stats)| {
                let manager = self
                    .0
                    .managers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&agent)
                    .cloned()?;
                Some((id, stats, manager))
            })
            .collect();
        parked += futures::stream::iter(managers)
            .map(|(id, stats, manager)| async move { manager.park(&id, &stats).await })
            .buffer_unordered(64)
            .filter(|parked| std::future::ready(*parked))
            .count()
            .await;
        for (id, agent) in sweep.expired {
            tracing::info!(session = %id, agent = %agent, "Session idle past the idle timeout: ending it.");
            match self.agent(&agent) {
                Some(endpoint) => {
                    endpoint.end_session(self, &id).await;
                }
                None => self.0.sessions.remove(&id),
            }
        }
        if parked > 0 {
            tracing::debug!(parked, "Parked idle sessions' engines.");
        }
    }

    /// Re-reads the agents directory and swaps the served agents atomically: sessions of
    /// unchanged agents are untouched, a changed agent's new sessions get its new
    /// definition (open ones keep theirs), a removed agent's sessions are ended, and a broken
    /// file keeps its previous version.
    pub async fn reload(&self) -> ReloadReport {
        let mut registry = self.0.registry.lock().await;
        let report = registry.reload();
        let old = self.0.served.load_full();
        let endpoints: HashMap<Arc<str>, Arc<AgentEndpoint>> = registry
            .iter()
            .map(|agent| {
                let name = agent.name().as_arc().clone();
                let endpoint = match old.endpoints.get(&name) {
                    Some(e) if Arc::ptr_eq(&e.agent, agent) => e.clone(),
                    _ => self.endpoint(agent),
                };
                (name, endpoint)
            })
            .collect();
        let errors = registry.errors().clone();
        self.0.served.store(Arc::new(Served { endpoints, errors }));
        drop(registry);
        for name in &report.removed {
            if let Some(endpoint) = old.endpoints.get(name.as_str()) {
                for session in self
                    .0
                    .sessions
                    .list()
                    .iter()
                    .filter(|s| &*s.agent == name.as_str())
                {
                    endpoint.end_session(self, &session.id).await;
                }
            }
            self.0
                .managers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(name.as_str());
        }
        if !report.removed.is_empty() {
            let served = self.0.served.load();
            self.0
                .metrics
                .traffic()
                .retain(|name| served.endpoints.contains_key(name));
        }
        let outcome = if report.errors.is_empty() {
            "ok"
        } else {
            "error"
        };
        self.0.metrics.reload(outcome);
        if report.errors.is_empty() {
            tracing::info!(added = ?report.added, changed = ?report.changed, removed = ?report.removed, "Agents reloaded.");
        } else {
            for e in &report.errors {
                tracing::error!(error = %e, "Agent file not loaded; the previous version (if any) keeps serving.");
            }
        }
        report
    }

    /// Reloads the agents directory whenever a file in it changes (debounced: changes
    /// within 150 ms are applied together).
    ///
    /// # Errors
    /// When the directory cannot be watched.
    pub fn watch_agents_dir(&self, dir: &std::path::Path) -> Result<(), notify::Error> {
        use notify::Watcher;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        *self
            .0
            .watcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(watcher);
        let weak = Arc::downgrade(&self.0);
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Debounce: an editor's save is several events.
                loop {
                    match tokio::time::timeout(std::time::Duration::from_millis(150), rx.recv())
                        .await
                    {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let Some(inner) = weak.upgrade() else { return };
                AppState(inner).reload().await;
            }
        });
        self.own(task);
        Ok(())
    }

    /// Problems of the last reload, by file (agents and files that did not load at all
    /// included).
    pub fn all_load_errors(&self) -> Vec<(PathBuf, Vec<String>)> {
        self.0
            .served
            .load()
            .errors
            .iter()
            .map(|(file, errors)| (file.clone(), errors.clone()))
            .collect()
    }

    /// Problems of the last reload with `file`.
    pub fn load_errors(&self, file: &std::path::Path) -> Vec<String> {
        self.0
            .served
            .load()
            .errors
            .get(file)
            .cloned()
            .unwrap_or_default()
    }

    /// The metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.0.metrics
    }

    /// The error for a refusal of the client layer, counting 429s in the metrics.
    pub fn refused(
        &self,
        refusal: crate::clients::Refusal,
        caller: Option<&crate::clients::Caller>,
        agent: &str,
    ) -> crate::error::Error {
        let who = caller.and_then(|c| c.name()).map(|n| n.as_ref());
        if let crate::clients::Refusal::RateLimited { limit, .. } = &refusal {
            self.metrics()
                .rate_limited(who.unwrap_or("anonymous"), limit);
        }
        crate::error::Error::from_refusal(refusal, who, agent)
    }

    /// The clients and their limits.
    pub fn clients(&self) -> &Clients {
        &self.0.clients
    }

    /// The `[server]` settings.
    pub fn settings(&self) -> &ServerSettings {
        &self.0.settings
    }

    /// The endpoint of agent `name`.
    pub fn agent(&self, name: &str) -> Option<Arc<AgentEndpoint>> {
        self.0.served.load().endpoints.get(name).cloned()
    }

    /// All agent endpoints, sorted by name.
    pub fn agents(&self) -> Vec<Arc<AgentEndpoint>> {
        let mut all: Vec<_> = self.0.served.load().endpoints.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Live sessions.
    pub fn sessions(&self) -> &SessionStore {
        &self.0.sessions
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Shuts down in order: refuse new MCP requests, let calls in flight finish within
    /// `grace`, answer the rest with an error, then end every session (their streams close).
    pub async fn drain(&self, grace: std::time::Duration) {
        self.0
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let calls = || self.0.sessions.in_flight_total();
        let finished = wait_until(grace, || calls() == 0).await;
        if !finished {
            tracing::warn!(
                calls = calls(),
                "Grace period over: cancelling calls still running."
            );
            self.0.stop_calls.cancel();
            // Their error answers go out before the sessions end.
            wait_until(std::time::Duration::from_secs(1), || calls() == 0).await;
        }
        tracing::info!("Ending sessions.");
        self.0.cancel.cancel();
        self.0.sessions.remove_parked_streamable();
    }

    /// The root cancellation token.
    pub fn cancel(&self) -> &CancellationToken {
        &self.0.cancel
    }
}

/// Polls `done` every 20 ms until it holds (true) or `limit` passes (false).
async fn wait_until(limit: std::time::Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    true
}
