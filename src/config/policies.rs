//! `[[policies]]` of `switchboard.toml`: which caller may call which tool.
//!
//! Each rule is `effect = "allow"` or `"deny"`, matches callers by any of `subjects`,
//! `clients`, `scopes` and `groups` (a caller matches when it has any one of the values
//! listed), and covers `tools`: globs `<agent>/<tool>` over the tool names clients see (the
//! agent tool, inner tools and upstream MCP tools alike; `*` is any run of characters).
//!
//! Evaluation ([`Policies::decide`]): with no rule, every tool is allowed (open as before).
//! Once any rule exists, a tool is allowed only when an `allow` rule matching the caller
//! covers it and no `deny` rule matching the caller does: deny wins over allow, and what no
//! rule allows is denied.

use std::path::Path;

use serde::Deserialize;

use super::Error;

/// One `[[policies]]` entry, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Optional name, shown in refusals next to the rule's key.
    #[serde(default)]
    pub name: Option<String>,
    /// `allow` or `deny`.
    pub effect: Effect,
    /// OAuth subjects (`sub`, or the claim configured).
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Static clients' names (`[[clients]] name`) or OAuth client ids.
    #[serde(default)]
    pub clients: Vec<String>,
    /// OAuth scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// OAuth groups or roles.
    #[serde(default)]
    pub groups: Vec<String>,
    /// `<agent>/<tool>` globs.
    pub tools: Vec<String>,
}

/// What a rule does to the tools it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The caller may call them.
    Allow,
    /// The caller may not, whatever else allows them.
    Deny,
}

impl Effect {
    /// `allow` or `deny`, as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// A `<agent>/<tool>` glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolGlob {
    /// As written.
    pub text: String,
    /// The agent part.
    pub agent: String,
    /// The tool part.
    pub tool: String,
}

impl ToolGlob {
    /// `<agent>/<tool>`, each part non-empty.
    ///
    /// # Errors
    /// What is wrong with `text`, for a human.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hint = "expected <agent>/<tool>, e.g. \"servicenow/*_incident\" or \"*/update_*\"";
        let Some((agent, tool)) = text.split_once('/') else {
            return Err(format!("{text:?} has no '/': {hint}"));
        };
        if agent.is_empty() || tool.is_empty() || tool.contains('/') {
            return Err(format!("{text:?} is not a tool glob: {hint}"));
        }
        if text.chars().any(char::is_whitespace) {
            return Err(format!("{text:?} contains whitespace: {hint}"));
        }
        Ok(Self {
            text: text.to_owned(),
            agent: agent.to_owned(),
            tool: tool.to_owned(),
        })
    }

    /// Whether the agent part matches agent `name`.
    pub fn matches_agent(&self, name: &str) -> bool {
        glob_match(&self.agent, name)
    }

    /// Whether it covers tool `tool` of agent `agent`.
    pub fn matches(&self, agent: &str, tool: &str) -> bool {
        glob_match(&self.agent, agent) && glob_match(&self.tool, tool)
    }
}

/// `*` matches any run of characters (none included); everything else itself.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its key in the file: `policies[2]`.
    pub key: String,
    /// Its name, if given.
    pub name: Option<String>,
    /// Allow or deny.
    pub effect: Effect,
    /// Subjects it matches.
    pub subjects: Vec<String>,
    /// Client names or OAuth client ids it matches.
    pub clients: Vec<String>,
    /// Scopes it matches.
    pub scopes: Vec<String>,
    /// Groups it matches.
    pub groups: Vec<String>,
    /// The tools it covers.
    pub tools: Vec<ToolGlob>,
}

impl Policy {
    /// Whether the rule is about `who`.
    fn matches(&self, who: &Who<'_>) -> bool {
        let has = |list: &[String], value: Option<&str>| {
            value.is_some_and(|v| list.iter().any(|x| x == v))
        };
        has(&self.subjects, who.subject)
            || has(&self.clients, who.client)
            || has(&self.clients, who.client_id)
            || who.scopes.iter().any(|s| self.scopes.contains(s))
            || who.groups.iter().any(|g| self.groups.contains(g))
    }

    fn covers(&self, agent: &str, tool: &str) -> bool {
        self.tools.iter().any(|g| g.matches(agent, tool))
    }

    /// `policies[1] "no-writes" (deny servicenow/*_incident, */update_*)`.
    pub fn describe(&self) -> String {
        let name = self
            .name
            .as_deref()
            .map(|n| format!(" {n:?}"))
            .unwrap_or_default();
        let tools: Vec<&str> = self.tools.iter().map(|g| g.text.as_str()).collect();
        format!(
            "{}{name} ({} {})",
            self.key,
            self.effect.as_str(),
            tools.join(", ")
        )
    }
}

/// Who is calling, as the rules see it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Who<'a> {
    /// The OAuth subject.
    pub subject: Option<&'a str>,
    /// The static client's name.
    pub client: Option<&'a str>,
    /// The OAuth client id.
    pub client_id: Option<&'a str>,
    /// The OAuth scopes.
    pub scopes: &'a [String],
    /// The OAuth groups.
    pub groups: &'a [String],
}

impl Who<'_> {
    /// `client "helpdesk-app"`, `subject "alice"`, or `an anonymous caller`.
    pub fn describe(&self) -> String {
        match (self.client, self.subject) {
            (Some(c), _) => format!("client {c:?}"),
            (None, Some(s)) => format!("subject {s:?}"),
            (None, None) => "an anonymous caller".to_owned(),
        }
    }
}

/// What the rules say of one call.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'a> {
    /// Allowed (by a rule, or because there is none).
    Allowed,
    /// Denied by this rule.
    Denied(&'a Policy),
    /// Rules exist and none allows it.
    NotAllowed,
}

/// A call the rules do not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What was refused, to whom and by which rule (or that none allows it).
    pub message: String,
    /// The deciding rule's key (`policies[1]`); `None` when no rule allows the call.
    pub rule: Option<String>,
}

/// Every rule, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policies {
    rules: Vec<Policy>,
}

impl Policies {
    /// The rules.
    pub fn rules(&self) -> &[Policy] {
        &self.rules
    }

    /// Whether there is no rule (then everything is allowed).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `who` may call `tool` of `agent`: see the module's documentation.
    pub fn decide(&self, who: &Who<'_>, agent: &str, tool: &str) -> Decision<'_> {
        self.evaluate(who, agent, tool).0
    }

    /// The decision, and the first `allow` rule that covers the call (when allowed by one).
    fn evaluate(&self, who: &Who<'_>, agent: &str, tool: &str) -> (Decision<'_>, Option<&Policy>) {
        if self.rules.is_empty() {
            return (Decision::Allowed, None);
        }
        let mut allowed_by = None;
        for rule in &self.rules {
            if !rule.matches(who) || !rule.covers(agent, tool) {
                continue;
            }
            match rule.effect {
                Effect::Deny => return (Decision::Denied(rule), None),
                Effect::Allow => {
                    allowed_by.get_or_insert(rule);
                }
            }
        }
        match allowed_by {
            Some(rule) => (Decision::Allowed, Some(rule)),
            None => (Decision::NotAllowed, None),
        }
    }

    /// Whether `who` may call `tool` of `agent`: the key of the rule that allows it (`None`
    /// with no rules); if not, the refusal naming the rule.
    ///
    /// # Errors
    /// [`Refused`] when the rules do not allow the call.
    pub fn permit(
        &self,
        who: &Who<'_>,
        agent: &str,
        tool: &str,
    ) -> Result<Option<String>, Refused> {
        let (decision, allowed_by) = self.evaluate(who, agent, tool);
        let rule = match decision {
            Decision::Allowed => return Ok(allowed_by.map(|r| r.key.clone())),
            Decision::Denied(rule) => Some(rule.key.clone()),
            Decision::NotAllowed => None,
        };
        Err(Refused {
            message: Self::refusal(decision, who, agent, tool),
            rule,
        })
    }

    /// Whether `who` may call `tool` of `agent` (for listings: nothing to explain).
    pub fn allows(&self, who: &Who<'_>, agent: &str, tool: &str) -> bool {
        matches!(self.decide(who, agent, tool), Decision::Allowed)
    }

    /// The refusal's message for a call `decide` did not allow, naming the rule.
    pub fn refusal(decision: Decision<'_>, who: &Who<'_>, agent: &str, tool: &str) -> String {
        match decision {
            Decision::Allowed => String::new(),
            Decision::Denied(rule) => format!(
                "tool {tool:?} of agent {agent:?} is not allowed for {}: denied by {} in switchboard.toml",
                who.describe(),
                rule.describe()
            ),
            Decision::NotAllowed => format!(
                "tool {tool:?} of agent {agent:?} is not allowed for {}: no [[policies]] rule in switchboard.toml allows {agent}/{tool} for this caller (once any rule exists, what no rule allows is denied)",
                who.describe()
            ),
        }
    }
}

/// Validates `[[policies]]` (the agents the globs name are checked against the loaded
/// agents by `switchboard check`, see [`unknown_agents`]).
///
/// # Errors
/// Every problem, naming `file` and the key.
pub fn validate(file: &Path, configs: Vec<PolicyConfig>) -> Result<Policies, Vec<Error>> {
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    for (i, c) in configs.into_iter().enumerate() {
        let key = format!("policies[{i}]");
        if c.subjects.is_empty()
            && c.clients.is_empty()
            && c.scopes.is_empty()
            && c.groups.is_empty()
        {
            errors.push(Error::key(
                file,
                key.clone(),
                "the rule matches no caller: give at least one of subjects, clients, scopes, groups",
            ));
        }
        for (field, list) in [
            ("subjects", &c.subjects),
            ("clients", &c.clients),
            ("scopes", &c.scopes),
            ("groups", &c.groups),
        ] {
            for (j, v) in list.iter().enumerate() {
                if v.trim().is_empty() {
                    errors.push(Error::key(
                        file,
                        format!("{key}.{field}[{j}]"),
                        "empty: it would match no caller",
                    ));
                }
            }
        }
        if c.tools.is_empty() {
            errors.push(Error::key(
                file,
                format!("{key}.tools"),
                "empty: name the tools the rule covers as <agent>/<tool> globs, e.g. \"servicenow/*_incident\"",
            ));
        }
        let mut tools = Vec::new();
        for (j, t) in c.tools.iter().enumerate() {
            match ToolGlob::parse(t) {
                Ok(g) => tools.push(g),
                Err(e) => errors.push(Error::key(file, format!("{key}.tools[{j}]"), e)),
            }
        }
        rules.push(Policy {
            key,
            name: c.name.filter(|n| !n.trim().is_empty()),
            effect: c.effect,
            subjects: c.subjects,
            clients: c.clients,
            scopes: c.scopes,
            groups: c.groups,
            tools,
        });
    }
    if errors.is_empty() {
        Ok(Policies { rules })
    } else {
        Err(errors)
    }
}

/// The globs whose agent part matches none of `agents`: an error each, naming `file` and
/// the key.
pub fn unknown_agents(policies: &Policies, agents: &[&str], file: &Path) -> Vec<Error> {
    let mut errors = Vec::new();
    let known = if agents.is_empty() {
        "none".to_owned()
    } else {
        agents.join(", ")
    };
    for rule in &policies.rules {
        for (j, glob) in rule.tools.iter().enumerate() {
            if !agents.iter().any(|a| glob.matches_agent(a)) {
                errors.push(Error::key(
                    file,
                    format!("{}.tools[{j}]", rule.key),
                    format!(
                        "{:?}: no loaded agent is named {:?}; the agents are {known}",
                        glob.text, glob.agent
                    ),
                ));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_documented() {
        for (p, t, m) in [
            ("*_incident", "create_incident", true),
            ("*_incident", "incident", false),
            ("update_*", "update_incident", true),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("helpdesk", "helpdesk", true),
            ("helpdesk", "helpdesk2", false),
        ] {
            assert_eq!(glob_match(p, t), m, "{p} vs {t}");
        }
    }

    fn rule(effect: Effect, clients: &[&str], tools: &[&str]) -> PolicyConfig {
        PolicyConfig {
            name: None,
            effect,
            subjects: Vec::new(),
            clients: clients.iter().map(|s| s.to_string()).collect(),
            scopes: Vec::new(),
            groups: Vec::new(),
            tools: tools.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn deny_wins_and_what_no_rule_allows_is_denied() {
        let file = Path::new("switchboard.toml");
        let p = validate(
            file,
            vec![
                rule(Effect::Allow, &["app"], &["servicenow/*"]),
                rule(Effect::Deny, &["app"], &["*/update_*"]),
            ],
        )
        .unwrap_or_default();
        let who = Who {
            client: Some("app"),
            ..Who::default()
        };
        assert!(matches!(
            p.decide(&who, "servicenow", "get_incident"),
            Decision::Allowed
        ));
        assert!(matches!(
            p.decide(&who, "servicenow", "update_incident"),
            Decision::Denied(r) if r.key == "policies[1]"
        ));
        assert!(matches!(
            p.decide(&who, "helpdesk", "get_incident"),
            Decision::NotAllowed
        ));
        let other = Who {
            client: Some("other"),
            ..Who::default()
        };
        assert!(matches!(
            p.decide(&other, "servicenow", "get_incident"),
            Decision::NotAllowed
        ));
        assert!(matches!(
            Policies::default().decide(&other, "x", "y"),
            Decision::Allowed
        ));
    }

    #[test]
    fn empty_matchers_and_bad_globs_are_errors() {
        let file = Path::new("switchboard.toml");
        let errors = validate(file, vec![rule(Effect::Allow, &[], &["nope", "a/b/c"])])
            .err()
            .unwrap_or_default();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].starts_with("switchboard.toml: policies[0]: the rule matches no caller"));
        assert!(text[1].starts_with("switchboard.toml: policies[0].tools[0]:"));
        assert!(text[2].starts_with("switchboard.toml: policies[0].tools[1]:"));
    }
}
