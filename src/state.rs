//! `AppState`: what every request handler shares.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::agents::AgentRegistry;
use crate::clients::Clients;
use crate::config::ServerSettings;
use crate::mcp::{AgentEndpoint, handler::AgentServer, streamable};
use crate::sessions::SessionStore;

/// Shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    /// Validated `[server]` settings; immutable.
    settings: ServerSettings,
    /// One MCP endpoint per agent, by name; built at startup, immutable.
    agents: HashMap<Arc<str>, Arc<AgentEndpoint>>,
    /// Live sessions of both transports; mutated by the transports as sessions start/end.
    sessions: SessionStore,
    /// Root cancellation token: cancelled first on shutdown, which ends every session.
    cancel: CancellationToken,
    /// The clients and their limiters (governor keeps its own state).
    clients: Clients,
    /// Prometheus metrics, shared with the agents.
    metrics: Arc<crate::metrics::Metrics>,
    /// Prunes idle per-IP limiter state; aborted when the state is dropped.
    _pruner: AbortOnDrop,
}

/// Aborts a background task when dropped, so it never outlives its owner.
struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

impl AppState {
    /// State serving the agents of `registry`.
    pub fn new(settings: ServerSettings, registry: &AgentRegistry) -> Self {
        let sessions = SessionStore::default();
        let cancel = CancellationToken::new();
        let agents = registry
            .iter()
            .map(|agent| {
                let name: Arc<str> = agent.name().as_arc().clone();
                let server = AgentServer::new(agent.clone());
                let (streamable, streamable_sessions) = streamable::service(
                    server.clone(),
                    name.clone(),
                    sessions.clone(),
                    &settings,
                    cancel.child_token(),
                );
                let endpoint = AgentEndpoint {
                    agent: agent.clone(),
                    name: name.clone(),
                    server,
                    streamable,
                    streamable_sessions,
                };
                (name, Arc::new(endpoint))
            })
            .collect();
        let clients = Clients::new(&settings.clients, settings.limits);
        let metrics = registry.resources().metrics.clone();
        Self(Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            // Without a runtime (e.g. building the state for a spec) there is nothing to prune.
            let pruner = tokio::runtime::Handle::try_current().ok().map(|rt| {
                rt.spawn(async move {
                    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
                    loop {
                        tick.tick().await;
                        match weak.upgrade() {
                            Some(inner) => inner.clients.prune(),
                            None => return,
                        }
                    }
                })
                .abort_handle()
            });
            Inner {
                settings,
                agents,
                sessions,
                cancel,
                clients,
                metrics,
                _pruner: AbortOnDrop(pruner),
            }
        }))
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
    pub fn agent(&self, name: &str) -> Option<&Arc<AgentEndpoint>> {
        self.0.agents.get(name)
    }

    /// All agent endpoints, sorted by name.
    pub fn agents(&self) -> Vec<&Arc<AgentEndpoint>> {
        let mut all: Vec<_> = self.0.agents.values().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Live sessions.
    pub fn sessions(&self) -> &SessionStore {
        &self.0.sessions
    }

    /// The root cancellation token.
    pub fn cancel(&self) -> &CancellationToken {
        &self.0.cancel
    }
}
