//! A round-robin HTTP proxy for the cluster tests: every request goes to the next backend,
//! whatever connection it came on (no stickiness, as a plain balancer in front of replicas),
//! and response bodies stream through (SSE).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = BoxBody<Bytes, hyper::Error>;
type Client = hyper_util::client::legacy::Client<HttpConnector, BoxBody<Bytes, Infallible>>;

/// The proxy; stops when dropped.
pub struct RoundRobin {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Which backend (index) served each request, in order (a dead backend's turn goes to
    /// the next).
    pub served_by: Arc<Mutex<Vec<usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RoundRobin {
    /// Listens on a free loopback port, in front of `backends` (`host:port`).
    pub async fn spawn(backends: Vec<String>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client: Client =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
        let next = Arc::new(AtomicUsize::new(0));
        let served_by = Arc::new(Mutex::new(Vec::new()));
        let backends = Arc::new(backends);
        let log = served_by.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (client, next, backends, log) =
                    (client.clone(), next.clone(), backends.clone(), log.clone());
                let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let (client, next, backends, log) =
                        (client.clone(), next.clone(), backends.clone(), log.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        // Buffered, so that a request a dead backend refused can go to the
                        // next one, as a balancer's health checks would have it.
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let path = parts
                            .uri
                            .path_and_query()
                            .map_or("/", |p| p.as_str())
                            .to_owned();
                        let mut last_error = String::new();
                        for _ in 0..backends.len() {
                            let i = next.fetch_add(1, Ordering::Relaxed) % backends.len();
                            let mut request = hyper::Request::builder()
                                .method(parts.method.clone())
                                .uri(format!("http://{}{path}", backends[i]))
                                .body(
                                    Full::new(body.clone())
                                        .map_err(|never: Infallible| match never {})
                                        .boxed(),
                                )
                                .unwrap();
                            *request.headers_mut() = parts.headers.clone();
                            match client.request(request).await {
                                Ok(r) => {
                                    log.lock().unwrap().push(i);
                                    return Ok::<hyper::Response<Body>, Infallible>(
                                        r.map(BodyExt::boxed),
                                    );
                                }
                                Err(e) if e.is_connect() => {
                                    last_error = format!("backend {i}: {e}")
                                }
                                Err(e) => {
                                    last_error = format!("backend {i}: {e}");
                                    break;
                                }
                            }
                        }
                        Ok(hyper::Response::builder()
                            .status(502)
                            .body(
                                Full::new(Bytes::from(last_error))
                                    .map_err(|never: Infallible| match never {})
                                    .boxed(),
                            )
                            .unwrap())
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            served_by,
            task,
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
