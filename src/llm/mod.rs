//! The LLM client of an agent: async-openai, built only from the agent's `[model]`.
//!
//! Every client is built explicitly (base URL, key, deployment, timeouts); async-openai's
//! environment defaults are overridden, so nothing is read from the environment behind the
//! gateway's back. async-openai retries 429 and 5xx answers itself (3 times, honouring
//! `Retry-After`, else exponential backoff); each attempt is bounded by the agent's
//! `request_timeout_secs`. Failures become an [`Error`] whose message says what to fix.

use std::time::{Duration, Instant};

use async_openai::config::{AzureConfig, Config, OpenAIConfig};
use async_openai::error::OpenAIError;
use async_openai::traits::RequestOptionsBuilder as _;
use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, ChatCompletionRequestMessage, CreateChatCompletionResponse,
};
use rmcp::model::Tool;
use secrecy::ExposeSecret;
use serde::Serialize;
use tracing::Instrument as _;

use crate::telemetry::trace;

mod conversation;
mod functions;
mod spec;

pub use conversation::Conversation;
pub use spec::{ModelEndpoint, ModelSpec};

/// Why a completion failed, phrased for the caller of the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No API key where one is needed.
    #[error("model not configured: {hint}")]
    NotConfigured {
        /// What to set.
        hint: String,
    },
    /// One request took longer than `request_timeout_secs`.
    #[error("the model did not answer within {secs} s (request_timeout_secs in [model])")]
    Timeout {
        /// The limit.
        secs: u64,
    },
    /// The API could not be reached.
    #[error(
        "cannot reach the model API at {base_url}: {detail}; check base_url and that the server is running"
    )]
    Unreachable {
        /// Where it was looked for.
        base_url: String,
        /// The transport error.
        detail: String,
    },
    /// 401/403.
    #[error(
        "the model API refused the credentials ({status}): {message}; check api_key in [model]"
    )]
    Refused {
        /// HTTP status.
        status: u16,
        /// The API's message.
        message: String,
    },
    /// 404.
    #[error(
        "the model API does not know model {model:?} ({status}): {message}; check model and base_url in [model]"
    )]
    UnknownModel {
        /// HTTP status.
        status: u16,
        /// The model asked for.
        model: String,
        /// The API's message.
        message: String,
    },
    /// 429 after the retries.
    #[error("the model API is rate limiting (429) and retries ran out: {message}; try again later")]
    RateLimited {
        /// The API's message.
        message: String,
    },
    /// 5xx after the retries.
    #[error("the model API failed ({status}) after retries: {message}")]
    ServerError {
        /// HTTP status.
        status: u16,
        /// The API's message (or body).
        message: String,
    },
    /// Another 4xx.
    #[error("the model API rejected the request ({status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The API's message.
        message: String,
    },
    /// Not a chat completion.
    #[error("the model API answered with something that is not a chat completion: {0}")]
    BadResponse(String),
}

/// One tool call the model asked for.
#[derive(Debug, Clone)]
pub struct ToolCall {
    /// The call id, echoed in the tool message.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// Its arguments, a JSON string as the model wrote it.
    pub arguments: String,
}

/// What one completion returned.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    /// The assistant's text.
    pub content: Option<String>,
    /// The tool calls it asked for.
    pub tool_calls: Vec<ToolCall>,
    /// The raw tool calls, echoed back in the assistant message
    /// ([`Conversation::push_assistant`]).
    raw_tool_calls: Vec<ChatCompletionMessageToolCalls>,
    /// Prompt tokens used.
    pub prompt_tokens: u64,
    /// Completion tokens used.
    pub completion_tokens: u64,
    /// Wall time of the request, retries included.
    pub latency: Duration,
    /// The model that answered, as the API names it.
    pub response_model: Option<String>,
    /// The completion's id.
    pub response_id: Option<String>,
    /// Why the model stopped (`stop`, `tool_calls`, `length`, ...).
    pub finish_reason: Option<String>,
}

/// An agent's model client.
pub struct LlmClient {
    client: async_openai::Client<Box<dyn Config>>,
    model: String,
    base_url: String,
    request_timeout: Duration,
    /// Set when a run cannot work (no key for a hosted API): the message says what to set.
    not_configured: Option<String>,
    /// `gen_ai.provider.name` of the chat spans.
    provider: &'static str,
    /// The API's host and port, for the chat spans.
    server: Option<(String, u16)>,
    /// The tools' function definitions, serialised once.
    functions: functions::Functions,
}

impl LlmClient {
    /// Builds the client of `spec`; `key_hint` names what sets the key (e.g. "set
    /// OPENAI_API_KEY") for the message when it is missing.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(spec: &ModelSpec, key_hint: &str) -> Result<Self, String> {
        let key = spec
            .api_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned())
            .unwrap_or_default();
        let (config, base_url, key_required): (Box<dyn Config>, String, bool) = match &spec.endpoint
        {
            ModelEndpoint::OpenAi { base_url } => (
                // Every field set explicitly: `OpenAIConfig::new()` reads OPENAI_* variables.
                Box::new(
                    OpenAIConfig::new()
                        .with_api_base(base_url.clone())
                        .with_api_key(key.clone())
                        .with_org_id("")
                        .with_project_id(""),
                ),
                base_url.clone(),
                // Local OpenAI-compatible servers (Ollama, vLLM, LM Studio) need no key; the
                // hosted APIs do.
                base_url.contains("api.openai.com"),
            ),
            ModelEndpoint::Azure {
                endpoint,
                deployment,
                api_version,
            } => (
                Box::new(
                    AzureConfig::new()
                        .with_api_base(endpoint.clone())
                        .with_deployment_id(deployment.clone())
                        .with_api_version(api_version.clone())
                        .with_api_key(key.clone()),
                ),
                endpoint.clone(),
                true,
            ),
        };
        let http = reqwest::Client::builder()
            .timeout(spec.request_timeout)
            .connect_timeout(spec.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let provider = match &spec.endpoint {
            ModelEndpoint::OpenAi { .. } => "openai",
            ModelEndpoint::Azure { .. } => "azure.ai.openai",
        };
        let server = reqwest::Url::parse(&base_url)
            .ok()
            .and_then(|u| Some((u.host_str()?.to_owned(), u.port_or_known_default()?)));
        Ok(Self {
            client: async_openai::Client::build(http, config),
            model: spec.model.clone(),
            provider,
            server,
            base_url,
            request_timeout: spec.request_timeout,
            functions: functions::Functions::default(),
            not_configured: (key_required && key.is_empty()).then(|| key_hint.to_owned()),
        })
    }

    /// The model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Asks for the next step of a conversation.
    ///
    /// # Errors
    /// See [`Error`]: every variant says what failed and what to fix.
    pub async fn complete(
        &self,
        conversation: &Conversation,
        tools: &[Tool],
    ) -> Result<Completion, Error> {
        if !trace::on() {
            return self.request(conversation, tools, None).await;
        }
        // Boxed: the traced path does not grow the (debug-build) frame of every run.
        Box::pin(self.complete_traced(conversation, tools)).await
    }

    /// [`Self::complete`] in a `chat <model>` span.
    async fn complete_traced(
        &self,
        conversation: &Conversation,
        tools: &[Tool],
    ) -> Result<Completion, Error> {
        let span = tracing::info_span!(
            target: trace::TARGET,
            "chat",
            otel.name = trace::span_name("chat", &self.model).as_str(),
            otel.kind = "client",
            gen_ai.operation.name = "chat",
            gen_ai.provider.name = self.provider,
            gen_ai.request.model = self.model.as_str(),
            server.address = self.server.as_ref().map(|(host, _)| host.as_str()),
            server.port = self.server.as_ref().map(|(_, port)| *port),
        );
        if trace::capture_content() && !span.is_disabled() {
            trace::set(
                &span,
                "gen_ai.input.messages",
                serde_json::to_string(conversation.messages()).unwrap_or_default(),
            );
        }
        let context = trace::TraceContext::of(&span);
        let result = self
            .request(conversation, tools, context.as_ref())
            .instrument(span.clone())
            .await;
        match &result {
            Ok(done) => {
                if let Some(model) = &done.response_model {
                    trace::set(&span, "gen_ai.response.model", model.clone());
                }
                if let Some(id) = &done.response_id {
                    trace::set(&span, "gen_ai.response.id", id.clone());
                }
                trace::set(
                    &span,
                    "gen_ai.usage.input_tokens",
                    done.prompt_tokens as i64,
                );
                trace::set(
                    &span,
                    "gen_ai.usage.output_tokens",
                    done.completion_tokens as i64,
                );
                if let Some(reason) = &done.finish_reason {
                    trace::set(
                        &span,
                        "gen_ai.response.finish_reasons",
                        opentelemetry::Value::Array(
                            vec![opentelemetry::StringValue::from(reason.clone())].into(),
                        ),
                    );
                }
                if trace::capture_content() {
                    trace::set(
                        &span,
                        "gen_ai.output.messages",
                        serde_json::json!([{
                            "role": "assistant",
                            "content": done.content,
                            "tool_calls": done.tool_calls.iter().map(|c| serde_json::json!({"id": c.id, "name": c.name, "arguments": c.arguments})).collect::<Vec<_>>(),
                        }])
                        .to_string(),
                    );
                }
            }
            Err(e) => trace::fail(&span, e.kind(), e.to_string()),
        }
        result
    }

    /// One chat-completion request; `trace` (the chat span's context) goes along as
    /// `traceparent`/`tracestate`.
    async fn request(
        &self,
        conversation: &Conversation,
        tools: &[Tool],
        trace: Option<&trace::TraceContext>,
    ) -> Result<Completion, Error> {
        if let Some(hint) = &self.not_configured {
            return Err(Error::NotConfigured { hint: hint.clone() });
        }
        // The conversation borrowed, serialised straight into the body; the tools' function
        // definitions serialised once ([`functions`]) and copied in as they are.
        let tools = self
            .functions
            .of(tools)
            .map_err(|e| Error::BadResponse(format!("cannot serialise a tool's schema: {e}")))?;
        let request = ChatRequest::new(&self.model, conversation.messages(), &tools);
        let started = Instant::now();
        let mut chat = self.client.chat();
        if let Some(trace) = trace {
            let mut headers = reqwest::header::HeaderMap::new();
            trace.add_to(&mut headers);
            chat = chat.headers(headers);
        }
        let response: CreateChatCompletionResponse = chat
            .create_byot(&request)
            .await
            .map_err(|e| self.classify(e))?;
        let latency = started.elapsed();
        let response_model = Some(response.model).filter(|m| !m.is_empty());
        let response_id = Some(response.id).filter(|m| !m.is_empty());
        let Some(choice) = response.choices.into_iter().next() else {
            return Err(Error::BadResponse("no choices".into()));
        };
        let finish_reason = choice
            .finish_reason
            .and_then(|r| serde_json::to_value(r).ok())
            .and_then(|v| v.as_str().map(str::to_owned));
        let raw_tool_calls = choice.message.tool_calls.unwrap_or_default();
        let tool_calls = raw_tool_calls
            .iter()
            .filter_map(|c| match c {
                ChatCompletionMessageToolCalls::Function(f) => Some(ToolCall {
                    id: f.id.clone(),
                    name: f.function.name.clone(),
                    arguments: f.function.arguments.clone(),
                }),
                ChatCompletionMessageToolCalls::Custom(_) => None,
            })
            .collect();
        let (prompt_tokens, completion_tokens) = response
            .usage
            .map(|u| (u64::from(u.prompt_tokens), u64::from(u.completion_tokens)))
            .unwrap_or_default();
        Ok(Completion {
            content: choice.message.content,
            tool_calls,
            raw_tool_calls,
            prompt_tokens,
            completion_tokens,
            latency,
            response_model,
            response_id,
            finish_reason,
        })
    }

    fn classify(&self, e: OpenAIError) -> Error {
        match e {
            OpenAIError::Reqwest(e) if e.is_timeout() => Error::Timeout {
                secs: self.request_timeout.as_secs(),
            },
            OpenAIError::Reqwest(e) if e.is_connect() || e.is_request() => Error::Unreachable {
                base_url: self.base_url.clone(),
                detail: root_cause(&e),
            },
            OpenAIError::Reqwest(e) => Error::BadResponse(root_cause(&e)),
            OpenAIError::ApiError(api) => {
                let status = api.status_code.as_u16();
                let message = api.api_error.message.chars().take(500).collect::<String>();
                match status {
                    401 | 403 => Error::Refused { status, message },
                    404 => Error::UnknownModel {
                        status,
                        model: self.model.clone(),
                        message,
                    },
                    429 => Error::RateLimited { message },
                    500..=599 => Error::ServerError { status, message },
                    _ => Error::Rejected { status, message },
                }
            }
            OpenAIError::JSONDeserialize(e, body) => Error::BadResponse(format!(
                "{e}; body starts with {:?}",
                body.chars().take(200).collect::<String>()
            )),
            other => Error::BadResponse(other.to_string()),
        }
    }
}

impl Error {
    /// Its `error.type` on a span.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotConfigured { .. } => "not_configured",
            Error::Timeout { .. } => "timeout",
            Error::Unreachable { .. } => "unreachable",
            Error::Refused { .. } => "refused",
            Error::UnknownModel { .. } => "unknown_model",
            Error::RateLimited { .. } => "rate_limited",
            Error::ServerError { .. } => "server_error",
            Error::Rejected { .. } => "rejected",
            Error::BadResponse(_) => "bad_response",
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

/// A chat-completion request over borrowed parts; serialises as the Chat Completions API's
/// `CreateChatCompletionRequest` with only these fields (`stream` absent: not streamed).
#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [ChatCompletionRequestMessage],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<&'a serde_json::value::RawValue>,
}

impl<'a> ChatRequest<'a> {
    /// The request [`LlmClient::complete`] sends for this model, conversation and tools.
    fn new(
        model: &'a str,
        messages: &'a [ChatCompletionRequestMessage],
        tools: &'a [std::sync::Arc<serde_json::value::RawValue>],
    ) -> Self {
        Self {
            model,
            messages,
            tools: tools.iter().map(|t| &**t).collect(),
        }
    }
}

#[cfg(test)]
mod request_tests {
    use super::*;
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessage, ChatCompletionRequestUserMessageContent,
        ChatCompletionTool, ChatCompletionTools, CreateChatCompletionRequest, FunctionObject,
    };
    use std::sync::Arc;

    /// The body bytes as `create_byot` sends them (`serde_json::to_vec`, as reqwest's
    /// `json()` does), read back: a serialisation failure fails the test instead of turning
    /// into a `Null` that has no `tools` key either.
    fn sent(request: &ChatRequest<'_>) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&serde_json::to_vec(request)?)
    }

    #[test]
    fn the_borrowed_request_is_what_async_openai_would_send() -> Result<(), serde_json::Error> {
        let schema: rmcp::model::JsonObject = serde_json::from_value(serde_json::json!({
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        }))?;
        let tool = Tool::new(
            "search_incident",
            "Search incidents.",
            Arc::new(schema.clone()),
        );
        let messages = vec![ChatCompletionRequestMessage::User(
            ChatCompletionRequestUserMessage {
                content: ChatCompletionRequestUserMessageContent::Text("find VPN".into()),
                name: None,
            },
        )];
        let functions = functions::Functions::default().of(std::slice::from_ref(&tool))?;
        let ours = sent(&ChatRequest::new("gpt-x", &messages, &functions))?;
        let theirs = serde_json::to_value(CreateChatCompletionRequest {
            model: "gpt-x".into(),
            messages: messages.clone(),
            tools: Some(vec![ChatCompletionTools::Function(ChatCompletionTool {
                function: FunctionObject {
                    name: "search_incident".into(),
                    description: Some("Search incidents.".into()),
                    parameters: Some(serde_json::Value::Object(schema)),
                    strict: None,
                },
            })]),
            ..Default::default()
        })?;
        assert_eq!(ours, theirs);
        // Without tools the key is absent, and everything else is there: the whole body.
        let no_tools = sent(&ChatRequest::new("gpt-x", &messages, &[]))?;
        assert_eq!(
            no_tools,
            serde_json::json!({
                "model": "gpt-x",
                "messages": [{"role": "user", "content": "find VPN"}],
            })
        );
        Ok(())
    }
}
