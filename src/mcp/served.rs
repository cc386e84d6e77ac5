//! The agents being served: one [`ServedAgent`] (agent, MCP handler, Streamable HTTP
//! service) per agent, swapped whole on reload, and the reload itself (on a change in the
//! agents directory or in `switchboard.toml`, SIGHUP or `POST /admin/reload`), which also
//! re-reads `switchboard.toml`'s `[[policies]]` ([`Permissions::reread`]).

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
use crate::permissions::{Permissions, Reread};
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

/// What one reload did.
#[derive(Debug, Clone)]
pub struct Reload {
    /// The agents directory: agents added, changed, removed, and every problem.
    pub agents: ReloadReport,
    /// `switchboard.toml`, re-read for its `[[policies]]`; `None`: the gateway was started
    /// without one.
    pub config: Option<Reread>,
}

impl Reload {
    /// Every problem, the agent files' then `switchboard.toml`'s (`file: key: message`).
    pub fn errors(&self) -> impl Iterator<Item = &String> {
        self.agents
            .errors
            .iter()
            .chain(self.config.iter().flat_map(|c| c.errors.iter()))
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
    /// The `[[policies]]` rules in force, shared with every agent's handler.
    permissions: Arc<Permissions>,
    /// The audit trail every agent's calls are recorded in; `None`: off.
    trail: Option<Arc<crate::audit::Trail>>,
    /// Where calls that need a person's approval wait.
    approvals: Arc<crate::approvals::Approvals>,
    /// Calls parked until their 2026-07-28 client comes back with input.
    rounds: Arc<crate::ask::rounds::Rounds>,
    /// Agent runs served as MCP tasks.
    tasks: crate::tasks::Tasks,
}

/// The parts [`ServedAgents`] serves the agents with, besides the registry.
pub struct Serving {
    /// Live sessions.
    pub sessions: SessionStore,
    /// The `[server]` settings.
    pub settings: Arc<ServerSpec>,
    /// Cancelled on shutdown: ends every Streamable HTTP session.
    pub cancel: CancellationToken,
    /// Cancelled when shutdown's grace period is over (see [`AgentServer`]).
    pub stop_calls: CancellationToken,
    /// Cluster mode: where Streamable HTTP stream events are kept for resumption.
    pub events: Option<Arc<dyn rmcp::transport::streamable_http_server::session::EventStore>>,
    /// The `[[policies]]` rules in force.
    pub permissions: Arc<Permissions>,
    /// The audit trail; `None`: off.
    pub trail: Option<Arc<crate::audit::Trail>>,
    /// Where calls that need a person's approval wait.
    pub approvals: Arc<crate::approvals::Approvals>,
    /// Agent runs served as MCP tasks.
    pub tasks: crate::tasks::Tasks,
}

impl ServedAgents {
    /// Serves the agents of `registry`.
    pub fn new(registry: AgentRegistry, serving: Serving) -> Self {
        let Serving {
            sessions,
            settings,
            cancel,
            stop_calls,
            events,
            permissions,
            trail,
            approvals,
            tasks,
        } = serving;
        let metrics = registry.resources().metrics.clone();
        metrics.policies_in_force(permissions.load().rules().len());
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
            permissions,
            trail,
            approvals,
            rounds: Arc::default(),
            tasks,
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
            self.permissions.clone(),
            self.trail.clone(),
            self.approvals.clone(),
            self.rounds.clone(),
            Some(self.tasks.clone()),
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
    /// file keeps its previous version. Then re-reads `switchboard.toml` for its
    /// `[[policies]]` (see [`Permissions::reread`]).
    pub async fn reload(&self) -> Reload {
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
        // Under the registry's lock: re-reads run one at a time, against the agents loaded.
        let names: Vec<&str> = registry.iter().map(|a| a.name().as_str()).collect();
        let config = self.permissions.reread(&names);
        drop(names);
        let retired = registry.take_retired();
        drop(registry);
        // The processes of stdio upstreams whose agent changed them or is gone end now
        // (sessions still on the previous version get a tool error saying so).
        if !retired.is_empty() {
            futures::future::join_all(retired.iter().map(|up| up.stop())).await;
            tracing::debug!(
                upstreams = retired.len(),
                "Stopped the processes of stdio upstreams no agent has any more."
            );
        }
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
        let reload = Reload {
            agents: report,
            config,
        };
        let outcome = if reload.errors().next().is_none() {
            "ok"
        } else {
            "error"
        };
        self.metrics.reload(outcome);
        self.metrics
            .policies_in_force(self.permissions.load().rules().len());
        let report = &reload.agents;
        for e in &report.errors {
            tracing::error!(error = %e, "Agent file not loaded; the previous version (if any) keeps serving.");
        }
        tracing::info!(added = ?report.added, changed = ?report.changed, removed = ?report.removed, errors = report.errors.len(), "Agents reloaded.");
        reload
    }

    /// Ends the processes of every agent's stdio upstreams (shutdown), and waits until they
    /// have.
    pub async fn stop_upstreams(&self) {
        self.registry.lock().await.stop_upstreams().await;
    }

    /// Reloads whenever a file in `dir` or the file `config` changes (debounced: changes
    /// within 150 ms are applied together), for as long as the returned watchers and task
    /// live. `config`'s folder is watched for it alone, since editors save by replacing the
    /// file.
    ///
    /// # Errors
    /// When the directory or the config file's folder cannot be watched.
    pub fn watch(
        self: &Arc<Self>,
        dir: &Path,
        config: Option<&Path>,
    ) -> Result<(Vec<notify::RecommendedWatcher>, tokio::task::JoinHandle<()>), notify::Error> {
        use notify::Watcher;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let agents_tx = tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = agents_tx.send(());
                }
            })?;
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        let mut watchers = vec![watcher];
        if let Some(file) = config {
            watchers.push(watch_file(file, tx)?);
        }
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
        Ok((watchers, task))
    }
}

/// A watcher of `file`'s folder that sends on `tx` when an event names `file` (written,
/// created, or renamed into place).
fn watch_file(
    file: &Path,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    use notify::Watcher;
    let name = file.file_name().map(ToOwned::to_owned);
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !event.kind.is_access()
            && event
                .paths
                .iter()
                .any(|p| p.file_name().is_some() && p.file_name() == name.as_deref())
        {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&folder, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
