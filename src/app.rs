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
        .around(|ep, req| async move {
            // A method the admin API does not serve: 405 naming the ones it does.
            let allowed = crate::admin::allowed_methods(req.uri().path());
            let method = req.method().to_string();
            match ep.call(req).await {
                Err(e) if e.is::<poem::error::MethodNotAllowedError>() => {
                    Ok(Error::MethodNotAllowed {
                        method,
                        allowed: allowed.unwrap_or("GET"),
                    }
                    .into_response())
                }
                other => other.map(IntoResponse::into_response),
            }
        })
        .map_to_response()
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
    let cancel = state.cancel().clone();
    let grace = state.settings().shutdown_grace;
    let signal = async move {
        shutdown.await;
        tracing::info!("Shutting down: ending sessions.");
        cancel.cancel();
    };
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(routes(state), signal, Some(grace))
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
