//! rmcp's Streamable HTTP answers brought in line with the gateway's rules, at the HTTP
//! level (rmcp offers no hook for them):
//!
//! - [`widen_accept`]: `Accept: */*` (and `application/*`, `text/*`) admits both of the
//!   transport's media types, as HTTP says; rmcp matches only the exact names.
//! - [`rejection`]: rmcp's own HTTP errors (400, 404, 405, 406, 413, 415, 500) are plain
//!   text; they become the gateway's JSON `{code, message}`, with the same status, saying
//!   what was wrong. Its JSON-RPC error answers are JSON already and pass as they are.
//! - [`WithoutPriming`]: the SEP-1699 priming event (an event with empty `data`, an `id` and
//!   `retry`) is for clients of MCP 2025-11-25 and later, as in the official SDKs; older
//!   clients try to parse its empty data as JSON (the Python SDK 1.9 logs "Invalid JSON" on
//!   every call). Their streams go without it; their messages keep their event ids, so
//!   resuming after any message works as before.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use poem::http::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use poem::http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::error::Error;

/// The first protocol version whose clients expect priming events.
pub const PRIMING_SINCE: &str = "2025-11-25";

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

/// Adds `application/json` and `text/event-stream` to the `Accept` header where a wildcard
/// range of it admits them but does not name them.
pub fn widen_accept(headers: &mut HeaderMap) {
    let (mut json, mut sse) = (false, false);
    let (mut json_range, mut sse_range) = (false, false);
    for essence in accepted(headers) {
        let essence = essence.to_ascii_lowercase();
        match essence.as_str() {
            JSON => json = true,
            EVENT_STREAM => sse = true,
            "*/*" => (json_range, sse_range) = (true, true),
            "application/*" => json_range = true,
            "text/*" => sse_range = true,
            _ => {}
        }
    }
    for (named, range, media) in [(json, json_range, JSON), (sse, sse_range, EVENT_STREAM)] {
        if range && !named {
            headers.append(ACCEPT, HeaderValue::from_static(media));
        }
    }
}

/// The media ranges of the `Accept` header, without those of quality 0.
fn accepted(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| {
            let mut parts = entry.split(';');
            let essence = parts.next()?.trim();
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q")
                        && v.trim().trim_end_matches(['0', '.']).is_empty()
                })
            });
            (!refused).then_some(essence)
        })
}

/// What a request said that rmcp may refuse, kept before rmcp takes the request.
#[derive(Debug)]
pub struct Asked {
    method: Method,
    session: Option<String>,
    accept: Option<String>,
    content_type: Option<String>,
}

impl Asked {
    /// Reads what is needed from the request's method and headers.
    pub fn of(method: &Method, headers: &HeaderMap) -> Self {
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            method: method.clone(),
            session: header("mcp-session-id"),
            accept: header(ACCEPT.as_str()),
            content_type: header(CONTENT_TYPE.as_str()),
        }
    }

    /// The request's method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request's session id, if it named one.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }
}

/// Whether an answer of rmcp is one of its plain-text HTTP errors.
pub fn is_rejection(status: StatusCode, headers: &HeaderMap) -> bool {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(JSON));
    (status.is_client_error() || status.is_server_error()) && !json
}

/// The gateway's error for rmcp's plain-text HTTP error `status` with body `text`.
pub fn rejection(
    asked: &Asked,
    status: StatusCode,
    headers: &HeaderMap,
    text: &str,
    max_body: usize,
) -> Error {
    let got = |v: &Option<String>| v.as_deref().map_or("none".to_owned(), |v| format!("{v:?}"));
    // rmcp's texts start with the status's reason ("Bad Request: ..."); the code says that.
    let what = text.split_once(": ").map_or(text, |(_, rest)| rest);
    match status {
        StatusCode::NOT_ACCEPTABLE if asked.method == Method::GET => Error::NotAcceptable(format!(
            "the Accept header must admit {EVENT_STREAM} for a GET stream (got {})",
            got(&asked.accept)
        )),
        StatusCode::NOT_ACCEPTABLE => Error::NotAcceptable(format!(
            "the Accept header must admit both {JSON} and {EVENT_STREAM} (got {})",
            got(&asked.accept)
        )),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
            if asked
                .content_type
                .as_deref()
                .is_some_and(|c| c.split(';').next().is_some_and(|e| e.trim() == JSON)) =>
        {
            // rmcp answers 415 for a JSON body that is not a JSON-RPC message it knows.
            Error::InvalidJsonRpc {
                code: -32600,
                message: format!(
                    "Invalid Request: not a JSON-RPC 2.0 request, notification or response ({})",
                    text.trim_start_matches("fail to deserialize request body ")
                ),
            }
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedMediaType(format!(
            "the Content-Type must be {JSON} (got {})",
            got(&asked.content_type)
        )),
        StatusCode::BAD_REQUEST if text.contains("Session ID is required") => {
            Error::MissingSessionId(
                "send the Mcp-Session-Id header the initialize answer carried, or initialize first",
            )
        }
        StatusCode::BAD_REQUEST if text.contains("MCP-Protocol-Version") => {
            let known: Vec<&str> = rmcp::model::ProtocolVersion::KNOWN_VERSIONS
                .iter()
                .map(|v| v.as_str())
                .collect();
            Error::BadRequest(format!("{what}; this gateway speaks {}", known.join(", ")))
        }
        StatusCode::BAD_REQUEST => Error::BadRequest(what.to_owned()),
        StatusCode::NOT_FOUND => Error::SessionNotFound(asked.session.clone().unwrap_or_default()),
        StatusCode::METHOD_NOT_ALLOWED => Error::MethodNotAllowed {
            method: asked.method.to_string(),
            allowed: match headers.get(ALLOW).and_then(|v| v.to_str().ok()) {
                Some("POST") => "POST",
                _ => "GET, POST, DELETE",
            },
        },
        StatusCode::PAYLOAD_TOO_LARGE => Error::BodyTooLarge(max_body),
        _ => Error::Internal(format!(
            "the Streamable HTTP transport answered {status}: {text}"
        )),
    }
}

pin_project_lite::pin_project! {
    /// An SSE body without its priming events (see the module's docs).
    pub struct WithoutPriming<B> {
        #[pin]
        inner: B,
    }
}

impl<B> WithoutPriming<B> {
    /// `inner` without its priming events.
    pub fn new(inner: B) -> Self {
        Self { inner }
    }
}

/// Whether one SSE frame of rmcp is a priming event. rmcp writes each event as one frame
/// (`sse-stream`'s `SseBody`), `data` first: a message's data is its JSON, never empty.
fn is_priming(frame: &Bytes) -> bool {
    frame.starts_with(b"data: \n") || frame.starts_with(b"data:\n")
}

impl<B: Body<Data = Bytes>> Body for WithoutPriming<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut inner = self.project().inner;
        loop {
            match inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) if frame.data_ref().is_some_and(is_priming) => {}
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // Frames may be left out: only the upper bound holds.
        let mut hint = SizeHint::new();
        if let Some(upper) = self.inner.size_hint().upper() {
            hint.set_upper(upper);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wildcards_admit_both_types_and_q_zero_admits_nothing() {
        let widened = |accept: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_str(accept).unwrap());
            widen_accept(&mut headers);
            let mut all: Vec<String> = accepted(&headers).map(str::to_owned).collect();
            all.sort();
            all
        };
        assert_eq!(widened("*/*"), ["*/*", JSON, EVENT_STREAM]);
        assert_eq!(
            widened("application/*, text/event-stream"),
            ["application/*", JSON, EVENT_STREAM]
        );
        assert_eq!(widened("*/*;q=0, text/html"), ["text/html"]);
        assert_eq!(widened("*/*;q=0.5"), ["*/*", JSON, EVENT_STREAM]);
        assert_eq!(widened("text/html"), ["text/html"]);
    }

    #[test]
    fn only_empty_data_events_are_priming() {
        assert!(is_priming(&Bytes::from_static(
            b"data: \nid: 0\nretry: 3000\n\n"
        )));
        assert!(!is_priming(&Bytes::from_static(
            b"data: {\"jsonrpc\":\"2.0\"}\nid: 1\n\n"
        )));
        assert!(!is_priming(&Bytes::from_static(b":\n\n")));
    }
}
