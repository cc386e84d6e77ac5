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
    /// A request that needs a session id came without one.
    #[error("missing session id: add ?session_id=<id> from the endpoint event")]
    MissingSessionId,
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
            Error::MissingSessionId => (StatusCode::BAD_REQUEST, "missing_session_id"),
            Error::HostNotAllowed(_) => (StatusCode::FORBIDDEN, "host_not_allowed"),
            Error::OriginNotAllowed(_) => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            Error::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Error::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::BodyRead(_) => (StatusCode::BAD_REQUEST, "bad_body"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "Request failed.");
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        let mut resp = json_response(status, &ErrorBody { code, message });
        if let Error::MethodNotAllowed { allowed, .. } = self
            && let Ok(v) = allowed.parse()
        {
            resp.headers_mut().insert(poem::http::header::ALLOW, v);
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
