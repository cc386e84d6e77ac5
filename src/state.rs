//! `AppState`: the parts every request handler shares, and nothing else.
//!
//! A plain container (as crates.io's `App` is): each part owns its own policy, including
//! whether it runs alone or as one replica of a cluster. The served agents and their reload
//! are [`crate::mcp::served`], the sessions [`crate::sessions`], who is calling
//! [`crate::clients`], every limit [`crate::ratelimit`]; background work is started by
//! [`crate::background`] and shutdown is [`crate::shutdown`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::agents::AgentRegistry;
use crate::clients::Clients;
use crate::cluster::Cluster;
use crate::config::ServerSpec;
use crate::mcp::served::{Reload, ServedAgent, ServedAgents, Serving};
use crate::metrics::Metrics;
use crate::oauth::OAuth;
use crate::permissions::Permissions;
use crate::ratelimit::RateLimits;
use crate::sessions::SessionStore;

/// Shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

/// The parts.
struct Parts {
    /// Validated `[server]` settings; immutable.
    settings: Arc<ServerSpec>,
    /// Prices, spend and budgets (`[costs]`), shared with the agents.
    costs: Arc<crate::costs::Costs>,
    /// The agents being served.
    agents: Arc<ServedAgents>,
    /// The `[[policies]]` rules in force (re-read from `switchboard.toml` on reload).
    permissions: Arc<Permissions>,
    /// Live sessions of both transports.
    sessions: SessionStore,
    /// Who may call, and their usage.
    clients: Clients,
    /// Every limit, enforced.
    limits: RateLimits,
    /// The OAuth resource server (`[auth.oauth]`): verifies access tokens; `None` without it.
    oauth: Option<Arc<OAuth>>,
    /// Prometheus metrics, shared with the agents.
    metrics: Arc<Metrics>,
    /// This replica's cluster membership; `None` in single-node mode.
    cluster: Option<Cluster>,
    /// The audit trail; `None`: off.
    trail: Option<Arc<crate::audit::Trail>>,
    /// Calls waiting for a person's approval (`[[approvals]]`).
    approvals: Arc<crate::approvals::Approvals>,
    /// Agent runs served as MCP tasks (`tasks.db`, or Redis in cluster mode).
    tasks: crate::tasks::Tasks,
    /// Root cancellation token: cancelled on shutdown, which ends every session.
    cancel: CancellationToken,
    /// Cancelled when shutdown's grace period is over: calls still running are answered
    /// with an error (before the sessions end).
    stop_calls: CancellationToken,
    /// Set when shutdown begins: readiness fails and new MCP requests get 503.
    draining: AtomicBool,
    /// When the state was made (the gateway's start, for `/admin/cluster`).
    started_at: std::time::SystemTime,
    /// The watchers of the agents directory and `switchboard.toml`, and their task, kept
    /// while the state lives.
    watcher: Mutex<Option<(Vec<notify::RecommendedWatcher>, AbortOnDrop)>>,
}

/// Aborts a background task when dropped, so it never outlives its owner.
pub struct AbortOnDrop(pub tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl AppState {
    /// State serving the agents of `registry`, alone.
    pub fn new(
        settings: ServerSpec,
        registry: AgentRegistry,
        trail: Option<Arc<crate::audit::Trail>>,
    ) -> Self {
        Self::with_cluster(settings, registry, None, trail)
    }

    /// State serving the agents of `registry`, as a member of `cluster` if given.
    pub fn with_cluster(
        settings: ServerSpec,
        registry: AgentRegistry,
        cluster: Option<Cluster>,
        trail: Option<Arc<crate::audit::Trail>>,
    ) -> Self {
        let settings = Arc::new(settings);
        let metrics = registry.resources().metrics.clone();
        let costs = registry.resources().costs.clone();
        // Cluster mode: budgets are counted cluster-wide.
        if let Some(cluster) = &cluster {
            costs.share(cluster.clone());
        }
        let clients = Clients::new(&settings.clients, settings.limits)
            .with_meter_loopback(settings.meter_loopback)
            .with_oauth(settings.oauth.is_some());
        let oauth = settings
            .oauth
            .clone()
            .map(|spec| Arc::new(OAuth::new(spec)));
        let limits = RateLimits::new(&clients, cluster.clone());
        let sessions = match &cluster {
            Some(c) => {
                SessionStore::shared(c.clone(), settings.session_idle_timeout, metrics.clone())
            }
            None => SessionStore::new(),
        };
        let cancel = CancellationToken::new();
        let stop_calls = CancellationToken::new();
        let events = cluster.as_ref().map(|c| {
            Arc::new(crate::cluster::events::RedisEvents::new(c.clone()))
                as Arc<dyn rmcp::transport::streamable_http_server::session::EventStore>
        });
        let permissions = Arc::new(Permissions::new(
            (*settings.policies).clone(),
            settings.source.clone(),
        ));
        let approvals = crate::approvals::Approvals::new(
            crate::approvals::Queue::new(metrics.clone()),
            crate::audit::redact::Redaction::new(
                &settings.audit.redact,
                settings.audit.redact_common_secrets,
            ),
            metrics.clone(),
            cluster.as_ref().map(Cluster::node_id),
        );
        let tasks = match &cluster {
            Some(c) => crate::tasks::Tasks::shared(settings.tasks, c.clone(), metrics.clone()),
            None => crate::tasks::Tasks::open(
                settings.tasks,
                registry.resources().data_dir(),
                metrics.clone(),
            ),
        };
        let agents = Arc::new(ServedAgents::new(
            registry,
            Serving {
                sessions: sessions.clone(),
                settings: settings.clone(),
                cancel: cancel.clone(),
                stop_calls: stop_calls.clone(),
                events,
                permissions: permissions.clone(),
                trail: trail.clone(),
                approvals: approvals.clone(),
                tasks: tasks.clone(),
            },
        ));
        Self(Arc::new(Parts {
            settings,
            costs,
            agents,
            permissions,
            sessions,
            clients,
            limits,
            oauth,
            metrics,
            cluster,
            trail,
            approvals,
            tasks,
            cancel,
            stop_calls,
            draining: AtomicBool::new(false),
            started_at: std::time::SystemTime::now(),
            watcher: Mutex::new(None),
        }))
    }

    /// The `[server]` settings.
    pub fn settings(&self) -> &ServerSpec {
        &self.0.settings
    }

    /// The agents being served.
    pub fn agents(&self) -> &Arc<ServedAgents> {
        &self.0.agents
    }

    /// The `[[policies]]` rules in force.
    pub fn permissions(&self) -> &Permissions {
        &self.0.permissions
    }

    /// Agent `name`.
    pub fn agent(&self, name: &str) -> Option<Arc<ServedAgent>> {
        self.0.agents.get(name)
    }

    /// Live sessions.
    pub fn sessions(&self) -> &SessionStore {
        &self.0.sessions
    }

    /// The clients and their usage.
    pub fn clients(&self) -> &Clients {
        &self.0.clients
    }

    /// The limits.
    pub fn limits(&self) -> &RateLimits {
        &self.0.limits
    }

    /// The OAuth resource server, with `[auth.oauth]`.
    pub fn oauth(&self) -> Option<&Arc<OAuth>> {
        self.0.oauth.as_ref()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Prices, spend and budgets (`[costs]`).
    pub fn costs(&self) -> &crate::costs::Costs {
        &self.0.costs
    }

    /// The audit trail; `None` when `[audit]` turns it off.
    pub fn audit(&self) -> Option<&Arc<crate::audit::Trail>> {
        self.0.trail.as_ref()
    }

    /// The approvals service: the calls waiting for an operator.
    pub fn approvals(&self) -> &Arc<crate::approvals::Approvals> {
        &self.0.approvals
    }

    /// Agent runs served as MCP tasks.
    pub fn tasks(&self) -> &crate::tasks::Tasks {
        &self.0.tasks
    }

    /// This replica's cluster membership; `None` in single-node mode.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.0.cluster.as_ref()
    }

    /// The root cancellation token (cancelled when sessions must end).
    pub fn cancel(&self) -> &CancellationToken {
        &self.0.cancel
    }

    /// Cancelled when calls still running must be answered with an error.
    pub fn stop_calls(&self) -> &CancellationToken {
        &self.0.stop_calls
    }

    /// When this gateway started serving.
    pub fn started_at(&self) -> std::time::SystemTime {
        self.0.started_at
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    /// Marks the start of shutdown: readiness fails, new MCP requests get 503.
    pub fn begin_draining(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }

    /// Ends the processes of every agent's stdio upstreams and waits until they have (the
    /// last step of shutdown).
    pub async fn stop_upstreams(&self) {
        self.0.agents.stop_upstreams().await;
    }

    /// Reloads the agents and `switchboard.toml`'s `[[policies]]` now (see
    /// [`ServedAgents::reload`]).
    pub async fn reload(&self) -> Reload {
        self.0.agents.reload().await
    }

    /// Reloads whenever a file in `dir` changes, or the `switchboard.toml` the gateway was
    /// started with, for as long as the state lives.
    ///
    /// # Errors
    /// When the directory, or the config file's folder, cannot be watched.
    pub fn watch_agents_dir(&self, dir: &std::path::Path) -> Result<(), notify::Error> {
        let (watcher, task) = self.0.agents.watch(dir, self.0.permissions.file())?;
        *self
            .0
            .watcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Some((watcher, AbortOnDrop(task.abort_handle())));
        Ok(())
    }
}
