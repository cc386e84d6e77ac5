//! `agents/<name>.toml`, as written: the serde mirror of an agent file.
//!
//! Validation into an [`AgentSpec`](crate::agents::AgentSpec) happens in `agents`; this
//! module only says what keys exist and what they mean.

use secrecy::SecretString;
use serde::Deserialize;

/// One agent file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// What the agent does; shown to MCP clients as the agent tool's description.
    pub description: String,
    /// The system instructions of the agent's LLM.
    #[serde(default)]
    pub instructions: String,
    /// What MCP clients see: `"agent"` (one tool named after the agent that runs its LLM
    /// loop), `"tools"` (its inner tools, directly), or both. Default: both.
    #[serde(default = "default_expose")]
    pub expose: Vec<Expose>,
    /// The model that runs the agent. Required when `expose` has `"agent"`, unless the file
    /// is a workflow.
    pub model: Option<ModelConfig>,
    /// `[workflow]`: the file is a workflow of other agents (and of its own tools) instead of
    /// an agent with a model ([`super::workflow`]).
    pub workflow: Option<super::workflow::WorkflowConfig>,
    /// The tools the agent (and, with `expose = ["tools"]`, its clients) can call. Each
    /// entry is parsed by its `type` in validation ([`crate::tools::ToolConfig::parse`]).
    #[serde(default)]
    pub tools: Vec<toml::Table>,
    /// Tool calls that wait for a person's approval ([`super::approvals`]).
    #[serde(default)]
    pub approvals: Vec<super::approvals::ApprovalConfig>,
    /// `[[servers]]`: upstream MCP servers federated into the agent's MCP server (with
    /// `expose = ["servers", ...]`). Each entry is parsed in validation
    /// ([`crate::federation::ServerConfig`]).
    #[serde(default)]
    pub servers: Vec<toml::Table>,
}

fn default_expose() -> Vec<Expose> {
    vec![Expose::Agent, Expose::Tools]
}

/// One entry of `expose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expose {
    /// The agent as one MCP tool taking a `task`.
    Agent,
    /// The agent's inner tools, each as an MCP tool.
    Tools,
    /// The upstream servers of `[[servers]]`, federated: their tools, prompts, resources
    /// and completions.
    Servers,
}

/// Which API serves the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// The OpenAI API or any OpenAI-compatible server (Ollama, vLLM, LM Studio, ...).
    #[default]
    Openai,
    /// Azure OpenAI (endpoint + deployment + API version).
    Azure,
}

/// `[model]` of an agent file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `openai` (default; any OpenAI-compatible API) or `azure`.
    #[serde(default)]
    pub provider: Provider,
    /// OpenAI-compatible base URL, e.g. `https://api.openai.com/v1` or
    /// `http://localhost:11434/v1`. Provider `openai` only.
    pub base_url: Option<String>,
    /// Azure resource endpoint, e.g. `https://my-resource.openai.azure.com`. Provider `azure`.
    pub endpoint: Option<String>,
    /// Azure deployment name. Provider `azure`.
    pub deployment: Option<String>,
    /// Azure API version, e.g. `2024-10-21`. Provider `azure`.
    pub api_version: Option<String>,
    /// API key; empty means not configured (a run then fails with a clear message).
    pub api_key: Option<SecretString>,
    /// Model name (`gpt-4o-mini`, `llama3.1`, ...). With Azure, defaults to the deployment.
    pub model: Option<String>,
    /// Most LLM turns (completion requests) one run may take. Default 8.
    #[serde(default = "default_max_turns")]
    pub max_turns: u32,
    /// Timeout of one completion request, in seconds. Default 60.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Timeout of a whole run, in seconds. Default 300.
    #[serde(default = "default_run_timeout")]
    pub run_timeout_secs: u64,
}

fn default_max_turns() -> u32 {
    8
}
fn default_request_timeout() -> u64 {
    60
}
fn default_run_timeout() -> u64 {
    300
}
