//! The agents being served: one [`ServedAgent`] (agent, MCP handler, Streamable HTTP
//! service) per agent, swapped whole on reload, and the reload itself (on a change in the
//! agents directory, SIGHUP or `POST /admin/reload`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::handler::AgentServer;
use super::streamable::{self, StreamableService, TrackedSessions};
use crate::agents::registry::ReloadReport;
use crate::agents::{Agent, AgentRegistry};
use crate::config::ServerSpec;
use crate::metrics::Metrics;
use crate::sessions::{Engine, SessionStore};

/// Everything needed to serve one agent over MCP.
pub struct ServedAgent {
    /// The agent.
    pub agent: Arc<Agent>,
    /// Its name, shared with the sessions it opens.
    pub name: Arc<str>,
    /// Its MCP handler (cloned into every session).
    pub server: AgentServer,
    /// Its Streamable HTTP service.
    pub streamable: StreamableService,
    /// The session manager behind `streamable`, as the session store sees it.
    pub streamable_engine: Arc<dyn Engine>,
}

impl ServedAgent {
    /// Whether a request with this JSON-RPC `method` and tool name starts an LLM run.
    pub fn starts_run(&self, method: Option<&str>, tool: Option<&str>) -> bool {
        self.agent.spec.expose_agent
            && method == Some("tools/call")
            && tool == Some(self.name.as_ref())
    }
}

/// One generation of served agents: readers never see half a reload.
#[derive(Default)]
struct Generation {
    /// By name.
    agents: HashMap<Arc<str>, Arc<ServedAgent>>,
    /// Problems of the last reload, by file.
    errors: BTreeMap<PathBuf, Vec<String>>,
}

/// The agents being served, and what (re)builds them.
pub struct ServedAgents {
    current: ArcSwap<Generation>,
    /// The registry the agents come from; a tokio mutex, so reloads run one at a time.
    registry: tokio::sync::Mutex<AgentRegistry>,
    /// Each agent's Streamable HTTP session manager, kept across reloads so that sessions
    /// opened before a change keep working. A `std` mutex: never held across `.await`.
    managers: Mutex<HashMap<Arc<str>, Arc<TrackedSessions>>>,
    sessions: SessionStore,
    settings: Arc<ServerSpec>,
    /// Cancelled on shutdown: ends every Streamable HTTP session.
    cancel: CancellationToken,
    /// Cancelled when shutdown's grace period is over (see [`AgentServer`]).
    stop_calls: CancellationToken,
    /// Cluster mode: where Streamable HTTP stream events are kept for resumption.
    events: Option<Arc<dyn rmcp::transport::streamable_http_server::session::EventStore>>,
    metrics: Arc<Metrics>,
    /// The audit trail every agent's calls are recorded in; `None`: off.
    trail: Option<Arc<crate::audit::Trail>>,
}

impl ServedAgents {
    /// Serves the agents of `registry`.
    pub fn new(
        registry: AgentRegistry,
        sessions: SessionStore,
        settings: Arc<ServerSpec>,
        cancel: CancellationToken,
        stop_calls: CancellationToken,
        events: Option<Arc<dyn rmcp::transport::streamable_http_server::session::EventStore>>,
        trail: Option<Arc<crate::audit::Trail>>,
    ) -> Self {
        let metrics = registry.resources().metrics.clone();
        let served = Self {
            current: ArcSwap::from_pointee(Generation::default()),
            registry: tokio::sync::Mutex::new(registry),
            managers: Mutex::new(HashMap::new()),
            sessions,
            settings,
            cancel,
            stop_calls,
            events,
            metrics,
            trail,
        };
        let agents = match served.registry.try_lock() {
            Ok(registry) => registry
                .iter()
                .map(|agent| (agent.name().as_arc().clone(), served.serve(agent)))
                .collect(),
            // Nobody else has the registry yet: `try_lock` cannot fail here.
            Err(_) => HashMap::new(),
        };
        served.current.store(Arc::new(Generation {
            agents,
            errors: BTreeMap::new(),
        }));
        served
    }

    /// Agent `name`.
    pub fn get(&self, name: &str) -> Option<Arc<ServedAgent>> {
        self.current.load().agents.get(name).cloned()
    }

    /// The agent the root URLs (`/sse`, `/messages`, `/mcp`) serve now: `[server]
    /// default_agent`'s, or `servicenow` when that is unset; `None` when it is off or that
    /// agent is not loaded (a reload may add or remove it).
    pub fn default_agent(&self) -> Option<Arc<ServedAgent>> {
        self.settings.default_agent.name().and_then(|n| self.get(n))
    }

    /// Every agent, sorted by name.
    pub fn all(&self) -> Vec<Arc<ServedAgent>> {
        let mut all: Vec<_> = self.current.load().agents.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// How many agents are served.
    pub fn len(&self) -> usize {
        self.current.load().agents.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Problems of the last reload, by file (agents and files that did not load at all
    /// included).
    pub fn all_load_errors(&self) -> Vec<(PathBuf, Vec<String>)> {
        self.current
            .load()
            .errors
            .iter()
            .map(|(file, errors)| (file.clone(), errors.clone()))
            .collect()
    }

    /// Problems of the last reload with `file`.
    pub fn load_errors(&self, file: &Path) -> Vec<String> {
        self.current
            .load()
            .errors
            .get(file)
            .cloned()
            .unwrap_or_default()
    }

    /// `agent` ready to serve, reusing its session manager if it had one.
    fn serve(&self, agent: &Arc<Agent>) -> Arc<ServedAgent> {
        let name: Arc<str> = agent.name().as_arc().clone();
        let server = AgentServer::new(
            agent.clone(),
            self.stop_calls.clone(),
            self.settings.policies.clone(),
            self.trail.clone(),
        );
        let manager = self.managers().get(&name).cloned();
        let (streamable, manager) = streamable::service(
            server.clone(),
            name.clone(),
            self.sessions.clone(),
            &self.settings,
            self.cancel.child_token(),
            manager,
            self.events.clone(),
        );
        let streamable_engine = manager.engine();
        self.managers().insert(name.clone(), manager);
        Arc::new(ServedAgent {
            agent: agent.clone(),
            name,
            server,
            streamable,
            streamable_engine,
        })
    }

    fn managers(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<TrackedSessions>>> {
        self.managers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-reads the agents directory and swaps the served agents atomically: sessions of
    /// unchanged agents are untouched, a changed agent's new sessions get its new
    /// definition (open ones keep theirs), a removed agent's sessions are ended, and a broken
    /// file keeps its previous version.
    pub async fn reload(&self) -> ReloadReport {
        let mut registry = self.registry.lock().await;
        let report = registry.reload();
        let old = self.current.load_full();
        let agents: HashMap<Arc<str>, Arc<ServedAgent>> = registry
            .iter()
            .map(|agent| {
                let name = agent.name().as_arc().clone();
                let served = match old.agents.get(&name) {
                    Some(e) if Arc::ptr_eq(&e.agent, agent) => e.clone(),
                    _ => self.serve(agent),
                };
                (name, served)
            })
            .collect();
        let errors = registry.errors().clone();
        self.current.store(Arc::new(Generation { agents, errors }));
        drop(registry);
        for name in &report.removed {
            for id in self.sessions.ids_of(name) {
                self.sessions.end(&id).await;
            }
            self.managers().remove(name.as_str());
        }
        if !report.removed.is_empty() {
            let current = self.current.load();
            self.metrics
                .traffic()
                .retain(|name| current.agents.contains_key(name));
        }
        let outcome = if report.errors.is_empty() {
            "ok"
        } else {
            "error"
        };
        self.metrics.reload(outcome);
        for e in &report.errors {
            tracing::error!(error = %e, "Agent file not loaded; the previous version (if any) keeps serving.");
        }
        tracing::info!(added = ?report.added, changed = ?report.changed, removed = ?report.removed, errors = report.errors.len(), "Agents reloaded.");
        report
    }

    /// Reloads whenever a file in `dir` changes (debounced: changes within 150 ms are
    /// applied together), for as long as the returned watcher and task live.
    ///
    /// # Errors
    /// When the directory cannot be watched.
    pub fn watch(
        self: &Arc<Self>,
        dir: &Path,
    ) -> Result<(notify::RecommendedWatcher, tokio::task::JoinHandle<()>), notify::Error> {
        use notify::Watcher;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        let weak = Arc::downgrade(self);
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
                let Some(served) = weak.upgrade() else { return };
                served.reload().await;
            }
        });
        Ok((watcher, task))
    }
}
