//! References between agents: `type = "agent"` tools and workflow steps name other agents.
//!
//! What startup refuses and a reload must not serve: a reference to an agent that does not
//! exist, or that cannot serve as it must (a handoff step that is no agent with a model), and
//! agents that reach themselves through references (a cycle).

use std::collections::HashMap;

use super::AgentSpec;
use crate::config::{AgentName, Error};

/// A reference from one agent file to another agent, for the checks across files.
#[derive(Debug, Clone)]
pub struct Reference<'a> {
    /// The key naming the agent (`tools[0].agent`, `workflow.steps[1]`).
    pub key: std::borrow::Cow<'a, str>,
    /// The agent (or workflow) named.
    pub target: &'a str,
    /// Whether the target must be an agent with a model (a handoff step).
    pub needs_model: bool,
}

impl AgentSpec {
    /// Every agent this one runs: its `type = "agent"` tools, its workflow's steps.
    pub fn references(&self) -> Vec<Reference<'_>> {
        let tools = self.tools.iter().enumerate().filter_map(|(i, t)| {
            t.target_agent().map(|target| Reference {
                key: format!("tools[{i}].agent").into(),
                target,
                needs_model: false,
            })
        });
        let steps = self.workflow.iter().flat_map(|w| {
            w.references().into_iter().map(|r| Reference {
                key: r.key.into(),
                target: r.target,
                needs_model: r.needs_model,
            })
        });
        tools.chain(steps).collect()
    }
}

/// A reference between agents that breaks the rules: what startup refuses and a reload
/// must not serve.
#[derive(Debug)]
pub(super) struct ReferenceProblem {
    /// The agent whose file has the problem.
    pub(super) agent: AgentName,
    /// What is wrong.
    pub(super) kind: ProblemKind,
    /// The problem, naming the file and the key (`tools[i].agent`, `workflow.steps[i]`).
    pub(super) error: Error,
}

#[derive(Debug)]
pub(super) enum ProblemKind {
    /// A tool or step runs an agent that does not exist, or that cannot serve as it must (a
    /// handoff step that is no agent with a model): its name.
    BadTarget(String),
    /// The agent reaches itself: the agents of the cycle, from it.
    Cycle(Vec<String>),
}

/// `type = "agent"` tools and workflow steps must name existing agents (a handoff step one
/// with a model) and must not form a cycle (an agent calling itself is one). A cycle is
/// reported on every agent of it, from that agent.
pub(super) fn check_agent_references(specs: &[AgentSpec]) -> Vec<Error> {
    reference_problems(specs)
        .into_iter()
        .map(|p| p.error)
        .collect()
}

pub(super) fn reference_problems(specs: &[AgentSpec]) -> Vec<ReferenceProblem> {
    let by_name: HashMap<&str, &AgentSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut known: Vec<&str> = by_name.keys().copied().collect();
    known.sort_unstable();
    let mut problems = Vec::new();
    let mut ordered: Vec<&AgentSpec> = specs.iter().collect();
    ordered.sort_by(|a, b| a.name.cmp(&b.name));
    for spec in ordered {
        let references = spec.references();
        for reference in &references {
            let target = reference.target;
            let message = match by_name.get(target) {
                None if reference.key.starts_with("workflow.") => format!(
                    "unknown step {target:?}: no agent or workflow has that name; agents here: {}",
                    known.join(", ")
                ),
                None => format!(
                    "unknown agent {target:?}; agents here: {}",
                    known.join(", ")
                ),
                Some(found) if reference.needs_model && found.workflow.is_some() => format!(
                    "{target:?} is a workflow: a handoff step is an agent with a [model], whose model can take the conversation and hand it on"
                ),
                Some(found) if reference.needs_model && found.model.is_none() => format!(
                    "agent {target:?} has no [model]: a handoff step is an agent whose model can take the conversation and hand it on"
                ),
                Some(_) => continue,
            };
            problems.push(ReferenceProblem {
                agent: spec.name.clone(),
                kind: ProblemKind::BadTarget(target.to_owned()),
                error: Error::key(&spec.file, reference.key.as_ref(), message),
            });
        }
        if let Some(cycle) = find_cycle(spec.name.as_str(), &by_name) {
            let first = references
                .iter()
                .find(|r| Some(r.target) == cycle.get(1).copied());
            let key = first.map_or_else(|| "tools[0].agent".to_owned(), |r| r.key.to_string());
            let message = if key.starts_with("workflow.") {
                format!(
                    "steps run each other in a cycle: {}; a workflow may not reach itself",
                    cycle.join(" -> ")
                )
            } else {
                format!(
                    "agents call each other in a cycle: {}; an agent may not reach itself",
                    cycle.join(" -> ")
                )
            };
            problems.push(ReferenceProblem {
                agent: spec.name.clone(),
                kind: ProblemKind::Cycle(cycle.iter().map(|n| (*n).to_owned()).collect()),
                error: Error::key(&spec.file, key, message),
            });
        }
    }
    problems
}

/// A path `start -> ... -> start` through the agents agents run (`type = "agent"` tools,
/// workflow steps), if there is one.
fn find_cycle<'a>(
    start: &'a str,
    by_name: &HashMap<&'a str, &'a AgentSpec>,
) -> Option<Vec<&'a str>> {
    fn visit<'a>(
        node: &'a str,
        start: &'a str,
        by_name: &HashMap<&'a str, &'a AgentSpec>,
        path: &mut Vec<&'a str>,
        seen: &mut std::collections::HashSet<&'a str>,
    ) -> bool {
        let Some(spec) = by_name.get(node) else {
            return false;
        };
        for reference in spec.references() {
            let target = reference.target;
            if target == start {
                path.push(start);
                return true;
            }
            if let Some((&key, _)) = by_name.get_key_value(target)
                && seen.insert(key)
            {
                path.push(key);
                if visit(key, start, by_name, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start];
    let mut seen = std::collections::HashSet::new();
    visit(start, start, by_name, &mut path, &mut seen).then_some(path)
}
