//! HTTP errors of the request path: one enum, one exhaustive mapping to a status, and one
//! JSON body shape, `{"code": "...", "message": "..."}`.
//!
//! 4xx bodies say what was wrong with a stable `code`; 5xx bodies are opaque and the cause
//! goes to the log.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use serde::Serialize;

/// The JSON body of every error response outside JSON-RPC.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// Stable machine-readable code, e.g. `unknown_agent`.
    pub code: &'a str,
    /// What went wrong, for a human.
    pub message: String,
}

impl Error {
    /// The error for a `body` that does not parse as JSON-RPC (`e`, serde's error).
    pub fn from_json_error(body: &[u8], e: &serde_json::Error) -> Self {
        let (code, what) = match e.classify() {
            // A JSON array is a JSON-RPC batch, which MCP removed in 2025-06-18 (serde's own
            // words, "invalid type: map, expected a string", would not say so).
            serde_json::error::Category::Data if body.trim_ascii_start().starts_with(b"[") => {
                return Error::InvalidJsonRpc {
                    code: -32600,
                    message: "Invalid Request: JSON-RPC batches are not supported (MCP has had \
                              none since 2025-06-18): send one message per request"
                        .to_owned(),
                };
            }
            serde_json::error::Category::Data => {
                (-32600, "Invalid Request: not a JSON-RPC 2.0 message")
            }
            _ => (-32700, "Parse error: the body is not valid JSON"),
        };
        Error::InvalidJsonRpc {
            code,
            message: format!("{what}: {e}"),
        }
    }

    /// The error for a refusal of the client layer on `agent`; `caller` is who was refused,
    /// once identified.
    pub fn from_refusal(
        refusal: crate::clients::Refusal,
        caller: Option<&crate::clients::Caller>,
        agent: &str,
    ) -> Self {
        use crate::clients::Refusal;
        match refusal {
            Refusal::MissingToken => {
                Error::Unauthorized("missing bearer token: send Authorization: Bearer <token>")
            }
            Refusal::WrongToken => Error::Unauthorized("unknown bearer token"),
            Refusal::AgentNotAllowed { client } => Error::AgentNotAllowed {
                client: client.to_string(),
                agent: agent.to_owned(),
            },
            Refusal::RateLimited { limit, retry_after } => {
                Error::RateLimited(Box::new(RateLimit::new(limit, retry_after, caller)))
            }
        }
    }
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No agent has this name.
    #[error("unknown agent {0:?}")]
    UnknownAgent(String),
    /// The path names no route.
    #[error("no route for {0}")]
    NoRoute(String),
    /// The session id is unknown, ended, or belongs to another agent.
    #[error("session {0:?} not found: it ended or never existed; open a new session")]
    SessionNotFound(String),
    /// A request that needs a session id came without one; says where the id goes.
    #[error("missing session id: {0}")]
    MissingSessionId(&'static str),
    /// The `Host` header is not in `allowed_hosts`.
    #[error("host {0:?} is not allowed; add it to [server] allowed_hosts")]
    HostNotAllowed(String),
    /// The `Origin` header is not in `allowed_origins`.
    #[error("origin {0:?} is not allowed; add it to [server] allowed_origins")]
    OriginNotAllowed(String),
    /// The body is larger than `max_body_bytes`.
    #[error("request body exceeds the limit of {0} bytes")]
    BodyTooLarge(usize),
    /// The method is not served on this path.
    #[error("method {method} is not allowed here; allowed: {allowed}")]
    MethodNotAllowed {
        /// The request's method.
        method: String,
        /// The methods the path serves.
        allowed: &'static str,
    },
    /// No valid bearer token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// OAuth (`[auth.oauth]`): no token, or one that is not valid here; answered 401 with a
    /// challenge that says where the resource's metadata is (RFC 9728 §5.1).
    #[error("{message}")]
    InvalidToken {
        /// What is wrong (never the token).
        message: String,
        /// Whether a token was sent at all (RFC 6750 §3.1: no error code without one).
        sent: bool,
        /// The challenge.
        challenge: Box<Challenge>,
    },
    /// OAuth: a valid token without a scope the agent needs; answered 403 with the
    /// scopes to ask for (the step-up challenge).
    #[error("the token lacks the scope {missing} that agent {agent:?} needs: request a token with scope \"{}\"", challenge.scope.as_deref().unwrap_or(""))]
    InsufficientScope {
        /// The agent.
        agent: String,
        /// The scopes missing, space-separated.
        missing: String,
        /// The challenge (its scope: every scope the agent needs).
        challenge: Box<Challenge>,
    },
    /// OAuth: the authorization server's keys cannot be had, so no token can be checked.
    #[error("cannot check access tokens right now: {0}")]
    AuthServerUnavailable(String),
    /// OAuth: the token would have to be introspected, and this replica has sent as many
    /// introspection requests as `introspection_requests_per_second` allows; retry after
    /// this many seconds.
    #[error(
        "cannot check this access token right now: the gateway is at its limit of token introspection requests ([auth.oauth] introspection_requests_per_second); retry in {0} s"
    )]
    IntrospectionBusy(u64),
    /// A valid client that may not use this agent.
    #[error(
        "client {client:?} may not use agent {agent:?}; add it to the client's agents in switchboard.toml"
    )]
    AgentNotAllowed {
        /// The client's name.
        client: String,
        /// The agent.
        agent: String,
    },
    /// Over a limit: answered as a JSON-RPC error (id null) whose `data` names the limit,
    /// the client and the config key, on both transports.
    #[error("{0}")]
    RateLimited(Box<RateLimit>),
    /// The URL is longer than the gateway accepts.
    #[error("the URL is longer than {0} bytes")]
    UriTooLong(usize),
    /// The headers are larger than the gateway accepts.
    #[error("the request headers are larger than {0} bytes")]
    HeadersTooLarge(usize),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down; retry against another instance or after restart")]
    ShuttingDown,
    /// The body is not a JSON-RPC message: answered as a JSON-RPC error (id null).
    #[error("{message}")]
    InvalidJsonRpc {
        /// -32700 (not JSON) or -32600 (not a JSON-RPC message).
        code: i32,
        /// What is wrong.
        message: String,
    },
    /// Cluster mode: the request needs the cluster's shared state, and Redis does not
    /// answer this replica.
    #[error("{0}; this replica cannot reach the cluster's Redis right now, retry shortly")]
    ClusterUnavailable(String),
    /// The `Accept` header does not admit the answer's media types.
    #[error("{0}")]
    NotAcceptable(String),
    /// The body's `Content-Type` is not one the endpoint reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request is malformed (path, parameters).
    #[error("{0}")]
    BadRequest(String),
    /// The request body could not be read.
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// Something failed on our side.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The status and stable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::UnknownAgent(_) => (StatusCode::NOT_FOUND, "unknown_agent"),
            Error::NoRoute(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::SessionNotFound(_) => (StatusCode::NOT_FOUND, "session_not_found"),
            Error::MissingSessionId(_) => (StatusCode::BAD_REQUEST, "missing_session_id"),
            Error::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "not_acceptable"),
            Error::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Error::HostNotAllowed(_) => (StatusCode::FORBIDDEN, "host_not_allowed"),
            Error::OriginNotAllowed(_) => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            Error::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Error::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            Error::ClusterUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable")
            }
            Error::InvalidJsonRpc { .. } => (StatusCode::BAD_REQUEST, "invalid_json_rpc"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::InvalidToken { sent: false, .. } => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::InvalidToken { sent: true, .. } => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Error::InsufficientScope { .. } => (StatusCode::FORBIDDEN, "insufficient_scope"),
            Error::AuthServerUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "authorization_server_unavailable",
            ),
            Error::IntrospectionBusy(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "introspection_rate_limited",
            ),
            Error::AgentNotAllowed { .. } => (StatusCode::FORBIDDEN, "agent_not_allowed"),
            Error::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Error::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            Error::HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
            ),
            Error::BodyRead(_) => (StatusCode::BAD_REQUEST, "bad_body"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Error::InvalidJsonRpc { code, message } = &self {
            return json_response(
                status,
                &serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}}),
            );
        }
        if let Some(error) = self.rate_limit_error() {
            // A JSON-RPC error, so that MCP SDKs show its message (the Python SDK reads a
            // JSON-RPC error from a 4xx body); Retry-After for HTTP clients.
            let mut resp = json_response(
                status,
                &serde_json::json!({"jsonrpc": "2.0", "id": null, "error": error}),
            );
            if let Error::RateLimited(r) = &self {
                resp.headers_mut()
                    .insert(poem::http::header::RETRY_AFTER, r.retry_after_secs.into());
            }
            return resp;
        }
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "Request failed.");
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        let mut resp = json_response(status, &ErrorBody { code, message });
        let headers = resp.headers_mut();
        match &self {
            Error::MethodNotAllowed { allowed, .. } => {
                if let Ok(v) = allowed.parse() {
                    headers.insert(poem::http::header::ALLOW, v);
                }
            }
            Error::Unauthorized(_) => {
                headers.insert(
                    poem::http::header::WWW_AUTHENTICATE,
                    poem::http::HeaderValue::from_static("Bearer"),
                );
            }
            Error::InvalidToken {
                message,
                sent,
                challenge,
            } => {
                let error = sent.then_some(("invalid_token", message.as_str()));
                if let Ok(v) = challenge.header(error).parse() {
                    headers.insert(poem::http::header::WWW_AUTHENTICATE, v);
                }
            }
            Error::InsufficientScope { challenge, .. } => {
                let message = self.to_string();
                if let Ok(v) = challenge
                    .header(Some(("insufficient_scope", &message)))
                    .parse()
                {
                    headers.insert(poem::http::header::WWW_AUTHENTICATE, v);
                }
            }
            Error::ClusterUnavailable(_) | Error::AuthServerUnavailable(_) => {
                headers.insert(
                    poem::http::header::RETRY_AFTER,
                    poem::http::HeaderValue::from_static("1"),
                );
            }
            Error::IntrospectionBusy(secs) => {
                headers.insert(poem::http::header::RETRY_AFTER, (*secs).into());
            }
            _ => {}
        }
        resp
    }
}

/// An OAuth challenge (RFC 6750 §3, RFC 9728 §5.1): where the resource's metadata is, and
/// the scopes to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The URL of the resource's protected resource metadata.
    pub resource_metadata: String,
    /// The scopes needed, space-separated, if any.
    pub scope: Option<String>,
}

impl Challenge {
    /// The `WWW-Authenticate` value, with `error` (code, description) when there is one.
    pub fn header(&self, error: Option<(&str, &str)>) -> String {
        // A quoted-string may not hold `"` or `\`, nor anything outside visible ASCII.
        let quoted = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    '"' | '\\' => '\'',
                    c if c == ' ' || c.is_ascii_graphic() => c,
                    _ => '?',
                })
                .collect()
        };
        let mut out = String::from("Bearer ");
        if let Some((code, description)) = error {
            out.push_str(&format!(
                "error=\"{code}\", error_description=\"{}\", ",
                quoted(description)
            ));
        }
        out.push_str(&format!(
            "resource_metadata=\"{}\"",
            quoted(&self.resource_metadata)
        ));
        if let Some(scope) = &self.scope {
            out.push_str(&format!(", scope=\"{}\"", quoted(scope)));
        }
        out
    }
}

/// A refusal over a limit, as [`Error::RateLimited`] says it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{who} is over its {limit} limit{quota}; retry in {retry_after_secs} s, or raise {config_key}{also} in switchboard.toml"
)]
pub struct RateLimit {
    /// The caller, for a human: `client "alice"`, or its address with open access.
    pub who: String,
    /// The client's name, or its address with open access.
    pub client: String,
    /// The limit's name.
    pub limit: &'static str,
    /// The limit's value, for a human (` (600 per minute, bursts of 60)`).
    pub quota: String,
    /// The `switchboard.toml` key that sets it (`clients[0].requests_per_minute`,
    /// `limits.max_sessions`).
    pub config_key: String,
    /// Another key that may be what to raise (` (or limits.burst)`), or empty.
    pub also: String,
    /// Seconds to wait.
    pub retry_after_secs: u64,
}

impl RateLimit {
    /// The refusal of `caller` (if identified) over `limit`, to retry after `retry_after`.
    fn new(
        limit: &'static str,
        retry_after: std::time::Duration,
        caller: Option<&crate::clients::Caller>,
    ) -> Self {
        use crate::clients::ClientKey;
        let (client, who, table) = match caller.map(|c| (&c.key, &c.client)) {
            Some((_, Some(c))) => (
                c.name.to_string(),
                format!("client {:?}", c.name),
                c.limits_key.clone(),
            ),
            Some((ClientKey::Ip(ip), None)) => (
                ip.to_string(),
                format!("{ip} (open access: limits apply per address)"),
                "limits".to_owned(),
            ),
            Some((ClientKey::Principal(s), None)) => (
                s.to_string(),
                format!("principal {s:?} (OAuth: limits apply per subject)"),
                "limits".to_owned(),
            ),
            Some((ClientKey::Named(n), None)) => {
                (n.to_string(), format!("client {n:?}"), "limits".to_owned())
            }
            None => (
                "unknown".to_owned(),
                "this caller".to_owned(),
                "limits".to_owned(),
            ),
        };
        let quota = caller.map_or_else(String::new, |c| {
            let l = &c.limits;
            match limit {
                "requests_per_minute" => format!(
                    " ({} per minute, bursts of {})",
                    l.requests_per_minute, l.burst
                ),
                "agent_runs_per_minute" => {
                    format!(" ({} per minute)", l.agent_runs_per_minute)
                }
                _ => format!(" ({} at once)", l.max_sessions),
            }
        });
        // Past the rate, a burst may be what was too small.
        let also = if limit == "requests_per_minute" {
            format!(" (or {table}.burst)")
        } else {
            String::new()
        };
        Self {
            who,
            client,
            limit,
            quota,
            config_key: format!("{table}.{limit}"),
            also,
            // Whole seconds, rounded up, at least 1: never "retry in 0 s".
            retry_after_secs: retry_after.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

/// The JSON-RPC error code of a refusal over a limit (implementation-defined server error).
pub const RATE_LIMITED_CODE: i32 = -32000;

impl Error {
    /// Over a limit: the JSON-RPC error object (`code`, `message`, `data` with `code:
    /// "rate_limited"`, `limit`, `client`, `config_key`, `retry_after_secs`), as the 429 body
    /// carries it and the legacy stream answers the refused request with it.
    pub fn rate_limit_error(&self) -> Option<serde_json::Value> {
        let Error::RateLimited(r) = self else {
            return None;
        };
        Some(serde_json::json!({
            "code": RATE_LIMITED_CODE,
            "message": r.to_string(),
            "data": {
                "code": "rate_limited",
                "limit": r.limit,
                "client": r.client,
                "config_key": r.config_key,
                "retry_after_secs": r.retry_after_secs,
            },
        }))
    }
}

/// A JSON response with `status` and `body`.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response::builder()
            .status(status)
            .content_type("application/json")
            .body(bytes),
        Err(e) => {
            tracing::error!(error = %e, "Could not serialize a response body.");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
