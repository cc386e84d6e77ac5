//! An upstream MCP server for the gateway's `type = "mcp"` tools: a real rmcp server on a
//! loopback port it binds first, recording the `Authorization` header of every HTTP request
//! it gets, answering 401 (with a challenge) to the bearer tokens a test refuses, and offering
//! one tool, `whoami`, which answers with the claims of the token its request came with.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use poem::listener::TcpAcceptor;
use poem::{Endpoint, EndpointExt as _, IntoResponse, Route};
use rmcp::model::{InitializeRequestParams, InitializeResult};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// What the server saw.
#[derive(Default)]
struct Seen {
    /// The `Authorization` header of every request, in order.
    authorizations: Mutex<Vec<Option<String>>>,
    /// Bearer tokens answered with 401.
    refused: Mutex<HashSet<String>>,
    initializes: AtomicUsize,
    /// Of every tool call: its HTTP `traceparent` header and its `_meta.traceparent`.
    traces: Mutex<Vec<(Option<String>, Option<String>)>>,
}

#[derive(Clone)]
struct Server {
    seen: Arc<Seen>,
}

#[tool_router]
impl Server {
    #[tool(description = "Says who the request's token is for: its sub, act, aud and client_id.")]
    fn whoami(&self, ctx: RequestContext<RoleServer>) -> String {
        let header = ctx
            .extensions
            .get::<poem::http::request::Parts>()
            .and_then(|p| p.headers.get("traceparent"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let meta = ctx.meta.get_traceparent().map(str::to_owned);
        self.seen.traces.lock().unwrap().push((header, meta));
        let bearer = ctx
            .extensions
            .get::<poem::http::request::Parts>()
            .and_then(|p| p.headers.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let answer = match bearer.as_deref().and_then(claims) {
            Some(c) => {
                json!({"sub": c["sub"], "act": c["act"], "aud": c["aud"], "client_id": c["client_id"]})
            }
            None => json!({"sub": null}),
        };
        answer.to_string()
    }
}

#[tool_handler]
impl ServerHandler for Server {
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        self.seen.initializes.fetch_add(1, Ordering::SeqCst);
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }
}

/// The claims of a JWT (its payload, not verified).
pub fn claims(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A running upstream.
pub struct RecordingUpstream {
    /// Its Streamable HTTP URL, `http://127.0.0.1:<port>/mcp`.
    pub url: String,
    seen: Arc<Seen>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RecordingUpstream {
    /// Binds, then serves.
    pub async fn start() -> Self {
        switchboard::net::install_crypto_provider();
        let seen = Arc::new(Seen::default());
        let stop = CancellationToken::new();
        let server = Server { seen: seen.clone() };
        let service: StreamableHttpService<Server, LocalSessionManager> =
            StreamableHttpService::new(
                move || Ok(server.clone()),
                Arc::new(LocalSessionManager::default()),
                StreamableHttpServerConfig::default()
                    .disable_allowed_hosts()
                    .with_cancellation_token(stop.child_token()),
            );
        let record = seen.clone();
        let app = Route::new()
            .at("/mcp", poem::endpoint::TowerCompatExt::compat(service))
            .around(move |ep, req| {
                let record = record.clone();
                async move {
                    let authorization = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    record
                        .authorizations
                        .lock()
                        .unwrap()
                        .push(authorization.clone());
                    let bearer = authorization
                        .as_deref()
                        .and_then(|a| a.strip_prefix("Bearer "));
                    if bearer.is_some_and(|b| record.refused.lock().unwrap().contains(b)) {
                        return Ok(poem::Response::builder()
                            .status(poem::http::StatusCode::UNAUTHORIZED)
                            .header(
                                "www-authenticate",
                                "Bearer error=\"invalid_token\", error_description=\"refused by the test\"",
                            )
                            .finish());
                    }
                    Ok(ep.call(req).await?.into_response())
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let signal = stop.clone().cancelled_owned();
        let task = tokio::spawn(
            poem::Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                app,
                signal,
                Some(Duration::from_secs(1)),
            ),
        );
        Self {
            url,
            seen,
            stop,
            task,
        }
    }

    /// Of every tool call so far: its `traceparent` header and its `_meta.traceparent`.
    pub fn traces(&self) -> Vec<(Option<String>, Option<String>)> {
        self.seen.traces.lock().unwrap().clone()
    }

    /// The `Authorization` header of every request so far.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.seen.authorizations.lock().unwrap().clone()
    }

    /// The bearer tokens of every request so far, in order (requests without one left out).
    pub fn bearers(&self) -> Vec<String> {
        self.authorizations()
            .into_iter()
            .flatten()
            .filter_map(|a| a.strip_prefix("Bearer ").map(str::to_owned))
            .collect()
    }

    /// The distinct bearer tokens so far, in the order first seen.
    pub fn distinct_bearers(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for b in self.bearers() {
            if !out.contains(&b) {
                out.push(b);
            }
        }
        out
    }

    /// From now on, requests with `token` get 401.
    pub fn refuse(&self, token: &str) {
        self.seen.refused.lock().unwrap().insert(token.to_owned());
    }

    /// How many MCP sessions were opened (`initialize` requests that got through).
    pub fn initializes(&self) -> usize {
        self.seen.initializes.load(Ordering::SeqCst)
    }

    /// Stops the server and waits until its listener is closed.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}
