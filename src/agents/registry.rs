//! `AgentRegistry`: every agent of the agents directory, by name.
//!
//! Loading reads every `*.toml` file of the directory, validates all of them and reports
//! every problem of every file at once; a registry is only built when all are valid, so a
//! malformed file never starts a half-configured server.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use rmcp::model::Tool;

use super::references::{ProblemKind, check_agent_references, reference_problems};
use super::{Agent, AgentName, AgentSpec};
use crate::config::{self, Error, Errors, Vars, agent::AgentConfig};
use crate::tools::{self, AgentRunner, CallContext, Resources, RunEnd};

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
    /// Stdio upstreams that reloads left without an agent (changed or removed), until
    /// [`Self::take_retired`] hands them over to be stopped.
    retired: Vec<Arc<tools::upstream::UpstreamTools>>,
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
            retired: Vec::new(),
        })
    }

    /// Re-reads the agents directory: new files are added, changed files rebuilt, removed
    /// files dropped, under exactly the rules of startup. What would break a rule is not
    /// applied and is reported (`file: key: message`), and the previous version of each file
    /// involved keeps serving:
    /// - a file with any problem of its own keeps its previous version (if it had one);
    /// - references between agents are checked over the whole new set: a new version that
    ///   names an unknown agent keeps the previous one; every new version in a cycle keeps
    ///   the previous one (so no side of the cycle is served); an agent still used by
    ///   another keeps serving after its file is removed, until nothing uses it;
    /// - an agent that cannot be built keeps its previous version, and what used it is
    ///   checked again.
    ///
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
        let mut errors = FileErrors::default();
        // Agents served as they are: unchanged files, and files that keep their previous version.
        let mut kept: BTreeMap<AgentName, Arc<Agent>> = BTreeMap::new();
        // New versions, valid on their own.
        let mut candidates: BTreeMap<AgentName, AgentSpec> = BTreeMap::new();
        for file in &files {
            let current = self.agents.values().find(|a| a.spec.file == *file);
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    errors.add(file, format!("{}: cannot read: {e}", file.display()));
                    if let Some(old) = current {
                        kept.insert(old.name().clone(), old.clone());
                    }
                    continue;
                }
            };
            if let Some(agent) = current
                && agent.spec.source == text
            {
                kept.insert(agent.name().clone(), agent.clone());
                continue;
            }
            match validate_text(file, &text, &self.vars) {
                Ok(spec) => {
                    candidates.insert(spec.name.clone(), spec);
                }
                Err(e) => {
                    for error in &e.0 {
                        errors.add(file, error.to_string());
                    }
                    if let Some(old) = current {
                        kept.insert(old.name().clone(), old.clone());
                    }
                }
            }
        }
        let built = loop {
            self.settle_references(&mut kept, &mut candidates, &mut errors);
            set_descriptions(
                &self.resources,
                kept.values().map(|a| &a.spec).chain(candidates.values()),
            );
            let mut built = BTreeMap::new();
            let mut failed = Vec::new();
            for (name, spec) in &candidates {
                let previous = self.agents.get(name).map(|a| &**a);
                match Agent::rebuild(spec.clone(), &self.resources, previous) {
                    Ok(agent) => {
                        built.insert(name.clone(), Arc::new(agent));
                    }
                    Err(e) => {
                        errors.add(&spec.file, e.to_string());
                        failed.push(name.clone());
                    }
                }
            }
            if failed.is_empty() {
                break built;
            }
            // What used a version that could not be built is checked again without it.
            for name in failed {
                candidates.remove(&name);
                if let Some(old) = self.agents.get(&name) {
                    kept.insert(name, old.clone());
                }
            }
        };
        for name in built.keys() {
            if self.agents.contains_key(name) {
                report.changed.push(name.to_string());
            } else {
                report.added.push(name.to_string());
            }
        }
        let mut next = kept;
        next.extend(built);
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
        report.errors = errors.0.values().flatten().cloned().collect();
        // The stdio upstreams no agent has any more: their processes are to end.
        for old in self.agents.values() {
            for up in old.stdio_upstreams() {
                let kept = next
                    .values()
                    .any(|agent| agent.stdio_upstreams().any(|u| Arc::ptr_eq(u, up)));
                if !kept && !self.retired.iter().any(|r| Arc::ptr_eq(r, up)) {
                    self.retired.push(up.clone());
                }
            }
        }
        let agents: Vec<Arc<Agent>> = next.values().cloned().collect();
        self.directory.set(&agents);
        self.agents = next;
        self.errors = errors.0;
        report
    }

    /// Takes back changes until the references between agents follow the rules of startup:
    /// each problem's new versions go back to their previous ones (or away, for new files),
    /// and an agent removed while another still uses it comes back. Every problem met on the
    /// way is recorded on its file.
    fn settle_references(
        &self,
        kept: &mut BTreeMap<AgentName, Arc<Agent>>,
        candidates: &mut BTreeMap<AgentName, AgentSpec>,
        errors: &mut FileErrors,
    ) {
        // Each round takes back at least one change, so this ends; the bound is a guard.
        for _ in 0..=self.agents.len() + candidates.len() {
            let specs: Vec<AgentSpec> = kept
                .values()
                .map(|a| a.spec.clone())
                .chain(candidates.values().cloned())
                .collect();
            let problems = reference_problems(&specs);
            if problems.is_empty() {
                return;
            }
            let mut progressed = false;
            for problem in problems {
                errors.add(&problem.error.file, problem.error.to_string());
                let culprits: Vec<&str> = match &problem.kind {
                    ProblemKind::Cycle(cycle) => cycle.iter().map(String::as_str).collect(),
                    ProblemKind::BadTarget(_) if candidates.contains_key(&problem.agent) => {
                        vec![problem.agent.as_str()]
                    }
                    ProblemKind::BadTarget(target) => vec![target.as_str()],
                };
                for name in culprits {
                    if candidates.remove(name).is_some() {
                        if let Some(old) = self.agents.get(name) {
                            kept.insert(old.name().clone(), old.clone());
                        }
                        progressed = true;
                    } else if let Some(old) = self.agents.get(name)
                        && !kept.contains_key(name)
                    {
                        // Removed, but still used: it keeps serving until nothing uses it.
                        errors.add(
                            &old.spec.file,
                            format!(
                                "{}: removed, but {} still uses it ({}): it keeps serving until \
                                 no agent does",
                                old.spec.file.display(),
                                problem.agent,
                                problem.error.key.as_deref().unwrap_or("tools"),
                            ),
                        );
                        kept.insert(old.name().clone(), old.clone());
                        progressed = true;
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// The stdio upstreams the reloads so far left without an agent (their agent changed
    /// the entry, or was removed): the caller stops them ([`tools::upstream::UpstreamTools::stop`]).
    pub fn take_retired(&mut self) -> Vec<Arc<tools::upstream::UpstreamTools>> {
        std::mem::take(&mut self.retired)
    }

    /// Ends the processes of every agent's stdio upstreams (gateway shutdown), and waits
    /// until they have.
    pub async fn stop_upstreams(&self) {
        futures::future::join_all(self.agents.values().map(|a| a.stop_upstreams())).await;
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
            // Running an agent for someone is calling its agent tool for them: the caller
            // must be allowed that too, whoever delegates.
            ctx.permit(&name, &name)
                .map_err(|refused| tools::Error::Failed(refused.message))?;
            target.run(task, &ctx).await.map_err(Into::into)
        })
    }

    fn run_agent_offering(
        &self,
        agent: &str,
        task: String,
        exits: Vec<Tool>,
        ctx: CallContext,
    ) -> BoxFuture<'static, Result<RunEnd, tools::Error>> {
        let target = self.get(agent);
        let name = agent.to_owned();
        Box::pin(async move {
            let Some(target) = target else {
                return Err(tools::Error::Failed(format!(
                    "agent {name:?} is not available"
                )));
            };
            ctx.permit(&name, &name)
                .map_err(|refused| tools::Error::Failed(refused.message))?;
            target
                .run_offering(task, &exits, &ctx)
                .await
                .map_err(Into::into)
        })
    }
}

/// Problems by file, each message once, in the order found.
#[derive(Default)]
struct FileErrors(BTreeMap<PathBuf, Vec<String>>);

impl FileErrors {
    fn add(&mut self, file: &Path, message: String) {
        let messages = self.0.entry(file.to_path_buf()).or_default();
        if !messages.contains(&message) {
            messages.push(message);
        }
    }
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
            // with keys that were wrong, the [[tools]] and [[servers]] entries, which do not
            // depend on them.
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
                    !only_tools
                        || e.key
                            .as_deref()
                            .is_some_and(|k| k.starts_with("tools[") || k.starts_with("servers["))
                }));
            }
            Err(errors)
        }
    }
}
