//! What the edge learns of an HTTP request and hands down to the transports and the handler
//! through request extensions: the client's address, the request's id, who sent it.

use std::sync::Arc;

use poem::Request;

use crate::clients::{Caller, Principal};
use crate::config::policies::Who;
use crate::sessions::Peer;

/// The peer address of a request, carried into rmcp's request extensions (poem's
/// conversion to an `http::Request` drops the remote address).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

/// The configured client a request is from (`None`: open access), carried into rmcp's
/// request extensions so that a call without a session (MCP 2026-07-28) is logged under the
/// same name the metrics use.
#[derive(Debug, Clone)]
pub struct CallerName(pub Option<Arc<str>>);

/// Who is calling, as `[[policies]]` match it: the static client's name, or the OAuth
/// principal. The edge carries it into rmcp's request extensions for Streamable HTTP; a
/// legacy session keeps its owner's (every message of it comes from the client that opened
/// it) and puts it into each message's extensions.
#[derive(Debug, Clone, Default)]
pub struct CallerIdentity {
    /// The configured client (`[[clients]]`), if the caller is one.
    pub client: Option<Arc<str>>,
    /// The OAuth principal, if an access token identified the caller.
    pub principal: Option<Arc<Principal>>,
}

impl CallerIdentity {
    /// The identity of `caller`.
    pub fn of(caller: &Caller) -> Self {
        Self {
            client: caller.client.as_ref().map(|c| c.name.clone()),
            principal: caller.principal.clone(),
        }
    }

    /// As the rules see it.
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

    /// The identity a request's handler context carries: a legacy message's own, else the
    /// one in the HTTP parts of a Streamable HTTP request; none: an anonymous caller.
    pub fn of_request(extensions: &rmcp::model::Extensions) -> Self {
        extensions
            .get::<CallerIdentity>()
            .or_else(|| {
                extensions
                    .get::<poem::http::request::Parts>()
                    .and_then(|p| p.extensions.get::<CallerIdentity>())
            })
            .cloned()
            .unwrap_or_default()
    }
}

/// The id of an HTTP request (its `X-Request-Id`, or one made up), carried into rmcp's
/// request extensions so the tool-call log line names it.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    /// The request's `X-Request-Id` if it is sane, else a new one.
    pub fn of(req: &Request) -> Self {
        let given = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()));
        Self(match given {
            Some(id) => id.into(),
            None => uuid::Uuid::new_v4().simple().to_string().into(),
        })
    }
}

/// Who sent a message, from the HTTP parts rmcp put into its extensions.
pub fn peer_of(extensions: &rmcp::model::Extensions) -> Peer {
    let Some(parts) = extensions.get::<poem::http::request::Parts>() else {
        return Peer::default();
    };
    Peer {
        client: None,
        ip: parts.extensions.get::<ClientIp>().map(|c| c.0),
        user_agent: parts
            .headers
            .get(poem::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}
