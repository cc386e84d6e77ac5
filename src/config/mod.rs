//! Configuration: `switchboard.toml` (the gateway) and `agents/*.toml` (one agent each).
//!
//! Every file goes through the same pipeline ([`parse_file`]): TOML syntax → `${VAR}`
//! interpolation of every string value (from an explicit map, see [`interpolate`]) → serde
//! into the `*Config` mirror (`deny_unknown_fields` everywhere), with the key path of the
//! first mismatch. Later stages (validation into specs) add their own errors; callers collect
//! all of them over all files before deciding anything, so a user sees every problem at once.

pub mod agent;
pub mod approvals;
pub mod audit;
pub mod clients;
pub mod cluster;
pub mod costs;
pub mod error;
pub mod interpolate;
pub mod name;
pub mod oauth;
pub mod policies;
pub mod proxies;
pub mod tasks;
pub mod telemetry;
pub mod workflow;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

mod parse;

pub use error::{Error, Errors};
pub use name::AgentName;
pub use parse::{
    Recovered, Step, deserialize_recovering, parse_file, parse_file_recovering, path_string,
    referenced_variables,
};

/// The environment as a map; built once in `main.rs` (tests pass their own).
pub type Vars = HashMap<String, String>;

/// `switchboard.toml`, as written. Every table and key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// `[server]`: listening, transport limits, timeouts.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[admin]`: access to the admin API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[limits]`: default limits of every client.
    #[serde(default)]
    pub limits: clients::LimitsConfig,
    /// `[[clients]]`: who may call which agent. None: MCP access is open (limits per IP).
    #[serde(default)]
    pub clients: Vec<clients::ClientConfig>,
    /// `[cluster]`: replicas sharing sessions and limits through Redis. None: one process.
    #[serde(default)]
    pub cluster: Option<cluster::ClusterConfig>,
    /// `[metrics]`: who may scrape `/metrics`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[auth]`: OAuth access tokens (`[auth.oauth]`), besides `[[clients]]` tokens.
    #[serde(default)]
    pub auth: oauth::AuthConfig,
    /// `[[policies]]`: which caller may call which tool. None: every tool is allowed.
    #[serde(default)]
    pub policies: Vec<policies::PolicyConfig>,
    /// `[audit]`: the audit trail of every tool call (on by default).
    #[serde(default)]
    pub audit: audit::AuditConfig,
    /// `[tasks]`: agent runs served as MCP tasks (how long results are kept).
    #[serde(default)]
    pub tasks: tasks::TasksConfig,
    /// `[telemetry]`: OpenTelemetry traces (off by default).
    #[serde(default)]
    pub telemetry: telemetry::TelemetryConfig,
    /// `[costs]`: model prices and the callers' budgets.
    #[serde(default)]
    pub costs: costs::CostsConfig,
}

/// `[metrics]` of `switchboard.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `true`: `/metrics` answers anyone, from any address, without a token (a Prometheus
    /// on another host). Default `false`: it follows the admin API's rule, loopback peers
    /// or the admin token, since its labels name the clients and agents.
    #[serde(default)]
    pub public: bool,
}

/// `[admin]` of `switchboard.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token every `/admin` request must carry. Unset or empty: the admin API
    /// answers loopback peers only. Default: `SWITCHBOARD_ADMIN_TOKEN` from the environment.
    pub token: Option<secrecy::SecretString>,
}

/// `[server]` of `switchboard.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (`--listen` overrides it).
    pub listen: SocketAddr,
    /// `Host` header values accepted on MCP routes (DNS-rebinding guard); add your public
    /// name when serving beyond localhost. An entry may carry a port (`example.com:8443`).
    /// An empty list accepts any host.
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted on MCP routes (`https://app.example.com`); requests with
    /// any other `Origin` header get 403. Requests without `Origin` are not affected.
    pub allowed_origins: Vec<String>,
    /// Proxies (addresses or networks, `10.0.0.0/8`) whose `X-Forwarded-For` names the
    /// client, for per-IP limits and the sessions' client address. Default: none.
    pub trusted_proxies: Vec<String>,
    /// Largest accepted request body in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Seconds between keep-alive comments on SSE streams. A client that vanished is
    /// noticed when a write fails: the first write after it left usually still succeeds
    /// (the kernel takes it, the peer answers with a reset), so within two intervals.
    pub sse_keep_alive_secs: u64,
    /// Seconds of inactivity after which a Streamable HTTP session is ended.
    pub session_idle_timeout_secs: u64,
    /// Milliseconds a session may be idle (nothing in flight, no stream of its own open)
    /// before its MCP engine is parked: released, and started again from the client's
    /// handshake on its next request, which the client does not notice. An idle session
    /// then costs a few KiB instead of tens. 0: never park.
    pub session_park_after_ms: u64,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Seconds a connection may take to send a request's head (line and headers); slower
    /// ones (slow-loris clients) are closed.
    pub request_head_timeout_secs: u64,
    /// The agent also served at `/sse`, `/messages` and `/mcp` (the seed's URLs), besides
    /// its own `/agents/<name>/...`. Unset: `servicenow` while that agent is loaded. `""`:
    /// none.
    pub default_agent: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            allowed_hosts: ["localhost", "127.0.0.1", "[::1]"]
                .map(String::from)
                .to_vec(),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            sse_keep_alive_secs: 15,
            session_idle_timeout_secs: 1800,
            session_park_after_ms: 1000,
            shutdown_grace_secs: 10,
            request_head_timeout_secs: 30,
            default_agent: None,
        }
    }
}

/// `[server] default_agent`, validated: which agent the root URLs (`/sse`, `/messages`,
/// `/mcp`) serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultAgent {
    /// Unset: [`DEFAULT_AGENT`] while it is loaded, else none.
    Auto,
    /// This agent (`switchboard check` makes sure it exists at startup; a reload may
    /// remove it, and then the root URLs answer 404 until it is back).
    Named(AgentName),
    /// `""`: the root URLs are not served.
    Off,
}

/// The agent the root URLs serve when `[server] default_agent` is unset (the seed's).
pub const DEFAULT_AGENT: &str = "servicenow";

impl DefaultAgent {
    /// The name of the agent to serve, if any (`Auto`: [`DEFAULT_AGENT`], loaded or not).
    pub fn name(&self) -> Option<&str> {
        match self {
            DefaultAgent::Auto => Some(DEFAULT_AGENT),
            DefaultAgent::Named(n) => Some(n.as_str()),
            DefaultAgent::Off => None,
        }
    }
}

/// What the server needs of `switchboard.toml`, validated.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Listen address.
    pub listen: SocketAddr,
    /// Accepted `Host` values (empty: any).
    pub allowed_hosts: Vec<String>,
    /// Accepted `Origin` values (empty: none but absent origins).
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<proxies::Network>,
    /// Body limit in bytes.
    pub max_body_bytes: usize,
    /// SSE keep-alive interval.
    pub sse_keep_alive: Duration,
    /// Streamable HTTP idle timeout.
    pub session_idle_timeout: Duration,
    /// Idle time after which a session's engine is parked; `None`: never.
    pub session_park_after: Option<Duration>,
    /// Grace period on shutdown.
    pub shutdown_grace: Duration,
    /// How long a request's head may take to arrive.
    pub request_head_timeout: Duration,
    /// The admin API's bearer token; `None`: loopback peers only.
    pub admin_token: Option<secrecy::SecretString>,
    /// Default limits (per client, or per IP when MCP access is open).
    pub limits: clients::Limits,
    /// The clients; empty: MCP access is open.
    pub clients: Vec<clients::ClientSpec>,
    /// Cluster mode; `None`: this process alone.
    pub cluster: Option<cluster::ClusterSpec>,
    /// Which agent `/sse`, `/messages` and `/mcp` serve.
    pub default_agent: DefaultAgent,
    /// Whether `/metrics` answers anyone (`[metrics] public`); else the admin API's rule.
    pub metrics_public: bool,
    /// Open access: whether loopback peers' MCP requests count against
    /// `requests_per_minute`/`burst`. [`load_gateway`] sets it from `[limits]`
    /// ([`clients::LimitsConfig::meters_loopback`]): a file that leaves both to their
    /// defaults (or no file) lets one developer on the gateway's machine call freely.
    /// Settings made in code meter every peer (`true`).
    pub meter_loopback: bool,
    /// `[auth.oauth]`: access tokens of an authorization server are accepted; `None`: only
    /// the clients' tokens (or open access).
    pub oauth: Option<oauth::OAuthSpec>,
    /// `[[policies]]`: which caller may call which tool; empty: every tool is allowed.
    pub policies: std::sync::Arc<policies::Policies>,
    /// `[audit]`: the audit trail.
    pub audit: audit::AuditSpec,
    /// `[tasks]`: agent runs served as MCP tasks.
    pub tasks: tasks::TasksSpec,
    /// `[telemetry]`: OpenTelemetry traces.
    pub telemetry: telemetry::TelemetrySpec,
    /// `[costs]`: model prices and budgets.
    pub costs: costs::CostsSpec,
    /// The file these settings were read from, re-read on every reload for its
    /// `[[policies]]`; `None`: none was (no file, or settings made in code).
    pub source: Option<GatewaySource>,
}

/// The `switchboard.toml` a gateway was started with: where it is, the environment its
/// `${VAR}`s were read from, and its top-level keys as written then (to tell which changed).
#[derive(Clone)]
pub struct GatewaySource {
    /// The file.
    pub file: std::path::PathBuf,
    /// The environment it was interpolated from.
    pub vars: Vars,
    /// Its top-level keys as written at startup (before interpolation).
    pub keys: toml::Table,
}

impl std::fmt::Debug for GatewaySource {
    // The environment and the keys may hold secrets: only the file is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySource")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self::from_valid(ServerConfig::default())
    }
}

impl ServerSpec {
    /// Validates `[server]`.
    ///
    /// # Errors
    /// Every invalid value, naming `file` and the key.
    pub fn from_config(c: ServerConfig, file: &Path) -> Result<Self, Errors> {
        let mut errors = Errors::default();
        for (key, v) in [
            ("sse_keep_alive_secs", c.sse_keep_alive_secs),
            ("session_idle_timeout_secs", c.session_idle_timeout_secs),
            ("request_head_timeout_secs", c.request_head_timeout_secs),
        ] {
            if v == 0 {
                errors.0.push(Error::key(
                    file,
                    format!("server.{key}"),
                    "must be at least 1",
                ));
            }
        }
        if c.max_body_bytes < 1024 {
            errors.0.push(Error::key(
                file,
                "server.max_body_bytes",
                format!("{} is too small: use at least 1024", c.max_body_bytes),
            ));
        }
        for (i, origin) in c.allowed_origins.iter().enumerate() {
            if !(origin.starts_with("http://")
                || origin.starts_with("https://")
                || origin == "null")
            {
                errors.0.push(Error::key(
                    file,
                    format!("server.allowed_origins[{i}]"),
                    format!("{origin:?} is not an origin: expected scheme://host[:port]"),
                ));
            }
        }
        let default_agent = match c.default_agent.as_deref().map(str::trim) {
            None => DefaultAgent::Auto,
            Some("") => DefaultAgent::Off,
            Some(name) => match AgentName::parse(name) {
                Ok(name) => DefaultAgent::Named(name),
                Err(e) => {
                    errors.0.push(Error::key(file, "server.default_agent", e));
                    DefaultAgent::Off
                }
            },
        };
        let mut trusted = Vec::new();
        for (i, entry) in c.trusted_proxies.iter().enumerate() {
            match proxies::Network::parse(entry) {
                Ok(n) => trusted.push(n),
                Err(e) => {
                    errors
                        .0
                        .push(Error::key(file, format!("server.trusted_proxies[{i}]"), e))
                }
            }
        }
        let mut settings = Self::from_valid(c);
        settings.trusted_proxies = trusted;
        settings.default_agent = default_agent;
        errors.into_result(settings)
    }

    fn from_valid(c: ServerConfig) -> Self {
        Self {
            listen: c.listen,
            allowed_hosts: c.allowed_hosts,
            allowed_origins: c.allowed_origins,
            trusted_proxies: Vec::new(),
            max_body_bytes: c.max_body_bytes,
            sse_keep_alive: Duration::from_secs(c.sse_keep_alive_secs),
            session_idle_timeout: Duration::from_secs(c.session_idle_timeout_secs),
            session_park_after: (c.session_park_after_ms > 0)
                .then(|| Duration::from_millis(c.session_park_after_ms)),
            shutdown_grace: Duration::from_secs(c.shutdown_grace_secs),
            request_head_timeout: Duration::from_secs(c.request_head_timeout_secs),
            admin_token: None,
            limits: clients::Limits::default(),
            clients: Vec::new(),
            cluster: None,
            default_agent: DefaultAgent::Auto,
            metrics_public: false,
            meter_loopback: true,
            oauth: None,
            policies: std::sync::Arc::default(),
            audit: audit::AuditSpec::default(),
            tasks: tasks::TasksSpec::default(),
            telemetry: telemetry::TelemetrySpec::default(),
            costs: costs::CostsSpec::default(),
            source: None,
        }
    }
}

/// Loads `switchboard.toml` from `path`; a missing file gives the defaults when
/// `required` is false (the default path), an error when true (named with `--config`).
///
/// # Errors
/// Every problem in the file.
pub fn load_gateway(path: &Path, required: bool, vars: &Vars) -> Result<ServerSpec, Errors> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut settings = gateway_from_text(path, &text, vars)?;
            settings.source = Some(GatewaySource {
                file: path.to_owned(),
                vars: vars.clone(),
                keys: toml::from_str(&text).unwrap_or_default(),
            });
            Ok(settings)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            from_gateway_config(path, GatewayConfig::default(), vars)
        }
        Err(e) => Err(Errors(vec![Error::file(path, format!("cannot read: {e}"))])),
    }
}

/// Validates `text`, the content of `switchboard.toml` at `path` (a reload re-reads the
/// file through this, as startup does).
///
/// # Errors
/// Every problem in the text.
pub fn gateway_from_text(path: &Path, text: &str, vars: &Vars) -> Result<ServerSpec, Errors> {
    from_gateway_config(path, parse_file(path, text, vars)?, vars)
}

fn from_gateway_config(
    path: &Path,
    config: GatewayConfig,
    vars: &Vars,
) -> Result<ServerSpec, Errors> {
    let clients = clients::validate(path, &config.limits, &config.clients, vars);
    let cluster = config
        .cluster
        .map(|c| cluster::ClusterSpec::from_config(c, path))
        .transpose();
    let settings = ServerSpec::from_config(config.server, path);
    let oauth = config
        .auth
        .oauth
        .map(|c| oauth::validate(path, c))
        .transpose();
    let policies = policies::validate(path, config.policies);
    let audit = audit::validate(path, config.audit);
    let tasks = tasks::validate(path, config.tasks);
    let telemetry = telemetry::validate(path, config.telemetry, vars);
    let costs = costs::validate(path, config.costs);
    let (mut settings, (limits, clients), cluster, oauth, policies, audit, tasks) =
        match (settings, clients, cluster, oauth, policies, audit, tasks) {
            (Ok(s), Ok(c), Ok(cl), Ok(o), Ok(p), Ok(a), Ok(t))
                if telemetry.is_ok() && costs.is_ok() =>
            {
                (s, c, cl, o, p, a, t)
            }
            (s, c, cl, o, p, a, t) => {
                let mut errors = Errors::default();
                errors.extend(s.err().unwrap_or_default().0);
                errors.extend(c.err().unwrap_or_default());
                errors.extend(cl.err().unwrap_or_default().0);
                errors.extend(o.err().unwrap_or_default());
                errors.extend(p.err().unwrap_or_default());
                errors.extend(a.err().unwrap_or_default());
                errors.extend(t.err().unwrap_or_default());
                errors.extend(telemetry.err().unwrap_or_default());
                errors.extend(costs.err().unwrap_or_default());
                return Err(errors);
            }
        };
    settings.oauth = oauth;
    settings.audit = audit;
    settings.tasks = tasks;
    settings.telemetry = telemetry.unwrap_or_default();
    settings.costs = costs.unwrap_or_default();
    settings.policies = std::sync::Arc::new(policies);
    settings.limits = limits;
    settings.clients = clients;
    settings.cluster = cluster;
    settings.metrics_public = config.metrics.public;
    settings.meter_loopback = config.limits.meters_loopback();
    use secrecy::ExposeSecret;
    settings.admin_token = config
        .admin
        .token
        .or_else(|| {
            vars.get("SWITCHBOARD_ADMIN_TOKEN")
                .map(|t| t.clone().into())
        })
        .filter(|t| !t.expose_secret().trim().is_empty());
    Ok(settings)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
