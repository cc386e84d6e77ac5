//! Who a call is for: the [`Identity`] the edge establishes for each request and that travels
//! down, as a value, through the handler into agent runs, delegated agents and tools.
//!
//! Rooms below the edge never look at tokens or clients to find out who is calling: they are
//! told, by the [`Identity`] in their `CallContext`. It says which configured client sent the
//! call, or which OAuth [`Principal`] (subject, client id, scopes, groups); `[[policies]]` match
//! it at every hop ([`Identity::who`]), the incident tools record it ([`Identity::attribution`]),
//! and an upstream MCP server configured for token exchange (RFC 8693) gets a token of its own
//! for it, obtained with [`Identity::token`]: the caller's access token, which is never sent
//! anywhere else (the MCP authorization spec forbids passing it through), logged or shown.

use std::sync::Arc;

use secrecy::SecretString;

use crate::config::policies::Who;

/// Who a verified OAuth access token says is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The subject (`sub`, or the claim configured).
    pub subject: String,
    /// The application the token was issued to (`client_id`, else `azp`).
    pub client_id: Option<String>,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// Groups or roles.
    pub groups: Vec<String>,
}

/// Who a call is for. The default is an anonymous caller (open access).
#[derive(Clone, Default)]
pub struct Identity {
    /// The configured client (`[[clients]]`), if the caller is one.
    pub client: Option<Arc<str>>,
    /// The OAuth principal, if an access token identified the caller.
    pub principal: Option<Arc<Principal>>,
    /// The access token the principal came with: only ever the subject token of an RFC 8693
    /// token exchange, never forwarded, logged or shown.
    pub token: Option<Arc<SecretString>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("client", &self.client)
            .field("principal", &self.principal)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Identity {
    /// As `[[policies]]` see it.
    pub fn who(&self) -> Who<'_> {
        let p = self.principal.as_deref();
        Who {
            subject: p.map(|p| p.subject.as_str()),
            client: self.client.as_deref(),
            client_id: p.and_then(|p| p.client_id.as_deref()),
            scopes: p.map_or(&[], |p| p.scopes.as_slice()),
            groups: p.map_or(&[], |p| p.groups.as_slice()),
        }
    }

    /// The OAuth subject, if an access token identified the caller.
    pub fn subject(&self) -> Option<&str> {
        self.principal.as_deref().map(|p| p.subject.as_str())
    }

    /// Who a record written for this call should name: the OAuth subject
    /// (`alice@example.com`), else the configured client (`client helpdesk-app`); `None`
    /// for an anonymous caller.
    pub fn attribution(&self) -> Option<String> {
        match (self.subject(), &self.client) {
            (Some(subject), _) => Some(subject.to_owned()),
            (None, Some(client)) => Some(format!("client {client}")),
            (None, None) => None,
        }
    }
}
