//! `[tasks]` of `switchboard.toml`: how long the results of agent runs served as MCP tasks
//! (the `io.modelcontextprotocol/tasks` extension) are kept, and how often clients are asked
//! to poll.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::Error;

/// `[tasks]`, as written. Every key is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// Seconds a task's result (or failure) is kept after the task ends; `tasks/get` then
    /// answers as for an unknown task. A running task is never dropped.
    pub ttl_secs: u64,
    /// The poll interval suggested to clients (`pollIntervalMs`), in milliseconds.
    pub poll_interval_ms: u64,
}

impl Default for TasksConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 3600,
            poll_interval_ms: 1000,
        }
    }
}

/// `[tasks]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TasksSpec {
    /// How long a task is kept after it ends.
    pub ttl: Duration,
    /// The suggested poll interval.
    pub poll_interval: Duration,
}

impl Default for TasksSpec {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Validates `[tasks]` of `file`.
///
/// # Errors
/// Each key out of range, named.
pub fn validate(file: &Path, c: TasksConfig) -> Result<TasksSpec, Vec<Error>> {
    let mut errors = Vec::new();
    if c.ttl_secs == 0 {
        errors.push(Error::key(
            file,
            "tasks.ttl_secs",
            "must be at least 1 (seconds a finished task's result is kept)",
        ));
    }
    if c.poll_interval_ms == 0 || c.poll_interval_ms > 60_000 {
        errors.push(Error::key(
            file,
            "tasks.poll_interval_ms",
            "must be between 1 and 60000",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(TasksSpec {
        ttl: Duration::from_secs(c.ttl_secs),
        poll_interval: Duration::from_millis(c.poll_interval_ms),
    })
}
