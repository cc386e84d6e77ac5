//! `[workflow]` of an agent file, as written: the serde mirror of a workflow.
//!
//! A file with a `[workflow]` table has no `[model]`: it is served like an agent (one MCP tool
//! named after the file, `{task}` in, the result out), and running it runs its steps.
//! Validation into a [`WorkflowSpec`](crate::agents::workflow::WorkflowSpec) happens in
//! `agents::workflow`; this module only says what keys exist and what they mean.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

/// `[workflow]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowConfig {
    /// How the steps run: `sequential`, `concurrent` or `handoff`.
    pub kind: WorkflowKind,
    /// The steps, in order: an agent's (or workflow's) name, or a step table.
    pub steps: Vec<StepConfig>,
    /// `concurrent` only: the step that merges the results (an agent's name or a step
    /// table). None: the results are concatenated, in step order.
    pub aggregator: Option<StepConfig>,
    /// `handoff` only: most handoffs in one run. Default 5.
    pub max_handoffs: Option<u32>,
    /// Timeout of a whole run of the workflow, in seconds. Default 600.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    600
}

/// `[workflow] kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowKind {
    /// One step after the other: each step's output is the next step's input.
    Sequential,
    /// Every step at once on the same input; the results merged by the aggregator, or
    /// concatenated.
    Concurrent,
    /// The first step's agent has the conversation; each agent may hand it to another step's
    /// agent, at most `max_handoffs` times; the agent that answers ends the run.
    Handoff,
}

impl WorkflowKind {
    /// The name as written in a file.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowKind::Sequential => "sequential",
            WorkflowKind::Concurrent => "concurrent",
            WorkflowKind::Handoff => "handoff",
        }
    }
}

/// One entry of `steps` (or the `aggregator`): `"servicenow"` is short for
/// `{ agent = "servicenow" }`.
#[derive(Debug, Clone)]
pub enum StepConfig {
    /// An agent's or a workflow's name.
    Name(String),
    /// A step table.
    Table(StepTable),
}

/// A step table: `{ agent = "..." }` or `{ tool = "..." }`, and how it runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTable {
    /// The agent (or workflow) the step runs, with its input as the task.
    pub agent: Option<String>,
    /// The tool the step calls: one of this file's `[[tools]]`.
    pub tool: Option<String>,
    /// The step's name, for progress, errors and `{{steps.<name>}}`. Default: the agent's or
    /// the tool's name.
    pub name: Option<String>,
    /// Agent steps: the task, a template (`{{input}}`, `{{task}}`, `{{steps.<name>}}`).
    /// Default `"{{input}}"` (the aggregator's: `"{{task}}\n\n{{input}}"`).
    pub input: Option<String>,
    /// Tool steps: the arguments; every string in it is a template.
    pub arguments: Option<toml::Table>,
    /// What a failure of this step does: `fail` (the workflow fails, naming the step;
    /// default) or `continue` (the step's output is a note saying it failed).
    pub on_error: Option<OnError>,
    /// `handoff` only: the steps this step's agent may hand the conversation to. Default:
    /// every other step.
    pub handoffs: Option<Vec<String>>,
}

/// `on_error` of a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The workflow fails, naming the step.
    #[default]
    Fail,
    /// The workflow goes on; the step's output is a note saying it failed and why.
    Continue,
}

impl<'de> Deserialize<'de> for StepConfig {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StepVisitor;
        impl<'de> Visitor<'de> for StepVisitor {
            type Value = StepConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an agent's name or a step table ({ agent = \"...\" } or { tool = \"...\" })",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StepConfig, E> {
                Ok(StepConfig::Name(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StepConfig, A::Error> {
                // The map's own access: serde_path_to_error still sees each key, so an
                // unknown one is reported as `workflow.steps[1].colour`.
                StepTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(StepConfig::Table)
            }
        }
        deserializer.deserialize_any(StepVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> crate::config::Recovered<WorkflowConfig> {
        crate::config::deserialize_recovering(toml::from_str(text).unwrap(), Vec::new())
    }

    #[test]
    fn steps_are_names_or_tables() {
        let w = parse(
            "kind = \"sequential\"\nsteps = [\"helpdesk\", { agent = \"servicenow\", input = \"x {{input}}\" }]",
        )
        .value
        .unwrap();
        assert!(matches!(&w.steps[0], StepConfig::Name(n) if n == "helpdesk"));
        assert!(
            matches!(&w.steps[1], StepConfig::Table(t) if t.agent.as_deref() == Some("servicenow"))
        );
        assert_eq!(w.timeout_secs, 600);
    }

    #[test]
    fn an_unknown_key_of_a_step_table_names_its_path() {
        let r = parse("kind = \"sequential\"\nsteps = [\"a\", { agent = \"b\", colour = 1 }]");
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
        assert_eq!(r.errors[0].0, "steps[1].colour");
        assert!(
            r.errors[0]
                .1
                .starts_with("unknown field `colour`, expected one of `agent`"),
            "{}",
            r.errors[0].1
        );
    }

    #[test]
    fn a_step_of_another_type_says_what_a_step_is() {
        let r = parse("kind = \"sequential\"\nsteps = [1]");
        assert_eq!(r.errors[0].0, "steps[0]");
        assert!(
            r.errors[0]
                .1
                .contains("expected an agent's name or a step table"),
            "{}",
            r.errors[0].1
        );
    }
}
