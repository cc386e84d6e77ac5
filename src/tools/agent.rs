//! `type = "agent"`: another agent of this gateway as one tool (in-process, no HTTP hop).
//!
//! Also home of the agent tool's shape, shared with the agent exposed as itself over MCP:
//! MAF's `as_mcp_server()` contract, one `task` string in, the agent's answer out.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool};
use serde::Deserialize;
use serde_json::json;

use super::{AgentRunner, CallContext, Error};

/// `[[tools]] type = "agent"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentToolConfig {
    /// The agent to run (its name, i.e. its file stem).
    pub agent: String,
    /// The tool's name as this agent's model sees it. Default: the agent's name.
    pub name: Option<String>,
    /// The tool's description. Default: the agent's description.
    pub description: Option<String>,
}

impl AgentToolConfig {
    /// The tool's name.
    pub fn tool_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.agent)
    }

    /// Checks the names: `(key, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if let Err(e) = crate::config::AgentName::parse(&self.agent) {
            errors.push(("agent".to_owned(), e));
        }
        if let Some(name) = &self.name
            && !valid_tool_name(name)
        {
            errors.push((
                "name".to_owned(),
                format!("{name:?} is not a valid tool name: use 1-64 characters of A-Z, a-z, 0-9, '_' and '-'"),
            ));
        }
        errors
    }
}

fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The MCP definition of an agent as a tool: `{"task": string}` in, exactly as MAF does.
pub fn task_tool(name: &str, description: &str) -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {"task": {"type": "string", "description": format!("Task for {name}")}},
        "required": ["task"],
        "additionalProperties": false
    });
    let schema = match schema {
        serde_json::Value::Object(map) => map,
        _ => JsonObject::new(),
    };
    Tool::new(name.to_owned(), description.to_owned(), Arc::new(schema))
}

/// The `task` of an agent tool call.
///
/// # Errors
/// [`Error::InvalidArguments`] unless `args` is exactly `{"task": "<non-empty string>"}`.
pub fn parse_task(mut args: JsonObject) -> Result<String, Error> {
    let task = match args.remove("task") {
        Some(serde_json::Value::String(task)) if !task.trim().is_empty() => task,
        Some(serde_json::Value::String(_)) => {
            return Err(Error::InvalidArguments("task must not be empty".into()));
        }
        Some(other) => {
            return Err(Error::InvalidArguments(format!(
                "task must be a string, got {other}"
            )));
        }
        None => return Err(Error::InvalidArguments("missing field `task`".into())),
    };
    if let Some(extra) = args.keys().next() {
        return Err(Error::InvalidArguments(format!(
            "unknown field `{extra}`: the only argument is `task`"
        )));
    }
    Ok(task)
}

/// A built `type = "agent"` tool.
pub struct AgentTool {
    target: String,
    definition: Tool,
    runner: Arc<dyn AgentRunner>,
}

impl AgentTool {
    /// The tool for `config`, describing the target as `target_description` unless the
    /// config overrides it.
    pub fn new(
        config: &AgentToolConfig,
        target_description: String,
        runner: Arc<dyn AgentRunner>,
    ) -> Self {
        let description = config.description.clone().unwrap_or(target_description);
        Self {
            target: config.agent.clone(),
            definition: task_tool(config.tool_name(), &description),
            runner,
        }
    }

    /// Its MCP definition.
    pub fn definition(&self) -> Tool {
        self.definition.clone()
    }

    /// Runs the target agent on the call's `task`.
    ///
    /// # Errors
    /// Invalid arguments, or the target's run failing.
    pub async fn call(&self, args: JsonObject, ctx: &CallContext) -> Result<String, Error> {
        let task = parse_task(args)?;
        self.runner.run_agent(&self.target, task, ctx.clone()).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn task_tool_schema_is_exactly_mafs() {
        let tool = task_tool("servicenow", "Manages incidents.");
        assert_eq!(
            serde_json::Value::Object((*tool.input_schema).clone()),
            json!({"type":"object","properties":{"task":{"type":"string","description":"Task for servicenow"}},"required":["task"],"additionalProperties":false})
        );
        assert_eq!(tool.description.as_deref(), Some("Manages incidents."));
    }

    #[test]
    fn task_arguments_are_checked() {
        let ok = parse_task(json!({"task": "do it"}).as_object().unwrap().clone()).unwrap();
        assert_eq!(ok, "do it");
        for bad in [
            json!({}),
            json!({"task": 1}),
            json!({"task": " "}),
            json!({"task": "x", "more": 1}),
        ] {
            assert!(matches!(
                parse_task(bad.as_object().unwrap().clone()),
                Err(Error::InvalidArguments(_))
            ));
        }
    }
}
