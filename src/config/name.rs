//! `AgentName`: an agent's name, which is also its file stem and its URL segment.

use std::fmt;
use std::sync::Arc;

/// A valid agent name: 1–64 characters of `[a-z0-9-]`, not starting or ending with `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentName(Arc<str>);

impl AgentName {
    /// Checks `name`.
    ///
    /// # Errors
    /// A message saying what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, String> {
        let valid_chars = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if name.is_empty() || name.len() > 64 || !valid_chars {
            return Err(format!(
                "invalid agent name {name:?}: use 1-64 characters of a-z, 0-9 and '-' (the file name is the agent's name and URL segment)"
            ));
        }
        if name.starts_with('-') || name.ends_with('-') {
            return Err(format!(
                "invalid agent name {name:?}: it may not start or end with '-'"
            ));
        }
        Ok(Self(name.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared string (cheap to clone).
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for AgentName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn url_safe_names_pass_and_others_fail() {
        for ok in ["servicenow", "a", "servicenow-live", "agent-2"] {
            assert_eq!(AgentName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "ServiceNow",
            "a_b",
            "a.b",
            "-a",
            "a-",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(AgentName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
