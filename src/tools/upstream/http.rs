//! The HTTP client of an upstream session over Streamable HTTP: rmcp's reqwest client, with
//! the `Authorization` of every request (POSTs, the standalone GET stream, the closing DELETE)
//! taken from the session's [`TokenSlot`] at the moment it is sent, so a token obtained later
//! (refreshed before expiry, or after a 401) is used without opening a new MCP session.
//!
//! rmcp's own `auth_header` setting is fixed for the life of the transport; this wrapper is
//! why it is not used. A 401 (with or without a `WWW-Authenticate` challenge) is reported to
//! the slot ([`TokenSlot::rejected`]), which forgets that token: the call that met it asks for
//! a new one and retries once.

use std::collections::HashMap;
use std::sync::Arc;

use poem::http::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::common::client_side_sse::BoxedSseResponse;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};

use super::auth::TokenSlot;

/// rmcp's reqwest client, authorized from a [`TokenSlot`].
#[derive(Clone)]
pub(super) struct AuthorizedClient {
    inner: reqwest::Client,
    slot: Arc<TokenSlot>,
}

type Failure = StreamableHttpError<reqwest::Error>;

impl AuthorizedClient {
    /// A client whose requests carry the token in `slot` (none while it is empty).
    pub(super) fn new(inner: reqwest::Client, slot: Arc<TokenSlot>) -> Self {
        Self { inner, slot }
    }

    /// The bearer token to send now: the slot's, else what rmcp was configured with (never
    /// anything: the gateway configures no `auth_header`).
    fn bearer(&self, configured: Option<String>) -> Option<String> {
        self.slot.bearer().or(configured)
    }

    /// Tells the slot when the upstream refused `sent` (HTTP 401).
    fn seen<T>(&self, sent: Option<&str>, result: Result<T, Failure>) -> Result<T, Failure> {
        if let (Err(e), Some(sent)) = (&result, sent)
            && is_unauthorized(e)
        {
            self.slot.rejected(sent);
        }
        result
    }
}

/// Whether the upstream answered 401: rmcp says so with a challenge, or keeps the status in
/// its message without one.
fn is_unauthorized(e: &Failure) -> bool {
    match e {
        StreamableHttpError::AuthRequired(_) => true,
        StreamableHttpError::UnexpectedServerResponse(m) => m.starts_with("HTTP 401"),
        StreamableHttpError::Client(e) => e.status() == Some(reqwest::StatusCode::UNAUTHORIZED),
        _ => false,
    }
}

impl StreamableHttpClient for AuthorizedClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        crate::telemetry::trace::headers_of_message(&message, &mut custom_headers);
        let bearer = self.bearer(auth_header);
        let result = self
            .inner
            .post_message(uri, message, session_id, bearer.clone(), custom_headers)
            .await;
        self.seen(bearer.as_deref(), result)
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        crate::telemetry::trace::headers_of_message(&message, &mut custom_headers);
        let bearer = self.bearer(auth_header);
        let result = self
            .inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                bearer.clone(),
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.seen(bearer.as_deref(), result)
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        crate::telemetry::trace::headers_of_message(&message, &mut custom_headers);
        let bearer = self.bearer(auth_header);
        let result = self
            .inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                bearer.clone(),
                custom_headers,
                limits,
            )
            .await;
        self.seen(bearer.as_deref(), result)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Failure> {
        let bearer = self.bearer(auth_header);
        self.inner
            .delete_session(uri, session_id, bearer, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxedSseResponse, Failure> {
        let bearer = self.bearer(auth_header);
        let result = self
            .inner
            .get_stream(
                uri,
                session_id,
                last_event_id,
                bearer.clone(),
                custom_headers,
            )
            .await;
        self.seen(bearer.as_deref(), result)
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxedSseResponse, Failure> {
        let bearer = self.bearer(auth_header);
        let result = self
            .inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                bearer.clone(),
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.seen(bearer.as_deref(), result)
    }
}
