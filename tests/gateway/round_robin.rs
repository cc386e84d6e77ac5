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
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = BoxBody<Bytes, hyper::Error>;

/// The proxy; stops when dropped.
pub struct RoundRobin {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Which backend (index) served each request, in order.
    pub served_by: Arc<Mutex<Vec<usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RoundRobin {
    /// Listens on a free loopback port, in front of `backends` (`host:port`).
    pub async fn spawn(backends: Vec<String>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build_http();
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
                    let i = next.fetch_add(1, Ordering::Relaxed) % backends.len();
                    log.lock().unwrap().push(i);
                    let (mut parts, body) = req.into_parts();
                    let path = parts
                        .uri
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned();
                    parts.uri = format!("http://{}{path}", backends[i]).parse().unwrap();
                    let client = client.clone();
                    async move {
                        let response = match client
                            .request(hyper::Request::from_parts(parts, body))
                            .await
                        {
                            Ok(r) => r.map(BodyExt::boxed),
                            Err(e) => hyper::Response::builder()
                                .status(502)
                                .body(
                                    Full::new(Bytes::from(format!("backend {i}: {e}")))
                                        .map_err(|never: Infallible| match never {})
                                        .boxed(),
                                )
                                .unwrap(),
                        };
                        Ok::<hyper::Response<Body>, Infallible>(response)
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
