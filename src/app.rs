//! The composition root: settings + agents → [`AppState`] → poem routes, and [`run`].

use std::net::SocketAddr;

use poem::http::StatusCode;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Response, Route, handler};
use serde_json::json;

use crate::edge::AgentRoutes;
use crate::error::{Error, json_response};
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
    let agents = std::sync::Arc::new(AgentRoutes::new(state.clone()));
    Route::new()
        .nest_no_strip("/agents", agents.clone())
        // The default agent's, at the seed's URLs (`[server] default_agent`).
        .at("/sse", agents.clone())
        .at("/messages", agents.clone())
        .at("/mcp", agents)
        .nest_no_strip("/admin", api.clone())
        .at("/healthz", api.clone())
        .at("/readyz", api)
        .at("/", index)
        // RFC 9728: the gateway's, and each agent URL's (the path suffixed).
        .at(crate::oauth::METADATA_PATH, poem::get(protected_resource))
        .at(
            format!("{}/*rest", crate::oauth::METADATA_PATH),
            poem::get(protected_resource),
        )
        .at("/metrics", metrics)
        .at("/ui", poem::get(crate::console::page))
        .at("/ui/", poem::get(crate::console::page))
        .at("/ui/app.js", poem::get(crate::console::script))
        .at("/ui/app.css", poem::get(crate::console::style))
        .at("/openapi.json", spec_json)
        .at("/openapi.yaml", spec_yaml)
        .nest("/docs", docs)
        .data(state)
        .catch_error(|e: poem::error::ParsePathError| async move {
            Error::BadRequest(format!("malformed path: {e}")).into_response()
        })
        .around(move |ep, req| {
            let state = Some(outer.clone());
            async move {
                let route = route_label(req.uri().path());
                let request_id = crate::mcp::request::RequestId::of(&req);
                let mut req = req;
                req.extensions_mut().insert(request_id.clone());
                // Kept for the errors below and the metrics: both clones share the request's
                // bytes (a standard method and a URI allocate nothing here).
                let method = req.method().clone();
                let uri = req.uri().clone();
                let response = match ep.call(req).await {
                    // A path that names nothing: 404 listing the agents' URLs.
                    Err(e) if e.is::<poem::error::NotFoundError>() => match &state {
                        Some(state) => crate::edge::no_route(state, uri.path()).into_response(),
                        None => Error::NoRoute(uri.path().to_owned()).into_response(),
                    },
                    // A method the admin API does not serve: 405 naming the ones it does.
                    Err(e) if e.is::<poem::error::MethodNotAllowedError>() => {
                        Error::MethodNotAllowed {
                            method: method.to_string(),
                            allowed: crate::admin::allowed_methods(uri.path()).unwrap_or("GET"),
                        }
                        .into_response()
                    }
                    Ok(r) => r.into_response(),
                    Err(e) => e.into_response(),
                };
                if let Some(state) = state {
                    state.metrics().http_request(
                        route,
                        method.as_str(),
                        response.status().as_u16(),
                    );
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
        (Some("mcp"), None, _) => "mcp",
        (Some("sse"), None, _) => "sse",
        (Some("messages"), None, _) => "messages",
        (Some("admin"), _, _) => "admin",
        (Some("healthz"), None, _) => "healthz",
        (Some("readyz"), None, _) => "readyz",
        (Some("metrics"), None, _) => "metrics",
        (Some("openapi.json" | "openapi.yaml" | "docs"), _, _) => "openapi",
        (Some("ui"), _, _) => "ui",
        (Some(".well-known"), _, _) => "well_known",
        (Some(""), None, _) => "index",
        _ => "other",
    }
}

/// `GET /.well-known/oauth-protected-resource[/<resource path>]`: the protected resource
/// metadata (RFC 9728) of the gateway, or of the agent URL whose path follows (`/agents/<name>/mcp`
/// or `/sse`, the default agent's `/mcp` or `/sse`). 404 without `[auth.oauth]`. Any origin
/// may read it (browser-based MCP clients discover from it).
#[handler]
fn protected_resource(req: &poem::Request, state: poem::web::Data<&AppState>) -> Response {
    let path = req.uri().path();
    let Some(oauth) = state.oauth() else {
        return Error::NoRoute(format!(
            "{path}: this gateway takes no OAuth access tokens ([auth.oauth] is not configured)"
        ))
        .into_response();
    };
    let rest = path
        .strip_prefix(crate::oauth::METADATA_PATH)
        .unwrap_or("")
        .trim_end_matches('/');
    // The public URL's own path (a gateway behind `/switchboard`) comes before the agent's.
    let base = reqwest::Url::parse(&oauth.spec().public_url)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    let rest = match rest.strip_prefix(base.as_str()) {
        Some(r) if !base.is_empty() => r,
        _ => rest,
    };
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    let agent = match segments.as_slice() {
        [] => None,
        ["agents", name, "mcp" | "sse"] => match state.agent(name) {
            Some(agent) => Some(agent.name.to_string()),
            None => return Error::UnknownAgent((*name).to_owned()).into_response(),
        },
        ["mcp" | "sse"] => match state.agents().default_agent() {
            Some(agent) => Some(agent.name.to_string()),
            None => return crate::edge::no_route(&state, rest).into_response(),
        },
        _ => {
            return Error::NoRoute(format!(
                "{path}: metadata is served for the gateway and for /agents/<name>/mcp and /sse"
            ))
            .into_response();
        }
    };
    let mut response = json_response(StatusCode::OK, &oauth.metadata(rest, agent.as_deref()));
    response.headers_mut().insert(
        poem::http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        poem::http::HeaderValue::from_static("*"),
    );
    response
}

/// `GET /metrics`: Prometheus (OpenMetrics) text, under the admin API's access rule
/// (loopback peers, or the admin token) unless `[metrics] public` opens it to anyone:
/// its labels name the clients and agents.
#[handler]
fn metrics(req: &poem::Request, state: poem::web::Data<&AppState>) -> Response {
    if !state.settings().metrics_public
        && let Err(denied) = crate::admin::access(&state, req)
    {
        return metrics_denied(denied);
    }
    let mut counts: std::collections::BTreeMap<(std::sync::Arc<str>, &'static str), usize> =
        std::collections::BTreeMap::new();
    for s in state.sessions().list() {
        *counts
            .entry((s.agent.clone(), s.transport.as_str()))
            .or_default() += 1;
    }
    let agents = state.agents().all();
    let clients = state.clients();
    let served = crate::metrics::Served {
        agents: agents
            .iter()
            .map(|a| crate::metrics::ServedSeries {
                name: &a.name,
                tools: a
                    .agent
                    .all_tool_definitions()
                    .into_iter()
                    .chain(a.agent.federated_tools())
                    .map(|t| t.name.to_string())
                    .collect(),
                model: a.agent.spec.model.as_ref().map(|m| m.model.as_str()),
            })
            .collect(),
        clients: if clients.is_open() {
            vec!["anonymous"]
        } else {
            clients.named().iter().map(|c| &*c.name).collect()
        },
        cluster: state.cluster().is_some(),
    };
    let text = state.metrics().render(
        counts
            .iter()
            .map(|((agent, transport), n)| (&**agent, *transport, *n)),
        &served,
    );
    Response::builder()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text)
}

/// The answer to a scrape the access rule refused: 401 (with `WWW-Authenticate`) or 403.
fn metrics_denied(denied: crate::admin::Denied) -> Response {
    use crate::admin::Denied;
    const OPEN: &str = "set [metrics] public = true in switchboard.toml to let any scraper in";
    let (status, code, message) = match denied {
        Denied::MissingToken => (
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "/metrics needs the admin token: send Authorization: Bearer <token>, or {OPEN}"
            ),
        ),
        Denied::WrongToken => (
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("the admin token is wrong; /metrics needs the admin token, or {OPEN}"),
        ),
        Denied::NotLocal => (
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "/metrics answers local requests only while no admin token is configured: set [admin] token (or SWITCHBOARD_ADMIN_TOKEN) and scrape with it, or {OPEN}"
            ),
        ),
    };
    let mut response = json_response(status, &json!({"code": code, "message": message}));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            poem::http::header::WWW_AUTHENTICATE,
            poem::http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

#[handler]
fn index(state: poem::web::Data<&AppState>) -> Response {
    let agents: Vec<_> = state
        .agents()
        .all()
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
    // The agent also served at the seed's URLs, if any.
    let default_agent = state
        .agents()
        .default_agent()
        .map(|a| json!({"name": &*a.name, "sse": "/sse", "mcp": "/mcp"}));
    json_response(
        StatusCode::OK,
        &json!({"name": "switchboard", "version": env!("CARGO_PKG_VERSION"), "agents": agents, "default_agent": default_agent}),
    )
}

/// Serves `state` on `listener` until `shutdown` completes, then ends every session
/// (root token first, so SSE streams close) and drains within the grace period.
///
/// The accept loop is ours rather than poem's `Server`: poem serves every connection through
/// hyper-util's `auto` builder (HTTP/1 and HTTP/2 detection), whose per-connection state costs
/// ~8 KiB more than an HTTP/1-only connection, and an idle SSE session is mostly its
/// connection (`tests/bench/conn-cost.py`). MCP clients speak HTTP/1.1 (HTTP/2 reaches the
/// gateway through a proxy that terminates it), so each connection gets hyper's HTTP/1
/// server, with Nagle off, and poem's routes answer its requests.
///
/// # Errors
/// When the listener's address cannot be read.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let grace = state.settings().shutdown_grace;
    let head_timeout = state.settings().request_head_timeout;
    let _background = crate::background::start(&state);
    let endpoint = std::sync::Arc::new(routes(state.clone()));
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was accepted:
                // the listener itself is fine; back off a moment instead of spinning.
                tracing::warn!(error = %e, "Could not accept a connection.");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        // Best effort: a socket that refuses the option still works, only slower. SSE
        // events and small JSON-RPC answers are several small writes, which Nagle + delayed
        // ACK would hold back by ~40 ms each.
        let _ = stream.set_nodelay(true);
        let endpoint = endpoint.clone();
        // Boxed: hyper keeps a slot for the request future in every connection for the
        // connection's life, sized to the future; poem's routes make that future ~8 KiB, a
        // box makes the slot a pointer and the future lives only while a request runs.
        let service = hyper::service::service_fn(move |req| {
            let endpoint = endpoint.clone();
            Box::pin(async move {
                let awaits_continue = req
                    .headers()
                    .get(poem::http::header::EXPECT)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
                let mut req = poem::Request::from((
                    req,
                    LocalAddr(poem::Addr::SocketAddr(local)),
                    RemoteAddr(poem::Addr::SocketAddr(peer)),
                    poem::http::uri::Scheme::HTTP,
                ));
                // A body answered before its end is still read (bounded), so that the
                // answer reaches a client that is still writing (`edge::linger`).
                let body =
                    crate::edge::linger::Lingering::new(req.take_body().into(), awaits_continue);
                req.set_body(http_body_util::combinators::BoxBody::new(body));
                let response: hyper::Response<http_body_util::combinators::BoxBody<_, _>> =
                    endpoint.get_response(req).await.into();
                Ok::<_, std::convert::Infallible>(response)
            })
        });
        // Close a connection whose request head has not arrived within
        // `request_head_timeout_secs` (slow-loris clients); the timer drives it.
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(head_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        // Spawned as the connection future itself, not inside an `async` block: a block holds
        // the future it captured and, while awaiting it, a moved copy, so every connection's
        // task was twice the connection's size (1.7 KiB instead of 0.9, for as long as the
        // connection lives: an idle SSE session's).
        tokio::spawn(futures::FutureExt::map(connection, |result| {
            // A client that goes away mid-request is not the server's problem.
            if let Err(e) = result {
                tracing::debug!(error = %e, "Connection ended with an error.");
            }
        }));
    }
    drop(listener);
    tracing::info!(
        grace_secs = grace.as_secs(),
        "Shutting down: no new connections; calls in flight may finish."
    );
    // The drain ends every session (so every stream) within `grace` + 1 s; connections
    // finish the response they are writing and close.
    let draining = state.clone();
    tokio::spawn(async move { crate::shutdown::drain(&draining, grace).await });
    if tokio::time::timeout(
        grace + std::time::Duration::from_secs(3),
        connections.shutdown(),
    )
    .await
    .is_err()
    {
        tracing::warn!("Connections still open after the grace period; exiting anyway.");
    }
    // The processes of stdio upstreams end with the gateway, gracefully (bounded), and
    // are waited for: none is left behind.
    if tokio::time::timeout(
        crate::tools::upstream::STOP_LIMIT + std::time::Duration::from_secs(1),
        state.stop_upstreams(),
    )
    .await
    .is_err()
    {
        tracing::warn!("Upstream MCP server processes still ending at exit.");
    }
    // Every call answered has its record queued: write them before the process ends.
    if let Some(trail) = state.audit()
        && tokio::time::timeout(crate::audit::SHUTDOWN_FLUSH, trail.flush())
            .await
            .is_err()
    {
        tracing::warn!("Audit records still queued at exit could not all be written in time.");
    }
    Ok(())
}

/// Every URL the gateway serves for `agent` at `addr`.
pub fn agent_urls(addr: SocketAddr, agent: &str) -> (String, String) {
    (
        format!("http://{addr}/agents/{agent}/sse"),
        format!("http://{addr}/agents/{agent}/mcp"),
    )
}
