//! `[[servers]]` of an agent file: an upstream MCP server federated into the agent's own
//! MCP server, reached by URL (Streamable HTTP) or started over stdio (`command`); its
//! prefix and its allow/deny filters; validated.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::tools::upstream::{
    DEFAULT_MAX_PROCESSES, DEFAULT_SESSION_IDLE_SECS, ProcessMode, UpstreamToolConfig,
};

/// `[[servers]]`: exactly one of `url` and `command`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The upstream server's Streamable HTTP URL, e.g. `http://localhost:9000/mcp`.
    pub url: Option<String>,
    /// Headers sent with every request to `url` (e.g. `Authorization = "Bearer ${TOKEN}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The program the gateway starts (one process per MCP session) and speaks MCP to over
    /// stdio, instead of `url`.
    pub command: Option<String>,
    /// `command`'s arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Variables set for `command`, besides the few it inherits (`PATH`, `HOME`, ...).
    /// Values may carry secrets: never logged or shown.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `command`'s working directory; default: the gateway's.
    pub cwd: Option<String>,
    /// `command`: most processes running at once (one per MCP session that uses the
    /// server); a session that would need one more gets an error naming this key. Default 20.
    pub max_processes: Option<usize>,
    /// `command`: a session's process unused this long (no request of the session to it in
    /// flight or ended since) is ended; the session's next request starts another. Default
    /// 300.
    pub session_idle_secs: Option<u64>,
    /// Prepended to the names of the upstream's tools and prompts (e.g. `"every_"`), so that
    /// two servers' names do not clash. Resource URIs are never changed.
    #[serde(default)]
    pub prefix: String,
    /// Only these of the upstream's tools, prompts, resources and resource templates (tool
    /// and prompt names before the prefix; resource URIs; templates' URI templates). An
    /// entry ending in `*` matches every name that begins with the rest. Default: all.
    pub allow: Option<Vec<String>>,
    /// None of these (same matching as `allow`; applied after it).
    #[serde(default)]
    pub deny: Vec<String>,
    /// Timeout of one request to the upstream (a tool call, a prompt, a read), connecting
    /// included, in seconds. Default 60.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    60
}

/// Redacts the header and `env` values: they usually carry credentials.
impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.as_upstream(), f)
    }
}

impl ServerConfig {
    /// Checks what serde cannot: `(key, message)` pairs. The transport keys are checked as
    /// those of a `[[tools]] type = "mcp"` entry are; `deny` entries must not be empty.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = self.as_upstream().validate();
        match (self.session_idle_secs, self.command.is_some()) {
            (Some(_), false) if self.url.is_some() => errors.push((
                "session_idle_secs".to_owned(),
                "applies only with command (an upstream the gateway starts over stdio), not with url".to_owned(),
            )),
            (Some(0), true) => errors.push((
                "session_idle_secs".to_owned(),
                "must be at least 1".to_owned(),
            )),
            _ => {}
        }
        for (i, name) in self.deny.iter().enumerate() {
            if name.trim().is_empty() {
                errors.push((
                    format!("deny[{i}]"),
                    "a denied name must not be empty".to_owned(),
                ));
            }
        }
        // `allow`'s own message speaks of tools; here it filters prompts and resources too.
        for (key, message) in &mut errors {
            if key.starts_with("allow[") {
                *message = "an allowed name must not be empty".to_owned();
            }
        }
        errors
    }

    /// The same upstream as a `type = "mcp"` tool entry sees it: its transport keys.
    pub(crate) fn as_upstream(&self) -> UpstreamToolConfig {
        UpstreamToolConfig {
            url: self.url.clone(),
            command: self.command.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            // One process per MCP session, always: what `max_processes` bounds.
            process: if self.command.is_some() {
                ProcessMode::PerSession
            } else {
                ProcessMode::PerAgent
            },
            max_processes: self.max_processes,
            headers: self.headers.clone(),
            prefix: self.prefix.clone(),
            allow: self.allow.clone(),
            timeout_secs: self.timeout_secs,
            ..UpstreamToolConfig::default()
        }
    }

    /// `command`: most processes at once.
    pub fn max_processes(&self) -> usize {
        self.max_processes.unwrap_or(DEFAULT_MAX_PROCESSES).max(1)
    }

    /// `command`: how long a session's process may go unused.
    pub fn session_idle(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.session_idle_secs
                .unwrap_or(DEFAULT_SESSION_IDLE_SECS)
                .max(1),
        )
    }

    /// How logs and errors name the upstream: its URL, or its command.
    pub fn target(&self) -> String {
        self.as_upstream().target()
    }

    /// Whether `allow` and `deny` let `name` (a tool or prompt name before the prefix, a
    /// resource URI or a URI template) through.
    pub fn admits(&self, name: &str) -> bool {
        let matches = |pattern: &String| match pattern.strip_suffix('*') {
            Some(head) => name.starts_with(head),
            None => name == pattern,
        };
        self.allow
            .as_ref()
            .is_none_or(|allow| allow.iter().any(matches))
            && !self.deny.iter().any(matches)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ServerConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn allow_and_deny_match_exact_names_and_star_prefixes() {
        let config = parse(
            "url = \"http://localhost:1/mcp\"\nallow = [\"get-*\", \"echo\"]\ndeny = [\"get-env\"]",
        );
        for (name, admitted) in [
            ("echo", true),
            ("get-sum", true),
            ("get-env", false),
            ("echo2", false),
            ("trigger-sampling-request", false),
        ] {
            assert_eq!(config.admits(name), admitted, "{name}");
        }
        let open = parse("url = \"http://localhost:1/mcp\"");
        assert!(open.admits("anything"));
    }

    #[test]
    fn bad_entries_are_named_by_key() {
        let config = parse(
            "command = \"\"\nheaders = { X = \"1\" }\ndeny = [\" \"]\nallow = [\"\"]\nprefix = \"a b\"\ntimeout_secs = 0\nmax_processes = 0\nsession_idle_secs = 0",
        );
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        for key in [
            "command",
            "headers",
            "deny[0]",
            "allow[0]",
            "prefix",
            "timeout_secs",
            "max_processes",
            "session_idle_secs",
        ] {
            assert!(keys.contains(&key.to_owned()), "{key} in {keys:?}");
        }
        let both = parse("url = \"http://localhost:1/mcp\"\ncommand = \"x\"");
        assert_eq!(both.validate()[0].0, "command");
        let http =
            parse("url = \"http://localhost:1/mcp\"\nmax_processes = 2\nsession_idle_secs = 5");
        let keys: Vec<String> = http.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["max_processes", "session_idle_secs"]);
        let fine = parse("command = \"x\"\nmax_processes = 2\nsession_idle_secs = 5");
        assert!(fine.validate().is_empty(), "{:?}", fine.validate());
    }
}
