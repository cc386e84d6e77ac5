//! A validated `[model]`: what an agent's [`LlmClient`](super::LlmClient) is built from.

use std::time::Duration;

use secrecy::SecretString;

/// A validated `[model]`.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Where the model is served.
    pub endpoint: ModelEndpoint,
    /// API key, if configured.
    pub api_key: Option<SecretString>,
    /// Model name sent with each request.
    pub model: String,
    /// Most LLM turns per run.
    pub max_turns: u32,
    /// Timeout of one completion request.
    pub request_timeout: Duration,
    /// Timeout of a whole run.
    pub run_timeout: Duration,
    /// What to set when the key is missing, e.g. "set OPENAI_API_KEY".
    pub key_hint: String,
}

/// Where a model is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelEndpoint {
    /// An OpenAI-compatible API at this base URL.
    OpenAi {
        /// Base URL, e.g. `https://api.openai.com/v1`.
        base_url: String,
    },
    /// Azure OpenAI.
    Azure {
        /// Resource endpoint.
        endpoint: String,
        /// Deployment name.
        deployment: String,
        /// API version.
        api_version: String,
    },
}
