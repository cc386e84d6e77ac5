//! `kind = "handoff"`: the first step's agent has the conversation. Its model is offered, besides
//! its own tools, one tool per step it may hand the conversation to, `handoff_to_<step>`
//! (`{"task": ...}`: what that agent should do, with what is known so far). Calling one ends
//! its run and that step's agent takes the conversation: the workflow's task and every handoff
//! so far with its note (the step's `{{input}}`). The agent that answers ends the workflow.
//!
//! At most `max_handoffs` handoffs happen in one run: after the last one, the agent that has
//! the conversation is offered none and must answer. A handoff the caller could not follow
//! (`[[policies]]` refuse the target to them) is not offered.

use std::collections::BTreeMap;

use rmcp::model::Tool;

use super::spec::HANDOFF_PREFIX;
use super::template::Values;
use super::{Run, StepSpec, Target, step_error};
use crate::agents::run::Error;
use crate::tools::{self, RunEnd};

/// The handoff tool offered for handing the conversation to `to`, whose agent is described as
/// `description`.
pub(super) fn tool(to: &StepSpec, description: Option<&String>) -> Tool {
    let about = description
        .filter(|d| !d.is_empty())
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    tools::agent::task_tool(
        &format!("{HANDOFF_PREFIX}{}", to.name),
        &format!(
            "Hand the conversation to {}{about}: it answers in your place. Say in `task` what it should do, with what you know so far.",
            to.name
        ),
    )
}

/// Runs the conversation from the first step until an agent answers.
///
/// # Errors
/// The failure of the agent that had the conversation (named), or cancellation.
pub(super) async fn run(run: &Run<'_>) -> Result<String, Error> {
    let spec = &run.workflow.spec;
    let none = BTreeMap::new();
    let mut conversation = run.task.to_owned();
    let mut handoffs = 0u32;
    let mut current = 0usize;
    loop {
        let Some(step) = spec.steps.get(current) else {
            // `current` is 0 (validation keeps at least two steps) or a step's own index.
            return Err(Error::Step {
                step: format!("#{current}"),
                target: "nothing".into(),
                error: tools::Error::Failed("the workflow has no such step".into()),
            });
        };
        let Target::Agent(agent) = &step.target else {
            // Validation keeps tools out of handoffs.
            return Err(step_error(
                step,
                tools::Error::Failed("a handoff step must be an agent".into()),
            ));
        };
        if run.ctx.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let exits: Vec<Tool> = if handoffs < spec.max_handoffs {
            run.workflow
                .handoff_tools
                .get(current)
                .into_iter()
                .flatten()
                .filter(|t| {
                    target_of(spec, &t.name).is_some_and(|(_, to)| match &to.target {
                        Target::Agent(a) => {
                            run.ctx.permit(run.name(), a).is_ok() && run.ctx.permit(a, a).is_ok()
                        }
                        Target::Tool(_) => false,
                    })
                })
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        run.report(|| format!("{} has the conversation", step.name));
        let task = step.input.render(&Values {
            task: run.task,
            input: &conversation,
            steps: &none,
        });
        match run.call_offering(agent, task, exits).await {
            Ok(RunEnd::Answer(answer)) => return Ok(answer),
            Ok(RunEnd::Chose { tool, arguments }) => {
                let Some((next, to)) = target_of(spec, &tool) else {
                    return Err(step_error(
                        step,
                        tools::Error::Failed(format!("{tool} is not a handoff of this workflow")),
                    ));
                };
                handoffs += 1;
                run.report(|| {
                    format!(
                        "handoff {handoffs}/{}: {} to {}",
                        spec.max_handoffs, step.name, to.name
                    )
                });
                let note = arguments
                    .get("task")
                    .and_then(serde_json::Value::as_str)
                    .map(str::trim)
                    .unwrap_or_default();
                conversation.push_str(&format!(
                    "\n\n[{} handed the conversation to {}{}{note}]",
                    step.name,
                    to.name,
                    if note.is_empty() { "" } else { ": " }
                ));
                current = next;
            }
            Err(tools::Error::Cancelled) => return Err(Error::Cancelled),
            Err(e) => return Err(step_error(step, e)),
        }
    }
}

/// The step a handoff tool hands to, and its index.
fn target_of<'a>(spec: &'a super::WorkflowSpec, tool: &str) -> Option<(usize, &'a StepSpec)> {
    let name = tool.strip_prefix(HANDOFF_PREFIX)?;
    spec.steps.iter().enumerate().find(|(_, s)| s.name == name)
}
