//! `AgentRegistry`: every agent of the agents directory, by name.
//!
//! Loading reads every `*.toml` file of the directory, validates all of them and reports
//! every problem of every file at once; a registry is only built when all are valid, so a
//! malformed file never starts a half-configured server.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;

use super::{Agent, AgentName, AgentSpec};
use crate::config::{self, Error, Errors, Vars, agent::AgentConfig};
use crate::tools::{self, AgentRunner, CallContext, Resources};

/// The agents being served, by name, and what a reload needs to rebuild them.
pub struct AgentRegistry {
    agents: BTreeMap<AgentName, Arc<Agent>>,
    /// What the agents were built with (store, runner, metrics), kept for rebuilding them.
    resources: Arc<Resources>,
    /// The runner agent tools use; updated on every reload.
    directory: Arc<Directory>,
    /// Where the agent files are.
    dir: PathBuf,
    /// The environment the files are interpolated from.
    vars: Vars,
    /// Problems of the last reload, by file (a broken file keeps its previous version).
    errors: BTreeMap<PathBuf, Vec<String>>,
}

/// What a reload did.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// Agents that appeared.
    pub added: Vec<String>,
    /// Agents whose file changed (new sessions get the new definition).
    pub changed: Vec<String>,
    /// Agents whose file is gone (their sessions are ended).
    pub removed: Vec<String>,
    /// Agents left as they were.
    pub unchanged: Vec<String>,
    /// Every problem, `file: key: message`; a broken file keeps its previous version.
    pub errors: Vec<String>,
}

impl AgentRegistry {
    /// Reads and validates every agent file in `dir` (no I/O beyond reading them).
    ///
    /// # Errors
    /// Every problem of every file.
    pub fn validate_dir(dir: &Path, vars: &Vars) -> Result<Vec<AgentSpec>, Errors> {
        let files = agent_files(dir)?;
        let mut specs = Vec::with_capacity(files.len());
        let mut errors = Errors::default();
        for file in files {
            match read_and_validate(&file, vars) {
                Ok(spec) => specs.push(spec),
                Err(e) => errors.extend(e.0),
            }
        }
        errors.extend(check_agent_references(&specs));
        errors.into_result(specs)
    }

    /// Validates and builds every agent in `dir`.
    ///
    /// # Errors
    /// Every problem of every file, or of building them.
    pub fn load(dir: &Path, vars: &Vars, resources: Resources) -> Result<Self, Errors> {
        let specs = Self::validate_dir(dir, vars)?;
        Self::build(dir, vars, specs, resources)
    }

    /// Builds validated `specs` (read from `dir` with `vars`): agents that use other agents
    /// reach them through a shared [`Directory`].
    ///
    /// # Errors
    /// Every agent that could not be built.
    pub fn build(
        dir: &Path,
        vars: &Vars,
        specs: Vec<AgentSpec>,
        mut resources: Resources,
    ) -> Result<Self, Errors> {
        let directory = Arc::new(Directory::default());
        resources.runner = Some(directory.clone());
        set_descriptions(&resources, specs.iter());
        let agents = super::build_all(specs, &resources)?;
        directory.set(&agents);
        Ok(Self {
            agents: agents.into_iter().map(|a| (a.name().clone(), a)).collect(),
            resources: Arc::new(resources),
            directory,
            dir: dir.to_path_buf(),
            vars: vars.clone(),
            errors: BTreeMap::new(),
        })
    }

    /// Re-reads the agents directory: new files are added, changed files rebuilt, removed
    /// files dropped; a file with any problem keeps its previous version (if it had one).
    /// Unchanged agents are kept as they are (the same `Arc`).
    pub fn reload(&mut self) -> ReloadReport {
        let mut report = ReloadReport::default();
        let files = match agent_files(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                report.errors = e.0.iter().map(ToString::to_string).collect();
                return report;
            }
        };
        let mut errors: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        let mut next: BTreeMap<AgentName, Arc<Agent>> = BTreeMap::new();
        let mut candidates: Vec<AgentSpec> = Vec::new();
        for file in &files {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    errors
                        .entry(file.clone())
                        .or_default()
                        .push(format!("{}: cannot read: {e}", file.display()));
                    continue;
                }
            };
            let current = self.agents.values().find(|a| a.spec.file == *file);
            if let Some(agent) = current
                && agent.spec.source == text
            {
                next.insert(agent.name().clone(), agent.clone());
                continue;
            }
            match validate_text(file, &text, &self.vars) {
                Ok(spec) => candidates.push(spec),
                Err(e) => {
                    errors
                        .entry(file.clone())
                        .or_default()
                        .extend(e.0.iter().map(ToString::to_string));
                    if let Some(old) = current {
                        next.insert(old.name().clone(), old.clone());
                    }
                }
            }
        }
        // References between agents are checked over the whole new set.
        let all_specs: Vec<AgentSpec> = next
            .values()
            .map(|a| a.spec.clone())
            .chain(candidates.iter().cloned())
            .collect();
        let bad: Vec<Error> = check_agent_references(&all_specs);
        candidates.retain(|spec| {
            let mine: Vec<String> = bad
                .iter()
                .filter(|e| e.file == spec.file)
                .map(ToString::to_string)
                .collect();
            if mine.is_empty() {
                return true;
            }
            errors.entry(spec.file.clone()).or_default().extend(mine);
            if let Some(old) = self.agents.get(&spec.name) {
                next.insert(old.name().clone(), old.clone());
            }
            false
        });
        set_descriptions(
            &self.resources,
            next.values().map(|a| &a.spec).chain(candidates.iter()),
        );
        for spec in candidates {
            let name = spec.name.clone();
            let file = spec.file.clone();
            match Agent::build(spec, &self.resources) {
                Ok(agent) => {
                    if self.agents.contains_key(&name) {
                        report.changed.push(name.to_string());
                    } else {
                        report.added.push(name.to_string());
                    }
                    next.insert(name, Arc::new(agent));
                }
                Err(e) => {
                    errors.entry(file).or_default().push(e.to_string());
                    if let Some(old) = self.agents.get(&name) {
                        next.insert(name, old.clone());
                    }
                }
            }
        }
        report.removed = self
            .agents
            .keys()
            .filter(|n| !next.contains_key(*n))
            .map(ToString::to_string)
            .collect();
        report.unchanged = next
            .iter()
            .filter(|(n, a)| self.agents.get(*n).is_some_and(|old| Arc::ptr_eq(old, a)))
            .map(|(n, _)| n.to_string())
            .collect();
        report.errors = errors.values().flatten().cloned().collect();
        let agents: Vec<Arc<Agent>> = next.values().cloned().collect();
        self.directory.set(&agents);
        self.agents = next;
        self.errors = errors;
        report
    }

    /// Problems of the last reload, by file.
    pub fn errors(&self) -> &BTreeMap<PathBuf, Vec<String>> {
        &self.errors
    }

    /// What the agents were built with.
    pub fn resources(&self) -> &Arc<Resources> {
        &self.resources
    }

    /// Connects every agent's upstream MCP servers (best effort, each bounded by its own
    /// timeout); one that is down is retried when a call needs it.
    pub async fn connect_upstreams(&self) {
        futures::future::join_all(self.agents.values().map(|a| a.connect_upstreams())).await;
    }

    /// The agent named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Agent>> {
        self.agents.get(name)
    }

    /// All agents, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Agent>> {
        self.agents.values()
    }

    /// How many agents there are.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }
}

fn set_descriptions<'a>(resources: &Resources, specs: impl Iterator<Item = &'a AgentSpec>) {
    let mut map = resources
        .descriptions
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *map = specs
        .map(|s| (s.name.to_string(), s.description.clone()))
        .collect();
}

/// The agents that agents run, by name. Filled once the agents are built; agent tools look
/// their target up here at call time.
#[derive(Default)]
pub struct Directory {
    /// A `std` lock: held only to clone an `Arc` out, never across `.await`.
    agents: RwLock<HashMap<String, Arc<Agent>>>,
}

impl Directory {
    fn set(&self, agents: &[Arc<Agent>]) {
        let mut map = self
            .agents
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map = agents
            .iter()
            .map(|a| (a.name().to_string(), a.clone()))
            .collect();
    }

    fn get(&self, name: &str) -> Option<Arc<Agent>> {
        self.agents
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }
}

impl AgentRunner for Directory {
    fn run_agent(
        &self,
        agent: &str,
        task: String,
        ctx: CallContext,
    ) -> BoxFuture<'static, Result<String, tools::Error>> {
        let target = self.get(agent);
        let name = agent.to_owned();
        Box::pin(async move {
            let Some(target) = target else {
                return Err(tools::Error::Failed(format!(
                    "agent {name:?} is not available"
                )));
            };
            target.run(task, &ctx).await.map_err(Into::into)
        })
    }
}

/// `type = "agent"` tools must name existing agents and must not form a cycle.
fn check_agent_references(specs: &[AgentSpec]) -> Vec<Error> {
    let by_name: HashMap<&str, &AgentSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut errors = Vec::new();
    for spec in specs {
        for (i, tool) in spec.tools.iter().enumerate() {
            if let Some(target) = tool.target_agent()
                && !by_name.contains_key(target)
            {
                let known: Vec<&str> = by_name.keys().copied().collect();
                errors.push(Error::key(
                    &spec.file,
                    format!("tools[{i}].agent"),
                    format!(
                        "unknown agent {target:?}; agents here: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    // A cycle through each agent is reported once, on the first agent of it (by name).
    let mut reported = std::collections::HashSet::new();
    let mut names: Vec<&str> = by_name.keys().copied().collect();
    names.sort_unstable();
    for start in names {
        if let Some(cycle) = find_cycle(start, &by_name)
            && cycle.iter().all(|n| !reported.contains(n))
        {
            reported.extend(cycle.iter().copied());
            if let Some(spec) = by_name.get(start) {
                let index = spec
                    .tools
                    .iter()
                    .position(|t| t.target_agent() == cycle.get(1).copied())
                    .unwrap_or(0);
                errors.push(Error::key(
                    &spec.file,
                    format!("tools[{index}].agent"),
                    format!(
                        "agents call each other in a cycle: {}; an agent may not reach itself",
                        cycle.join(" -> ")
                    ),
                ));
            }
        }
    }
    errors
}

/// A path `start -> ... -> start` through `type = "agent"` tools, if there is one.
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
        for target in spec.tools.iter().filter_map(|t| t.target_agent()) {
            if target == start {
                path.push(target);
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

/// The `*.toml` files of `dir`, sorted; hidden files and other extensions are ignored.
fn agent_files(dir: &Path) -> Result<Vec<PathBuf>, Errors> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Errors(vec![Error::file(
            dir,
            format!("cannot read the agents directory: {e}"),
        )])
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "toml")
                && p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn read_and_validate(file: &Path, vars: &Vars) -> Result<AgentSpec, Errors> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Errors(vec![Error::file(file, format!("cannot read: {e}"))]))?;
    validate_text(file, &text, vars)
}

fn validate_text(file: &Path, text: &str, vars: &Vars) -> Result<AgentSpec, Errors> {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let name = AgentName::parse(stem).map_err(|m| Errors(vec![Error::file(file, m)]));
    let parsed = config::parse_file_recovering::<AgentConfig>(file, text, vars);
    let variables = config::referenced_variables(text);
    match (name, parsed) {
        (Ok(name), Ok(config)) => {
            let mut spec = AgentSpec::validate_with_variables(name, file, config, &variables)
                .map_err(Errors)?;
            spec.source = text.to_owned();
            Ok(spec)
        }
        (name, parsed) => {
            let mut errors = Errors::default();
            let name = match name {
                Ok(name) => Some(name),
                Err(e) => {
                    errors.extend(e.0);
                    None
                }
            };
            // Whatever can still be checked is, so that one problem does not hide another:
            // with a bad name, the whole file (a name derived from the file's stands in);
            // with keys that were wrong, the [[tools]] entries, which do not depend on them.
            let stand_in = || {
                let stem: String = stem
                    .chars()
                    .map(|c| match c.to_ascii_lowercase() {
                        c @ ('a'..='z' | '0'..='9' | '-') => c,
                        _ => '-',
                    })
                    .collect();
                AgentName::parse(&stem)
                    .or_else(|_| AgentName::parse("agent"))
                    .ok()
            };
            let (config, only_tools) = match parsed {
                Ok(config) => (Some(config), false),
                Err((recovered, parse_errors)) => {
                    errors.extend(parse_errors.0);
                    (recovered, true)
                }
            };
            if let Some(config) = config
                && let Some(name) = name.or_else(stand_in)
                && let Err(more) =
                    AgentSpec::validate_with_variables(name, file, config, &variables)
            {
                errors.extend(more.into_iter().filter(|e| {
                    !only_tools || e.key.as_deref().is_some_and(|k| k.starts_with("tools["))
                }));
            }
            Err(errors)
        }
    }
}
