//! Agents: validated specs ([`AgentSpec`]), built agents ([`Agent`]) and the registry.
//!
//! An agent file goes `AgentConfig` (serde, in `config::agent`) → [`AgentSpec::validate`]
//! (pure: no I/O) → [`Agent::build`] (opens stores, makes clients). Validation never repeats
//! in build. A file with a `[workflow]` instead of a `[model]` is an agent whose run is its
//! [`workflow`]'s steps.

mod references;
pub mod registry;
pub mod run;
pub mod workflow;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{JsonObject, Tool};
use secrecy::ExposeSecret;

pub use crate::config::AgentName;
pub use references::Reference;
pub use registry::AgentRegistry;

use crate::config::Error;
use crate::config::agent::{AgentConfig, Expose, ModelConfig, Provider};
use crate::identity::Identity;
use crate::llm::{LlmClient, ModelEndpoint, ModelSpec};
use crate::tools::{self, CallContext, Output, Resources, ToolConfig, ToolKind};

/// A validated agent definition.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// The agent's name (its file stem and URL segment).
    pub name: AgentName,
    /// The file it came from.
    pub file: std::path::PathBuf,
    /// The file's text as loaded (a reload rebuilds the agent only when it changed).
    pub source: String,
    /// What it does.
    pub description: String,
    /// System instructions for its LLM.
    pub instructions: String,
    /// Whether MCP clients see the agent tool.
    pub expose_agent: bool,
    /// Whether MCP clients see the inner tools.
    pub expose_tools: bool,
    /// `[[servers]]`: the upstream MCP servers federated into the agent's MCP server
    /// (`expose` has `"servers"` exactly when there are some).
    pub servers: Vec<crate::federation::ServerConfig>,
    /// The model, when configured.
    pub model: Option<ModelSpec>,
    /// Its tools, validated.
    pub tools: Vec<ToolConfig>,
    /// `[[approvals]]`: the calls that wait for a person, first covering rule first.
    pub approvals: Vec<crate::config::approvals::ApprovalRule>,
    /// `[workflow]`: the file is a workflow of these steps instead of an agent with a model.
    pub workflow: Option<workflow::WorkflowSpec>,
}

const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

impl AgentSpec {
    /// Validates one parsed agent file named `name` (its file stem).
    ///
    /// # Errors
    /// Every problem found, each naming `file` and the key.
    pub fn validate(name: AgentName, file: &Path, c: AgentConfig) -> Result<Self, Vec<Error>> {
        Self::validate_with_variables(name, file, c, &BTreeMap::new())
    }

    /// [`Self::validate`], knowing which variables each value of the file reads (key path →
    /// names, from its text before interpolation: [`crate::config::referenced_variables`]),
    /// so that a missing API key or ServiceNow setting says exactly what to set.
    ///
    /// # Errors
    /// Every problem found, each naming `file` and the key.
    pub fn validate_with_variables(
        name: AgentName,
        file: &Path,
        c: AgentConfig,
        variables: &BTreeMap<String, Vec<String>>,
    ) -> Result<Self, Vec<Error>> {
        let key_vars = variables.get("model.api_key").map(Vec::as_slice);
        let key_hint = match key_vars {
            Some([one]) => format!("set {one}"),
            Some(vars) if !vars.is_empty() => format!("set {}", vars.join(" or ")),
            _ => format!("set api_key in [model] of {}", file.display()),
        };
        let mut errors = Vec::new();
        let mut err = |key: &str, msg: String| errors.push(Error::key(file, key, msg));
        if c.description.trim().is_empty() {
            err(
                "description",
                "must not be empty: it tells clients what the agent does".into(),
            );
        }
        if c.expose.is_empty() {
            err(
                "expose",
                "must list \"agent\", \"tools\", \"servers\" or several".into(),
            );
        }
        let expose_agent = c.expose.contains(&Expose::Agent);
        let expose_tools = c.expose.contains(&Expose::Tools);
        let expose_servers = c.expose.contains(&Expose::Servers);
        let servers = validate_servers(c.servers, expose_servers, &mut err);
        let is_workflow = c.workflow.is_some();
        if is_workflow && c.model.is_some() {
            err(
                "model",
                "a workflow runs its steps, not a model: remove [model] (or [workflow])".into(),
            );
        }
        if is_workflow && !c.instructions.trim().is_empty() {
            err(
                "instructions",
                "a workflow has no model to instruct: give the agents of its steps their instructions, or a step its `input`".into(),
            );
        }
        let model = match c.model {
            Some(_) if is_workflow => None,
            Some(m) => validate_model(m, key_hint, &mut err),
            None => {
                if expose_agent && !is_workflow {
                    err(
                        "model",
                        "missing [model]: an agent exposed as \"agent\" needs a model to run"
                            .into(),
                    );
                }
                None
            }
        };
        if expose_tools && !expose_agent && c.tools.is_empty() {
            err(
                "expose",
                "[\"tools\"] exposes the agent's inner tools, but it has no [[tools]]: \
                 add one, or expose \"agent\""
                    .into(),
            );
        }
        let mut tools = Vec::with_capacity(c.tools.len());
        for (i, table) in c.tools.into_iter().enumerate() {
            match ToolConfig::parse(table) {
                Ok(mut tool) => {
                    let prefix = format!("tools[{i}].");
                    tool.set_variables(
                        variables
                            .iter()
                            .filter_map(|(key, names)| {
                                let key = key.strip_prefix(&prefix)?;
                                Some((key.to_owned(), names.clone()))
                            })
                            .collect(),
                    );
                    tools.push(tool);
                }
                Err(problems) => {
                    for (key, msg) in problems {
                        let key = if key.is_empty() {
                            format!("tools[{i}]")
                        } else {
                            format!("tools[{i}].{key}")
                        };
                        err(&key, msg);
                    }
                }
            }
        }
        let mut provided: HashMap<String, usize> = HashMap::new();
        for (i, tool) in tools.iter().enumerate() {
            for (key, msg) in tool.validate() {
                err(&format!("tools[{i}].{key}"), msg);
            }
            for tool_name in tool.tool_names() {
                if let Some(first) = provided.insert(tool_name.clone(), i) {
                    err(
                        &format!("tools[{i}]"),
                        format!("duplicate tool {tool_name:?}: tools[{first}] already provides it"),
                    );
                }
                // An agent tool that runs this very agent is a cycle, reported as one with
                // the other references between agents (`registry`), not as a name clash.
                let calls_itself = tool.target_agent() == Some(name.as_str());
                if expose_agent && expose_tools && tool_name == name.as_str() && !calls_itself {
                    err(
                        &format!("tools[{i}]"),
                        format!(
                            "tool {tool_name:?} has the agent's own name, which the agent tool uses"
                        ),
                    );
                }
            }
        }
        let workflow = c.workflow.and_then(|config| {
            let names: Vec<String> = tools.iter().flat_map(ToolConfig::tool_names).collect();
            let open = tools.iter().any(|t| matches!(t, ToolConfig::Mcp(_)));
            let file_tools = workflow::spec::FileTools {
                names: &names,
                open,
            };
            match workflow::spec::validate(config, &file_tools) {
                Ok(spec) => Some(spec),
                Err(problems) => {
                    for (key, msg) in problems {
                        err(&key, msg);
                    }
                    None
                }
            }
        });
        let approvals = match crate::config::approvals::validate(file, c.approvals) {
            Ok(rules) => rules,
            Err(problems) => {
                errors.extend(problems);
                Vec::new()
            }
        };
        if errors.is_empty() {
            Ok(Self {
                name,
                file: file.to_path_buf(),
                source: String::new(),
                description: c.description.trim().to_owned(),
                instructions: c.instructions,
                expose_agent,
                expose_tools,
                servers,
                model,
                tools,
                approvals,
                workflow,
            })
        } else {
            Err(errors)
        }
    }
}

/// The `[[servers]]` entries, parsed and checked; `expose` must have `"servers"` exactly
/// when there are some.
fn validate_servers(
    tables: Vec<toml::Table>,
    exposed: bool,
    err: &mut impl FnMut(&str, String),
) -> Vec<crate::federation::ServerConfig> {
    if exposed && tables.is_empty() {
        err(
            "expose",
            "[\"servers\"] exposes federated MCP servers, but the file has no [[servers]]: add one (url or command), or remove \"servers\"".into(),
        );
    }
    if !exposed && !tables.is_empty() {
        err(
            "servers",
            "[[servers]] are federated only with \"servers\" in expose: add it (expose = [\"servers\"])".into(),
        );
    }
    let mut servers = Vec::with_capacity(tables.len());
    for (i, table) in tables.into_iter().enumerate() {
        let recovered = crate::config::deserialize_recovering::<crate::federation::ServerConfig>(
            table,
            Vec::new(),
        );
        let mut problems = recovered.errors;
        if let Some(server) = recovered.value {
            let reported: Vec<String> = problems.iter().map(|(k, _)| k.clone()).collect();
            problems.extend(
                server
                    .validate()
                    .into_iter()
                    .filter(|(k, _)| !reported.contains(k)),
            );
            if problems.is_empty() {
                servers.push(server);
            }
        }
        for (key, msg) in problems {
            let key = if key.is_empty() {
                format!("servers[{i}]")
            } else {
                format!("servers[{i}].{key}")
            };
            err(&key, msg);
        }
    }
    servers
}

fn validate_model(
    m: ModelConfig,
    key_hint: String,
    err: &mut impl FnMut(&str, String),
) -> Option<ModelSpec> {
    let before = std::cell::Cell::new(0usize);
    let mut fail = |key: &str, msg: String| {
        before.set(before.get() + 1);
        err(key, msg);
    };
    let non_empty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let url_ok = |u: &str| u.starts_with("http://") || u.starts_with("https://");
    let endpoint = match m.provider {
        Provider::Openai => {
            for (key, v) in [
                ("endpoint", &m.endpoint),
                ("deployment", &m.deployment),
                ("api_version", &m.api_version),
            ] {
                if v.is_some() {
                    fail(
                        &format!("model.{key}"),
                        "only applies to provider = \"azure\"".into(),
                    );
                }
            }
            let base_url = non_empty(m.base_url).unwrap_or_else(|| OPENAI_BASE_URL.to_owned());
            if !url_ok(&base_url) {
                fail(
                    "model.base_url",
                    format!("{base_url:?} is not an http(s) URL"),
                );
            }
            ModelEndpoint::OpenAi {
                base_url: base_url.trim_end_matches('/').to_owned(),
            }
        }
        Provider::Azure => {
            if m.base_url.is_some() {
                fail(
                    "model.base_url",
                    "only applies to provider = \"openai\"; Azure uses endpoint, deployment and api_version".into(),
                );
            }
            let mut required = |key: &str, v: Option<String>| {
                non_empty(v).unwrap_or_else(|| {
                    fail(
                        &format!("model.{key}"),
                        "required for provider = \"azure\"".into(),
                    );
                    String::new()
                })
            };
            let endpoint = required("endpoint", m.endpoint);
            let deployment = required("deployment", m.deployment);
            let api_version = required("api_version", m.api_version);
            if !endpoint.is_empty() && !url_ok(&endpoint) {
                fail(
                    "model.endpoint",
                    format!("{endpoint:?} is not an http(s) URL"),
                );
            }
            ModelEndpoint::Azure {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                deployment,
                api_version,
            }
        }
    };
    let model = match (non_empty(m.model), &endpoint) {
        (Some(model), _) => model,
        (None, ModelEndpoint::Azure { deployment, .. }) => deployment.clone(),
        (None, ModelEndpoint::OpenAi { .. }) => {
            fail(
                "model.model",
                "required: the model name, e.g. \"gpt-4o-mini\"".into(),
            );
            String::new()
        }
    };
    if !(1..=100).contains(&m.max_turns) {
        fail(
            "model.max_turns",
            format!("{} is out of range 1..=100", m.max_turns),
        );
    }
    if m.request_timeout_secs == 0 {
        fail("model.request_timeout_secs", "must be at least 1".into());
    }
    if m.run_timeout_secs == 0 {
        fail("model.run_timeout_secs", "must be at least 1".into());
    }
    let api_key = m.api_key.filter(|k| !k.expose_secret().trim().is_empty());
    if let Some(key) = &api_key
        && !key.expose_secret().bytes().all(|b| b.is_ascii_graphic())
    {
        // The key goes into an HTTP header; say so now rather than fail every request.
        fail(
            "model.api_key",
            "contains spaces or control characters, which an HTTP header cannot carry".into(),
        );
    }
    (before.get() == 0).then(|| ModelSpec {
        endpoint,
        api_key,
        model,
        max_turns: m.max_turns,
        request_timeout: Duration::from_secs(m.request_timeout_secs),
        run_timeout: Duration::from_secs(m.run_timeout_secs),
        key_hint,
    })
}

/// A running agent: its spec, its model client and its built tools.
pub struct Agent {
    /// The validated definition.
    pub spec: AgentSpec,
    /// The model client, when the agent has a `[model]`.
    llm: Option<LlmClient>,
    /// Built tool kinds, in file order.
    kinds: Vec<ToolKind>,
    /// Name → index into `kinds`, for tools whose names are fixed at build time.
    by_name: HashMap<String, usize>,
    /// Definitions of the tools fixed at build time, in file order.
    definitions: Vec<Tool>,
    /// Its series of the gateway's metrics (requests, tool calls, model requests).
    series: crate::metrics::AgentSeries,
    /// Prices and budgets.
    pub(crate) costs: Arc<crate::costs::Costs>,
    /// The workflow it runs instead of a model, when its file has a `[workflow]`.
    workflow: Option<workflow::Workflow>,
    /// Its `[[servers]]`, federated; `None` without any.
    federation: Option<Arc<crate::federation::Federation>>,
}

impl Agent {
    /// Builds the agent's model client and tools.
    ///
    /// # Errors
    /// A config error naming the tool entry whose resource could not be opened.
    pub fn build(spec: AgentSpec, resources: &Resources) -> Result<Self, Error> {
        Self::rebuild(spec, resources, None)
    }

    /// [`Self::build`] for a new version of `previous`: the stdio upstreams (`command`)
    /// whose entry did not change are taken over, running processes and all (so a reload
    /// that changes something else does not restart them or lose their sessions' state).
    ///
    /// # Errors
    /// A config error naming the tool entry whose resource could not be opened.
    pub fn rebuild(
        spec: AgentSpec,
        resources: &Resources,
        previous: Option<&Agent>,
    ) -> Result<Self, Error> {
        let mut kinds = Vec::with_capacity(spec.tools.len());
        let mut by_name = HashMap::new();
        let mut definitions = Vec::new();
        let mut taken = Vec::new();
        for (i, config) in spec.tools.iter().enumerate() {
            let kept = previous.and_then(|p| p.same_process(config, &mut taken));
            let kind = match kept {
                Some(kind) => kind,
                None => config.build(resources).map_err(|e| {
                    Error::key(
                        &spec.file,
                        format!("tools[{i}]"),
                        format!("cannot start: {e}"),
                    )
                })?,
            };
            if let ToolKind::ServiceNow(tools) = &kind
                && let Some(hint) = tools.missing_settings()
            {
                // Once per load: the agent serves, and each call says the same.
                tracing::info!(
                    agent = %spec.name,
                    %hint,
                    "ServiceNow is not configured; the agent's incident tools answer with what to set."
                );
            }
            if kind.is_static() {
                for def in kind.definitions() {
                    by_name.insert(def.name.to_string(), kinds.len());
                    definitions.push(def);
                }
            }
            kinds.push(kind);
        }
        let llm = spec
            .model
            .as_ref()
            .map(|m| LlmClient::new(m, &m.key_hint))
            .transpose()
            .map_err(|e| Error::key(&spec.file, "model", e))?;
        let workflow = spec
            .workflow
            .clone()
            .map(|w| workflow::Workflow::build(w, resources))
            .transpose()
            .map_err(|e| Error::key(&spec.file, "workflow", format!("cannot start: {e}")))?;
        let federation = crate::federation::Federation::new(&spec.servers);
        let series = crate::metrics::AgentSeries::new(
            resources.metrics.clone(),
            spec.name.as_str(),
            std::iter::once(spec.name.as_str()).chain(definitions.iter().map(|d| d.name.as_ref())),
            spec.model.as_ref().map(|m| m.model.as_str()),
        );
        Ok(Self {
            spec,
            llm,
            kinds,
            by_name,
            definitions,
            series,
            costs: resources.costs.clone(),
            workflow,
            federation,
        })
    }

    /// This agent's stdio upstream that `config` would start the same way, if any (and not
    /// in `taken` yet: it is added).
    fn same_process(&self, config: &ToolConfig, taken: &mut Vec<usize>) -> Option<ToolKind> {
        let ToolConfig::Mcp(config) = config else {
            return None;
        };
        let (i, up) = self
            .kinds
            .iter()
            .enumerate()
            .find_map(|(i, kind)| match kind {
                ToolKind::Upstream(up) if !taken.contains(&i) && up.same_process(config) => {
                    Some((i, up))
                }
                _ => None,
            })?;
        taken.push(i);
        Some(ToolKind::Upstream(up.clone()))
    }

    /// The agent's stdio upstreams (`command`): the tools whose processes it runs.
    pub fn stdio_upstreams(&self) -> impl Iterator<Item = &Arc<tools::upstream::UpstreamTools>> {
        self.kinds.iter().filter_map(|kind| match kind {
            ToolKind::Upstream(up) if up.is_stdio() => Some(up),
            _ => None,
        })
    }

    /// Ends the processes of the agent's stdio upstreams for good, and waits until they
    /// have (each within its bound).
    pub async fn stop_upstreams(&self) {
        futures::future::join_all(self.stdio_upstreams().map(|up| up.stop())).await;
        if let Some(federation) = &self.federation {
            federation.stop().await;
        }
    }

    /// Its `[[servers]]`, federated; `None` without any.
    pub fn federation(&self) -> Option<&Arc<crate::federation::Federation>> {
        self.federation.as_ref()
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        self.series.metrics()
    }

    /// Its own series of them, as handles.
    pub fn series(&self) -> &crate::metrics::AgentSeries {
        &self.series
    }

    /// The agent's name.
    pub fn name(&self) -> &AgentName {
        &self.spec.name
    }

    /// Definitions of every tool the agent has now: the fixed ones, then those of its
    /// upstream MCP servers (as last listed; a fixed name wins over an upstream one).
    pub fn all_tool_definitions(&self) -> Vec<Tool> {
        let mut all = self.definitions.clone();
        for kind in self.kinds.iter().filter(|k| !k.is_static()) {
            all.extend(
                kind.definitions()
                    .into_iter()
                    .filter(|d| !self.by_name.contains_key(d.name.as_ref())),
            );
        }
        all
    }

    /// The tools of its federated servers as a session last listed them
    /// ([`crate::federation::Federation::last_listed_tools`]); none without `[[servers]]`.
    pub fn federated_tools(&self) -> Vec<Tool> {
        self.federation
            .as_ref()
            .map(|f| f.last_listed_tools())
            .unwrap_or_default()
    }

    /// How many tools MCP clients see: the agent tool when exposed, and the inner tools
    /// (as listed now) when exposed.
    pub fn exposed_tool_count(&self) -> usize {
        let inner = if self.spec.expose_tools {
            self.all_tool_definitions()
                .iter()
                .filter(|t| t.name != crate::tools::ask_user::NAME)
                .count()
        } else {
            0
        };
        usize::from(self.spec.expose_agent) + inner
    }

    /// Connects the agent's upstream MCP servers and lists their tools (starts the
    /// processes of stdio ones); failures are logged, and retried on the next call or listing
    /// that needs them. Those reached by token exchange wait for a caller, and those with a
    /// process per MCP session for a session (`connect_missing_upstreams`, a call).
    pub async fn connect_upstreams(&self) {
        self.connect_upstreams_where(&Identity::default(), None, |up| !up.per_session())
            .await;
    }

    /// Connects the upstream MCP servers that have no tools listed yet (never connected, or
    /// down so far), so a listing shows what they offer; those reached by token exchange for
    /// `identity`, when it is an OAuth-identified caller; those with a process per MCP session
    /// with `session`'s.
    pub async fn connect_missing_upstreams(
        &self,
        identity: &Identity,
        session: Option<&tools::ClientSession>,
    ) {
        self.connect_upstreams_where(identity, session, |up| up.definitions().is_empty())
            .await;
    }

    /// Lists the tools of the upstream MCP servers reached by token exchange, or with a
    /// process per MCP session, that have none listed yet, for the caller of `ctx` (an agent
    /// run, so its model sees them).
    pub async fn connect_caller_upstreams(&self, ctx: &CallContext) {
        self.connect_upstreams_where(&ctx.identity, ctx.session.as_ref(), |up| {
            (up.acts_for_caller() || up.per_session()) && up.definitions().is_empty()
        })
        .await;
    }

    async fn connect_upstreams_where(
        &self,
        identity: &Identity,
        session: Option<&tools::ClientSession>,
        wanted: impl Fn(&tools::upstream::UpstreamTools) -> bool,
    ) {
        let for_caller = identity.token.is_some();
        let pending = self.kinds.iter().filter_map(|kind| match kind {
            ToolKind::Upstream(up) if wanted(up) && (for_caller || !up.acts_for_caller()) => {
                Some(up)
            }
            _ => None,
        });
        for up in pending {
            if let Err(e) = up.connect(identity, session).await {
                tracing::warn!(agent = %self.name(), error = %e, "Upstream MCP server not available.");
            }
        }
    }

    /// Whether this agent runs other agents (as tools, or as a workflow's steps).
    pub fn delegates(&self) -> bool {
        self.workflow.is_some() || self.kinds.iter().any(|k| matches!(k, ToolKind::Agent(_)))
    }

    /// Whether a call of this agent may need to ask its user something: it has
    /// `ask_user`, `[[approvals]]` by the client, or runs other agents (which may).
    pub fn may_ask_user(&self) -> bool {
        self.delegates()
            || self.kinds.iter().any(|k| matches!(k, ToolKind::AskUser(_)))
            || self
                .spec
                .approvals
                .iter()
                .any(|r| r.by == crate::config::approvals::Approver::Client)
    }

    /// The workflow it runs, when its file has a `[workflow]`.
    pub fn workflow(&self) -> Option<&workflow::Workflow> {
        self.workflow.as_ref()
    }

    /// Whether one of the agent's own tools (as listed now) is named `name`.
    pub fn has_tool(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
            || self
                .kinds
                .iter()
                .filter(|k| !k.is_static())
                .any(|k| k.definitions().iter().any(|d| d.name == name))
    }

    /// Runs tool `name`; `None` when the agent has no such tool.
    pub async fn call_tool(
        &self,
        name: &str,
        args: JsonObject,
        ctx: &CallContext,
    ) -> Option<Result<Output, tools::Error>> {
        if let Some(kind) = self.by_name.get(name).and_then(|i| self.kinds.get(*i)) {
            return Some(kind.call(name, args, ctx).await);
        }
        let offers = |k: &ToolKind| k.definitions().iter().any(|d| d.name == name);
        let mut upstreams = self.kinds.iter().filter(|k| !k.is_static());
        if let Some(kind) = upstreams.clone().find(|k| offers(k)) {
            return Some(kind.call(name, args, ctx).await);
        }
        // Not listed (yet): an upstream may have connected late or added the tool. One
        // reached for the caller (token exchange) that cannot be, for this caller, or a stdio
        // one whose process is down, says why when the name could be one of its tools.
        let mut refused = None;
        for kind in upstreams.by_ref() {
            let ToolKind::Upstream(up) = kind else {
                continue;
            };
            // Boxed: connecting is rare and its future large; inline, every tool call's
            // future would be that size (and be moved at that size).
            match Box::pin(up.connect(&ctx.identity, ctx.session.as_ref())).await {
                Ok(()) if offers(kind) => return Some(kind.call(name, args, ctx).await),
                Ok(()) => {}
                Err(e)
                    if (up.acts_for_caller() || up.is_stdio()) && name.starts_with(up.prefix()) =>
                {
                    refused.get_or_insert(e);
                }
                Err(_) => {}
            }
        }
        refused.map(Err)
    }
}

/// Builds every agent of `specs`, sharing `resources`.
///
/// # Errors
/// Every agent that could not be built.
pub fn build_all(
    specs: Vec<AgentSpec>,
    resources: &Resources,
) -> Result<Vec<Arc<Agent>>, crate::config::Errors> {
    let mut agents = Vec::with_capacity(specs.len());
    let mut errors = crate::config::Errors::default();
    for spec in specs {
        match Agent::build(spec, resources) {
            Ok(agent) => agents.push(Arc::new(agent)),
            Err(e) => errors.0.push(e),
        }
    }
    errors.into_result(agents)
}
