//! One agent's series as handles, made once when the agent is built: a request, a tool call
//! or a model request counts through a handle, with no label set allocated and hashed per
//! call (issue 22). Each handle is the family's own series (`get_or_create` once, on first
//! use, so that no series shows up before it can occur or was declared); a tool or model the
//! agent did not have when it was built (an upstream server's later tool) counts through the
//! families as before.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::{
    LlmLabels, LlmTimeLabels, MCP_METHODS, McpLabels, Metrics, TokenLabels, ToolLabels,
    ToolTimeLabels, mcp_method,
};

/// The outcomes a tool call is counted under ([`crate::tools::Error::label`] and `ok`).
const OUTCOMES: [&str; 6] = [
    "ok",
    "error",
    "invalid_arguments",
    "cancelled",
    "timeout",
    "denied",
];

/// The outcomes a model request is counted under.
const LLM_OUTCOMES: [&str; 2] = ["ok", "error"];

/// One agent's series.
pub struct AgentSeries {
    metrics: Arc<Metrics>,
    agent: String,
    /// `mcp_requests` by [`MCP_METHODS`] index, then `other`, then `response`.
    mcp: Vec<OnceLock<Counter>>,
    /// Its tools (the agent tool and those fixed when it was built), by name.
    tools: HashMap<String, ToolSeries>,
    /// Its model's, when it has one.
    llm: Option<LlmSeries>,
}

#[derive(Default)]
struct ToolSeries {
    /// By [`OUTCOMES`] index.
    calls: [OnceLock<Counter>; OUTCOMES.len()],
    seconds: OnceLock<Histogram>,
}

struct LlmSeries {
    model: String,
    /// By [`LLM_OUTCOMES`] index.
    requests: [OnceLock<Counter>; LLM_OUTCOMES.len()],
    seconds: OnceLock<Histogram>,
    prompt: OnceLock<Counter>,
    completion: OnceLock<Counter>,
}

impl AgentSeries {
    /// The series of agent `agent`, whose tools are `tools` and model `model`.
    pub fn new<'a>(
        metrics: Arc<Metrics>,
        agent: &str,
        tools: impl IntoIterator<Item = &'a str>,
        model: Option<&str>,
    ) -> Self {
        Self {
            metrics,
            agent: agent.to_owned(),
            mcp: (0..MCP_METHODS.len() + 2)
                .map(|_| OnceLock::new())
                .collect(),
            tools: tools
                .into_iter()
                .map(|t| (t.to_owned(), ToolSeries::default()))
                .collect(),
            llm: model.map(|model| LlmSeries {
                model: model.to_owned(),
                requests: Default::default(),
                seconds: OnceLock::new(),
                prompt: OnceLock::new(),
                completion: OnceLock::new(),
            }),
        }
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// An MCP message received (`method`: `None` for a response).
    pub fn mcp_request(&self, method: Option<&str>) {
        let (index, method) = mcp_method(method);
        let Some(slot) = self.mcp.get(index) else {
            return;
        };
        slot.get_or_init(|| {
            self.metrics
                .mcp_requests
                .get_or_create(&McpLabels {
                    agent: self.agent.clone(),
                    method,
                })
                .clone()
        })
        .inc();
    }

    /// A tool call from an MCP client finished.
    pub fn tool_call(&self, tool: &str, outcome: &'static str, seconds: f64) {
        let series = self.tools.get(tool);
        let index = OUTCOMES.iter().position(|o| *o == outcome);
        let (Some(series), Some(index)) = (series, index) else {
            return self.metrics.tool_call(&self.agent, tool, outcome, seconds);
        };
        series.calls[index]
            .get_or_init(|| {
                self.metrics
                    .tool_calls
                    .get_or_create(&ToolLabels {
                        agent: self.agent.clone(),
                        tool: tool.to_owned(),
                        outcome,
                    })
                    .clone()
            })
            .inc();
        series
            .seconds
            .get_or_init(|| {
                self.metrics
                    .tool_seconds
                    .get_or_create(&ToolTimeLabels {
                        agent: self.agent.clone(),
                        tool: tool.to_owned(),
                    })
                    .clone()
            })
            .observe(seconds);
        self.metrics.tool_traffic(&self.agent, outcome, seconds);
    }

    /// A chat-completion request of this agent's to `model` finished.
    pub fn llm_request(
        &self,
        model: &str,
        outcome: &'static str,
        seconds: f64,
        prompt: u64,
        completion: u64,
    ) {
        let llm = self.llm.as_ref().filter(|l| l.model == model);
        let index = LLM_OUTCOMES.iter().position(|o| *o == outcome);
        let (Some(llm), Some(index)) = (llm, index) else {
            return self.metrics.llm_request(
                &self.agent,
                model,
                outcome,
                seconds,
                prompt,
                completion,
            );
        };
        let m = &self.metrics;
        llm.requests[index]
            .get_or_init(|| {
                m.llm_requests
                    .get_or_create(&LlmLabels {
                        agent: self.agent.clone(),
                        model: model.to_owned(),
                        outcome,
                    })
                    .clone()
            })
            .inc();
        llm.seconds
            .get_or_init(|| {
                m.llm_seconds
                    .get_or_create(&LlmTimeLabels {
                        agent: self.agent.clone(),
                        model: model.to_owned(),
                    })
                    .clone()
            })
            .observe(seconds);
        m.llm_traffic(&self.agent, outcome, seconds, prompt, completion);
        for (slot, kind, n) in [
            (&llm.prompt, "prompt", prompt),
            (&llm.completion, "completion", completion),
        ] {
            if n > 0 {
                slot.get_or_init(|| {
                    m.llm_tokens
                        .get_or_create(&TokenLabels {
                            agent: self.agent.clone(),
                            model: model.to_owned(),
                            kind,
                        })
                        .clone()
                })
                .inc_by(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &m.registry);
        out
    }

    #[test]
    fn handles_count_in_the_same_series_as_the_families() {
        let metrics = Arc::new(Metrics::new());
        let series = AgentSeries::new(
            metrics.clone(),
            "helpdesk",
            ["helpdesk", "search_incident"],
            Some("gpt-x"),
        );
        series.mcp_request(Some("tools/call"));
        series.mcp_request(Some("no/such"));
        series.mcp_request(None);
        metrics.mcp_request("helpdesk", Some("tools/call"));
        series.tool_call("search_incident", "ok", 0.001);
        series.tool_call("search_incident", "timeout", 0.5);
        // Not known when the agent was built: counted all the same.
        series.tool_call("later_tool", "ok", 0.001);
        series.llm_request("gpt-x", "ok", 0.02, 10, 5);
        series.llm_request("other-model", "ok", 0.02, 1, 0);
        let out = text(&metrics);
        for line in [
            r#"switchboard_mcp_requests_total{agent="helpdesk",method="tools/call"} 2"#,
            r#"switchboard_mcp_requests_total{agent="helpdesk",method="other"} 1"#,
            r#"switchboard_mcp_requests_total{agent="helpdesk",method="response"} 1"#,
            r#"switchboard_tool_calls_total{agent="helpdesk",tool="search_incident",outcome="ok"} 1"#,
            r#"switchboard_tool_calls_total{agent="helpdesk",tool="search_incident",outcome="timeout"} 1"#,
            r#"switchboard_tool_calls_total{agent="helpdesk",tool="later_tool",outcome="ok"} 1"#,
            r#"switchboard_tool_call_duration_seconds_count{agent="helpdesk",tool="search_incident"} 2"#,
            r#"switchboard_llm_requests_total{agent="helpdesk",model="gpt-x",outcome="ok"} 1"#,
            r#"switchboard_llm_tokens_total{agent="helpdesk",model="gpt-x",kind="prompt"} 10"#,
            r#"switchboard_llm_tokens_total{agent="helpdesk",model="other-model",kind="prompt"} 1"#,
        ] {
            assert!(out.contains(line), "missing {line} in\n{out}");
        }
        // Nothing that did not happen shows up (series are made on first use).
        assert!(!out.contains(r#"outcome="denied""#), "{out}");
        assert!(!out.contains(r#"method="ping""#), "{out}");
    }
}
