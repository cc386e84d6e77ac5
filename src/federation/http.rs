//! The HTTP client of a Streamable HTTP upstream: the shared reqwest client, and a signal
//! when the session's standalone stream (its `GET`) has been answered.
//!
//! An upstream may send a request or notification of its own on that stream rather than on
//! a call's stream (the conformance suite's reference server asks for elicitation that way),
//! and a server with no standalone stream open discards it, as the spec allows. rmcp opens
//! the stream on a task of its own after the handshake, so a call sent at once could race it
//! and its elicitation be lost: [`link`](super::link) waits for [`Opened`] (bounded) before
//! the connection is used.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::common::client_side_sse::BoxedSseResponse;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use tokio::sync::watch;

/// Whether the standalone stream has been answered (opened, refused or failed).
#[derive(Default)]
pub(super) struct Opened {
    /// The upstream gave a session id: rmcp opens the standalone stream only then.
    session: AtomicBool,
    /// Whether the first `GET` has been answered.
    done: watch::Sender<bool>,
}

impl Opened {
    fn set(&self) {
        self.done.send_replace(true);
    }

    fn saw<E>(&self, answer: &Result<StreamableHttpPostResponse, E>) {
        if let Ok(
            StreamableHttpPostResponse::Json(_, Some(_))
            | StreamableHttpPostResponse::Sse(_, Some(_)),
        ) = answer
        {
            self.session.store(true, Ordering::SeqCst);
        }
    }

    /// Waits at most `limit` for the answer; at once when there is no session (and so no
    /// standalone stream).
    pub(super) async fn wait(&self, limit: Duration) {
        if !self.session.load(Ordering::SeqCst) {
            return;
        }
        let mut done = self.done.subscribe();
        let _ = tokio::time::timeout(limit, done.wait_for(|&d| d)).await;
    }
}

/// reqwest, telling [`Opened`] when a session's first `GET` has been answered.
#[derive(Clone)]
pub(super) struct Upstream {
    http: reqwest::Client,
    opened: Arc<Opened>,
}

impl Upstream {
    pub(super) fn new(http: reqwest::Client, opened: Arc<Opened>) -> Self {
        Self { http, opened }
    }
}

impl StreamableHttpClient for Upstream {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let answer = self
            .http
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await;
        self.opened.saw(&answer);
        answer
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let answer = self
            .http
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await;
        self.opened.saw(&answer);
        answer
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.http
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxedSseResponse, StreamableHttpError<Self::Error>> {
        let answer = self
            .http
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await;
        self.opened.set();
        answer
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxedSseResponse, StreamableHttpError<Self::Error>> {
        let answer = self
            .http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.opened.set();
        answer
    }
}
