//! What the admin API returns: poem-openapi objects, never config or internal types.
//! Their `///` docs are the spec's descriptions.

use poem_openapi::{Enum, Object};

/// The one error shape of the admin API.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `session_not_found`.
    pub code: String,
    /// What went wrong, for a human.
    pub message: String,
}

impl ErrorBody {
    /// An error body.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// A session's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum TransportName {
    /// Legacy HTTP+SSE (MCP 2024-11-05): `GET /agents/{name}/sse` + `POST /messages`.
    Sse,
    /// Streamable HTTP (MCP 2025-03-26 and later).
    StreamableHttp,
}

/// Which replicas a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum Scope {
    /// Every live replica's (cluster mode; the same as `local` otherwise).
    Cluster,
    /// This replica's only.
    Local,
}

/// The two MCP URLs of an agent (paths on this gateway).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AgentUrls {
    /// Legacy HTTP+SSE endpoint.
    pub sse: String,
    /// Streamable HTTP endpoint.
    pub mcp: String,
}

/// Live sessions of an agent per transport.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SessionCounts {
    /// Legacy HTTP+SSE sessions.
    pub sse: u64,
    /// Streamable HTTP sessions.
    pub streamable_http: u64,
    /// Both.
    pub total: u64,
}

/// A tool an agent has.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ToolView {
    /// Tool name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
}

/// An agent's federated MCP servers.
#[derive(Debug, Clone, Object)]
pub struct FederationView {
    /// Its `[[servers]]`, in file order.
    pub servers: Vec<FederatedServerView>,
    /// Their tools (prefixed, filtered) as an MCP session last listed them: empty until a
    /// session lists tools. Each session gets its own list (an upstream may offer a client
    /// only what it can answer); `[[policies]]` then apply per caller.
    pub tools: Vec<ToolView>,
}

/// A federated MCP server of an agent (`[[servers]]`).
#[derive(Debug, Clone, Object)]
pub struct FederatedServerView {
    /// How logs and errors name it: its URL, or its command and `(stdio)`.
    pub upstream: String,
    /// What its tools' and prompts' names get in front.
    pub prefix: String,
}

/// The workflow an agent file runs instead of a model.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WorkflowView {
    /// `sequential`, `concurrent` or `handoff`.
    pub kind: String,
    /// Its steps, in order.
    pub steps: Vec<WorkflowStepView>,
    /// `concurrent`: the step that merges the results.
    pub aggregator: Option<WorkflowStepView>,
    /// `handoff`: most handoffs in one run.
    pub max_handoffs: Option<u32>,
    /// Timeout of a whole run, in seconds.
    pub timeout_secs: u64,
}

/// A step of a workflow.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WorkflowStepView {
    /// The step's name.
    pub name: String,
    /// The agent (or workflow) it runs.
    pub agent: Option<String>,
    /// The tool (of the workflow's own `[[tools]]`) it calls.
    pub tool: Option<String>,
    /// `fail` or `continue`: what its failure does.
    pub on_error: String,
    /// `handoff`: the steps it may hand the conversation to.
    pub handoffs: Vec<String>,
}

/// The model an agent runs on.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ModelView {
    /// `openai` (any OpenAI-compatible API) or `azure`.
    pub provider: String,
    /// Model (or Azure deployment) name.
    pub model: String,
    /// Whether an API key is configured.
    pub api_key_set: bool,
}

/// An agent being served.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AgentView {
    /// Name, file stem and URL segment.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The file it was loaded from.
    pub file: String,
    /// Whether MCP clients see the agent tool (named after the agent, `{task}` in).
    pub expose_agent: bool,
    /// Whether MCP clients see its inner tools.
    pub expose_tools: bool,
    /// Its model, if it has one.
    pub model: Option<ModelView>,
    /// Its workflow, if its file is one (it then has no model).
    pub workflow: Option<Box<WorkflowView>>,
    /// The tools its model can call (and, with `expose_tools`, MCP clients too).
    pub tools: Vec<ToolView>,
    /// Its federated MCP servers (`[[servers]]`), if it has any.
    pub federation: Option<Box<FederationView>>,
    /// Its MCP URLs.
    pub urls: AgentUrls,
    /// Its live sessions.
    pub sessions: SessionCounts,
    /// Problems of its file at the last reload (the version shown keeps serving).
    pub load_errors: Vec<String>,
}

/// A live MCP session.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SessionView {
    /// Session id (`Mcp-Session-Id`, or the legacy `session_id`).
    pub id: String,
    /// The agent it talks to.
    pub agent: String,
    /// Its transport.
    pub transport: TransportName,
    /// The client (token owner), when clients are configured.
    pub client: Option<String>,
    /// The peer's IP address.
    pub client_ip: Option<String>,
    /// The peer's `User-Agent`.
    pub user_agent: Option<String>,
    /// MCP client name from `initialize` (`clientInfo.name`).
    pub mcp_client_name: Option<String>,
    /// MCP client version from `initialize`.
    pub mcp_client_version: Option<String>,
    /// Negotiated protocol version.
    pub protocol_version: Option<String>,
    /// When it started (RFC 3339, UTC).
    pub created_at: String,
    /// When the client last sent something (RFC 3339, UTC).
    pub last_active_at: String,
    /// Seconds since it started.
    pub age_secs: u64,
    /// Seconds since the client last sent something.
    pub idle_secs: u64,
    /// Requests received.
    pub requests: u64,
    /// Errors answered (JSON-RPC errors and tool results with `isError`).
    pub errors: u64,
    /// Requests not answered yet.
    pub calls_in_flight: u64,
    /// LLM prompt tokens spent by agent runs of this session (nested runs included).
    pub llm_prompt_tokens: u64,
    /// LLM completion tokens spent by agent runs of this session.
    pub llm_completion_tokens: u64,
    /// Whether its MCP engine is parked: the session has been idle, holds only its
    /// registry entry (and its stream, on legacy SSE), and its next request restarts the
    /// engine from the client's handshake (`server.session_park_after_ms`).
    pub parked: bool,
    /// Its last tool calls, oldest first (`GET /admin/sessions/{id}` only; the registry
    /// keeps the last 20).
    pub recent_calls: Option<Vec<CallView>>,
    /// Cluster mode: the replica serving it (for a Streamable HTTP session held by several,
    /// the one it used last; its counters are summed over them).
    pub node: Option<String>,
}

/// A finished tool call of a session.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CallView {
    /// The tool called.
    pub tool: String,
    /// When it finished (RFC 3339, UTC).
    pub finished_at: String,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// `ok`, `error` (a tool error result), `invalid_arguments` or `cancelled`.
    pub outcome: String,
    /// The call's OpenTelemetry trace id (`[telemetry]` on), 32 hex digits.
    pub trace_id: Option<String>,
    /// A link to the trace in the tracing backend (`[telemetry] trace_url`).
    pub trace_url: Option<String>,
}

/// One page of live sessions.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SessionPage {
    /// Sessions matching the filters, over all pages.
    pub total: u64,
    /// Index of the first session of this page.
    pub offset: u64,
    /// Page size asked for.
    pub limit: u64,
    /// The sessions of this page, oldest first.
    pub sessions: Vec<SessionView>,
    /// Cluster mode: replicas that did not answer (their sessions are missing here).
    pub unreachable_nodes: Option<Vec<String>>,
}

/// Liveness or readiness.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Health {
    /// `ok`, `ready`, `shutting_down`, or (cluster mode) `redis_unreachable`.
    pub status: String,
    /// Agents being served (readiness only).
    pub agents: Option<u64>,
}

/// Limits of a client (or of each IP, with open access).
#[derive(Debug, Clone, Object)]
pub struct LimitsView {
    /// Sustained MCP POSTs per minute.
    pub requests_per_minute: u32,
    /// MCP POSTs allowed in a burst.
    pub burst: u32,
    /// Calls that start an LLM run, per minute.
    pub agent_runs_per_minute: u32,
    /// Concurrent sessions.
    pub max_sessions: u32,
}

/// What a client has used since the gateway started, and in the last minute.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UsageView {
    /// Live sessions now.
    pub sessions: u64,
    /// MCP requests let through.
    pub requests: u64,
    /// Agent runs started.
    pub agent_runs: u64,
    /// Requests refused with 429.
    pub rate_limited: u64,
    /// MCP requests let through in the last minute.
    pub requests_last_minute: u64,
    /// Requests refused with 429 in the last minute: non-zero means the client is being
    /// rate-limited now.
    pub rate_limited_last_minute: u64,
    /// When a request was last refused with 429 (RFC 3339, UTC).
    pub last_rate_limited_at: Option<String>,
}

/// A peer of open access (no clients configured: limits apply per IP address).
#[derive(Debug, Clone, Object)]
pub struct PeerView {
    /// Its IP address.
    pub ip: String,
    /// Its usage.
    pub usage: UsageView,
}

/// A client (token owner).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ClientView {
    /// Its name (tokens are never shown).
    pub name: String,
    /// The agents it may use; `["*"]` for all.
    pub agents: Vec<String>,
    /// Its limits.
    pub limits: LimitsView,
    /// Its usage.
    pub usage: UsageView,
}

/// The clients, or open access.
#[derive(Debug, Clone, Object)]
pub struct ClientsView {
    /// `true` when no client is configured: MCP access is open and limits apply per IP.
    pub open: bool,
    /// The limits of each client that does not override them (and of each IP when open).
    pub default_limits: LimitsView,
    /// The configured clients.
    pub clients: Vec<ClientView>,
    /// With open access, the peers seen recently, by IP address.
    pub peers: Vec<PeerView>,
}

/// One 10-second bucket of an agent's traffic.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TrafficPoint {
    /// Tool calls from MCP clients that finished in the bucket.
    pub calls: u64,
    /// Of those, the ones that failed (tool error, invalid arguments, cancelled).
    pub errors: u64,
    /// Median tool-call latency, in milliseconds (absent without calls).
    pub p50_ms: Option<f64>,
    /// 99th-percentile tool-call latency, in milliseconds.
    pub p99_ms: Option<f64>,
    /// Chat-completion requests of agent runs.
    pub llm_requests: u64,
    /// Of those, the failed ones.
    pub llm_errors: u64,
    /// Median chat-completion latency, in milliseconds.
    pub llm_p50_ms: Option<f64>,
    /// LLM prompt tokens.
    pub llm_prompt_tokens: u64,
    /// LLM completion tokens.
    pub llm_completion_tokens: u64,
}

/// The last 15 minutes of one agent.
#[derive(Debug, Clone, Object)]
pub struct AgentTraffic {
    /// The agent.
    pub agent: String,
    /// The last minute (six buckets) at once.
    pub last_minute: TrafficPoint,
    /// One point per bucket, oldest first; the last one is still filling.
    pub points: Vec<TrafficPoint>,
}

/// Recent traffic of every agent, in buckets.
#[derive(Debug, Clone, Object)]
pub struct TrafficView {
    /// Seconds per bucket.
    pub bucket_secs: u64,
    /// Start of the first bucket (RFC 3339, UTC).
    pub start: String,
    /// Start of the first bucket, seconds since the Unix epoch; bucket `i` starts
    /// `i * bucket_secs` later.
    pub start_unix: u64,
    /// Every agent being served, by name.
    pub agents: Vec<AgentTraffic>,
}

/// A file with problems at the last reload: an agent file, or `switchboard.toml`.
#[derive(Debug, Clone, Object)]
pub struct LoadErrorView {
    /// The file.
    pub file: String,
    /// Whether an earlier version keeps serving: the agent's (otherwise the agent does not
    /// exist until the file is fixed), or for `switchboard.toml` the `[[policies]]` rules
    /// in force (always).
    pub serving_previous_version: bool,
    /// Its problems, each `file: key: message`.
    pub errors: Vec<String>,
}

/// What a reload of the agents directory did.
#[derive(Debug, Clone, Object)]
pub struct ReloadView {
    /// Agents that appeared.
    pub added: Vec<String>,
    /// Agents whose file changed: new sessions get the new definition, open ones keep theirs.
    pub changed: Vec<String>,
    /// Agents whose file is gone: their sessions were ended.
    pub removed: Vec<String>,
    /// Agents left as they were.
    pub unchanged: Vec<String>,
    /// Every problem (`file: key: message`): a broken agent file keeps its previous
    /// version, a broken `switchboard.toml` keeps the `[[policies]]` rules in force.
    pub errors: Vec<String>,
    /// What applied but may not do what was meant (`file: key: message`): a
    /// `[[policies]]` tool glob whose agent part names no loaded agent.
    pub warnings: Vec<String>,
    /// Top-level keys of `switchboard.toml` other than `policies` that changed since the
    /// gateway started: not applied, they need a restart.
    pub restart_needed: Vec<String>,
    /// Whether the `[[policies]]` rules in force were replaced by `switchboard.toml`'s.
    pub policies_changed: bool,
}

/// `GET /admin/cluster`: this replica and the live replicas.
#[derive(Debug, Clone, Object)]
pub struct ClusterView {
    /// `cluster` (replicas sharing a Redis) or `single` (no `[cluster]`: this gateway alone).
    pub mode: String,
    /// This replica's node id (a single gateway: its host name).
    pub node: String,
    /// The Redis the cluster shares (password redacted); absent on a single gateway.
    pub redis: Option<String>,
    /// Milliseconds between heartbeats; absent on a single gateway.
    pub heartbeat_ms: Option<u64>,
    /// Milliseconds a replica stays listed after its last heartbeat; absent on a single
    /// gateway.
    pub node_ttl_ms: Option<u64>,
    /// The live replicas, by id (this one included).
    pub nodes: Vec<NodeView>,
}

/// One live replica.
#[derive(Debug, Clone, Object)]
pub struct NodeView {
    /// Node id.
    pub id: String,
    /// Where the other replicas reach it.
    pub url: String,
    /// Whether this is the replica that answered.
    pub this: bool,
    /// Gateway version.
    pub version: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339).
    pub last_heartbeat_at: String,
    /// Its live sessions at its last heartbeat.
    pub sessions: u64,
}

/// What a `[[policies]]` rule does to the tools it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum PolicyEffect {
    /// The callers it is about may call them.
    Allow,
    /// They may not, whatever else allows them.
    Deny,
}

/// One `[[policies]]` rule of `switchboard.toml`.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PolicyView {
    /// Its key in the file (`policies[0]`), as refusals name it.
    pub key: String,
    /// Its name, if given.
    pub name: Option<String>,
    /// Allow or deny.
    pub effect: PolicyEffect,
    /// OAuth subjects it is about.
    pub subjects: Vec<String>,
    /// `[[clients]]` names or OAuth client ids it is about.
    pub clients: Vec<String>,
    /// OAuth scopes it is about.
    pub scopes: Vec<String>,
    /// OAuth groups or roles it is about.
    pub groups: Vec<String>,
    /// The tools it covers: `<agent>/<tool>` globs (`*`: any run of characters).
    pub tools: Vec<String>,
}

/// The `[[policies]]` rules in force.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PoliciesView {
    /// The file they were read from (re-read on every reload); absent without one.
    pub file: Option<String>,
    /// When they were loaded (RFC 3339, UTC): the gateway's start, or the reload that
    /// changed them.
    pub loaded_at: String,
    /// Whether rules are enforced: with none, every caller may call every tool; with any,
    /// a tool is allowed only when an `allow` rule about the caller covers it and no
    /// `deny` rule about the caller does.
    pub enforced: bool,
    /// Every rule, in file order.
    pub rules: Vec<PolicyView>,
    /// Why `switchboard.toml` was not applied at the last reload (`file: key: message`):
    /// the rules above stay in force until it is fixed.
    pub errors: Vec<String>,
    /// Tool globs whose agent part names no loaded agent at the last reload (`file: key:
    /// message`): they match nothing until such an agent exists.
    pub warnings: Vec<String>,
    /// Top-level keys of `switchboard.toml` other than `policies` changed since the start:
    /// not applied, they need a restart.
    pub restart_needed: Vec<String>,
}

/// A tool a client may not call, and why.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeniedToolView {
    /// The tool.
    pub tool: String,
    /// The `deny` rule that refuses it (`policies[1]`); absent when no rule allows it or
    /// the client may not use the agent.
    pub rule: Option<String>,
    /// Why, for a human.
    pub reason: String,
}

/// What a client may call on one agent.
#[derive(Debug, Clone, Object)]
pub struct AgentToolsView {
    /// The agent.
    pub agent: String,
    /// Whether the client may use the agent at all (`[[clients]] agents`).
    pub agent_allowed: bool,
    /// The tools it may call (those its `tools/list` shows).
    pub allowed: Vec<String>,
    /// The agent's other tools.
    pub denied: Vec<DeniedToolView>,
}

/// One client, with the `[[policies]]` rules about it and what it may call.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ClientDetailView {
    /// Its name: a `[[clients]]` name, or an OAuth client id a rule names.
    pub name: String,
    /// `true`: a configured client (`[[clients]]`; tokens are never shown). `false`: an
    /// OAuth client id named by a rule; what it may call is then as far as rules about
    /// client ids go (rules about a token's subject, scopes and groups apply too).
    pub configured: bool,
    /// The agents it may use; `["*"]` for all.
    pub agents: Vec<String>,
    /// Its limits (configured clients).
    pub limits: Option<LimitsView>,
    /// Its usage (configured clients).
    pub usage: Option<UsageView>,
    /// The rules that name it in `clients`, in file order.
    pub policies: Vec<PolicyView>,
    /// Every agent, with the tools it may call there and those it may not.
    pub tools: Vec<AgentToolsView>,
}

/// What agent runs spent (`[costs]`): per UTC day, client and agent, and totals.
#[derive(Debug, Clone, Object)]
pub struct CostsView {
    /// The currency of `cost` (`[costs] currency`).
    pub currency: String,
    /// The UTC days covered, today included.
    pub days: u32,
    /// Spend per day, client and agent, oldest day first.
    pub rows: Vec<SpendRow>,
    /// Totals per client over the days.
    pub clients: Vec<SpendTotal>,
    /// Totals per agent over the days.
    pub agents: Vec<SpendTotal>,
}

/// One day's spend of one client on one agent.
#[derive(Debug, Clone, Object)]
pub struct SpendRow {
    /// The UTC day (`2026-12-06`).
    pub day: String,
    /// The client (its name, an OAuth client id, or `anonymous`).
    pub client: String,
    /// The agent whose runs spent it (a delegated agent's runs count for that agent).
    pub agent: String,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Their cost (`[costs] models`; 0 for models without a price).
    pub cost: f64,
}

/// A total over the days.
#[derive(Debug, Clone, Object)]
pub struct SpendTotal {
    /// The client or the agent.
    pub name: String,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Their cost.
    pub cost: f64,
}
