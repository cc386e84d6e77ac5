//! One run of an agent: the LLM tool-calling loop (a workflow's run is in `workflow`).
//!
//! System instructions + task → completion with the agent's tools → the tool calls the model
//! asks for, run in parallel → their results fed back → ... until a final answer or
//! `max_turns`. A tool's failure goes back to the model as that tool's result; the run itself
//! fails only on model errors, timeouts, `max_turns`, depth or cancellation, each with a
//! message that says what to fix.
//!
//! Every call the agent makes is a hop ([`Agent::hop`]): its audit record, `[[policies]]`,
//! `[[approvals]]`, then the call, whose own calls hang under its record. A workflow's steps
//! are hops of the workflow the same way.
//!
//! A run can be offered exits ([`Agent::run_offering`]): tools that are not the agent's, whose
//! call ends the run (a handoff to another agent of a workflow).

use std::time::{Duration, Instant};

use rmcp::model::{JsonObject, Tool};
use tracing::Instrument as _;

use super::Agent;
use crate::llm::{self, ToolCall};
use crate::telemetry::trace;
use crate::tools::{self, CallContext, RunEnd};

/// How deeply agents may call agents (a run at depth 0 is one called by an MCP client).
pub const MAX_DEPTH: u32 = 4;

/// Why a run ended without an answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent has no `[model]`.
    #[error("agent {0:?} has no [model], so it cannot run; add one to its file")]
    NoModel(String),
    /// The model failed.
    #[error(transparent)]
    Llm(#[from] llm::Error),
    /// The whole run took too long.
    #[error("the run did not finish within {0} s (run_timeout_secs in [model])")]
    RunTimeout(u64),
    /// `max_turns` model turns without a final answer.
    #[error(
        "stopped after max_turns = {0} model turns without a final answer; raise max_turns in [model] or simplify the task"
    )]
    MaxTurns(u32),
    /// Agents nested too deeply.
    #[error("agents call each other too deeply (more than {MAX_DEPTH} levels)")]
    TooDeep,
    /// The caller gave up.
    #[error("cancelled")]
    Cancelled,
    /// A step of a workflow failed (and its `on_error` is `fail`).
    #[error("step {step:?} ({target}) failed: {error}")]
    Step {
        /// The step's name.
        step: String,
        /// What it runs: `agent servicenow`, `tool search_incident`.
        target: String,
        /// Why it failed.
        error: tools::Error,
    },
    /// A whole workflow run took too long.
    #[error("the workflow did not finish within {0} s (timeout_secs in [workflow])")]
    WorkflowTimeout(u64),
    /// The caller's budget was used up before the run began.
    #[error("refused: {0}")]
    OverBudget(Box<crate::costs::OverBudget>),
    /// The caller's budget ran out during the run: it stopped before its next model turn.
    #[error("stopped before model turn {turn}: {over}; {}", partial_answer(.partial.as_deref()))]
    BudgetStopped {
        /// The budget.
        over: Box<crate::costs::OverBudget>,
        /// The turn that was not taken.
        turn: u32,
        /// What the model had said so far, if anything.
        partial: Option<String>,
    },
}

fn partial_answer(partial: Option<&str>) -> String {
    match partial {
        Some(text) => format!("the partial answer so far (incomplete): {text}"),
        None => "there is no partial answer".to_owned(),
    }
}

impl From<Error> for tools::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Cancelled
            | Error::Step {
                error: tools::Error::Cancelled,
                ..
            } => tools::Error::Cancelled,
            e @ (Error::RunTimeout(_) | Error::WorkflowTimeout(_)) => {
                tools::Error::TimedOut(e.to_string())
            }
            // A step refused or timed out is the workflow failing, not it being refused.
            other => tools::Error::Failed(other.to_string()),
        }
    }
}

/// How metrics and the cost ledger name the caller: its client, its OAuth client id, or
/// `anonymous`.
fn spender(identity: &crate::identity::Identity) -> String {
    identity
        .client
        .as_deref()
        .or_else(|| {
            identity
                .principal
                .as_deref()
                .and_then(|p| p.client_id.as_deref())
        })
        .unwrap_or("anonymous")
        .to_owned()
}

impl Error {
    /// Its `error.type` on a span.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoModel(_) => "no_model",
            Error::Llm(_) => "llm_error",
            Error::RunTimeout(_) | Error::WorkflowTimeout(_) => "timeout",
            Error::MaxTurns(_) => "max_turns",
            Error::TooDeep => "too_deep",
            Error::Cancelled => "cancelled",
            Error::Step { .. } => "step_failed",
            Error::OverBudget(_) => "over_budget",
            Error::BudgetStopped { .. } => "budget_stopped",
        }
    }
}

/// Token and time accounting of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Model turns taken.
    pub turns: u32,
    /// Prompt tokens over all turns.
    pub prompt_tokens: u64,
    /// Completion tokens over all turns.
    pub completion_tokens: u64,
    /// Time spent waiting for the model.
    pub llm_time: Duration,
    /// What the turns cost (`[costs] models`).
    pub cost: f64,
}

impl Agent {
    /// Runs the agent (or the workflow) on `task` and returns its final answer.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn run(&self, task: String, ctx: &CallContext) -> Result<String, Error> {
        match self.run_offering(task, &[], ctx).await? {
            RunEnd::Answer(answer) => Ok(answer),
            // Only an offered exit ends a run this way, and none was offered.
            RunEnd::Chose { .. } => Ok(String::new()),
        }
    }

    /// Runs the agent on `task`, offering its model `exits` besides its own tools: the run
    /// ends with the model's answer, or when it calls one of them. A workflow runs as
    /// [`Self::run`] does (it has no model to offer them to).
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn run_offering(
        &self,
        task: String,
        exits: &[Tool],
        ctx: &CallContext,
    ) -> Result<RunEnd, Error> {
        let span = self.run_span(ctx);
        if let Some(workflow) = &self.workflow {
            // Boxed: an agent's run need not carry a workflow's state machine inline.
            let result = Box::pin(self.run_workflow(workflow, task, ctx))
                .instrument(span.clone())
                .await;
            if let Err(e) = &result {
                trace::fail(&span, e.kind(), e.to_string());
            }
            return result.map(RunEnd::Answer);
        }
        let started = Instant::now();
        let mut usage = Usage::default();
        let result = self
            .bounded(task, exits, ctx, &mut usage)
            .instrument(span.clone())
            .await;
        Self::run_outcome(&span, &usage, &result);
        if let Some(model) = &self.spec.model {
            ctx.audit.note_run(crate::audit::RunFacts {
                model: model.model.clone(),
                turns: usage.turns,
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
            });
        }
        let outcome = match &result {
            Ok(_) => "ok",
            Err(Error::Cancelled) => "cancelled",
            Err(_) => "error",
        };
        tracing::info!(
            agent = %self.name(),
            depth = ctx.depth,
            turns = usage.turns,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            llm_ms = usage.llm_time.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            outcome,
            "Agent run."
        );
        if let Err(e) = &result
            && !matches!(e, Error::Cancelled)
        {
            tracing::warn!(agent = %self.name(), error = %e, "Agent run failed.");
        }
        result
    }

    /// The span of a run: `invoke_agent <name>` (disabled when tracing is off).
    fn run_span(&self, ctx: &CallContext) -> tracing::Span {
        if !trace::on() {
            return tracing::Span::none();
        }
        let model = self.spec.model.as_ref().map(|m| m.model.as_str());
        tracing::info_span!(
            target: trace::TARGET,
            "invoke_agent",
            otel.name = trace::span_name("invoke_agent", self.name().as_str()).as_str(),
            gen_ai.operation.name = "invoke_agent",
            gen_ai.agent.name = self.name().as_str(),
            gen_ai.request.model = model,
            switchboard.agent.depth = ctx.depth,
        )
    }

    /// [`Self::run_bounded`], boxed where it is built: wrapped (in its span) inline, a run's
    /// whole state machine would be copied through the caller's frame, which debug builds
    /// keep on the stack once per level of agents calling agents.
    fn bounded<'a>(
        &'a self,
        task: String,
        exits: &'a [Tool],
        ctx: &'a CallContext,
        usage: &'a mut Usage,
    ) -> futures::future::BoxFuture<'a, Result<RunEnd, Error>> {
        Box::pin(self.run_bounded(task, exits, ctx, usage))
    }

    async fn run_bounded(
        &self,
        task: String,
        exits: &[Tool],
        ctx: &CallContext,
        usage: &mut Usage,
    ) -> Result<RunEnd, Error> {
        let (Some(llm), Some(model)) = (&self.llm, &self.spec.model) else {
            return Err(Error::NoModel(self.name().to_string()));
        };
        if ctx.depth > MAX_DEPTH {
            return Err(Error::TooDeep);
        }
        let run = self.run_loop(llm, model.max_turns, task, exits, ctx, usage);
        tokio::select! {
            result = tokio::time::timeout(model.run_timeout, run) => {
                result.unwrap_or(Err(Error::RunTimeout(model.run_timeout.as_secs())))
            }
            () = ctx.cancel.cancelled() => Err(Error::Cancelled),
        }
    }

    async fn run_loop(
        &self,
        llm: &llm::LlmClient,
        max_turns: u32,
        task: String,
        exits: &[Tool],
        ctx: &CallContext,
        usage: &mut Usage,
    ) -> Result<RunEnd, Error> {
        let name = self.name();
        let mut conversation = llm::Conversation::new(&self.spec.instructions, task);
        // The model is offered only what the caller may call (`[[policies]]`, every hop).
        Box::pin(self.connect_caller_upstreams(ctx)).await;
        let mut tools = self.all_tool_definitions();
        tools.retain(|t| ctx.permit(name.as_str(), &t.name).is_ok());
        // An exit shadows a tool of the same name: calling it ends the run.
        tools.retain(|t| !exits.iter().any(|e| e.name == t.name));
        tools.extend(exits.iter().cloned());
        let inner = ctx.nested();
        let client = spender(&ctx.identity);
        // What the model said on its way (text beside tool calls): the partial answer of a
        // run its budget stops.
        let mut said: Option<String> = None;
        for turn in 1..=max_turns {
            if let Err(over) = self.check_budget(ctx).await {
                return Err(self.over_budget(over, turn, &client, said));
            }
            ctx.report(|| format!("{name}: model turn {turn}"));
            let started = Instant::now();
            let completion = llm.complete(&conversation, &tools).await;
            let (outcome, p, c) = match &completion {
                Ok(done) => ("ok", done.prompt_tokens, done.completion_tokens),
                Err(_) => ("error", 0, 0),
            };
            self.series
                .llm_request(llm.model(), outcome, started.elapsed().as_secs_f64(), p, c);
            let completion = completion?;
            usage.cost += self.spend(ctx, &client, llm.model(), &completion).await;
            if let Some(text) = completion
                .content
                .as_deref()
                .filter(|t| !t.trim().is_empty())
            {
                said = Some(text.to_owned());
            }
            usage.turns = turn;
            usage.prompt_tokens += completion.prompt_tokens;
            usage.completion_tokens += completion.completion_tokens;
            ctx.tokens
                .add(completion.prompt_tokens, completion.completion_tokens);
            usage.llm_time += completion.latency;
            if completion.tool_calls.is_empty() {
                ctx.report(|| format!("{name}: done"));
                return Ok(RunEnd::Answer(completion.content.unwrap_or_default()));
            }
            // An exit ends the run; the other calls of the same turn are not made.
            if let Some(call) = completion
                .tool_calls
                .iter()
                .find(|c| exits.iter().any(|e| e.name == c.name))
            {
                ctx.report(|| format!("{name}: {}", call.name));
                return Ok(RunEnd::Chose {
                    tool: call.name.clone(),
                    arguments: serde_json::from_str(&call.arguments).unwrap_or_default(),
                });
            }
            conversation.push_assistant(&completion);
            for call in &completion.tool_calls {
                ctx.report(|| format!("{name}: calling {}", call.name));
            }
            let results = futures::future::join_all(
                completion
                    .tool_calls
                    .iter()
                    .map(|call| self.execute(call, &inner)),
            )
            .await;
            for (call, content) in completion.tool_calls.iter().zip(results) {
                conversation.push_tool_result(call.id.clone(), content);
            }
        }
        Err(Error::MaxTurns(max_turns))
    }

    /// Whether the caller's budget allows another model turn. Boxed, here, as [`Self::spend`]:
    /// the future (a Redis request in cluster mode) is built in this frame, not in the run's,
    /// whose (debug-build) frame is on the stack once per level of agents calling agents.
    fn check_budget<'a>(
        &'a self,
        ctx: &'a CallContext,
    ) -> futures::future::BoxFuture<'a, Result<(), crate::costs::OverBudget>> {
        Box::pin(self.costs.check(&ctx.identity))
    }

    /// Counts what one completion spent (`[costs]`): the caller's budget, the ledger, the
    /// metrics; its cost.
    fn spend<'a>(
        &'a self,
        ctx: &'a CallContext,
        client: &'a str,
        model: &'a str,
        completion: &llm::Completion,
    ) -> futures::future::BoxFuture<'a, f64> {
        let (prompt, done) = (completion.prompt_tokens, completion.completion_tokens);
        Box::pin(async move {
            let agent = self.name().as_str();
            let cost = self
                .costs
                .record(&ctx.identity, client, agent, model, prompt, done)
                .await;
            self.metrics()
                .spend(client, agent, model, prompt, done, cost);
            cost
        })
    }

    /// The error of a run whose caller's budget is used up before `turn`.
    fn over_budget(
        &self,
        over: crate::costs::OverBudget,
        turn: u32,
        client: &str,
        said: Option<String>,
    ) -> Error {
        tracing::info!(agent = %self.name(), client, turn, budget = over.limit, "Agent run stopped by a budget.");
        let over = Box::new(over);
        if turn == 1 {
            Error::OverBudget(over)
        } else {
            Error::BudgetStopped {
                over,
                turn,
                partial: said,
            }
        }
    }

    /// The span of a model's tool call: `execute_tool <name>` (disabled when tracing is off).
    fn tool_span(call: &ToolCall) -> tracing::Span {
        if !trace::on() {
            return tracing::Span::none();
        }
        let name = call.name.as_str();
        tracing::info_span!(
            target: trace::TARGET,
            "execute_tool",
            otel.name = trace::span_name("execute_tool", name).as_str(),
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = name,
            gen_ai.tool.call.id = call.id.as_str(),
            gen_ai.tool.type = "function",
        )
    }

    /// The hop of a tool call of the model, boxed where it is built (see [`Self::bounded`]).
    fn model_call<'a>(
        &'a self,
        name: &'a str,
        args: JsonObject,
        ctx: &'a CallContext,
    ) -> futures::future::BoxFuture<'a, Result<tools::Output, tools::Error>> {
        Box::pin(self.hop(name, args, ctx, move |args, ctx| async move {
            match self.call_tool(name, args, &ctx).await {
                Some(result) => result,
                None => Err(tools::Error::Failed(format!(
                    "there is no tool named {name:?}; use one of the tools offered"
                ))),
            }
        }))
    }

    /// Records a tool call's outcome on its span.
    fn tool_outcome<T>(span: &tracing::Span, outcome: &Result<T, tools::Error>) {
        if span.is_disabled() {
            return;
        }
        let label = match outcome {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        trace::set(span, "switchboard.tool.outcome", label);
        if let Err(e) = outcome {
            trace::fail(span, label, e.to_string());
        }
    }

    /// Records a run's usage and outcome on its span.
    fn run_outcome<T>(span: &tracing::Span, usage: &Usage, result: &Result<T, Error>) {
        if span.is_disabled() {
            return;
        }
        trace::set(
            span,
            "gen_ai.usage.input_tokens",
            usage.prompt_tokens as i64,
        );
        trace::set(
            span,
            "gen_ai.usage.output_tokens",
            usage.completion_tokens as i64,
        );
        trace::set(span, "switchboard.agent.turns", i64::from(usage.turns));
        trace::set(span, "switchboard.cost", usage.cost);
        if let Err(e) = result {
            trace::fail(span, e.kind(), e.to_string());
        }
    }

    /// Runs one tool call of the model; whatever happens becomes the text the model reads.
    async fn execute(&self, call: &ToolCall, ctx: &CallContext) -> String {
        let args: JsonObject = if call.arguments.trim().is_empty() {
            JsonObject::new()
        } else {
            match serde_json::from_str(&call.arguments) {
                Ok(args) => args,
                Err(e) => {
                    return format!(
                        "error: the arguments of {} are not a JSON object ({e}); call it again with valid JSON",
                        call.name
                    );
                }
            }
        };
        let started = Instant::now();
        let name = call.name.as_str();
        let span = Self::tool_span(call);
        let outcome = self
            .model_call(name, args, ctx)
            .instrument(span.clone())
            .await;
        Self::tool_outcome(&span, &outcome);
        tracing::debug!(agent = %self.name(), tool = %call.name, elapsed_us = started.elapsed().as_micros() as u64, ok = outcome.is_ok(), "Tool call by the model.");
        match outcome {
            Ok(output) => output.into_text(),
            Err(tools::Error::InvalidArguments(m)) => {
                format!("error: invalid arguments for {}: {m}", call.name)
            }
            Err(tools::Error::Failed(m) | tools::Error::TimedOut(m) | tools::Error::Denied(m)) => {
                format!("error: {m}")
            }
            Err(tools::Error::Cancelled) => "error: cancelled".to_owned(),
        }
    }

    /// One call this agent makes, of its tool `tool` with `args` (a call of its model, or a
    /// step of its workflow): its audit record, `[[policies]]` for the caller, this agent's
    /// `[[approvals]]`, then `call`, given the arguments back and the context it runs in (the
    /// calls it makes hang under its record).
    ///
    /// # Errors
    /// [`tools::Error::Denied`] when `[[policies]]` refuse the call or its approval is denied,
    /// [`tools::Error::Cancelled`] when it is withdrawn; else whatever `call` returns.
    pub(super) async fn hop<T, F, Fut>(
        &self,
        tool: &str,
        args: JsonObject,
        ctx: &CallContext,
        call: F,
    ) -> Result<T, tools::Error>
    where
        F: FnOnce(JsonObject, CallContext) -> Fut,
        Fut: Future<Output = Result<T, tools::Error>>,
    {
        let agent = self.name().as_str();
        let entry = ctx.audit.begin(agent, tool, &args, ctx.depth);
        if trace::on()
            && let Some(entry) = &entry
        {
            trace::set(
                &tracing::Span::current(),
                "switchboard.audit.record_id",
                entry.id().to_owned(),
            );
        }
        // A tool the caller may not call is not offered, but the model may name it anyway.
        let verdict = match ctx.permit(agent, tool) {
            Ok(verdict) => verdict,
            Err(refused) => {
                tracing::info!(%agent, tool, caller = %ctx.identity.who().describe(), rule = refused.rule.as_deref().unwrap_or("none"), "Tool call inside a run refused by [[policies]].");
                if let Some(entry) = entry {
                    entry.finish(
                        &ctx.identity,
                        crate::audit::Verdict::deny(refused.rule),
                        crate::audit::Outcome::Refused,
                        Some(refused.message.clone()),
                    );
                }
                return Err(tools::Error::Denied(refused.message));
            }
        };
        // A call `[[approvals]]` cover waits for its approval; the model reads a denial.
        let verdict = match ctx
            .approve(&self.spec.approvals, agent, tool, &args, entry.as_ref())
            .await
        {
            Ok(None) => verdict,
            Ok(Some(approval)) => verdict.with_approval(approval),
            Err(denied) => {
                let error = if denied.withdrawn() {
                    tools::Error::Cancelled
                } else {
                    tools::Error::Denied(denied.message)
                };
                if let Some(entry) = entry {
                    let (outcome, message) = error.audit_outcome();
                    entry.finish(
                        &ctx.identity,
                        verdict.with_approval(denied.approval),
                        outcome,
                        Some(message),
                    );
                }
                return Err(error);
            }
        };
        // The calls this one makes hang under its record.
        let call_ctx = match &entry {
            Some(entry) => CallContext {
                audit: entry.child(),
                ..ctx.clone()
            },
            None => ctx.clone(),
        };
        let outcome = call(args, call_ctx).await;
        if let Some(entry) = entry {
            let (result, error) = match &outcome {
                Ok(_) => (crate::audit::Outcome::Ok, None),
                Err(e) => {
                    let (result, text) = e.audit_outcome();
                    (result, Some(text))
                }
            };
            entry.finish(&ctx.identity, verdict, result, error);
        }
        outcome
    }
}
