//! An OTLP/HTTP trace receiver (no collector can be installed here): it accepts
//! `POST /v1/traces` (protobuf), decodes each request with opentelemetry-proto and keeps the
//! spans, flattened for assertions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use poem::listener::{Acceptor, TcpAcceptor};
use poem::{Endpoint, Request, Response};
use prost::Message;

/// One received span.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// 1 internal, 2 server, 3 client.
    pub kind: i32,
    /// Every attribute as text (arrays as their items joined by `,`).
    pub attributes: BTreeMap<String, String>,
    /// 0 unset, 1 ok, 2 error.
    pub status: i32,
    pub status_message: String,
    /// `service.name` of its resource.
    pub service: String,
}

impl Span {
    /// The attribute `key`, if set.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(Any::ArrayValue(a)) => a
            .values
            .iter()
            .map(|v| text(Some(v)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

#[derive(Default)]
struct Shared {
    spans: Mutex<Vec<Span>>,
    requests: Mutex<usize>,
}

/// The running receiver.
pub struct Receiver {
    /// `http://127.0.0.1:<port>`: the `endpoint` of `[telemetry]`.
    pub url: String,
    shared: Arc<Shared>,
    _server: tokio::task::JoinHandle<()>,
}

struct Collect(Arc<Shared>);

impl Endpoint for Collect {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        if req.uri().path() != "/v1/traces" {
            return Ok(Response::builder()
                .status(poem::http::StatusCode::NOT_FOUND)
                .finish());
        }
        let body = req.take_body().into_vec().await.unwrap_or_default();
        let Ok(export) = ExportTraceServiceRequest::decode(body.as_slice()) else {
            return Ok(Response::builder()
                .status(poem::http::StatusCode::BAD_REQUEST)
                .finish());
        };
        *self.0.requests.lock().unwrap() += 1;
        let mut spans = self.0.spans.lock().unwrap();
        for resource in export.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .map(|r| attributes(&r.attributes))
                .and_then(|a| a.get("service.name").cloned())
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for s in scope.spans {
                    let status = s.status.unwrap_or_default();
                    spans.push(Span {
                        name: s.name,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        kind: s.kind,
                        attributes: attributes(&s.attributes),
                        status: status.code,
                        status_message: status.message,
                        service: service.clone(),
                    });
                }
            }
        }
        Ok(Response::builder()
            .content_type("application/x-protobuf")
            .body(Vec::<u8>::new()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Receiver {
    /// Starts on 127.0.0.1:0.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let _ = acceptor.local_addr();
        let shared = Arc::new(Shared::default());
        let server = tokio::spawn({
            let shared = shared.clone();
            async move {
                let _ = poem::Server::new_with_acceptor(acceptor)
                    .run(Collect(shared))
                    .await;
            }
        });
        Self {
            url,
            shared,
            _server: server,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.shared.spans.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until the spans of trace `trace_id` include one named `last`, and
    /// returns that trace's spans.
    pub async fn trace_with(&self, trace_id: &str, last: &str) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Span> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            if spans.iter().any(|s| s.name == last) {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no span {last:?} of trace {trace_id} within 20 s; got {spans:#?}\nall: {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
