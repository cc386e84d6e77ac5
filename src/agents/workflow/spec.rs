//! `[workflow]` validated into a [`WorkflowSpec`] (pure: no I/O).
//!
//! What one file can say about itself is checked here: the shape of each step, its templates,
//! the tools it names (this file's `[[tools]]`), the keys that apply to the kind. Which agents
//! exist, and whether steps reach each other in a cycle, is checked over all files by the
//! registry ([`WorkflowSpec::references`]).

use std::collections::HashMap;
use std::time::Duration;

use super::template::{Arguments, Template};
use crate::config::AgentName;
use crate::config::workflow::{OnError, StepConfig, StepTable, WorkflowConfig, WorkflowKind};

/// A validated workflow.
#[derive(Debug, Clone)]
pub struct WorkflowSpec {
    /// How the steps run.
    pub kind: WorkflowKind,
    /// The steps, in file order (`handoff`: the first has the conversation first).
    pub steps: Vec<StepSpec>,
    /// `concurrent`: the step that merges the results, if any.
    pub aggregator: Option<StepSpec>,
    /// `handoff`: most handoffs in one run.
    pub max_handoffs: u32,
    /// Timeout of a whole run.
    pub timeout: Duration,
}

/// A validated step.
#[derive(Debug, Clone)]
pub struct StepSpec {
    /// Where it is in its file (`workflow.steps[1]`, `workflow.aggregator`).
    pub key: String,
    /// Its name: progress, errors and `{{steps.<name>}}`.
    pub name: String,
    /// What it runs.
    pub target: Target,
    /// The key naming the target (`workflow.steps[1]` for a bare name,
    /// `workflow.steps[1].agent` in a table).
    pub target_key: String,
    /// Agent steps: the task.
    pub input: Template,
    /// Tool steps: the arguments.
    pub arguments: Arguments,
    /// What its failure does.
    pub on_error: OnError,
    /// `handoff`: the names of the steps it may hand the conversation to.
    pub handoffs: Vec<String>,
}

/// What a step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An agent or a workflow of this gateway, by name.
    Agent(String),
    /// A tool of this file's `[[tools]]`, by name.
    Tool(String),
}

impl StepSpec {
    /// `agent servicenow` or `tool search_incident`.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Agent(a) => format!("agent {a}"),
            Target::Tool(t) => format!("tool {t}"),
        }
    }

    /// The name of the tool the step is called as in audit records, `[[policies]]` and
    /// `[[approvals]]` of the workflow: the agent's or the tool's name.
    pub fn tool_name(&self) -> &str {
        match &self.target {
            Target::Agent(name) | Target::Tool(name) => name,
        }
    }
}

/// A step's reference to an agent of this gateway, for the checks across files.
#[derive(Debug, Clone)]
pub struct StepReference<'a> {
    /// The key naming the agent.
    pub key: &'a str,
    /// The agent (or workflow).
    pub target: &'a str,
    /// Whether the step needs an agent with a model (a handoff step: its model is offered
    /// the handoffs).
    pub needs_model: bool,
}

impl WorkflowSpec {
    /// The agents its steps (and aggregator) run.
    pub fn references(&self) -> Vec<StepReference<'_>> {
        let needs_model = self.kind == WorkflowKind::Handoff;
        self.steps
            .iter()
            .chain(&self.aggregator)
            .filter_map(|s| match &s.target {
                Target::Agent(target) => Some(StepReference {
                    key: &s.target_key,
                    target,
                    needs_model,
                }),
                Target::Tool(_) => None,
            })
            .collect()
    }
}

/// The prefix of a handoff tool's name: the model of a handoff step is offered
/// `handoff_to_<step>` for each step it may hand the conversation to.
pub const HANDOFF_PREFIX: &str = "handoff_to_";

/// Most handoffs `max_handoffs` may allow.
const MAX_HANDOFFS: u32 = 50;

/// What the file's `[[tools]]` provide, for tool steps.
pub struct FileTools<'a> {
    /// Names known before building.
    pub names: &'a [String],
    /// Whether an upstream MCP server's tools (unknown until it is reached) are among them.
    pub open: bool,
}

/// Validates `[workflow]`.
///
/// # Errors
/// Every `(key, message)` problem.
pub fn validate(
    c: WorkflowConfig,
    tools: &FileTools<'_>,
) -> Result<WorkflowSpec, Vec<(String, String)>> {
    let mut errors: Vec<(String, String)> = Vec::new();
    let kind = c.kind;
    let kind_name = kind.as_str();
    if c.steps.is_empty() {
        errors.push((
            "workflow.steps".into(),
            "must list at least one step".into(),
        ));
    }
    if kind == WorkflowKind::Handoff && c.steps.len() == 1 {
        errors.push((
            "workflow.steps".into(),
            "a handoff needs at least two agents to hand the conversation between".into(),
        ));
    }
    let mut steps = Vec::with_capacity(c.steps.len());
    // `handoffs` as written (None: every other step), by step.
    let mut handoffs = Vec::with_capacity(c.steps.len());
    let mut names: HashMap<String, String> = HashMap::new();
    for (i, step) in c.steps.into_iter().enumerate() {
        let key = format!("workflow.steps[{i}]");
        let Some((step, listed)) =
            validate_step(step, key, kind, Template::input, tools, &mut errors)
        else {
            continue;
        };
        handoffs.push(listed);
        if let Some(first) = names.insert(step.name.clone(), step.key.clone()) {
            errors.push((
                step.key.clone(),
                format!(
                    "step name {:?} is already used by {first}; give one of them another `name`",
                    step.name
                ),
            ));
        }
        steps.push(step);
    }
    // `{{steps.<name>}}`: a sequential step reads the steps before it; concurrent steps run
    // at once and handoff steps have a conversation instead, so only the aggregator reads
    // steps there.
    for (i, step) in steps.iter().enumerate() {
        let readable: Vec<&str> = match kind {
            WorkflowKind::Sequential => steps[..i].iter().map(|s| s.name.as_str()).collect(),
            WorkflowKind::Concurrent | WorkflowKind::Handoff => Vec::new(),
        };
        check_step_references(step, &readable, Some(kind), &mut errors);
    }
    if kind == WorkflowKind::Handoff {
        for (step, listed) in steps.iter().zip(&handoffs) {
            for to in listed.iter().flatten() {
                if to == &step.name {
                    errors.push((
                        format!("{}.handoffs", step.key),
                        format!(
                            "{to:?} is this step: an agent cannot hand the conversation to itself"
                        ),
                    ));
                } else if !names.contains_key(to) {
                    errors.push((
                        format!("{}.handoffs", step.key),
                        format!("unknown step {to:?}; steps here: {}", sorted(names.keys())),
                    ));
                }
            }
        }
        let max = c.max_handoffs.unwrap_or(5);
        if !(1..=MAX_HANDOFFS).contains(&max) {
            errors.push((
                "workflow.max_handoffs".into(),
                format!("{max} is out of range 1..={MAX_HANDOFFS}"),
            ));
        }
    } else if c.max_handoffs.is_some() {
        errors.push((
            "workflow.max_handoffs".into(),
            format!("only applies to kind = \"handoff\", not {kind_name:?}"),
        ));
    }
    let aggregator = match c.aggregator {
        Some(_) if kind != WorkflowKind::Concurrent => {
            errors.push((
                "workflow.aggregator".into(),
                format!("only applies to kind = \"concurrent\", not {kind_name:?}"),
            ));
            None
        }
        Some(config) => {
            let aggregator = validate_step(
                config,
                "workflow.aggregator".into(),
                WorkflowKind::Concurrent,
                aggregator_input,
                tools,
                &mut errors,
            )
            .map(|(a, _)| a);
            if let Some(a) = &aggregator {
                let all: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
                check_step_references(a, &all, None, &mut errors);
                if a.on_error == OnError::Continue {
                    errors.push((
                        "workflow.aggregator.on_error".into(),
                        "the aggregator's failure fails the workflow: on_error does not apply"
                            .into(),
                    ));
                }
            }
            aggregator
        }
        None => None,
    };
    if !(1..=86_400).contains(&c.timeout_secs) {
        errors.push((
            "workflow.timeout_secs".into(),
            format!("{} is out of range 1..=86400", c.timeout_secs),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let all: Vec<String> = steps.iter().map(|s| s.name.clone()).collect();
    if kind == WorkflowKind::Handoff {
        for (step, listed) in steps.iter_mut().zip(handoffs) {
            step.handoffs = listed
                .unwrap_or_else(|| all.iter().filter(|n| **n != step.name).cloned().collect());
        }
    }
    Ok(WorkflowSpec {
        kind,
        steps,
        aggregator,
        max_handoffs: c.max_handoffs.unwrap_or(5),
        timeout: Duration::from_secs(c.timeout_secs),
    })
}

/// The aggregator's default task: the workflow's task, then the steps' results.
fn aggregator_input() -> Template {
    // A fixed text: parsing it cannot fail.
    Template::parse("{{task}}\n\n{{input}}").unwrap_or_else(|_| Template::input())
}

fn sorted<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let mut names: Vec<&str> = names.map(String::as_str).collect();
    names.sort_unstable();
    names.join(", ")
}

/// Checks the `{{steps.<name>}}` of `step` against the steps it may read; `kind` is `None` for
/// the aggregator.
fn check_step_references(
    step: &StepSpec,
    readable: &[&str],
    kind: Option<WorkflowKind>,
    errors: &mut Vec<(String, String)>,
) {
    let field = match step.target {
        Target::Agent(_) => "input",
        Target::Tool(_) => "arguments",
    };
    let used: Vec<&str> = match step.target {
        Target::Agent(_) => step.input.steps().collect(),
        Target::Tool(_) => step.arguments.steps(),
    };
    for name in used {
        if readable.contains(&name) {
            continue;
        }
        let why = match kind {
            None => format!("{{{{steps.{name}}}}}: no step is named {name:?}"),
            Some(WorkflowKind::Sequential) => {
                format!("{{{{steps.{name}}}}} names no step before this one")
            }
            Some(WorkflowKind::Concurrent) => format!(
                "{{{{steps.{name}}}}}: concurrent steps run at once; only the aggregator reads the steps' results"
            ),
            Some(WorkflowKind::Handoff) => format!(
                "{{{{steps.{name}}}}}: handoff steps share a conversation, not results; use {{{{input}}}}"
            ),
        };
        errors.push((format!("{}.{field}", step.key), why));
    }
}

/// One step (or the aggregator, validated as a concurrent step with its own default input),
/// and its `handoffs` as written.
fn validate_step(
    config: StepConfig,
    key: String,
    kind: WorkflowKind,
    default_input: fn() -> Template,
    tools: &FileTools<'_>,
    errors: &mut Vec<(String, String)>,
) -> Option<(StepSpec, Option<Vec<String>>)> {
    let before = errors.len();
    // A bare name is the step's key; in a table, `agent` is.
    let bare = matches!(config, StepConfig::Name(_));
    let table = match config {
        StepConfig::Name(agent) => StepTable {
            agent: Some(agent),
            tool: None,
            name: None,
            input: None,
            arguments: None,
            on_error: None,
            handoffs: None,
        },
        StepConfig::Table(t) => t,
    };
    let is_table = |k: &str| format!("{key}.{k}");
    let (target, target_key) = match (table.agent, table.tool) {
        (Some(agent), None) => {
            let target_key = if bare { key.clone() } else { is_table("agent") };
            if let Err(e) = AgentName::parse(&agent) {
                errors.push((target_key.clone(), e));
            }
            (Target::Agent(agent), target_key)
        }
        (None, Some(tool)) => {
            if !tools.open && !tools.names.contains(&tool) {
                let offered = if tools.names.is_empty() {
                    "this file has no [[tools]]".to_owned()
                } else {
                    format!("this file's [[tools]] provide {}", tools.names.join(", "))
                };
                errors.push((
                    is_table("tool"),
                    format!("unknown tool {tool:?}: {offered}"),
                ));
            }
            if kind == WorkflowKind::Handoff {
                errors.push((
                    is_table("tool"),
                    "handoff steps are agents (their models hand the conversation on), not tools"
                        .into(),
                ));
            }
            (Target::Tool(tool), is_table("tool"))
        }
        (Some(_), Some(_)) => {
            errors.push((key.clone(), "give `agent` or `tool`, not both".into()));
            return None;
        }
        (None, None) => {
            errors.push((
                key.clone(),
                "needs `agent` (an agent or workflow to run) or `tool` (one of this file's [[tools]])"
                    .into(),
            ));
            return None;
        }
    };
    let name = table.name.unwrap_or_else(|| match &target {
        Target::Agent(n) | Target::Tool(n) => n.clone(),
    });
    if !valid_step_name(&name) {
        errors.push((
            is_table("name"),
            format!("{name:?} is not a valid step name: use 1-64 characters of A-Z, a-z, 0-9, '_' and '-'"),
        ));
    } else if kind == WorkflowKind::Handoff && HANDOFF_PREFIX.len() + name.len() > 64 {
        errors.push((
            if bare { key.clone() } else { is_table("name") },
            format!(
                "{name:?} is too long for its handoff tool {HANDOFF_PREFIX}{name} (64 characters at most): give the step a shorter `name`"
            ),
        ));
    }
    let input = match (&target, table.input) {
        (_, None) => default_input(),
        (Target::Agent(_), Some(text)) => match Template::parse(&text) {
            Ok(t) => t,
            Err(e) => {
                errors.push((is_table("input"), e));
                Template::input()
            }
        },
        (Target::Tool(_), Some(_)) => {
            errors.push((
                is_table("input"),
                "only for agent steps: a tool step takes `arguments`".into(),
            ));
            Template::input()
        }
    };
    let arguments = match (&target, table.arguments) {
        (_, None) => Arguments::empty(),
        (Target::Tool(_), Some(table)) => Arguments::parse(&table, &is_table("arguments"))
            .unwrap_or_else(|problems| {
                errors.extend(problems);
                Arguments::empty()
            }),
        (Target::Agent(_), Some(_)) => {
            errors.push((
                is_table("arguments"),
                "only for tool steps: an agent step takes `input`, its task".into(),
            ));
            Arguments::empty()
        }
    };
    if table.on_error.is_some() && kind == WorkflowKind::Handoff {
        errors.push((
            is_table("on_error"),
            "only for sequential and concurrent workflows: in a handoff, the agent that has the conversation either answers or fails the run".into(),
        ));
    }
    if table.handoffs.is_some() && kind != WorkflowKind::Handoff {
        errors.push((
            is_table("handoffs"),
            format!(
                "only applies to kind = \"handoff\", not {:?}",
                kind.as_str()
            ),
        ));
    }
    let spec = StepSpec {
        key,
        name,
        target,
        target_key,
        input,
        arguments,
        on_error: table.on_error.unwrap_or_default(),
        handoffs: Vec::new(),
    };
    (errors.len() == before).then_some((spec, table.handoffs))
}

fn valid_step_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
