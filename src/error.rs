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
    /// For 429: the limit that was hit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<&'static str>,
    /// For 429: seconds to wait (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl Error {
    /// The error for a body that does not parse as JSON-RPC.
    pub fn from_json_error(e: &serde_json::Error) -> Self {
        let (code, what) = match e.classify() {
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

    /// The error for a refusal of the client layer on `agent`.
    pub fn from_refusal(refusal: crate::clients::Refusal, who: Option<&str>, agent: &str) -> Self {
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
            Refusal::RateLimited { limit, retry_after } => Error::RateLimited {
                who: who.map_or_else(|| "this address".to_owned(), |n| format!("client {n:?}")),
                limit,
                // Whole seconds, rounded up, at least 1: never "retry in 0 s".
                retry_after_secs: retry_after.as_secs_f64().ceil().max(1.0) as u64,
            },
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
    /// Over a limit.
    #[error("{who} is over its {limit} limit; retry in {retry_after_secs} s")]
    RateLimited {
        /// The client's name, or "this address" for open access.
        who: String,
        /// The limit's name.
        limit: &'static str,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
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
            Error::AgentNotAllowed { .. } => (StatusCode::FORBIDDEN, "agent_not_allowed"),
            Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
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
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "Request failed.");
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        let (limit, retry_after_secs) = match &self {
            Error::RateLimited {
                limit,
                retry_after_secs,
                ..
            } => (Some(*limit), Some(*retry_after_secs)),
            _ => (None, None),
        };
        let mut resp = json_response(
            status,
            &ErrorBody {
                code,
                message,
                limit,
                retry_after_secs,
            },
        );
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
            Error::RateLimited {
                retry_after_secs, ..
            } => {
                headers.insert(poem::http::header::RETRY_AFTER, (*retry_after_secs).into());
            }
            Error::ClusterUnavailable(_) => {
                headers.insert(
                    poem::http::header::RETRY_AFTER,
                    poem::http::HeaderValue::from_static("1"),
                );
            }
            _ => {}
        }
        resp
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
