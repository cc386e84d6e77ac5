//! Workflows: an agent file with a `[workflow]` table instead of a `[model]`.
//!
//! A workflow is served like any agent (one MCP tool named after its file, `{task}` in, the
//! result out) and can be a step of another workflow or a tool of an agent. Running it runs
//! its steps (other agents and workflows through the [`AgentRunner`], or tools of its own
//! `[[tools]]`), one kind per file: [`sequential`], [`concurrent`], [`handoff`].
//!
//! Each step is a hop of the workflow ([`Agent::hop`]): one audit record under the
//! workflow's, `[[policies]]` (the caller may call `<workflow>/<step's agent or tool>`), the
//! workflow's `[[approvals]]`, and the step's own calls under its record. Steps run one level
//! deeper than the workflow, with a child of its cancellation token: cancelling the workflow
//! cancels every running step and its model requests; a step that fails (with `on_error =
//! "fail"`) cancels the steps still running beside it.

mod concurrent;
mod handoff;
mod sequential;
pub mod spec;
pub mod template;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{JsonObject, Tool};

pub use spec::{StepSpec, Target, WorkflowSpec};

use super::Agent;
use super::run::{Error, MAX_DEPTH};
use crate::config::workflow::{OnError, WorkflowKind};
use crate::tools::{self, AgentRunner, CallContext, Resources, RunEnd};
use template::Values;

/// A workflow ready to run: its spec, and what runs its agent steps.
pub struct Workflow {
    spec: WorkflowSpec,
    runner: Arc<dyn AgentRunner>,
    /// `handoff`: the handoff tools each step's model is offered, by step.
    handoff_tools: Vec<Vec<Tool>>,
}

impl Workflow {
    /// Builds `spec`; the agents its steps run are looked up at run time.
    ///
    /// # Errors
    /// When no agent runner is available.
    pub fn build(spec: WorkflowSpec, resources: &Resources) -> Result<Self, String> {
        let runner = resources
            .runner
            .clone()
            .ok_or_else(|| "no agent runner is available to run the steps".to_owned())?;
        let descriptions = resources
            .descriptions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let handoff_tools = spec
            .steps
            .iter()
            .map(|step| {
                step.handoffs
                    .iter()
                    .filter_map(|to| spec.steps.iter().find(|s| &s.name == to))
                    .map(|to| handoff::tool(to, descriptions.get(to.tool_name())))
                    .collect()
            })
            .collect();
        Ok(Self {
            spec,
            runner,
            handoff_tools,
        })
    }

    /// The validated definition.
    pub fn spec(&self) -> &WorkflowSpec {
        &self.spec
    }
}

impl Agent {
    /// Runs this agent's workflow on `task`: its steps, bounded by the workflow's timeout.
    ///
    /// # Errors
    /// A step that failed (named), the timeout, depth, or cancellation.
    pub(super) async fn run_workflow(
        &self,
        workflow: &Workflow,
        task: String,
        ctx: &CallContext,
    ) -> Result<String, Error> {
        if ctx.depth > MAX_DEPTH {
            return Err(Error::TooDeep);
        }
        let started = Instant::now();
        let spec = &workflow.spec;
        // The steps' context: one level deeper, cancelled with the caller, and by the timeout.
        let steps_ctx = ctx.nested();
        let run = Run {
            agent: self,
            workflow,
            task: &task,
            ctx: &steps_ctx,
        };
        let kind = async {
            match spec.kind {
                WorkflowKind::Sequential => sequential::run(&run).await,
                WorkflowKind::Concurrent => concurrent::run(&run).await,
                WorkflowKind::Handoff => handoff::run(&run).await,
            }
        };
        let mut kind = std::pin::pin!(kind);
        let result = tokio::select! {
            result = &mut kind => result,
            () = tokio::time::sleep(spec.timeout) => {
                // The running steps are cancelled and given a moment to say so (their audit
                // records are finished as cancelled); the answer is the timeout.
                steps_ctx.cancel.cancel();
                let _ = tokio::time::timeout(STEPS_STOP, kind).await;
                Err(Error::WorkflowTimeout(spec.timeout.as_secs()))
            }
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(Error::Cancelled) => "cancelled",
            Err(_) => "error",
        };
        tracing::info!(
            workflow = %self.name(),
            kind = spec.kind.as_str(),
            depth = ctx.depth,
            total_ms = started.elapsed().as_millis() as u64,
            outcome,
            "Workflow run."
        );
        if let Err(e) = &result
            && !matches!(e, Error::Cancelled)
        {
            tracing::warn!(workflow = %self.name(), error = %e, "Workflow run failed.");
        }
        if result.is_ok() {
            ctx.report(|| format!("{}: done", self.name()));
        }
        result
    }
}

/// How long cancelled steps get to end after a workflow's timeout.
const STEPS_STOP: std::time::Duration = std::time::Duration::from_secs(5);

/// One run of a workflow: what its kinds need.
struct Run<'a> {
    /// The workflow's agent: its name, its tools, its hops.
    agent: &'a Agent,
    workflow: &'a Workflow,
    /// The workflow's task.
    task: &'a str,
    /// The context its steps run in.
    ctx: &'a CallContext,
}

impl Run<'_> {
    fn name(&self) -> &str {
        self.agent.name().as_str()
    }

    fn steps(&self) -> &[StepSpec] {
        &self.workflow.spec.steps
    }

    /// Reports `what` as a step of the workflow.
    fn report(&self, what: impl FnOnce() -> String) {
        self.ctx.report(|| format!("{}: {}", self.name(), what()));
    }

    /// Runs `step` on `input` in `ctx` (the run's, or one for a group of steps) and returns
    /// its output as text.
    ///
    /// # Errors
    /// The step's failure, as its hop reports it.
    async fn call(
        &self,
        step: &StepSpec,
        input: &str,
        outputs: &BTreeMap<String, String>,
        ctx: &CallContext,
    ) -> Result<String, tools::Error> {
        let values = Values {
            task: self.task,
            input,
            steps: outputs,
        };
        match &step.target {
            Target::Agent(agent) => {
                let task = step.input.render(&values);
                let runner = &self.workflow.runner;
                self.agent
                    .hop(agent, task_arguments(&task), ctx, |_, ctx| {
                        runner.run_agent(agent, task, ctx)
                    })
                    .await
            }
            Target::Tool(tool) => {
                let args = match step.arguments.render(&values) {
                    serde_json::Value::Object(args) => args,
                    _ => JsonObject::new(),
                };
                let agent = self.agent;
                self.agent
                    .hop(tool, args, ctx, |args, ctx| async move {
                        match agent.call_tool(tool, args, &ctx).await {
                            Some(result) => result.map(tools::Output::into_text),
                            None => Err(tools::Error::Failed(format!(
                                "{} has no tool named {tool:?} (yet: an upstream MCP server may be down)",
                                agent.name()
                            ))),
                        }
                    })
                    .await
            }
        }
    }

    /// Runs an agent step offering its model `exits` (a handoff).
    ///
    /// # Errors
    /// The step's failure, as its hop reports it.
    async fn call_offering(
        &self,
        agent: &str,
        task: String,
        exits: Vec<Tool>,
    ) -> Result<RunEnd, tools::Error> {
        let runner = &self.workflow.runner;
        self.agent
            .hop(agent, task_arguments(&task), self.ctx, |_, ctx| {
                runner.run_agent_offering(agent, task, exits, ctx)
            })
            .await
    }

    /// What a step's failure does: the workflow fails naming it, or (`on_error = "continue"`)
    /// goes on with a note in its place. Cancellation always ends the workflow.
    ///
    /// # Errors
    /// [`Error::Cancelled`], or [`Error::Step`] naming the step.
    fn failed(&self, step: &StepSpec, error: tools::Error) -> Result<String, Error> {
        match error {
            tools::Error::Cancelled => Err(Error::Cancelled),
            error if step.on_error == OnError::Continue => {
                self.report(|| format!("{} failed, continuing", step.name));
                Ok(format!("[step {:?} failed: {error}]", step.name))
            }
            error => Err(step_error(step, error)),
        }
    }
}

fn step_error(step: &StepSpec, error: tools::Error) -> Error {
    Error::Step {
        step: step.name.clone(),
        target: step.describe(),
        error,
    }
}

/// `{"task": task}`: the arguments an agent step's record shows.
fn task_arguments(task: &str) -> JsonObject {
    let mut args = JsonObject::new();
    args.insert("task".into(), serde_json::Value::String(task.to_owned()));
    args
}
