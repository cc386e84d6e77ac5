//! Prometheus metrics (`GET /metrics`, OpenMetrics text), with prometheus-client.
//!
//! Labels are bounded: agents and clients come from config, tools from agent files, MCP
//! methods from the protocol's list (anything else is `other`), routes from a fixed set.

use std::sync::Arc;

mod agent;
pub use agent::AgentSeries;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct McpLabels {
    agent: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    agent: String,
    tool: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolTimeLabels {
    agent: String,
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    agent: String,
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    client: String,
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LlmLabels {
    agent: String,
    model: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LlmTimeLabels {
    agent: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    agent: String,
    model: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpendTokenLabels {
    client: String,
    agent: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpendLabels {
    client: String,
    agent: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApprovalLabels {
    by: &'static str,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    agent: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatelessLabels {
    agent: String,
    client: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~65 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// Every metric of the gateway. Cheap to share (`Arc`).
pub struct Metrics {
    registry: Registry,
    /// The cluster's families: rendered in cluster mode only (a single gateway has no
    /// Redis to be up or down).
    cluster_registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    mcp_requests: Family<McpLabels, Counter>,
    tool_calls: Family<ToolLabels, Counter>,
    tool_seconds: Family<ToolTimeLabels, Histogram, fn() -> Histogram>,
    sessions: Family<SessionLabels, Gauge>,
    rate_limited: Family<LimitLabels, Counter>,
    llm_requests: Family<LlmLabels, Counter>,
    llm_seconds: Family<LlmTimeLabels, Histogram, fn() -> Histogram>,
    llm_tokens: Family<TokenLabels, Counter>,
    spent_tokens: Family<SpendTokenLabels, Counter>,
    spent_cost: Family<SpendLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    reloads: Family<OutcomeLabels, Counter>,
    audit_records: Family<OutcomeLabels, Counter>,
    audit_held: Gauge,
    approvals: Family<ApprovalLabels, Counter>,
    approvals_pending: Gauge,
    tasks: Family<TaskLabels, Counter>,
    tasks_running: Gauge,
    policies: Gauge,
    introspection_rate_limited: Counter,
    stateless: Family<StatelessLabels, Counter>,
    cluster_events: Family<ClusterLabels, Counter>,
    cluster_redis_up: Gauge,
    /// The last 15 minutes per agent, for the admin API and console.
    traffic: crate::traffic::Traffic,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The HTTP methods counted by name; anything else counts as `other`.
const HTTP_METHODS: &[&str] = &[
    "GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
];

/// The MCP methods counted by name; anything else counts as `other`.
const MCP_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// How `switchboard_mcp_requests_total` labels a message with `method` (`None`: a response),
/// and the label's index: [`MCP_METHODS`]'s, then `other`, then `response`.
fn mcp_method(method: Option<&str>) -> (usize, &'static str) {
    match method {
        Some(m) => match MCP_METHODS.iter().position(|k| *k == m) {
            Some(i) => (i, MCP_METHODS[i]),
            None => (MCP_METHODS.len(), "other"),
        },
        None => (MCP_METHODS.len() + 1, "response"),
    }
}

impl Metrics {
    /// A fresh set of metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let m = Self {
            http_requests: Family::default(),
            mcp_requests: Family::default(),
            tool_calls: Family::default(),
            tool_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            sessions: Family::default(),
            rate_limited: Family::default(),
            llm_requests: Family::default(),
            llm_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            llm_tokens: Family::default(),
            spent_tokens: Family::default(),
            spent_cost: Family::default(),
            reloads: Family::default(),
            audit_records: Family::default(),
            audit_held: Gauge::default(),
            approvals: Family::default(),
            approvals_pending: Gauge::default(),
            tasks: Family::default(),
            tasks_running: Gauge::default(),
            policies: Gauge::default(),
            introspection_rate_limited: Counter::default(),
            cluster_events: Family::default(),
            cluster_redis_up: Gauge::default(),
            stateless: Family::default(),
            traffic: crate::traffic::Traffic::default(),
            registry: Registry::default(),
            cluster_registry: Registry::default(),
        };
        let mut cluster_registry = Registry::with_prefix("switchboard");
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            m.http_requests.clone(),
        );
        registry.register(
            "mcp_requests",
            "MCP messages received, by agent and JSON-RPC method",
            m.mcp_requests.clone(),
        );
        registry.register(
            "tool_calls",
            "Tool calls from MCP clients, by agent, tool and outcome",
            m.tool_calls.clone(),
        );
        registry.register(
            "tool_call_duration_seconds",
            "Duration of tool calls from MCP clients",
            m.tool_seconds.clone(),
        );
        registry.register(
            "sessions",
            "Live MCP sessions by agent and transport",
            m.sessions.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused with 429, by client and limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "llm_requests",
            "Chat-completion requests by agent, model and outcome",
            m.llm_requests.clone(),
        );
        registry.register(
            "llm_request_duration_seconds",
            "Duration of chat-completion requests (retries included)",
            m.llm_seconds.clone(),
        );
        registry.register(
            "llm_tokens",
            "LLM tokens by agent, model and kind (prompt, completion)",
            m.llm_tokens.clone(),
        );
        registry.register(
            "client_llm_tokens",
            "LLM tokens spent by agent runs, by client, agent and kind (prompt, completion)",
            m.spent_tokens.clone(),
        );
        registry.register(
            "llm_cost",
            "What agent runs' LLM tokens cost ([costs] models, in [costs] currency), by client, agent and model",
            m.spent_cost.clone(),
        );
        registry.register(
            "reloads",
            "Reloads (the agents directory and switchboard.toml's [[policies]]) by outcome",
            m.reloads.clone(),
        );
        registry.register(
            "audit_records",
            "Audit records by what became of them: written, dropped (the queue to the writer was full), failed (the store refused the batch)",
            m.audit_records.clone(),
        );
        registry.register(
            "audit_records_held",
            "Audit records the writer holds because the store did not take them (PostgreSQL down or restarting): written once it is back; 0 when all is well",
            m.audit_held.clone(),
        );
        registry.register(
            "approvals",
            "Calls that needed approval, by who approves (operator, client) and what was decided (approved, denied, timeout, withdrawn, unavailable)",
            m.approvals.clone(),
        );
        registry.register(
            "approvals_pending",
            "Calls waiting for an operator's approval on this replica",
            m.approvals_pending.clone(),
        );
        registry.register(
            "tasks",
            "Agent runs served as MCP tasks that ended, by agent and final status (completed, failed, cancelled)",
            m.tasks.clone(),
        );
        registry.register(
            "tasks_running",
            "Agent runs served as MCP tasks running on this replica",
            m.tasks_running.clone(),
        );
        registry.register(
            "policies",
            "[[policies]] rules in force",
            m.policies.clone(),
        );
        registry.register(
            "introspection_rate_limited",
            "Requests refused with 503 because their access token needed an introspection request beyond [auth.oauth] introspection_requests_per_second",
            m.introspection_rate_limited.clone(),
        );
        registry.register(
            "stateless_requests",
            "MCP 2026-07-28 requests served without a session, by agent and client",
            m.stateless.clone(),
        );
        cluster_registry.register(
            "cluster_events",
            "Cluster mode: sessions taken over from another replica, legacy POSTs forwarded to the stream's replica, sessions ended because another replica ended them, operators' decisions forwarded to the replica where the call waits",
            m.cluster_events.clone(),
        );
        cluster_registry.register(
            "cluster_redis_up",
            "Cluster mode: 1 while the last heartbeat reached Redis, else 0",
            m.cluster_redis_up.clone(),
        );
        Self {
            registry,
            cluster_registry,
            ..m
        }
    }

    /// Cluster mode: `event` happened (`session_taken_over`, `post_forwarded`,
    /// `session_ended_elsewhere`, `approval_forwarded`).
    pub fn cluster_event(&self, event: &'static str) {
        self.cluster_events
            .get_or_create(&ClusterLabels { event })
            .inc();
    }

    /// A request was refused: its token needed an introspection request beyond the rate.
    pub fn introspection_rate_limited(&self) {
        self.introspection_rate_limited.inc();
    }

    /// `n` audit records were `written`, `dropped` or `failed`.
    pub fn audit_records(&self, outcome: &'static str, n: u64) {
        self.audit_records
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(n);
    }

    /// The writer holds `n` records the store did not take (0: none).
    pub fn audit_records_held(&self, n: i64) {
        self.audit_held.set(n);
    }

    /// A call that needed approval `by` someone ended `decision`.
    pub fn approval(&self, by: &'static str, decision: &'static str) {
        self.approvals
            .get_or_create(&ApprovalLabels { by, decision })
            .inc();
    }

    /// A task of `agent` ended `status`.
    pub fn task_ended(&self, agent: &str, status: &'static str) {
        self.tasks
            .get_or_create(&TaskLabels {
                agent: agent.to_owned(),
                status,
            })
            .inc();
    }

    /// Tasks running on this replica.
    pub fn tasks_running(&self, n: usize) {
        self.tasks_running.set(n as i64);
    }

    /// Calls waiting for an operator on this replica.
    pub fn approvals_pending(&self, n: usize) {
        self.approvals_pending.set(n as i64);
    }

    /// Cluster mode: whether the last heartbeat reached Redis.
    pub fn cluster_redis_up(&self, up: bool) {
        self.cluster_redis_up.set(i64::from(up));
    }

    /// An HTTP request answered.
    pub fn http_request(&self, route: &'static str, method: &str, status: u16) {
        // The methods HTTP defines, by name; anything else as `other` (bounded labels, and
        // no label allocated per request).
        let method = HTTP_METHODS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("other");
        self.http_requests
            .get_or_create(&HttpLabels {
                route,
                method,
                status,
            })
            .inc();
    }

    /// An MCP message received.
    pub fn mcp_request(&self, agent: &str, method: Option<&str>) {
        let (_, method) = mcp_method(method);
        self.mcp_requests
            .get_or_create(&McpLabels {
                agent: agent.to_owned(),
                method,
            })
            .inc();
    }

    /// A tool call from an MCP client finished.
    pub fn tool_call(&self, agent: &str, tool: &str, outcome: &'static str, seconds: f64) {
        self.tool_calls
            .get_or_create(&ToolLabels {
                agent: agent.to_owned(),
                tool: tool.to_owned(),
                outcome,
            })
            .inc();
        self.tool_seconds
            .get_or_create(&ToolTimeLabels {
                agent: agent.to_owned(),
                tool: tool.to_owned(),
            })
            .observe(seconds);
        self.tool_traffic(agent, outcome, seconds);
    }

    /// A finished tool call in the recent traffic of `agent`.
    fn tool_traffic(&self, agent: &str, outcome: &str, seconds: f64) {
        self.traffic.tool_call(
            agent,
            std::time::SystemTime::now(),
            (seconds * 1e6) as u64,
            outcome != "ok",
        );
    }

    /// Recent traffic per agent (the last 15 minutes).
    pub fn traffic(&self) -> &crate::traffic::Traffic {
        &self.traffic
    }

    /// A request refused with 429.
    pub fn rate_limited(&self, client: &str, limit: &'static str) {
        self.rate_limited
            .get_or_create(&LimitLabels {
                client: client.to_owned(),
                limit,
            })
            .inc();
    }

    /// A chat-completion request finished.
    pub fn llm_request(
        &self,
        agent: &str,
        model: &str,
        outcome: &'static str,
        seconds: f64,
        prompt: u64,
        completion: u64,
    ) {
        self.llm_requests
            .get_or_create(&LlmLabels {
                agent: agent.to_owned(),
                model: model.to_owned(),
                outcome,
            })
            .inc();
        self.llm_seconds
            .get_or_create(&LlmTimeLabels {
                agent: agent.to_owned(),
                model: model.to_owned(),
            })
            .observe(seconds);
        self.llm_traffic(agent, outcome, seconds, prompt, completion);
        for (kind, n) in [("prompt", prompt), ("completion", completion)] {
            if n > 0 {
                self.llm_tokens
                    .get_or_create(&TokenLabels {
                        agent: agent.to_owned(),
                        model: model.to_owned(),
                        kind,
                    })
                    .inc_by(n);
            }
        }
    }

    /// A finished chat-completion request in the recent traffic of `agent`.
    fn llm_traffic(&self, agent: &str, outcome: &str, seconds: f64, prompt: u64, completion: u64) {
        self.traffic.llm_request(
            agent,
            std::time::SystemTime::now(),
            (seconds * 1e6) as u64,
            outcome != "ok",
            prompt,
            completion,
        );
    }

    /// What one completion of a run for `client` spent.
    pub fn spend(
        &self,
        client: &str,
        agent: &str,
        model: &str,
        prompt: u64,
        completion: u64,
        cost: f64,
    ) {
        for (kind, n) in [("prompt", prompt), ("completion", completion)] {
            self.spent_tokens
                .get_or_create(&SpendTokenLabels {
                    client: client.to_owned(),
                    agent: agent.to_owned(),
                    kind,
                })
                .inc_by(n);
        }
        self.spent_cost
            .get_or_create(&SpendLabels {
                client: client.to_owned(),
                agent: agent.to_owned(),
                model: model.to_owned(),
            })
            .inc_by(cost);
    }

    /// A reload of the agents directory finished.
    pub fn reload(&self, outcome: &'static str) {
        self.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// `n` `[[policies]]` rules are in force.
    pub fn policies_in_force(&self, n: usize) {
        self.policies.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A request served statelessly (MCP 2026-07-28: no session).
    pub fn stateless_request(&self, agent: &str, client: &str) {
        self.stateless
            .get_or_create(&StatelessLabels {
                agent: agent.to_owned(),
                client: client.to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text, with the live session gauges set from `sessions`
    /// (`(agent, transport, count)`), and a zero series for every label set `served` says
    /// can occur and has not yet: every family is there from the first scrape, so that
    /// rates and alerts work before the first event. The cluster's families only when
    /// `served.cluster`.
    pub fn render<'a>(
        &self,
        sessions: impl IntoIterator<Item = (&'a str, &'static str, usize)>,
        served: &Served<'_>,
    ) -> String {
        self.sessions.clear();
        for agent in &served.agents {
            for transport in TRANSPORTS {
                let _ = self.sessions.get_or_create(&SessionLabels {
                    agent: agent.name.to_owned(),
                    transport,
                });
            }
        }
        for (agent, transport, n) in sessions {
            self.sessions
                .get_or_create(&SessionLabels {
                    agent: agent.to_owned(),
                    transport,
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.declare(served);
        let mut out = String::new();
        let mut encoded =
            prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        if served.cluster && encoded.is_ok() {
            encoded = prometheus_client::encoding::text::encode_registry(
                &mut out,
                &self.cluster_registry,
            );
        }
        if let Err(e) =
            encoded.and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out))
        {
            tracing::error!(error = %e, "Could not encode metrics.");
        }
        out
    }

    /// Creates (at zero) the series of every label set `served` says can occur; those that
    /// exist keep their values.
    fn declare(&self, served: &Served<'_>) {
        // The scrape being answered is counted once it is written.
        let _ = self.http_requests.get_or_create(&HttpLabels {
            route: "metrics",
            method: "GET",
            status: 200,
        });
        for outcome in ["ok", "error"] {
            let _ = self.reloads.get_or_create(&OutcomeLabels { outcome });
        }
        for outcome in ["written", "dropped", "failed"] {
            let _ = self.audit_records.get_or_create(&OutcomeLabels { outcome });
        }
        for client in &served.clients {
            for limit in LIMITS {
                let _ = self.rate_limited.get_or_create(&LimitLabels {
                    client: (*client).to_owned(),
                    limit,
                });
            }
        }
        for agent in &served.agents {
            let name = agent.name;
            for method in ["initialize", "tools/list", "tools/call"] {
                let _ = self.mcp_requests.get_or_create(&McpLabels {
                    agent: name.to_owned(),
                    method,
                });
            }
            for client in &served.clients {
                let _ = self.stateless.get_or_create(&StatelessLabels {
                    agent: name.to_owned(),
                    client: (*client).to_owned(),
                });
            }
            for tool in &agent.tools {
                for outcome in TOOL_OUTCOMES {
                    let _ = self.tool_calls.get_or_create(&ToolLabels {
                        agent: name.to_owned(),
                        tool: tool.clone(),
                        outcome,
                    });
                }
                let _ = self.tool_seconds.get_or_create(&ToolTimeLabels {
                    agent: name.to_owned(),
                    tool: tool.clone(),
                });
            }
            if let Some(model) = agent.model {
                for outcome in ["ok", "error"] {
                    let _ = self.llm_requests.get_or_create(&LlmLabels {
                        agent: name.to_owned(),
                        model: model.to_owned(),
                        outcome,
                    });
                }
                let _ = self.llm_seconds.get_or_create(&LlmTimeLabels {
                    agent: name.to_owned(),
                    model: model.to_owned(),
                });
                for kind in ["prompt", "completion"] {
                    let _ = self.llm_tokens.get_or_create(&TokenLabels {
                        agent: name.to_owned(),
                        model: model.to_owned(),
                        kind,
                    });
                }
            }
        }
        if served.cluster {
            for event in CLUSTER_EVENTS {
                let _ = self.cluster_events.get_or_create(&ClusterLabels { event });
            }
        }
    }
}

/// The transports of `switchboard_sessions`.
const TRANSPORTS: [&str; 2] = ["sse", "streamable_http"];
/// The limits of `switchboard_rate_limited_total`.
const LIMITS: [&str; 3] = [
    "requests_per_minute",
    "agent_runs_per_minute",
    "max_sessions",
];
/// The outcomes of `switchboard_tool_calls_total`.
const TOOL_OUTCOMES: [&str; 4] = ["ok", "error", "invalid_arguments", "cancelled"];
/// The events of `switchboard_cluster_events_total`.
const CLUSTER_EVENTS: [&str; 4] = [
    "session_taken_over",
    "post_forwarded",
    "session_ended_elsewhere",
    "approval_forwarded",
];

/// What the gateway serves, as the labels of its metrics can name it.
#[derive(Debug, Default)]
pub struct Served<'a> {
    /// The agents.
    pub agents: Vec<ServedSeries<'a>>,
    /// The clients' names as the metrics label them (open access: `anonymous`).
    pub clients: Vec<&'a str>,
    /// Whether this gateway is a replica of a cluster.
    pub cluster: bool,
}

/// One agent, as the labels of its metrics name it.
#[derive(Debug)]
pub struct ServedSeries<'a> {
    /// Its name.
    pub name: &'a str,
    /// The tools its clients see.
    pub tools: Vec<String>,
    /// Its model, when it has one.
    pub model: Option<&'a str>,
}

/// Shared metrics.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_show_up_in_the_text() {
        let m = Metrics::new();
        m.http_request("mcp", "POST", 200);
        m.mcp_request("servicenow", Some("tools/call"));
        m.mcp_request("servicenow", Some("made/up"));
        m.tool_call("servicenow", "get_incident", "ok", 0.002);
        m.llm_request("servicenow", "gpt", "ok", 0.5, 10, 3);
        let text = m.render([("servicenow", "sse", 2)], &Served::default());
        for needle in [
            "switchboard_http_requests_total{route=\"mcp\",method=\"POST\",status=\"200\"} 1",
            "switchboard_mcp_requests_total{agent=\"servicenow\",method=\"tools/call\"} 1",
            "switchboard_mcp_requests_total{agent=\"servicenow\",method=\"other\"} 1",
            "switchboard_tool_calls_total{agent=\"servicenow\",tool=\"get_incident\",outcome=\"ok\"} 1",
            "switchboard_sessions{agent=\"servicenow\",transport=\"sse\"} 2",
            "switchboard_llm_tokens_total{agent=\"servicenow\",model=\"gpt\",kind=\"prompt\"} 10",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
