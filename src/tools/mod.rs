//! Tools an agent can use, one file per kind.
//!
//! A `[[tools]]` entry of an agent file is a [`ToolConfig`] (chosen by its `type`). Building
//! it gives a [`ToolKind`]: a running object that offers one or more MCP tool definitions
//! and executes calls to them. The same call path serves MCP clients (inner tools exposed
//! directly) and the agent's own LLM loop.
//!
//! Kinds: `servicenow` (the incident tools), `agent` (another agent of this gateway, run
//! in-process through [`AgentRunner`], which `agents` implements so that this module never
//! depends on it) and `mcp` (the tools of an upstream MCP server, [`upstream`]).

pub mod agent;
pub mod ask_user;
pub mod servicenow;
pub mod upstream;

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use rmcp::model::{JsonObject, Tool};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::policies::{Policies, Refused};
use crate::identity::Identity;

/// Why a tool call did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments do not match the tool's input schema or its rules
    /// (missing required field, unknown state name, ...). MCP: JSON-RPC `-32602`.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The call was well formed but failed while running (record not found, store
    /// unavailable, upstream down, model error, ...). MCP: a tool result with
    /// `isError: true` and this message.
    #[error("{0}")]
    Failed(String),
    /// The call was cancelled (client cancel, session end, shutdown).
    #[error("cancelled")]
    Cancelled,
    /// The call ran out of time (an upstream's `timeout_secs`, a run's `run_timeout_secs`).
    /// MCP: a tool result with `isError: true` and this message.
    #[error("{0}")]
    TimedOut(String),
    /// A person did not approve the call (`[[approvals]]`): denied, not answered in time,
    /// or nobody could be asked. MCP: a tool result with `isError: true` and this message.
    #[error("{0}")]
    Denied(String),
}

impl Error {
    /// How metrics, logs and spans name this failure.
    pub fn label(&self) -> &'static str {
        match self {
            Error::InvalidArguments(_) => "invalid_arguments",
            Error::Failed(_) => "error",
            Error::Cancelled => "cancelled",
            Error::TimedOut(_) => "timeout",
            Error::Denied(_) => "denied",
        }
    }

    /// How the audit trail names this failure, and its text.
    pub fn audit_outcome(&self) -> (crate::audit::Outcome, String) {
        use crate::audit::Outcome;
        let outcome = match self {
            Error::InvalidArguments(_) | Error::Failed(_) => Outcome::Error,
            Error::Cancelled => Outcome::Cancelled,
            Error::TimedOut(_) => Outcome::Timeout,
            Error::Denied(_) => Outcome::Refused,
        };
        (outcome, self.to_string())
    }
}

/// What a successful tool call returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A JSON object (the incident tools): sent as text and as structured content.
    Json(Value),
    /// Plain text (an agent's answer, an upstream tool's text content).
    Text(String),
    /// A federated upstream's tool result, passed to the client unchanged.
    Mcp(Box<rmcp::model::CallToolResult>),
}

impl Output {
    /// The output as text, as an LLM receives it.
    pub fn into_text(self) -> String {
        match self {
            Output::Json(v) => v.to_string(),
            Output::Text(t) => t,
            Output::Mcp(result) => upstream::content_text(&result.content),
        }
    }
}

/// Reports one step of a run ("calling search_incident") to whoever asked for progress.
pub type ProgressFn = Arc<dyn Fn(String) + Send + Sync>;

/// What a call carries besides its arguments.
#[derive(Clone, Default)]
pub struct CallContext {
    /// Cancelled when the caller gives up (client cancel, session end, shutdown).
    pub cancel: CancellationToken,
    /// How many agent runs enclose this call (0 for a call from an MCP client).
    pub depth: u32,
    /// Where steps are reported, when the client asked for progress.
    pub progress: Option<ProgressFn>,
    /// LLM tokens spent on behalf of this call, nested agent runs included.
    pub tokens: Arc<TokenCount>,
    /// Who the call is for: the MCP client's caller, through every agent run it starts.
    pub identity: Arc<Identity>,
    /// `[[policies]]` as they were when the client's call began: each hop is checked
    /// against them ([`CallContext::permit`]).
    pub policies: Arc<Policies>,
    /// Where the records of this call's own calls go (the audit trail).
    pub audit: crate::audit::Scope,
    /// Who can approve a call that needs it (`[[approvals]]`): the operators' service.
    pub approvals: crate::approvals::Approvers,
    /// The calling user, when their MCP client can be asked something (an approval by the
    /// client, `ask_user`): through every hop of the call.
    pub user: Option<Arc<crate::ask::ClientAsker>>,
    /// The MCP session the client's call came in on (`None`: a request without one, such
    /// as a stateless MCP 2026-07-28 call), for tools that keep something per session.
    pub session: Option<ClientSession>,
}

/// The MCP session a call came in on.
#[derive(Debug, Clone)]
pub struct ClientSession {
    /// Its id (Streamable HTTP: `Mcp-Session-Id`; legacy SSE: `session_id`).
    pub id: Arc<str>,
    /// Cancelled when the session ends (client `DELETE`, idle timeout, admin kill, agent
    /// removed, shutdown).
    pub ended: CancellationToken,
}

/// LLM tokens spent, shared by a call and the runs it starts.
#[derive(Debug, Default)]
pub struct TokenCount {
    /// Prompt tokens.
    pub prompt: std::sync::atomic::AtomicU64,
    /// Completion tokens.
    pub completion: std::sync::atomic::AtomicU64,
}

impl TokenCount {
    /// Adds one completion's tokens.
    pub fn add(&self, prompt: u64, completion: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.prompt.fetch_add(prompt, Relaxed);
        self.completion.fetch_add(completion, Relaxed);
    }

    /// `(prompt, completion)` so far.
    pub fn get(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.prompt.load(Relaxed), self.completion.load(Relaxed))
    }
}

impl CallContext {
    /// Waits for the approval a call of `tool` of `agent` needs under `rules`, if it needs
    /// one; `record` is its audit record.
    ///
    /// # Errors
    /// The call may not run: denied, timed out, withdrawn, or nobody could be asked.
    pub async fn approve(
        &self,
        rules: &[crate::config::approvals::ApprovalRule],
        agent: &str,
        tool: &str,
        args: &JsonObject,
        record: Option<&crate::audit::Entry>,
    ) -> Result<Option<crate::approvals::Approval>, crate::approvals::Denied> {
        if rules.is_empty() {
            return Ok(None);
        }
        // Boxed: the wait is rare and its state is large; inline, it would be copied with
        // every call's future.
        Box::pin(self.approvals.gate(
            rules,
            agent,
            tool,
            args,
            &self.identity,
            record,
            self.user.as_deref(),
            &self.cancel,
            self.progress.as_deref(),
        ))
        .await
    }

    /// Whether `[[policies]]` let the caller call `tool` of `agent`.
    ///
    /// # Errors
    /// The refusal, naming the rule.
    pub fn permit(&self, agent: &str, tool: &str) -> Result<crate::audit::Verdict, Refused> {
        if self.policies.is_empty() {
            return Ok(crate::audit::Verdict::allow(None));
        }
        self.policies
            .permit(&self.identity.who(), agent, tool)
            .map(crate::audit::Verdict::allow)
    }

    /// A context for the calls of an agent run inside this one: one level deeper, cancelled
    /// with it, for the same caller.
    pub fn nested(&self) -> Self {
        Self {
            cancel: self.cancel.child_token(),
            depth: self.depth + 1,
            ..self.clone()
        }
    }

    /// Reports a step, if anyone listens.
    pub fn report(&self, step: impl FnOnce() -> String) {
        if let Some(progress) = &self.progress {
            progress(step());
        }
    }
}

/// Runs agents of this gateway by name; implemented by `agents`, used by the `agent` kind and
/// by workflows.
pub trait AgentRunner: Send + Sync + 'static {
    /// Runs agent `agent` on `task` and returns its final answer.
    fn run_agent(
        &self,
        agent: &str,
        task: String,
        ctx: CallContext,
    ) -> BoxFuture<'static, Result<String, Error>>;

    /// Runs agent `agent` on `task`, offering its model `exits` besides its own tools: calling
    /// one ends the run ([`RunEnd::Chose`]).
    fn run_agent_offering(
        &self,
        agent: &str,
        task: String,
        exits: Vec<Tool>,
        ctx: CallContext,
    ) -> BoxFuture<'static, Result<RunEnd, Error>>;
}

/// How a run that was offered exits ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// The model's final answer.
    Answer(String),
    /// The model called the offered exit `tool` with `arguments` (`{}` when they were not a
    /// JSON object).
    Chose {
        /// The exit's name.
        tool: String,
        /// Its arguments.
        arguments: JsonObject,
    },
}

/// One `[[tools]]` entry of an agent file, parsed by its `type`.
///
/// Parsed with [`ToolConfig::parse`] rather than a serde-tagged enum: serde's internally
/// tagged enums buffer their content and lose the key path of errors inside the entry.
#[derive(Debug, Clone)]
pub enum ToolConfig {
    /// The ServiceNow incident tools (`create_incident`, `update_incident`,
    /// `search_incident`, `get_incident`).
    Servicenow(servicenow::ServiceNowToolConfig),
    /// Another agent of this gateway, as one tool.
    Agent(agent::AgentToolConfig),
    /// The tools of an upstream MCP server (boxed: the largest entry by far).
    Mcp(Box<upstream::UpstreamToolConfig>),
    /// `ask_user`: the model asks the calling user a question.
    AskUser(ask_user::AskUserConfig),
}

/// A built tool kind: the definitions it offers and the code that runs them.
#[derive(Clone)]
pub enum ToolKind {
    /// The ServiceNow incident tools.
    ServiceNow(Arc<servicenow::ServiceNowTools>),
    /// Another agent.
    Agent(Arc<agent::AgentTool>),
    /// An upstream MCP server's tools.
    Upstream(Arc<upstream::UpstreamTools>),
    /// `ask_user`.
    AskUser(Arc<ask_user::AskUser>),
}

impl ToolKind {
    /// The MCP tool definitions this kind offers now (an upstream's list may change when it
    /// connects or reconnects).
    pub fn definitions(&self) -> Vec<Tool> {
        match self {
            ToolKind::ServiceNow(tools) => tools.definitions(),
            ToolKind::Agent(tool) => vec![tool.definition()],
            ToolKind::Upstream(tools) => tools.definitions(),
            ToolKind::AskUser(tool) => vec![tool.definition()],
        }
    }

    /// Whether the set of definitions is fixed at build time.
    pub fn is_static(&self) -> bool {
        !matches!(self, ToolKind::Upstream(_))
    }

    /// Runs the tool `name` (one of [`Self::definitions`]) with `args`.
    ///
    /// # Errors
    /// [`Error::InvalidArguments`] when `args` do not fit the tool, [`Error::Failed`] when
    /// the call fails at run time, [`Error::Cancelled`] when `ctx` is cancelled first.
    pub async fn call(
        &self,
        name: &str,
        args: JsonObject,
        ctx: &CallContext,
    ) -> Result<Output, Error> {
        match self {
            ToolKind::ServiceNow(tools) => {
                // The incident tools are short and keep the store consistent: they are not
                // cut off half-way, a cancelled caller just ignores the answer.
                tools
                    .call(name, args, &ctx.identity)
                    .await
                    .map(Output::Json)
            }
            // Boxed, as their futures are large (a delegated agent's run, an upstream
            // round trip): inline, every call of any tool would move that size.
            ToolKind::Agent(tool) => Box::pin(tool.call(args, ctx)).await.map(Output::Text),
            ToolKind::Upstream(tools) => Box::pin(tools.call(name, args, ctx)).await,
            // Boxed, as its wait for the user is large and rare.
            ToolKind::AskUser(tool) => Box::pin(tool.call(args, ctx)).await.map(Output::Text),
        }
    }
}

/// The `type` values of `[[tools]]`.
pub const TOOL_TYPES: &str = "servicenow, agent, mcp, ask_user";

impl ToolConfig {
    /// Parses one `[[tools]]` table.
    ///
    /// # Errors
    /// Every `(key within the entry, message)` problem: a missing or unknown `type`, or every
    /// mismatch of the kind's own keys; when the entry could still be read without the wrong
    /// keys, also what [`Self::validate`] finds in the rest (only [`Self::value_errors`] when
    /// `store` is the wrong key), so that one wrong key does not hide another.
    pub fn parse(mut table: toml::Table) -> Result<Self, Vec<(String, String)>> {
        let kind = match table.remove("type") {
            Some(toml::Value::String(kind)) => kind,
            Some(other) => {
                return Err(vec![(
                    "type".into(),
                    format!("expected a string, found {}", other.type_str()),
                )]);
            }
            None => {
                return Err(vec![(
                    "type".into(),
                    format!("missing: every [[tools]] entry needs a type ({TOOL_TYPES})"),
                )]);
            }
        };
        let recovered = match kind.as_str() {
            "servicenow" => parse_kind(table, ToolConfig::Servicenow),
            "agent" => parse_kind(table, ToolConfig::Agent),
            "mcp" => parse_kind(table, |c| ToolConfig::Mcp(Box::new(c))),
            "ask_user" => parse_kind(table, ToolConfig::AskUser),
            other => {
                return Err(vec![(
                    "type".into(),
                    format!("unknown tool type {other:?}, expected one of: {TOOL_TYPES}"),
                )]);
            }
        };
        match recovered {
            crate::config::Recovered {
                value: Some(tool),
                errors,
            } if errors.is_empty() => Ok(tool),
            crate::config::Recovered { value, mut errors } => {
                if let Some(tool) = value {
                    // With `store` wrong, which keys apply is unknown: each value is checked
                    // on its own. Otherwise the whole entry is, except the keys already
                    // reported (taken out, they would look missing).
                    let more = if errors.iter().any(|(key, _)| key == "store") {
                        tool.value_errors()
                    } else {
                        tool.validate()
                    };
                    let reported: Vec<String> = errors.iter().map(|(k, _)| k.clone()).collect();
                    errors.extend(more.into_iter().filter(|(k, _)| !reported.contains(k)));
                }
                Err(errors)
            }
        }
    }

    /// The problems of each value on its own, whatever the entry's other keys say (a zero
    /// timeout, a malformed URL): what can still be reported about an entry some of whose
    /// keys are wrong.
    pub fn value_errors(&self) -> Vec<(String, String)> {
        match self {
            ToolConfig::Servicenow(c) => c.value_errors(),
            ToolConfig::Agent(c) => c.validate(),
            ToolConfig::Mcp(c) => c.validate(),
            ToolConfig::AskUser(c) => c.validate(),
        }
    }

    /// The names of the MCP tools this entry provides, when known before building (an
    /// upstream server's are not).
    pub fn tool_names(&self) -> Vec<String> {
        match self {
            ToolConfig::Servicenow(_) => servicenow::TOOL_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ToolConfig::Agent(c) => vec![c.tool_name().to_owned()],
            ToolConfig::Mcp(_) => Vec::new(),
            ToolConfig::AskUser(_) => vec![ask_user::NAME.to_owned()],
        }
    }

    /// The agent this entry runs, for `type = "agent"`.
    pub fn target_agent(&self) -> Option<&str> {
        match self {
            ToolConfig::Agent(c) => Some(&c.agent),
            _ => None,
        }
    }

    /// Records which variables the entry's keys read (`key` → variable names, from the file
    /// before interpolation), so that errors about an unset value can name what to set.
    pub fn set_variables(&mut self, variables: std::collections::BTreeMap<String, Vec<String>>) {
        if let ToolConfig::Servicenow(c) = self {
            c.variables = variables;
        }
    }

    /// Checks what serde cannot: returns `(key relative to this entry, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self {
            ToolConfig::Servicenow(c) => c.validate(),
            ToolConfig::Agent(c) => c.validate(),
            ToolConfig::Mcp(c) => c.validate(),
            ToolConfig::AskUser(c) => c.validate(),
        }
    }

    /// Builds the running tool kind.
    ///
    /// # Errors
    /// When a shared resource (the embedded incident store) cannot be opened, or an HTTP
    /// client cannot be built.
    pub fn build(&self, resources: &Resources) -> Result<ToolKind, String> {
        match self {
            ToolConfig::Servicenow(c) => Ok(ToolKind::ServiceNow(Arc::new(
                servicenow::ServiceNowTools::new(c.build_store(resources)?),
            ))),
            ToolConfig::Agent(c) => {
                let runner = resources
                    .runner
                    .clone()
                    .ok_or_else(|| "no agent runner is available to run other agents".to_owned())?;
                let description = resources
                    .descriptions
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&c.agent)
                    .cloned()
                    .unwrap_or_default();
                Ok(ToolKind::Agent(Arc::new(agent::AgentTool::new(
                    c,
                    description,
                    runner,
                ))))
            }
            ToolConfig::Mcp(c) => Ok(ToolKind::Upstream(Arc::new(upstream::UpstreamTools::new(
                (**c).clone(),
            )))),
            ToolConfig::AskUser(c) => Ok(ToolKind::AskUser(Arc::new(ask_user::AskUser::new(c)))),
        }
    }
}

fn parse_kind<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    wrap: fn(T) -> ToolConfig,
) -> crate::config::Recovered<ToolConfig> {
    let recovered = crate::config::deserialize_recovering::<T>(table, Vec::new());
    crate::config::Recovered {
        value: recovered.value.map(wrap),
        errors: recovered.errors,
    }
}

/// Resources shared by all tools of all agents. The embedded store is opened on first use
/// and kept for the life of the process (so reloading an agent never reopens it).
pub struct Resources {
    /// Where embedded stores keep their files.
    data_dir: std::path::PathBuf,
    /// The embedded incident store, once opened. A `std` mutex: held only while opening,
    /// never across `.await`.
    embedded: std::sync::Mutex<Option<Arc<crate::incidents::EmbeddedStore>>>,
    /// Runs other agents, for `type = "agent"` tools.
    pub runner: Option<Arc<dyn AgentRunner>>,
    /// Agent name → description, for the definitions of `type = "agent"` tools. A `std`
    /// lock: held only to copy, never across `.await`.
    pub descriptions: std::sync::RwLock<HashMap<String, String>>,
    /// The gateway's metrics (agents record their LLM requests).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Prices and budgets (`[costs]`): runs count their spend and check their caller's budget.
    pub costs: Arc<crate::costs::Costs>,
}

impl Resources {
    /// Resources keeping their files under `data_dir`.
    pub fn new(data_dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            embedded: std::sync::Mutex::new(None),
            runner: None,
            descriptions: Default::default(),
            metrics: Arc::default(),
            costs: Arc::default(),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The embedded incident store, opened (and created and seeded) on first call.
    ///
    /// # Errors
    /// When the store cannot be opened.
    pub fn embedded_store(
        &self,
    ) -> Result<Arc<crate::incidents::EmbeddedStore>, crate::incidents::Error> {
        let mut slot = self
            .embedded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(store) = slot.as_ref() {
            return Ok(store.clone());
        }
        let store = Arc::new(crate::incidents::EmbeddedStore::open(&self.data_dir)?);
        *slot = Some(store.clone());
        Ok(store)
    }
}
