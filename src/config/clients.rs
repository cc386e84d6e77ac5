//! `[limits]` and `[[clients]]` of `switchboard.toml`: who may call which agent, how much.

use std::num::NonZeroU32;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{Error, Vars};

/// `[limits]`: the defaults every client gets unless its own entry overrides them. A key
/// left out takes its default ([`LimitsConfig::resolved`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// MCP POSTs (tools/call, tools/list, ...) per minute, sustained. Default 600.
    pub requests_per_minute: Option<u32>,
    /// MCP POSTs allowed in a burst above the sustained rate. Default 60.
    pub burst: Option<u32>,
    /// Calls that start an LLM run (an agent tool) per minute. Default 30.
    pub agent_runs_per_minute: Option<u32>,
    /// Concurrent sessions. Default 100.
    pub max_sessions: Option<u32>,
}

/// The defaults of `[limits]`, in its key order.
const DEFAULT_LIMITS: [u32; 4] = [600, 60, 30, 100];

impl LimitsConfig {
    /// Each key's value, or its default: `[requests_per_minute, burst,
    /// agent_runs_per_minute, max_sessions]`.
    pub fn resolved(&self) -> [u32; 4] {
        let [rpm, burst, runs, sessions] = DEFAULT_LIMITS;
        [
            self.requests_per_minute.unwrap_or(rpm),
            self.burst.unwrap_or(burst),
            self.agent_runs_per_minute.unwrap_or(runs),
            self.max_sessions.unwrap_or(sessions),
        ]
    }

    /// Whether open access meters loopback peers' requests: only when `[limits]` sets
    /// `requests_per_minute` or `burst` itself. Left to the defaults, a peer on loopback
    /// (with open access, one developer on their own machine) is not held to them.
    pub fn meters_loopback(&self) -> bool {
        self.requests_per_minute.is_some() || self.burst.is_some()
    }
}

/// One `[[clients]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client's name: shown in logs, the admin API and metrics instead of its token.
    pub name: String,
    /// Its bearer token (use `${VAR}`), or ...
    pub token: Option<SecretString>,
    /// ... the SHA-256 of its token, in hex, so the file holds no secret.
    pub token_sha256: Option<String>,
    /// The agents it may use: names, or `["*"]` for all.
    pub agents: Vec<String>,
    /// Overrides `[limits] requests_per_minute`.
    pub requests_per_minute: Option<u32>,
    /// Overrides `[limits] burst`.
    pub burst: Option<u32>,
    /// Overrides `[limits] agent_runs_per_minute`.
    pub agent_runs_per_minute: Option<u32>,
    /// Overrides `[limits] max_sessions`.
    pub max_sessions: Option<u32>,
}

/// Validated limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sustained MCP POSTs per minute.
    pub requests_per_minute: NonZeroU32,
    /// Burst of MCP POSTs.
    pub burst: NonZeroU32,
    /// LLM runs per minute.
    pub agent_runs_per_minute: NonZeroU32,
    /// Concurrent sessions.
    pub max_sessions: u32,
}

impl Default for Limits {
    fn default() -> Self {
        let [rpm, burst, runs, sessions] = DEFAULT_LIMITS;
        Self {
            requests_per_minute: NonZeroU32::new(rpm).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
            agent_runs_per_minute: NonZeroU32::new(runs).unwrap_or(NonZeroU32::MIN),
            max_sessions: sessions,
        }
    }
}

/// Which agents a client may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAccess {
    /// Every agent (`["*"]`).
    All,
    /// These agents.
    Only(Vec<String>),
}

impl AgentAccess {
    /// Whether `agent` is allowed.
    pub fn allows(&self, agent: &str) -> bool {
        match self {
            AgentAccess::All => true,
            AgentAccess::Only(names) => names.iter().any(|n| n == agent),
        }
    }
}

/// A validated client.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Its name.
    pub name: String,
    /// SHA-256 of its token.
    pub token_digest: [u8; 32],
    /// The agents it may use.
    pub agents: AgentAccess,
    /// Its limits.
    pub limits: Limits,
    /// Where its limits are set, as config errors name keys: `clients[<i>]` for an entry of
    /// the file, `limits` for `MCP_SECRET_TOKEN`'s client (it has no entry).
    pub limits_key: String,
}

/// The name of the client `MCP_SECRET_TOKEN` defines (the seed's variable).
pub const SEED_CLIENT: &str = "default";

fn positive(file: &Path, key: &str, v: u32, errors: &mut Vec<Error>) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap_or_else(|| {
        errors.push(Error::key(file, key, "must be at least 1"));
        NonZeroU32::MIN
    })
}

/// Validates `[limits]` and `[[clients]]`; adds the `MCP_SECRET_TOKEN` client when set.
///
/// # Errors
/// Every problem, naming `file` and the key.
pub fn validate(
    file: &Path,
    limits: &LimitsConfig,
    clients: &[ClientConfig],
    vars: &Vars,
) -> Result<(Limits, Vec<ClientSpec>), Vec<Error>> {
    let mut errors = Vec::new();
    let [
        requests_per_minute,
        burst,
        agent_runs_per_minute,
        max_sessions,
    ] = limits.resolved();
    let defaults = Limits {
        requests_per_minute: positive(
            file,
            "limits.requests_per_minute",
            requests_per_minute,
            &mut errors,
        ),
        burst: positive(file, "limits.burst", burst, &mut errors),
        agent_runs_per_minute: positive(
            file,
            "limits.agent_runs_per_minute",
            agent_runs_per_minute,
            &mut errors,
        ),
        max_sessions,
    };
    let mut specs: Vec<ClientSpec> = Vec::with_capacity(clients.len() + 1);
    for (i, c) in clients.iter().enumerate() {
        let key = |k: &str| format!("clients[{i}].{k}");
        let valid_name = !c.name.is_empty()
            && c.name.len() <= 64
            && c.name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch));
        if !valid_name {
            errors.push(Error::key(file, key("name"), format!("{:?} is not a valid client name: use 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'", c.name)));
        } else if let Some(j) = specs.iter().position(|s| s.name == c.name) {
            errors.push(Error::key(
                file,
                key("name"),
                format!(
                    "duplicate client name {:?}: clients[{j}] has it too",
                    c.name
                ),
            ));
        }
        let digest = match (&c.token, &c.token_sha256) {
            (Some(t), None) if !t.expose_secret().trim().is_empty() => {
                Some(crate::auth::digest(t.expose_secret().trim()))
            }
            (Some(_), None) => {
                errors.push(Error::key(
                    file,
                    key("token"),
                    "is empty (is its variable set?)",
                ));
                None
            }
            (None, Some(hex)) => match parse_sha256(hex) {
                Some(d) => Some(d),
                None => {
                    errors.push(Error::key(file, key("token_sha256"), "must be 64 hex digits (the SHA-256 of the token, e.g. from `printf %s TOKEN | sha256sum`)"));
                    None
                }
            },
            (Some(_), Some(_)) => {
                errors.push(Error::key(
                    file,
                    key("token"),
                    "give token or token_sha256, not both",
                ));
                None
            }
            (None, None) => {
                errors.push(Error::key(
                    file,
                    key("token"),
                    "missing: every client needs token or token_sha256",
                ));
                None
            }
        };
        if let Some(d) = digest
            && let Some(other) = specs.iter().find(|s| s.token_digest == d)
        {
            errors.push(Error::key(
                file,
                key("token"),
                format!(
                    "is the same token as client {:?}; each client needs its own",
                    other.name
                ),
            ));
        }
        if c.agents.is_empty() {
            errors.push(Error::key(
                file,
                key("agents"),
                "is empty: list agent names, or [\"*\"] for all",
            ));
        }
        let agents = if c.agents.iter().any(|a| a == "*") {
            AgentAccess::All
        } else {
            AgentAccess::Only(c.agents.clone())
        };
        let limits = Limits {
            requests_per_minute: positive(
                file,
                &key("requests_per_minute"),
                c.requests_per_minute.unwrap_or(requests_per_minute),
                &mut errors,
            ),
            burst: positive(file, &key("burst"), c.burst.unwrap_or(burst), &mut errors),
            agent_runs_per_minute: positive(
                file,
                &key("agent_runs_per_minute"),
                c.agent_runs_per_minute.unwrap_or(agent_runs_per_minute),
                &mut errors,
            ),
            max_sessions: c.max_sessions.unwrap_or(max_sessions),
        };
        specs.push(ClientSpec {
            name: c.name.clone(),
            token_digest: digest.unwrap_or([0; 32]),
            agents,
            limits,
            limits_key: format!("clients[{i}]"),
        });
    }
    if let Some(token) = vars
        .get("MCP_SECRET_TOKEN")
        .filter(|t| !t.trim().is_empty())
    {
        let digest = crate::auth::digest(token.trim());
        if specs.iter().any(|s| s.name == SEED_CLIENT) {
            errors.push(Error::key(file, "clients", format!("a client is named {SEED_CLIENT:?}, the name MCP_SECRET_TOKEN's client takes; rename it or unset MCP_SECRET_TOKEN")));
        } else if let Some(other) = specs.iter().find(|s| s.token_digest == digest) {
            errors.push(Error::key(
                file,
                "clients",
                format!(
                    "MCP_SECRET_TOKEN is the same token as client {:?}",
                    other.name
                ),
            ));
        } else {
            specs.push(ClientSpec {
                name: SEED_CLIENT.to_owned(),
                token_digest: digest,
                agents: AgentAccess::All,
                limits: defaults,
                limits_key: "limits".to_owned(),
            });
        }
    }
    if errors.is_empty() {
        Ok((defaults, specs))
    } else {
        Err(errors)
    }
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn client(name: &str, token: &str) -> ClientConfig {
        ClientConfig {
            name: name.into(),
            token: Some(token.to_owned().into()),
            token_sha256: None,
            agents: vec!["*".into()],
            requests_per_minute: None,
            burst: None,
            agent_runs_per_minute: None,
            max_sessions: None,
        }
    }

    #[test]
    fn clients_get_defaults_overrides_and_the_seed_client() {
        let mut a = client("a", "tok-a");
        a.requests_per_minute = Some(5);
        let mut b = client("b", "ignored");
        b.token = None;
        b.token_sha256 = Some(
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".into(), // sha256("foo")
        );
        b.agents = vec!["servicenow".into()];
        let vars: Vars = [("MCP_SECRET_TOKEN".to_owned(), "seed".to_owned())].into();
        let (defaults, specs) = validate(
            Path::new("sb.toml"),
            &LimitsConfig::default(),
            &[a, b],
            &vars,
        )
        .unwrap();
        assert_eq!(defaults.requests_per_minute.get(), 600);
        assert_eq!(specs[0].limits.requests_per_minute.get(), 5);
        assert_eq!(specs[0].limits.burst.get(), 60);
        assert_eq!(specs[1].token_digest, crate::auth::digest("foo"));
        assert!(specs[1].agents.allows("servicenow") && !specs[1].agents.allows("helpdesk"));
        assert_eq!(specs[2].name, SEED_CLIENT);
        assert!(specs[2].agents.allows("anything"));
    }

    #[test]
    fn every_client_problem_is_reported_with_its_key() {
        let mut dup = client("a", "same");
        dup.agents = vec![];
        let mut bad = client("bad name!", "x");
        bad.token_sha256 = Some("abc".into());
        let mut zero = client("z", "zz");
        zero.burst = Some(0);
        let errors = validate(
            Path::new("sb.toml"),
            &LimitsConfig::default(),
            &[client("a", "same"), dup, bad, zero],
            &Vars::new(),
        )
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for expected in [
            "sb.toml: clients[1].name: duplicate client name \"a\"",
            "sb.toml: clients[1].token: is the same token as client \"a\"",
            "sb.toml: clients[1].agents: is empty",
            "sb.toml: clients[2].name: \"bad name!\" is not a valid client name",
            "sb.toml: clients[2].token: give token or token_sha256, not both",
            "sb.toml: clients[3].burst: must be at least 1",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(expected)),
                "missing {expected:?} in {text:#?}"
            );
        }
    }
}
