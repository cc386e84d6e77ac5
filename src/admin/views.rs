//! The admin API's views of the gateway's parts (agents, sessions, clients, traffic), and
//! in cluster mode the merged view of every replica's sessions (and the gathering of any
//! cluster-wide list from the replicas).

use std::time::{SystemTime, UNIX_EPOCH};

use super::dto::{
    AgentUrls, AgentView, ErrorBody, FederatedServerView, FederationView, LimitsView, ModelView,
    SessionCounts, SessionView, ToolView, TrafficPoint, TransportName, UsageView, WorkflowStepView,
    WorkflowView,
};
use crate::mcp::served::ServedAgent;
use crate::sessions::{SessionInfo, Transport};
use crate::state::AppState;

pub(super) fn limits_view(l: &crate::config::clients::Limits) -> LimitsView {
    LimitsView {
        requests_per_minute: l.requests_per_minute.get(),
        burst: l.burst.get(),
        agent_runs_per_minute: l.agent_runs_per_minute.get(),
        max_sessions: l.max_sessions,
    }
}

pub(super) fn usage_view(u: &crate::clients::Usage, now: SystemTime) -> UsageView {
    use std::sync::atomic::Ordering::Relaxed;
    let (requests_last_minute, rate_limited_last_minute) = u.last_minute(now);
    UsageView {
        sessions: u.sessions.load(Relaxed) as u64,
        requests: u.requests.load(Relaxed),
        agent_runs: u.agent_runs.load(Relaxed),
        rate_limited: u.rate_limited.load(Relaxed),
        requests_last_minute,
        rate_limited_last_minute,
        last_rate_limited_at: u.last_refused_at().map(rfc3339),
    }
}

pub(super) fn traffic_point(b: &crate::traffic::Bucket) -> TrafficPoint {
    let round = |v: Option<f64>| v.map(|ms| (ms * 1000.0).round() / 1000.0);
    TrafficPoint {
        calls: u64::from(b.calls),
        errors: u64::from(b.errors),
        p50_ms: round(b.latency.quantile_ms(0.5)),
        p99_ms: round(b.latency.quantile_ms(0.99)),
        llm_requests: u64::from(b.llm_requests),
        llm_errors: u64::from(b.llm_errors),
        llm_p50_ms: round(b.llm_latency.quantile_ms(0.5)),
        llm_prompt_tokens: b.prompt_tokens,
        llm_completion_tokens: b.completion_tokens,
    }
}

pub(super) fn session_not_found(id: &str) -> ErrorBody {
    ErrorBody::new("session_not_found", format!("no live session {id:?}"))
}

pub(super) fn transport_name(t: Transport) -> TransportName {
    match t {
        Transport::Sse => TransportName::Sse,
        Transport::StreamableHttp => TransportName::StreamableHttp,
    }
}

pub(super) fn rfc3339(t: SystemTime) -> String {
    let nanos = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Cluster mode: the sessions the other replicas hold (`query` asks each for its own), and
/// the replicas that did not answer.
pub(super) async fn cluster_sessions(
    cluster: &crate::cluster::Cluster,
    query: &str,
) -> (Vec<SessionView>, Vec<String>) {
    let (items, missing) = gather_from_others(cluster, query, "sessions").await;
    (items.into_iter().filter_map(parse_view).collect(), missing)
}

/// Cluster mode: asks every other live replica for its own part of a cluster-wide list
/// (`query`, a `scope=local` request, as a hop) and collects the items of the array `field`
/// of each answer; with the replicas that did not answer (each logged), whose items are
/// missing. Redis not answering the list of replicas is logged and gives nothing.
pub(super) async fn gather_from_others(
    cluster: &crate::cluster::Cluster,
    query: &str,
    field: &'static str,
) -> (Vec<serde_json::Value>, Vec<String>) {
    let answers = match cluster.get_from_others(query).await {
        Ok(answers) => answers,
        Err(e) => {
            tracing::warn!(error = %e, list = field, "Cannot ask the other replicas for their part of a list.");
            return (Vec::new(), Vec::new());
        }
    };
    let mut items = Vec::new();
    let mut missing = Vec::new();
    for (node, answer) in answers {
        match answer {
            Ok((200, mut body)) => {
                if let Some(serde_json::Value::Array(part)) =
                    body.get_mut(field).map(serde_json::Value::take)
                {
                    items.extend(part);
                }
            }
            Ok((status, _)) => {
                tracing::warn!(%node, status, list = field, "A replica refused to give its part of a list.");
                missing.push(node);
            }
            Err(e) => {
                tracing::warn!(%node, error = %e, list = field, "A replica did not give its part of a list.");
                missing.push(node);
            }
        }
    }
    (items, missing)
}

pub(super) fn parse_view(value: serde_json::Value) -> Option<SessionView> {
    use poem_openapi::types::ParseFromJSON;
    SessionView::parse_from_json(Some(value)).ok()
}

/// One view per session, oldest first: a Streamable HTTP session held by several replicas
/// shows once, as the copy used last, with the counters of all copies summed.
pub(super) fn merge_copies(views: Vec<SessionView>) -> Vec<SessionView> {
    let mut by_id: std::collections::HashMap<String, SessionView> =
        std::collections::HashMap::new();
    for view in views {
        match by_id.entry(view.id.clone()) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(view);
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let kept = e.get_mut();
                let (requests, errors, in_flight, prompt, completion) = (
                    kept.requests + view.requests,
                    kept.errors + view.errors,
                    kept.calls_in_flight + view.calls_in_flight,
                    kept.llm_prompt_tokens + view.llm_prompt_tokens,
                    kept.llm_completion_tokens + view.llm_completion_tokens,
                );
                let (created_at, age_secs) = if view.age_secs > kept.age_secs {
                    (view.created_at.clone(), view.age_secs)
                } else {
                    (kept.created_at.clone(), kept.age_secs)
                };
                // The copy used last. Timestamps compare as instants, not as text: RFC 3339
                // with a variable number of fraction digits does not sort as a string.
                if parse_rfc3339(&view.last_active_at) > parse_rfc3339(&kept.last_active_at) {
                    *kept = view;
                }
                kept.requests = requests;
                kept.errors = errors;
                kept.calls_in_flight = in_flight;
                kept.llm_prompt_tokens = prompt;
                kept.llm_completion_tokens = completion;
                kept.created_at = created_at;
                kept.age_secs = age_secs;
                kept.parked = kept.parked && kept.calls_in_flight == 0;
            }
        }
    }
    let mut all: Vec<SessionView> = by_id.into_values().collect();
    all.sort_by(|a, b| {
        b.age_secs
            .cmp(&a.age_secs)
            .then_with(|| a.created_at.cmp(&b.created_at))
            .then_with(|| a.id.cmp(&b.id))
    });
    all
}

pub(super) fn parse_rfc3339(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

pub(super) fn session_view(s: &SessionInfo, now: SystemTime) -> SessionView {
    let secs_since = |t: SystemTime| now.duration_since(t).map_or(0, |d| d.as_secs());
    SessionView {
        id: s.id.to_string(),
        agent: s.agent.to_string(),
        transport: transport_name(s.transport),
        client: s.peer.client.as_deref().map(str::to_owned),
        client_ip: s.peer.ip.map(|ip| ip.to_string()),
        user_agent: s.peer.user_agent.clone(),
        mcp_client_name: s.client_name.clone(),
        mcp_client_version: s.client_version.clone(),
        protocol_version: s.protocol_version.clone(),
        created_at: rfc3339(s.created_at),
        last_active_at: rfc3339(s.last_active_at),
        age_secs: secs_since(s.created_at),
        idle_secs: secs_since(s.last_active_at),
        requests: s.requests,
        errors: s.errors,
        calls_in_flight: s.in_flight,
        llm_prompt_tokens: s.prompt_tokens,
        llm_completion_tokens: s.completion_tokens,
        parked: s.parked,
        recent_calls: None,
        node: None,
    }
}

pub(super) fn agent_view(state: &AppState, e: &ServedAgent) -> AgentView {
    let spec = &e.agent.spec;
    let (sse, streamable) = state.sessions().count_by_transport(&e.name);
    AgentView {
        name: e.name.to_string(),
        description: spec.description.clone(),
        file: spec.file.display().to_string(),
        expose_agent: spec.expose_agent,
        expose_tools: spec.expose_tools,
        model: spec.model.as_ref().map(|m| ModelView {
            provider: match m.endpoint {
                crate::llm::ModelEndpoint::OpenAi { .. } => "openai".into(),
                crate::llm::ModelEndpoint::Azure { .. } => "azure".into(),
            },
            model: m.model.clone(),
            api_key_set: m.api_key.is_some(),
        }),
        workflow: spec.workflow.as_ref().map(|w| Box::new(workflow_view(w))),
        tools: e
            .agent
            .all_tool_definitions()
            .into_iter()
            .map(|t| ToolView {
                name: t.name.to_string(),
                description: t.description.map(|d| d.to_string()),
            })
            .collect(),
        federation: e.agent.federation().map(|f| {
            Box::new(FederationView {
                servers: f
                    .upstreams()
                    .map(|(upstream, prefix)| FederatedServerView {
                        upstream: upstream.to_owned(),
                        prefix: prefix.to_owned(),
                    })
                    .collect(),
                tools: f
                    .last_listed_tools()
                    .into_iter()
                    .map(|t| ToolView {
                        name: t.name.to_string(),
                        description: t.description.map(|d| d.to_string()),
                    })
                    .collect(),
            })
        }),
        urls: AgentUrls {
            sse: format!("/agents/{}/sse", e.name),
            mcp: format!("/agents/{}/mcp", e.name),
        },
        sessions: SessionCounts {
            sse: sse as u64,
            streamable_http: streamable as u64,
            total: (sse + streamable) as u64,
        },
        load_errors: state.agents().load_errors(&spec.file),
    }
}

fn workflow_view(w: &crate::agents::workflow::WorkflowSpec) -> WorkflowView {
    use crate::agents::workflow::{StepSpec, Target};
    use crate::config::workflow::{OnError, WorkflowKind};
    let step = |s: &StepSpec| WorkflowStepView {
        name: s.name.clone(),
        agent: match &s.target {
            Target::Agent(a) => Some(a.clone()),
            Target::Tool(_) => None,
        },
        tool: match &s.target {
            Target::Tool(t) => Some(t.clone()),
            Target::Agent(_) => None,
        },
        on_error: match s.on_error {
            OnError::Fail => "fail".into(),
            OnError::Continue => "continue".into(),
        },
        handoffs: s.handoffs.clone(),
    };
    WorkflowView {
        kind: w.kind.as_str().into(),
        steps: w.steps.iter().map(step).collect(),
        aggregator: w.aggregator.as_ref().map(step),
        max_handoffs: (w.kind == WorkflowKind::Handoff).then_some(w.max_handoffs),
        timeout_secs: w.timeout.as_secs(),
    }
}
