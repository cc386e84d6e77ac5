//! `[[approvals]]` of an agent file: which of the agent's tool calls wait for a person.
//!
//! ```toml
//! [[approvals]]
//! tools = ["update_incident"]     # this agent's tool names, or globs (`*_incident`)
//! by = "operator"                 # or "client": the calling user, asked by elicitation
//! when = { state = "Resolved" }   # optional: every key must match the call's arguments
//! timeout_secs = 300              # optional: no answer by then denies the call
//! ```
//!
//! A `when` key is an argument name, or a dotted path into an object argument
//! (`caller.department`); its value is one value or a list of values (any one matches).
//! Strings compare trimmed and case-insensitively, and a number matches the same number
//! written as a string (`urgency = 1` matches `"1"`), since models write both. The first
//! rule (in file order) that covers a call decides who approves it.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::Error;
use super::policies::glob_match;

/// How long a call waits for its approval when `timeout_secs` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest `timeout_secs` accepted (a day): a call cannot wait longer.
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// One `[[approvals]]` entry, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// Tool names or globs, as this agent names its tools.
    pub tools: Vec<String>,
    /// Who approves.
    pub by: Approver,
    /// Conditions on the arguments; all must hold.
    #[serde(default)]
    pub when: Option<toml::Table>,
    /// How long the call waits for a decision; then it is denied.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Shown to the approver above the call's details.
    #[serde(default)]
    pub message: Option<String>,
}

/// Who approves a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approver {
    /// A gateway operator, in the admin API or the console.
    Operator,
    /// The calling user, asked through their MCP client (elicitation).
    Client,
}

impl Approver {
    /// `operator` or `client`, as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Approver::Operator => "operator",
            Approver::Client => "client",
        }
    }
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRule {
    /// Its key in the file: `approvals[0]`.
    pub key: String,
    /// Tool globs.
    pub tools: Vec<String>,
    /// Who approves.
    pub by: Approver,
    /// `(path, accepted values)`: every path must hold one of its values.
    pub when: Vec<(Vec<String>, Vec<Value>)>,
    /// How long a call waits.
    pub timeout: Duration,
    /// Shown to the approver.
    pub message: Option<String>,
}

impl ApprovalRule {
    /// Whether this rule covers a call of `tool` with `args`.
    pub fn covers(&self, tool: &str, args: &serde_json::Map<String, Value>) -> bool {
        self.tools.iter().any(|glob| glob_match(glob, tool))
            && self.when.iter().all(|(path, values)| {
                lookup(args, path).is_some_and(|found| values.iter().any(|v| same(v, found)))
            })
    }

    /// The conditions as one line (`state = "Resolved", urgency in [1, "1"]`), for people.
    pub fn describe_when(&self) -> String {
        self.when
            .iter()
            .map(|(path, values)| match values.as_slice() {
                [one] => format!("{} = {one}", path.join(".")),
                many => format!("{} in {}", path.join("."), Value::from(many.to_vec())),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The first rule of `rules` that covers a call of `tool` with `args`.
pub fn first_covering<'a>(
    rules: &'a [ApprovalRule],
    tool: &str,
    args: &serde_json::Map<String, Value>,
) -> Option<&'a ApprovalRule> {
    rules.iter().find(|r| r.covers(tool, args))
}

fn lookup<'a>(args: &'a serde_json::Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(args.get(first)?, |value, key| value.as_object()?.get(key))
}

/// Whether the call's `found` value is the rule's `wanted` one (see the module's rules).
fn same(wanted: &Value, found: &Value) -> bool {
    match (wanted, found) {
        (Value::String(a), Value::String(b)) => a.trim().eq_ignore_ascii_case(b.trim()),
        (Value::Number(a), Value::String(s)) | (Value::String(s), Value::Number(a)) => {
            s.trim().parse::<f64>().is_ok_and(|n| Some(n) == a.as_f64())
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// Validates every entry of `configs` (from `file`).
///
/// # Errors
/// Every problem, each naming `file` and the key (`approvals[1].when.state`).
pub fn validate(
    file: &Path,
    configs: Vec<ApprovalConfig>,
) -> Result<Vec<ApprovalRule>, Vec<Error>> {
    let mut errors = Vec::new();
    let mut rules = Vec::with_capacity(configs.len());
    for (i, c) in configs.into_iter().enumerate() {
        let key = format!("approvals[{i}]");
        let mut err =
            |k: &str, msg: String| errors.push(Error::key(file, format!("{key}.{k}"), msg));
        if c.tools.is_empty() {
            err(
                "tools",
                "must name at least one tool (a name or a glob)".into(),
            );
        }
        for (j, glob) in c.tools.iter().enumerate() {
            if glob.trim().is_empty() {
                err(&format!("tools[{j}]"), "must not be empty".into());
            } else if glob.contains('/') {
                err(
                    &format!("tools[{j}]"),
                    format!(
                        "{glob:?}: name this agent's tools as it names them, without an agent prefix"
                    ),
                );
            }
        }
        let timeout = match c.timeout_secs {
            None => DEFAULT_TIMEOUT,
            Some(0) => {
                err("timeout_secs", "must be at least 1".into());
                DEFAULT_TIMEOUT
            }
            Some(s) if s > MAX_TIMEOUT_SECS => {
                err(
                    "timeout_secs",
                    format!(
                        "{s} is longer than a day ({MAX_TIMEOUT_SECS}): a call cannot wait that long"
                    ),
                );
                DEFAULT_TIMEOUT
            }
            Some(s) => Duration::from_secs(s),
        };
        let mut when = Vec::new();
        for (name, value) in c.when.unwrap_or_default() {
            let path: Vec<String> = name.split('.').map(str::to_owned).collect();
            if path.iter().any(|p| p.trim().is_empty()) {
                err(
                    &format!("when.{name}"),
                    "an empty part in the argument path".into(),
                );
                continue;
            }
            let values = match value {
                toml::Value::Array(values) => values,
                one => vec![one],
            };
            if values.is_empty() {
                err(
                    &format!("when.{name}"),
                    "an empty list matches nothing: list the values that need approval".into(),
                );
                continue;
            }
            let mut converted = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    toml::Value::String(s) => converted.push(Value::String(s)),
                    toml::Value::Integer(n) => converted.push(Value::from(n)),
                    toml::Value::Float(f) => converted.push(Value::from(f)),
                    toml::Value::Boolean(b) => converted.push(Value::Bool(b)),
                    other => {
                        err(
                            &format!("when.{name}"),
                            format!(
                                "expected a string, number or boolean (or a list of them), found {}",
                                other.type_str()
                            ),
                        );
                    }
                }
            }
            when.push((path, converted));
        }
        rules.push(ApprovalRule {
            key,
            tools: c.tools,
            by: c.by,
            when,
            timeout,
            message: c.message.filter(|m| !m.trim().is_empty()),
        });
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(text: &str) -> Result<Vec<ApprovalRule>, Vec<Error>> {
        #[derive(Deserialize)]
        struct File {
            approvals: Vec<ApprovalConfig>,
        }
        let file: File = toml::from_str(text).unwrap();
        validate(Path::new("agents/desk.toml"), file.approvals)
    }

    fn args(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_rule_covers_its_globs_only_when_every_condition_holds() {
        let r = rules(
            r#"
            [[approvals]]
            tools = ["update_*"]
            by = "operator"
            when = { state = "Resolved", urgency = [1, 2] }
            "#,
        )
        .unwrap();
        let rule = &r[0];
        assert!(rule.covers(
            "update_incident",
            &args(json!({"state": " resolved ", "urgency": "1"}))
        ));
        assert!(rule.covers(
            "update_incident",
            &args(json!({"state": "Resolved", "urgency": 2}))
        ));
        assert!(!rule.covers(
            "update_incident",
            &args(json!({"state": "Resolved", "urgency": 3}))
        ));
        assert!(!rule.covers("update_incident", &args(json!({"state": "Resolved"}))));
        assert!(!rule.covers(
            "create_incident",
            &args(json!({"state": "Resolved", "urgency": 1}))
        ));
        assert_eq!(rule.timeout, DEFAULT_TIMEOUT);
        assert_eq!(
            rule.describe_when(),
            "state = \"Resolved\", urgency in [1,2]"
        );
    }

    #[test]
    fn dotted_paths_reach_into_objects_and_the_first_covering_rule_decides() {
        let r = rules(
            r#"
            [[approvals]]
            tools = ["create_incident"]
            by = "client"
            when = { "caller.vip" = true }
            [[approvals]]
            tools = ["*"]
            by = "operator"
            timeout_secs = 5
            "#,
        )
        .unwrap();
        let vip = args(json!({"caller": {"vip": true}}));
        assert_eq!(
            first_covering(&r, "create_incident", &vip).unwrap().by,
            Approver::Client
        );
        let plain = args(json!({"caller": {"vip": false}}));
        let rule = first_covering(&r, "create_incident", &plain).unwrap();
        assert_eq!(
            (rule.by, rule.timeout),
            (Approver::Operator, Duration::from_secs(5))
        );
    }

    #[test]
    fn mistakes_name_the_key() {
        let errors = rules(
            r#"
            [[approvals]]
            tools = []
            by = "operator"
            [[approvals]]
            tools = ["servicenow/update_incident"]
            by = "client"
            timeout_secs = 0
            when = { state = [], "a..b" = 1, nested = { x = 1 } }
            "#,
        )
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let joined = text.join("\n");
        for key in [
            "approvals[0].tools",
            "approvals[1].tools[0]",
            "approvals[1].timeout_secs",
            "approvals[1].when.state",
            "approvals[1].when.a..b",
            "approvals[1].when.nested",
        ] {
            assert!(
                joined.contains(&format!("{key}:")),
                "{key} missing in:\n{joined}"
            );
        }
        assert!(joined.contains("agents/desk.toml"), "{joined}");
    }
}
