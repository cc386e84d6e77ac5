//! `AgentRegistry`: every agent of the agents directory, by name.
//!
//! Loading reads every `*.toml` file of the directory, validates all of them and reports
//! every problem of every file at once; a registry is only built when all are valid, so a
//! malformed file never starts a half-configured server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Agent, AgentName, AgentSpec};
use crate::config::{self, Error, Errors, Vars, agent::AgentConfig};
use crate::tools::Resources;

/// The agents being served, by name. Immutable once built.
#[derive(Default)]
pub struct AgentRegistry {
    agents: BTreeMap<AgentName, Arc<Agent>>,
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
            match validate_file(&file, vars) {
                Ok(spec) => specs.push(spec),
                Err(e) => errors.extend(e.0),
            }
        }
        errors.into_result(specs)
    }

    /// Validates and builds every agent in `dir`.
    ///
    /// # Errors
    /// Every problem of every file, or of building them.
    pub fn load(dir: &Path, vars: &Vars, resources: &Resources) -> Result<Self, Errors> {
        let specs = Self::validate_dir(dir, vars)?;
        let agents = super::build_all(specs, resources)?;
        Ok(Self::from_agents(agents))
    }

    /// A registry of already built agents.
    pub fn from_agents(agents: impl IntoIterator<Item = Arc<Agent>>) -> Self {
        Self {
            agents: agents.into_iter().map(|a| (a.name().clone(), a)).collect(),
        }
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

fn validate_file(file: &Path, vars: &Vars) -> Result<AgentSpec, Errors> {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let name = AgentName::parse(stem).map_err(|m| Errors(vec![Error::file(file, m)]));
    let text = std::fs::read_to_string(file)
        .map_err(|e| Errors(vec![Error::file(file, format!("cannot read: {e}"))]))?;
    let parsed = config::parse_file::<AgentConfig>(file, &text, vars);
    match (name, parsed) {
        (Ok(name), Ok(config)) => AgentSpec::validate(name, file, config).map_err(Errors),
        (name, parsed) => {
            let mut errors = Errors::default();
            errors.extend(name.err().into_iter().flat_map(|e| e.0));
            errors.extend(parsed.err().into_iter().flat_map(|e| e.0));
            Err(errors)
        }
    }
}
