//! The `[[policies]]` rules in force, and re-reading `switchboard.toml` for them.
//!
//! One [`Permissions`] per gateway, shared by every agent's MCP handler: a call reads the
//! rules with one atomic load (no lock), and a reload swaps them whole, so a call sees
//! either the old rules or the new ones, never a mix. Every reload (a change in `agents/`
//! or in `switchboard.toml`, SIGHUP, `POST /admin/reload`) re-reads the file the gateway
//! was started with ([`Permissions::reread`]): a file that validates has its
//! `[[policies]]` applied at once; a file that does not changes nothing and says why; other
//! keys that changed since the start are reported as needing a restart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption, Guard};

use crate::config::policies::{self, Policies};
use crate::config::{self, GatewaySource};

/// The rules in force.
#[derive(Debug)]
pub struct Rules {
    /// The rules, in file order (shared with the calls that began under them).
    pub policies: Arc<Policies>,
    /// The file they were read from; `None`: settings made in code.
    pub file: Option<PathBuf>,
    /// When they were read (the gateway's start, or the reload that changed them).
    pub loaded_at: SystemTime,
}

impl std::ops::Deref for Rules {
    type Target = Policies;

    fn deref(&self) -> &Policies {
        &self.policies
    }
}

/// What re-reading `switchboard.toml` found.
#[derive(Debug, Clone, Default)]
pub struct Reread {
    /// The file.
    pub file: PathBuf,
    /// Whether the rules in force were replaced (the file's differed from them).
    pub applied: bool,
    /// How many rules are in force after it.
    pub rules: usize,
    /// Why the file was not applied, each `file: key: message`; the rules in force stay.
    pub errors: Vec<String>,
    /// Tool globs whose agent part names no loaded agent (`file: key: message`); the rules
    /// apply anyway (such a glob matches nothing until that agent exists).
    pub warnings: Vec<String>,
    /// Top-level keys other than `policies` that differ from the gateway's start: not
    /// applied, they need a restart.
    pub restart_needed: Vec<String>,
}

/// The rules in force and where they come from.
pub struct Permissions {
    current: ArcSwap<Rules>,
    /// The file re-read on reload; `None`: nothing is.
    source: Option<GatewaySource>,
    /// What the last re-read found; `None` before the first.
    last: ArcSwapOption<Reread>,
}

impl Permissions {
    /// `policies` in force, read from `source` (if any) just now.
    pub fn new(policies: Policies, source: Option<GatewaySource>) -> Self {
        Self {
            current: ArcSwap::from_pointee(Rules {
                policies: Arc::new(policies),
                file: source.as_ref().map(|s| s.file.clone()),
                loaded_at: SystemTime::now(),
            }),
            source,
            last: ArcSwapOption::empty(),
        }
    }

    /// The rules in force: one atomic load, no lock. Do not hold it across an `.await`.
    pub fn load(&self) -> Guard<Arc<Rules>> {
        self.current.load()
    }

    /// The rules in force, to keep (the admin API's views).
    pub fn load_full(&self) -> Arc<Rules> {
        self.current.load_full()
    }

    /// The file re-read on reload, if any.
    pub fn file(&self) -> Option<&Path> {
        self.source.as_ref().map(|s| s.file.as_path())
    }

    /// What the last re-read found; `None` before the first (or without a file).
    pub fn last_reread(&self) -> Option<Arc<Reread>> {
        self.last.load_full()
    }

    /// Re-reads the file the gateway was started with and applies its `[[policies]]` if
    /// it validates (`agents`: the agents loaded now, for the warnings); `None` without a
    /// file. Callers run one re-read at a time (the agents' reload lock).
    pub fn reread(&self, agents: &[&str]) -> Option<Reread> {
        let source = self.source.as_ref()?;
        let file = source.file.as_path();
        let mut report = Reread {
            file: file.to_owned(),
            ..Reread::default()
        };
        match std::fs::read_to_string(file) {
            Err(e) => report
                .errors
                .push(config::Error::file(file, format!("cannot read: {e}")).to_string()),
            Ok(text) => {
                report.restart_needed = changed_keys(&source.keys, &text);
                match config::gateway_from_text(file, &text, &source.vars) {
                    Err(errors) => {
                        report.errors = errors.0.iter().map(ToString::to_string).collect();
                    }
                    Ok(settings) => {
                        let new = settings.policies;
                        report.warnings = policies::unknown_agents(&new, agents, file)
                            .iter()
                            .map(ToString::to_string)
                            .collect();
                        if *new != *self.current.load().policies {
                            report.applied = true;
                            self.current.store(Arc::new(Rules {
                                policies: new,
                                file: Some(file.to_owned()),
                                loaded_at: SystemTime::now(),
                            }));
                        }
                    }
                }
            }
        }
        report.rules = self.current.load().rules().len();
        log(&report);
        self.last.store(Some(Arc::new(report.clone())));
        Some(report)
    }
}

fn log(report: &Reread) {
    let file = report.file.display();
    for e in &report.errors {
        tracing::error!(error = %e, "switchboard.toml not applied: the [[policies]] rules in force stay.");
    }
    for w in &report.warnings {
        tracing::warn!(warning = %w, "A [[policies]] tool glob names no loaded agent; it matches nothing until one is.");
    }
    if !report.restart_needed.is_empty() {
        tracing::warn!(%file, keys = %report.restart_needed.join(", "), "switchboard.toml: these keys changed and apply on restart only (a reload applies [[policies]]).");
    }
    if report.applied {
        tracing::info!(%file, rules = report.rules, "[[policies]] reloaded.");
    }
}

/// The top-level keys of `text` other than `policies` whose value differs from
/// `started`'s (sorted); none when `text` is not TOML (its errors say so).
fn changed_keys(started: &toml::Table, text: &str) -> Vec<String> {
    let Ok(now) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let keys: BTreeSet<&String> = started.keys().chain(now.keys()).collect();
    keys.into_iter()
        .filter(|k| k.as_str() != "policies" && started.get(*k) != now.get(*k))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_keys_other_than_policies_need_a_restart() {
        let started: toml::Table = toml::from_str(
            "[server]\nlisten = \"127.0.0.1:1\"\n[[policies]]\neffect = \"allow\"\n",
        )
        .unwrap_or_default();
        let text = "[server]\nlisten = \"127.0.0.1:2\"\n[metrics]\npublic = true\n[[policies]]\neffect = \"deny\"\n";
        assert_eq!(changed_keys(&started, text), ["metrics", "server"]);
        assert!(changed_keys(&started, "not = [toml").is_empty());
    }
}
