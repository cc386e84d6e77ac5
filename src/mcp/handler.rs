//! `AgentServer`: the rmcp `ServerHandler` of one agent, shared by both transports.
//!
//! One value per agent; every session gets a cheap clone (an `Arc` inside). It lists the
//! agent tool (named after the agent, `{"task": string}` in, the answer out, as MAF's
//! `as_mcp_server()` does) when `expose` has `"agent"`, and the agent's inner tools when it
//! has `"tools"`.
//!
//! `[[policies]]` apply here, where the tool is known: `tools/list` shows only the tools the
//! caller may call, and a `tools/call` of any other is refused with -32602 naming the rule
//! (`data.code`: `"tool_not_allowed"`). The caller is the [`Identity`](crate::identity::Identity)
//! the edge put into the request (both transports); it travels on in the [`CallContext`]
//! into agent runs, where every hop is checked again. The rules are read per request from
//! the gateway's [`Permissions`] (one atomic load), so a reload that changes them applies to
//! open sessions too; a call keeps the rules it began with through all its hops.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, CancelTaskParams, CompleteRequestParams, CompleteResult,
    ContentBlock, CustomRequest, CustomResult, ErrorCode, GetPromptRequestParams,
    GetPromptResponse, GetTaskParams, GetTaskResult, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerConfig, SubscribeRequestParams, Tool, UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use tokio_util::sync::CancellationToken;

mod as_task;
mod federated;

use federated::downstream;

use super::request::{identity_of, origin_of, span_of};
use crate::agents::Agent;
use crate::approvals::{Approval, Approvals, Approvers, Denied};
use crate::ask::ClientAsker;
use crate::ask::rounds::{Call, Owner, Rounds};
use crate::audit;
use crate::config::policies::Refused;
use crate::federation;
use crate::permissions::Permissions;
use crate::sessions::{CallRecord, SessionStats};
use crate::tasks::Tasks;
use crate::telemetry::trace::{self, McpRequest, RequestSpan, TraceContext};
use crate::tools::{self, CallContext, Output, ProgressFn};

/// Serves one agent over MCP.
#[derive(Clone)]
pub struct AgentServer {
    agent: Arc<Agent>,
    /// Cancelled when shutdown's grace period is over: calls still running then are
    /// answered with an error instead of being cut off silently.
    stop_calls: CancellationToken,
    /// The agent tool's definition, built once.
    agent_tool: Option<Tool>,
    /// `[[policies]]`: which caller may call which tool (the rules in force, swapped by
    /// reloads).
    policies: Arc<Permissions>,
    /// The audit trail; `None`: off.
    trail: Option<Arc<audit::Trail>>,
    /// Where calls that need an operator's approval wait.
    approvals: Arc<Approvals>,
    /// Calls parked until their 2026-07-28 client comes back with input.
    rounds: Arc<Rounds>,
    /// Whether a call may need to ask the client (this agent's `[[approvals]]` by the
    /// client, or an agent it delegates to may have some): only then is a 2026-07-28 call
    /// run in a task of its own so that it can ask.
    may_ask: bool,
    /// Agent runs served as MCP tasks, for clients that declare the extension; `None`: the
    /// extension is not offered (`switchboard stdio`).
    tasks: Option<Tasks>,
}

impl AgentServer {
    /// A handler for `agent`.
    pub fn new(
        agent: Arc<Agent>,
        stop_calls: CancellationToken,
        policies: Arc<Permissions>,
        trail: Option<Arc<audit::Trail>>,
        approvals: Arc<Approvals>,
        rounds: Arc<Rounds>,
        tasks: Option<Tasks>,
    ) -> Self {
        let spec = &agent.spec;
        let agent_tool = spec
            .expose_agent
            .then(|| tools::agent::task_tool(spec.name.as_str(), &spec.description));
        let may_ask = agent.may_ask_user();
        Self {
            agent,
            stop_calls,
            agent_tool,
            policies,
            may_ask,
            trail,
            approvals,
            rounds,
            tasks,
        }
    }

    /// The error for a call `[[policies]]` refuse (-32602, `data.code`: `tool_not_allowed`).
    fn refuse(&self, ctx: &CallContext, tool: &str, refused: Refused) -> McpError {
        let agent = self.agent.name();
        let rule = refused.rule;
        tracing::info!(%agent, tool, caller = %ctx.identity.who().describe(), rule = rule.as_deref().unwrap_or("none"), "Tool call refused by [[policies]].");
        if trace::on() {
            trace::fail_request("tool_not_allowed", refused.message.clone());
        }
        McpError::invalid_params(
            refused.message,
            Some(serde_json::json!({"code": "tool_not_allowed", "tool": tool, "rule": rule})),
        )
    }

    /// The tools MCP clients see (before `[[policies]]`).
    pub fn visible_tools(&self) -> Vec<Tool> {
        let mut tools: Vec<Tool> = self.agent_tool.iter().cloned().collect();
        if self.agent.spec.expose_tools {
            // `ask_user` is the model's way to the user, not a tool for the user's client.
            tools.extend(
                self.agent
                    .all_tool_definitions()
                    .into_iter()
                    .filter(|t| t.name != tools::ask_user::NAME),
            );
        }
        tools
    }

    fn is_agent_tool(&self, name: &str) -> bool {
        self.agent_tool.as_ref().is_some_and(|t| t.name == name)
    }
}

impl ServerHandler for AgentServer {
    fn get_info(&self) -> ServerConfig {
        let spec = &self.agent.spec;
        let capabilities = if self.agent.federation().is_some() {
            // What the federated upstreams may offer; a request for something none of them
            // offers gets an empty list, or the upstream's own error.
            #[allow(deprecated)]
            let builder = ServerCapabilities::builder()
                .enable_logging()
                .enable_completions()
                .enable_prompts()
                .enable_resources()
                .enable_tools()
                .enable_prompts_list_changed()
                .enable_resources_list_changed()
                .enable_resources_subscribe()
                .enable_tool_list_changed();
            match self.tasks {
                Some(_) => builder.enable_tasks().build(),
                None => builder.build(),
            }
        } else {
            match self.tasks {
                Some(_) => ServerCapabilities::builder()
                    .enable_tools()
                    .enable_tasks()
                    .build(),
                None => ServerCapabilities::builder().enable_tools().build(),
            }
        };
        ServerConfig::new(capabilities)
            .with_server_info(
                Implementation::new(
                    format!("switchboard/{}", spec.name),
                    env!("CARGO_PKG_VERSION"),
                )
                .with_title(spec.name.to_string()),
            )
            .with_instructions(spec.description.clone())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let identity = identity_of(&context.extensions);
        if self.agent.spec.expose_tools {
            let session = session_of(&context, &origin_of(&context.extensions));
            // Boxed for the same reason as a call's future (see `call_tool`).
            Box::pin(
                self.agent
                    .connect_missing_upstreams(&identity, session.as_ref()),
            )
            .await;
        }
        let mut tools = self.visible_tools();
        if let Some(federated) = self.federated(&context) {
            tools.extend(Box::pin(federated.list_tools()).await);
        }
        let policies = self.policies.load();
        if !policies.is_empty() {
            let (who, agent) = (identity.who(), self.agent.name().as_str());
            tools.retain(|t| policies.allows(&who, agent, &t.name));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    /// Requests rmcp could not type: an MCP method whose params do not fit its schema
    /// (rmcp's untagged request enum then falls back to a custom request), or a method
    /// nobody serves.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        Err(untyped_request(&request.method, request.params))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.visible_tools().into_iter().find(|t| t.name == name)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let federated =
            self.federated_or_refuse::<rmcp::model::ListPromptsRequestMethod>(&context)?;
        Ok(ListPromptsResult::with_all_items(
            Box::pin(federated.list_prompts()).await,
        ))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let federated =
            self.federated_or_refuse::<rmcp::model::GetPromptRequestMethod>(&context)?;
        Box::pin(federated.get_prompt(request, &downstream(&context)))
            .await
            .map(Into::into)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let federated =
            self.federated_or_refuse::<rmcp::model::ListResourcesRequestMethod>(&context)?;
        Ok(ListResourcesResult::with_all_items(
            Box::pin(federated.list_resources()).await,
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let federated =
            self.federated_or_refuse::<rmcp::model::ListResourceTemplatesRequestMethod>(&context)?;
        Ok(ListResourceTemplatesResult::with_all_items(
            Box::pin(federated.list_resource_templates()).await,
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let federated =
            self.federated_or_refuse::<rmcp::model::ReadResourceRequestMethod>(&context)?;
        Box::pin(federated.read_resource(request, &downstream(&context)))
            .await
            .map(Into::into)
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let federated =
            self.federated_or_refuse::<rmcp::model::SubscribeRequestMethod>(&context)?;
        Box::pin(federated.subscribe(request.uri, true, &downstream(&context))).await
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let federated =
            self.federated_or_refuse::<rmcp::model::UnsubscribeRequestMethod>(&context)?;
        Box::pin(federated.subscribe(request.uri, false, &downstream(&context))).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let federated = self.federated_or_refuse::<rmcp::model::CompleteRequestMethod>(&context)?;
        Box::pin(federated.complete(request, &downstream(&context))).await
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let federated = self.federated_or_refuse::<rmcp::model::SetLevelRequestMethod>(&context)?;
        Box::pin(federated.set_level(request.level, &downstream(&context))).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, McpError> {
        // Boxed: rmcp spawns every request as a task holding one future whose type is an
        // enum over every handler method's future, sized by the largest (this one, with an
        // agent's run, a task's start and approvals inside); tokio moves a task's future by
        // value into its cell and writes the whole stage again when it ends, so every request
        // of any method copied that size three times (callgrind: ~170k instructions of
        // memcpy per agent run). A box there costs one allocation.
        Box::pin(self.serve_call(request, context)).await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let tasks = self.tasks_or_refuse()?;
        let owner = self.task_owner("", &context);
        let record = Box::pin(tasks.get(&request.task_id, &owner)).await?;
        Ok(GetTaskResult::new(tasks.detailed(&record)))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let tasks = self.tasks_or_refuse()?;
        let owner = self.task_owner("", &context);
        Box::pin(tasks.update(&request.task_id, request.input_responses, &owner)).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let tasks = self.tasks_or_refuse()?;
        let owner = self.task_owner("", &context);
        Box::pin(tasks.cancel(&request.task_id, &owner)).await
    }
}

impl AgentServer {
    /// Serves a `tools/call` ([`ServerHandler::call_tool`]): a retry with input, a call that
    /// becomes a task, one that may ask its client in rounds, or a plain call.
    async fn serve_call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, McpError> {
        // MCP 2026-07-28: the retry of a call that asked its client for input.
        if let Some(state) = &request.request_state {
            let owner = self.owner(&request.name, &context);
            return Box::pin(self.rounds.resume(
                state,
                request.input_responses,
                owner,
                &context.ct,
            ))
            .await;
        }
        // Only a call of the agent tool can become a task, and only then are the client's
        // capabilities looked at: other calls pay nothing for the extension.
        if let Some(tasks) = &self.tasks
            && self.is_agent_tool(&request.name)
            && context
                .client_capabilities()
                .is_some_and(|c| c.supports_tasks())
        {
            return Box::pin(self.start_task(tasks, request, context)).await;
        }
        let span = self.span(&request.name, &context);
        if self.may_ask && ClientAsker::rounds_possible(&context) {
            let owner = self.owner(&request.name, &context);
            let this = self.clone();
            let request_context = context.clone();
            let call = Call::spawn(move |asker, cancel| {
                let asker = Arc::new(ClientAsker::rounds(asker));
                let call = async move {
                    this.call(request, &request_context, cancel, Some(asker), None)
                        .await
                };
                match span {
                    Some(span) => futures::future::Either::Left(span.run(call)),
                    None => futures::future::Either::Right(call),
                }
            });
            return Box::pin(self.rounds.drive(call, owner, &context.ct)).await;
        }
        let asker = ClientAsker::of(&context).map(Arc::new);
        let cancel = context.ct.clone();
        let Some(span) = span else {
            return self.call(request, &context, cancel, asker, None).await;
        };
        // Boxed where it is built: wrapped inline, the call's state machine would be copied
        // through this frame.
        let call: futures::future::BoxFuture<'_, _> =
            Box::pin(self.call(request, &context, cancel, asker, None));
        span.run(call).await
    }

    /// The span of a `tools/call` of `tool`: the edge's, or (stdio: no edge) one of its own,
    /// a child of the trace in the request's `_meta`; `None` when tracing is off.
    fn span(&self, tool: &str, context: &RequestContext<RoleServer>) -> Option<RequestSpan> {
        if !trace::on() {
            return None;
        }
        if let Some(carried) = span_of(&context.extensions) {
            return Some(carried.clone());
        }
        let parent = TraceContext::from_meta(&context.meta);
        McpRequest {
            method: "tools/call",
            tool: Some(tool),
            agent: self.agent.name().as_str(),
            session: None,
            transport: "stdio",
            parent: parent.as_ref(),
        }
        .start()
    }

    /// Who may resume a call of `tool` parked for the caller of `context`.
    fn owner(&self, tool: &str, context: &RequestContext<RoleServer>) -> Owner {
        Owner {
            agent: self.agent.name().as_str().to_owned(),
            tool: tool.to_owned(),
            caller: identity_of(&context.extensions).attribution(),
        }
    }

    /// Serves a `tools/call`: `[[policies]]`, approval, the call, its audit record, metrics.
    /// `cancel` fires when the caller gives up; `asker` is how its client can be asked;
    /// `task_progress`: a task's reporter (its status message), instead of the request's
    /// progress notifications.
    async fn call(
        &self,
        request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
        cancel: CancellationToken,
        asker: Option<Arc<ClientAsker>>,
        task_progress: Option<ProgressFn>,
    ) -> Result<rmcp::model::CallToolResponse, McpError> {
        let name = request.name.as_ref();
        let args = request.arguments.unwrap_or_default();
        let agent = self.agent.name().as_str();
        let origin = origin_of(&context.extensions);
        let session = session_of(context, &origin);
        // The client's call is the root of its audit tree.
        let entry = audit::Scope::top(self.trail.clone(), origin).begin(agent, name, &args, 0);
        if trace::on()
            && let Some(entry) = &entry
        {
            trace::set_on_request("switchboard.audit.record_id", entry.id().to_owned());
        }
        let ctx = CallContext {
            cancel,
            depth: 0,
            progress: None,
            tokens: Default::default(),
            identity: identity_of(&context.extensions),
            policies: self.policies.load().policies.clone(),
            audit: entry.as_ref().map(audit::Entry::child).unwrap_or_default(),
            approvals: Approvers {
                service: Some(self.approvals.clone()),
            },
            user: asker,
            session,
        };
        let verdict = match ctx.permit(agent, name) {
            Ok(verdict) => verdict,
            Err(refused) => {
                if let Some(entry) = entry {
                    entry.finish(
                        &ctx.identity,
                        audit::Verdict::deny(refused.rule.clone()),
                        audit::Outcome::Refused,
                        Some(refused.message.clone()),
                    );
                }
                return Err(self.refuse(&ctx, name, refused));
            }
        };
        let (progress, forwarder) = match task_progress {
            Some(progress) => (Some(progress), None),
            None => progress_reporter(context).unzip(),
        };
        let ctx = CallContext { progress, ..ctx };
        let started = std::time::Instant::now();
        let (verdict, outcome) = match self
            .approve(name, &args, &ctx, entry.as_ref(), context)
            .await
        {
            Ok(approval) => {
                let verdict = match approval {
                    Some(approval) => verdict.with_approval(approval),
                    None => verdict,
                };
                (verdict, self.run_call(name, args, &ctx, context).await)
            }
            Err(denied) => {
                let error = if denied.withdrawn() {
                    tools::Error::Cancelled
                } else {
                    tools::Error::Denied(denied.message)
                };
                (verdict.with_approval(denied.approval), Some(Err(error)))
            }
        };
        if let Some(entry) = entry {
            let (result, error) = match &outcome {
                Some(Ok(Output::Mcp(r))) if r.is_error == Some(true) => (
                    audit::Outcome::Error,
                    Some(tools::upstream::content_text(&r.content)),
                ),
                Some(Ok(_)) => (audit::Outcome::Ok, None),
                Some(Err(e)) => {
                    let (result, text) = e.audit_outcome();
                    (result, Some(text))
                }
                None => (
                    audit::Outcome::Error,
                    Some(format!("unknown tool {name:?}")),
                ),
            };
            entry.finish(&ctx.identity, verdict, result, error);
        }
        let outcome = outcome.ok_or_else(|| unknown_tool(name))?;
        let elapsed_us = started.elapsed().as_micros() as u64;
        let tokens = ctx.tokens.get();
        // Progress goes out before the answer: the answer ends the request's stream, and a
        // notification after it would have nowhere to go.
        drop(ctx);
        if let Some(forwarder) = forwarder {
            let _ = tokio::time::timeout(PROGRESS_FLUSH, forwarder).await;
        }
        self.record(name, &outcome, elapsed_us, tokens, context);
        into_response(name, outcome)
    }
}

impl AgentServer {
    /// Waits for the approval the call needs under the agent's `[[approvals]]`, if any.
    /// The request is withdrawn when the caller cancels, the session ends, or shutdown's
    /// grace period is over.
    async fn approve(
        &self,
        name: &str,
        args: &rmcp::model::JsonObject,
        ctx: &CallContext,
        entry: Option<&audit::Entry>,
        context: &RequestContext<RoleServer>,
    ) -> Result<Option<Approval>, Denied> {
        let rules = &self.agent.spec.approvals;
        if rules.is_empty() {
            return Ok(None);
        }
        // Boxed, as in `CallContext::approve`: the wait is rare and its state large; inline,
        // every call's future would carry it.
        Box::pin(self.wait_for_approval(rules, name, args, ctx, entry, context)).await
    }

    /// [`Self::approve`] for an agent with `[[approvals]]`.
    async fn wait_for_approval(
        &self,
        rules: &[crate::config::approvals::ApprovalRule],
        name: &str,
        args: &rmcp::model::JsonObject,
        ctx: &CallContext,
        entry: Option<&audit::Entry>,
        context: &RequestContext<RoleServer>,
    ) -> Result<Option<Approval>, Denied> {
        let cancel = ctx.cancel.child_token();
        let ended = session_ended(context);
        let trip = async {
            tokio::select! {
                () = ended => {}
                () = self.stop_calls.cancelled() => {}
            }
            cancel.cancel();
            std::future::pending::<std::convert::Infallible>().await
        };
        let ctx = CallContext {
            cancel: cancel.clone(),
            ..ctx.clone()
        };
        let agent = self.agent.name().as_str();
        tokio::select! {
            approved = ctx.approve(rules, agent, name, args, entry) => approved,
            never = trip => match never {},
        }
    }

    /// Runs tool `name` (`None`: no such tool), until it ends, the session ends (client
    /// DELETE, admin kill, idle timeout, stream gone) or shutdown's grace period is over.
    async fn run_call(
        &self,
        name: &str,
        args: rmcp::model::JsonObject,
        ctx: &CallContext,
        context: &RequestContext<RoleServer>,
    ) -> Option<Result<Output, tools::Error>> {
        // Each kind of call boxed on its own: rmcp spawns a task per request holding this
        // future, and tokio moves a task's future by value (into the task cell, and again
        // when it completes). An agent run's state machine inline made every call copy
        // kilobytes; boxed as one, the block was as large as its largest branch (~15 KB,
        // copied into its box on every call, a `search_incident` too).
        let call = async {
            if self.is_agent_tool(name) {
                match tools::agent::parse_task(args) {
                    Ok(task) => Some(
                        Box::pin(self.agent.run(task, ctx))
                            .await
                            .map(Output::Text)
                            .map_err(tools::Error::from),
                    ),
                    Err(e) => Some(Err(e)),
                }
            } else if self.agent.spec.expose_tools
                && name != tools::ask_user::NAME
                && self.agent.has_tool(name)
            {
                Box::pin(self.agent.call_tool(name, args, ctx)).await
            } else if let Some(federated) = self.federated(context) {
                let down = federation::Downstream {
                    id: context.id.clone(),
                    progress: context.meta.get_progress_token(),
                    cancel: &ctx.cancel,
                };
                Box::pin(federated.call_tool(name, args, &down))
                    .await
                    .map(|result| result.map(|r| Output::Mcp(Box::new(r))))
            } else if self.agent.spec.expose_tools && name != tools::ask_user::NAME {
                Box::pin(self.agent.call_tool(name, args, ctx)).await
            } else {
                None
            }
        };
        // rmcp would otherwise let a call run to completion while it drains the session.
        let session_ended = session_ended(context);
        tokio::select! {
            outcome = call => outcome,
            // Dropping the call cancels it (and its model request, if any).
            () = self.stop_calls.cancelled() => Some(Err(tools::Error::Failed(
                "the gateway is shutting down and this call did not finish within its grace period; retry it".into(),
            ))),
            () = session_ended => Some(Err(tools::Error::Cancelled)),
        }
    }

    /// Counts a finished call: the session's recent calls and tokens, the log line, metrics.
    fn record(
        &self,
        name: &str,
        outcome: &Result<Output, tools::Error>,
        elapsed_us: u64,
        tokens: (u64, u64),
        context: &RequestContext<RoleServer>,
    ) {
        let agent = self.agent.name();
        let label = match outcome {
            Ok(Output::Mcp(result)) if result.is_error == Some(true) => "error",
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        let trace_id = if trace::on() {
            outcome_on_span(label, outcome);
            match span_of(&context.extensions) {
                Some(carried) => carried.trace_id().map(str::to_owned),
                None => trace::request_trace_id(),
            }
        } else {
            None
        };
        // The transports put the session's counters into the request; stateless requests
        // (MCP 2026-07-28) have none.
        let stats = context.extensions.get::<Arc<SessionStats>>();
        if let Some(stats) = stats {
            let (prompt, completion) = tokens;
            stats.add_tokens(prompt, completion);
            stats.record_call(CallRecord {
                tool: name.to_owned(),
                finished_at: std::time::SystemTime::now(),
                micros: elapsed_us,
                outcome: label,
                trace_id: trace_id.clone(),
            });
        }
        // One line per call at `debug` only: at `info` it cost ~6 µs a call on a busy
        // gateway; the per-call record is the audit trail's (batched, off the request path).
        if tracing::enabled!(tracing::Level::DEBUG) {
            // The session knows its client; a stateless request carries it from the edge. Open
            // access has none: "anonymous", as in the metrics.
            let client = stats.and_then(|s| s.client()).or_else(|| {
                context
                    .extensions
                    .get::<poem::http::request::Parts>()
                    .and_then(|p| p.extensions.get::<super::request::CallerName>())
                    .and_then(|c| c.0.clone())
            });
            let client = client.as_deref().unwrap_or("anonymous");
            // Legacy POSTs carry the id in the message; Streamable ones in the HTTP parts.
            let request_id = context
                .extensions
                .get::<super::request::RequestId>()
                .or_else(|| {
                    context
                        .extensions
                        .get::<poem::http::request::Parts>()
                        .and_then(|p| p.extensions.get::<super::request::RequestId>())
                })
                .map(|r| r.0.to_string())
                .unwrap_or_default();
            // `trace_id` is in the line only when the call was traced (a `None` field is left out).
            let trace_id = trace_id.as_deref();
            tracing::debug!(%agent, tool = name, client, request_id, elapsed_us, outcome = label, trace_id, "Tool call.");
        }
        self.agent
            .series()
            .tool_call(name, label, elapsed_us as f64 / 1e6);
    }
}

/// Records a call's outcome on its request's span: `switchboard.tool.outcome`, and a
/// failure as the span's error.
fn outcome_on_span(label: &'static str, outcome: &Result<Output, tools::Error>) {
    trace::set_on_request("switchboard.tool.outcome", label);
    if let Err(e) = outcome {
        trace::fail_request(label, e.to_string());
    }
}

/// rmcp's `CallToolResult::structured`: `value` as `structuredContent` and, for clients
/// that read only content, as text. rmcp writes the text through `Value`'s `Display`, which
/// hands serde_json's output to a `fmt::Formatter` token by token; `to_string` writes the
/// same bytes into one buffer (callgrind, a `search_incident` call of 5 incidents over
/// legacy SSE: 302k -> 292k instructions, the text ~21k -> ~11k).
fn structured(value: serde_json::Value) -> CallToolResult {
    let text = serde_json::to_string(&value).unwrap_or_else(|_| value.to_string());
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(value);
    result
}

/// The MCP answer of a call's outcome: invalid arguments are a JSON-RPC error (-32602), a
/// failure a tool result with `isError`.
fn into_response(
    name: &str,
    outcome: Result<Output, tools::Error>,
) -> Result<rmcp::model::CallToolResponse, McpError> {
    match outcome {
        Ok(Output::Json(value)) => Ok(structured(value).into()),
        Ok(Output::Mcp(result)) => Ok((*result).into()),
        Ok(Output::Text(text)) => {
            Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
        }
        Err(tools::Error::InvalidArguments(msg)) => Err(McpError::invalid_params(
            format!("{name}: invalid arguments: {msg}"),
            None,
        )),
        Err(
            tools::Error::Failed(msg) | tools::Error::TimedOut(msg) | tools::Error::Denied(msg),
        ) => Ok(CallToolResult::error(vec![ContentBlock::text(msg)]).into()),
        Err(tools::Error::Cancelled) => Ok(CallToolResult::error(vec![ContentBlock::text(
            format!("{name}: cancelled"),
        )])
        .into()),
    }
}

/// The error for a request rmcp could not type: -32602 saying what does not fit for a
/// method of MCP, -32601 naming the method for any other.
fn untyped_request(method: &str, params: Option<serde_json::Value>) -> McpError {
    use rmcp::model as m;
    let params = params.unwrap_or(serde_json::Value::Null);
    let misfit = match method {
        "tools/call" => misfit::<CallToolRequestParams>(params),
        "initialize" => misfit::<m::InitializeRequestParams>(params),
        "tools/list"
        | "prompts/list"
        | "resources/list"
        | "resources/templates/list"
        | "skills/list" => misfit::<Option<PaginatedRequestParams>>(params),
        "prompts/get" => misfit::<m::GetPromptRequestParams>(params),
        "resources/read" => misfit::<m::ReadResourceRequestParams>(params),
        "resources/subscribe" => misfit::<m::SubscribeRequestParams>(params),
        "resources/unsubscribe" => misfit::<m::UnsubscribeRequestParams>(params),
        "completion/complete" => misfit::<m::CompleteRequestParams>(params),
        "tasks/get" => misfit::<m::GetTaskParams>(params),
        "tasks/update" => misfit::<m::UpdateTaskParams>(params),
        "tasks/cancel" => misfit::<m::CancelTaskParams>(params),
        "skills/get" => misfit::<m::GetSkillRequestParams>(params),
        "ping"
        | "logging/setLevel"
        | "server/discover"
        | "subscriptions/listen"
        | "resources/directory/read" => None,
        _ => {
            return McpError::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("{method}: method not found"),
                None,
            );
        }
    };
    let what = misfit.unwrap_or_else(|| "they do not match the method's schema".to_owned());
    McpError::invalid_params(format!("{method}: invalid params: {what}"), None)
}

/// Where and how `params` do not fit `P`; `None` if they do.
fn misfit<P: serde::de::DeserializeOwned>(params: serde_json::Value) -> Option<String> {
    let e = serde_path_to_error::deserialize::<_, P>(params).err()?;
    // serde calls a JSON object a map.
    let inner = e.inner().to_string().replace("a map", "an object");
    Some(match e.path().to_string().as_str() {
        "." => inner,
        path => format!("`{path}`: {inner}"),
    })
}

fn unknown_tool(name: &str) -> McpError {
    McpError::invalid_params(format!("unknown tool {name:?}"), None)
}

/// When the request carries a `progressToken`, a reporter that sends each step as
/// `notifications/progress`, in order, on the request's own session; and its forwarder,
/// which ends once every step is sent and the reporter is dropped.
fn progress_reporter(
    context: &RequestContext<RoleServer>,
) -> Option<(ProgressFn, tokio::task::JoinHandle<()>)> {
    let token = context.meta.get_progress_token()?;
    let peer = context.peer.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    // The forwarder ends when the reporter (and so `tx`) is dropped at the end of the call.
    let forwarder = tokio::spawn(async move {
        let mut step = 0u32;
        while let Some(message) = rx.recv().await {
            step += 1;
            let mut param = ProgressNotificationParam::new(token.clone(), f64::from(step));
            param.message = Some(message);
            if peer.notify_progress(param).await.is_err() {
                break;
            }
        }
    });
    let report: ProgressFn = Arc::new(move |message: String| {
        let _ = tx.send(message);
    });
    Some((report, forwarder))
}

/// The MCP session of a request that came in at `origin` (the processes of stdio upstreams
/// with `process = "per_session"` end with it); `None` for a request without one (no
/// session's counters: a stateless request).
fn session_of(
    context: &RequestContext<RoleServer>,
    origin: &audit::Origin,
) -> Option<tools::ClientSession> {
    let stats = context.extensions.get::<Arc<SessionStats>>()?;
    Some(tools::ClientSession {
        id: origin.session.clone()?,
        ended: stats.ended(),
    })
}

/// Resolves when the session of `context` ends (never, for a request without one).
fn session_ended(context: &RequestContext<RoleServer>) -> impl Future<Output = ()> + use<> {
    let ended = context
        .extensions
        .get::<Arc<SessionStats>>()
        .map(|stats| stats.ended());
    async move {
        match ended {
            Some(ended) => ended.cancelled_owned().await,
            None => std::future::pending().await,
        }
    }
}

/// How long an answer waits for its call's last progress notifications to go out.
const PROGRESS_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_structured_result_is_rmcps_byte_for_byte() {
        let value = serde_json::json!({
            "count": 2,
            "incidents": [
                {"number": "INC0010001", "short_description": "VPN \"down\"\n\ttab", "u": "ünï €", "n": 1.5},
                {"number": "INC0010002", "esc": "\u{1}\\/", "big": u64::MAX, "neg": -3, "none": null},
            ],
        });
        let ours = structured(value.clone());
        let rmcps = CallToolResult::structured(value);
        assert_eq!(ours, rmcps);
        assert_eq!(
            serde_json::to_string(&ours).unwrap(),
            serde_json::to_string(&rmcps).unwrap()
        );
    }
}
