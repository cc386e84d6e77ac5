//! What the edge learns of an HTTP request and hands down to the transports and the handler
//! through request extensions: the client's address, the request's id, who sent it.

use std::sync::Arc;

use poem::Request;

use secrecy::SecretString;

use crate::audit::Origin;
use crate::clients::Caller;
use crate::identity::Identity;
use crate::sessions::Peer;
use crate::telemetry::trace::RequestSpan;

/// The peer address of a request, carried into rmcp's request extensions (poem's
/// conversion to an `http::Request` drops the remote address).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

/// The configured client a request is from (`None`: open access), carried into rmcp's
/// request extensions so that a call without a session (MCP 2026-07-28) is logged under the
/// same name the metrics use.
#[derive(Debug, Clone)]
pub struct CallerName(pub Option<Arc<str>>);

/// The identity of the request a handler's `extensions` are of: a legacy message's own, else
/// the one the edge put into the HTTP parts of a Streamable HTTP request; none: an anonymous
/// caller.
pub fn identity_of(extensions: &rmcp::model::Extensions) -> Arc<Identity> {
    extensions
        .get::<Arc<Identity>>()
        .or_else(|| {
            extensions
                .get::<poem::http::request::Parts>()
                .and_then(|p| p.extensions.get::<Arc<Identity>>())
        })
        .cloned()
        .unwrap_or_default()
}

/// The span the edge made for the request `extensions` are of (a legacy message's own, else
/// the HTTP parts'); `None` when tracing is off, or the request came another way (stdio).
pub fn span_of(extensions: &rmcp::model::Extensions) -> Option<&RequestSpan> {
    extensions.get::<RequestSpan>().or_else(|| {
        extensions
            .get::<poem::http::request::Parts>()
            .and_then(|p| p.extensions.get::<RequestSpan>())
    })
}

/// Where a request came in, for the audit trail: a legacy message carries its own; a
/// Streamable HTTP request's session is in its headers.
pub fn origin_of(extensions: &rmcp::model::Extensions) -> Origin {
    if let Some(origin) = extensions.get::<Origin>() {
        return origin.clone();
    }
    let session = extensions
        .get::<poem::http::request::Parts>()
        .and_then(|p| p.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
        .map(Arc::from);
    Origin {
        transport: Some("streamable_http"),
        session,
    }
}

/// The identity of an admitted `caller`; `bearer` is the access token it came with, kept
/// (for token exchange only) when it identified an OAuth principal.
pub fn identity(caller: &Caller, bearer: Option<&str>) -> Arc<Identity> {
    Arc::new(Identity {
        client: caller.client.as_ref().map(|c| c.name.clone()),
        principal: caller.principal.clone(),
        token: caller
            .principal
            .as_ref()
            .and(bearer)
            .map(|t| Arc::new(SecretString::from(t.to_owned()))),
    })
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
