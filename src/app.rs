//! The composition root: settings + agents → [`AppState`] → poem routes, and [`run`].

use std::net::SocketAddr;

use poem::http::StatusCode;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Response, Route, Server, handler};
use serde_json::json;

use crate::error::{Error, json_response};
use crate::mcp::AgentsEndpoint;
use crate::state::AppState;

/// The whole HTTP surface of the gateway.
pub fn routes(state: AppState) -> impl Endpoint<Output = Response> {
    let outer = state.clone();
    let api = crate::admin::spec::service();
    let (spec_json, spec_yaml, docs) = (
        api.spec_endpoint(),
        api.spec_endpoint_yaml(),
        api.swagger_ui(),
    );
    // One endpoint serves /admin/*, /healthz and /readyz (the paths are in the spec).
    let api = std::sync::Arc::new(api.into_endpoint());
    Route::new()
        .nest_no_strip("/agents", AgentsEndpoint::new(state.clone()))
        .nest_no_strip("/admin", api.clone())
        .at("/healthz", api.clone())
        .at("/readyz", api)
        .at("/", index)
        .at("/metrics", metrics)
        .at("/ui", poem::get(crate::console::page))
        .at("/ui/", poem::get(crate::console::page))
        .at("/ui/app.js", poem::get(crate::console::script))
        .at("/ui/app.css", poem::get(crate::console::style))
        .at("/openapi.json", spec_json)
        .at("/openapi.yaml", spec_yaml)
        .nest("/docs", docs)
        .data(state)
        .catch_error(|_: poem::error::NotFoundError| async move {
            Error::NoRoute("this path".to_owned()).into_response()
        })
        .catch_error(|e: poem::error::ParsePathError| async move {
            Error::BadRequest(format!("malformed path: {e}")).into_response()
        })
        .around(move |ep, req| {
            let state = Some(outer.clone());
            async move {
                let route = route_label(req.uri().path());
                let request_id = crate::mcp::RequestId::of(&req);
                let mut req = req;
                req.extensions_mut().insert(request_id.clone());
                // A method the admin API does not serve: 405 naming the ones it does.
                let allowed = crate::admin::allowed_methods(req.uri().path());
                let method = req.method().to_string();
                let response = match ep.call(req).await {
                    Err(e) if e.is::<poem::error::MethodNotAllowedError>() => {
                        Error::MethodNotAllowed {
                            method: method.clone(),
                            allowed: allowed.unwrap_or("GET"),
                        }
                        .into_response()
                    }
                    Ok(r) => r.into_response(),
                    Err(e) => e.into_response(),
                };
                if let Some(state) = state {
                    state
                        .metrics()
                        .http_request(route, &method, response.status().as_u16());
                }
                let mut response = response;
                if let Ok(v) = poem::http::HeaderValue::from_str(&request_id.0) {
                    response.headers_mut().insert("x-request-id", v);
                }
                Ok::<_, poem::Error>(response)
            }
        })
        .map_to_response()
}

/// The route label of a path, for metrics (a fixed, small set).
fn route_label(path: &str) -> &'static str {
    let mut segments = path.trim_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some("agents"), Some(_), Some("mcp")) => "mcp",
        (Some("agents"), Some(_), Some("sse")) => "sse",
        (Some("agents"), Some(_), Some("messages")) => "messages",
        (Some("admin"), _, _) => "admin",
        (Some("healthz"), None, _) => "healthz",
        (Some("readyz"), None, _) => "readyz",
        (Some("metrics"), None, _) => "metrics",
        (Some("openapi.json" | "openapi.yaml" | "docs"), _, _) => "openapi",
        (Some("ui"), _, _) => "ui",
        (Some(""), None, _) => "index",
        _ => "other",
    }
}

/// `GET /metrics`: Prometheus (OpenMetrics) text.
#[handler]
fn metrics(state: poem::web::Data<&AppState>) -> Response {
    let mut counts: std::collections::BTreeMap<(std::sync::Arc<str>, &'static str), usize> =
        std::collections::BTreeMap::new();
    for s in state.sessions().list() {
        *counts
            .entry((s.agent.clone(), s.transport.as_str()))
            .or_default() += 1;
    }
    let text = state.metrics().render(
        counts
            .iter()
            .map(|((agent, transport), n)| (&**agent, *transport, *n)),
    );
    Response::builder()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text)
}

#[handler]
fn index(state: poem::web::Data<&AppState>) -> Response {
    let agents: Vec<_> = state
        .agents()
        .iter()
        .map(|a| {
            json!({
                "name": &*a.name,
                "description": a.agent.spec.description,
                "sse": format!("/agents/{}/sse", a.name),
                "mcp": format!("/agents/{}/mcp", a.name),
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"name": "switchboard", "version": env!("CARGO_PKG_VERSION"), "agents": agents}),
    )
}

/// Serves `state` on `listener` until `shutdown` completes, then ends every session
/// (root token first, so SSE streams close) and drains within the grace period.
///
/// # Errors
/// When the listener fails.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = NoDelay(TcpAcceptor::from_tokio(listener)?);
    let grace = state.settings().shutdown_grace;
    let draining = state.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "Shutting down: no new connections; calls in flight may finish."
        );
        // The drain ends every session (so every stream) within `grace` + 1 s; the server
        // stops accepting at once and waits for the connections to close.
        tokio::spawn(async move { draining.drain(grace).await });
    };
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            routes(state),
            signal,
            Some(grace + std::time::Duration::from_secs(3)),
        )
        .await
}

/// Installs the TLS crypto provider (ring) for outbound HTTPS clients. Call once at startup,
/// before any HTTP client is built; later calls are harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Every URL the gateway serves for `agent` at `addr`.
pub fn agent_urls(addr: SocketAddr, agent: &str) -> (String, String) {
    (
        format!("http://{addr}/agents/{agent}/sse"),
        format!("http://{addr}/agents/{agent}/mcp"),
    )
}

/// A TCP acceptor that turns Nagle off: SSE events and small JSON-RPC answers are several
/// small writes, which Nagle + delayed ACK would hold back by ~40 ms each.
struct NoDelay(TcpAcceptor);

impl Acceptor for NoDelay {
    type Io = tokio::net::TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> std::io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        let accepted = self.0.accept().await?;
        // Best effort: a socket that refuses the option still works, only slower.
        let _ = accepted.0.set_nodelay(true);
        Ok(accepted)
    }
}
