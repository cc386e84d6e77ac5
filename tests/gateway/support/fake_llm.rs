//! An OpenAI-compatible chat-completions server that plays a script, for tests.
//!
//! Each request takes the next step of the script (in order). It records what it received
//! (path, query, headers, body) and can answer with tool calls, text, an echo of the last
//! tool result or of its task, errors with `Retry-After`, slow, held or malformed answers, or
//! an answer that never comes (whose abandonment it reports).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::{Body, Endpoint, Request, Response};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Step {
    /// The model asks for these tool calls: `(name, arguments)`.
    ToolCalls(Vec<(&'static str, Value)>),
    /// The model answers with this text.
    Text(&'static str),
    /// The model answers with `prefix` + the content of the last tool message it was sent.
    Echo(&'static str),
    /// The model answers with `prefix` + the content of the last user message it was sent
    /// (its task): the answer follows the request, whichever request takes this step.
    EchoTask(&'static str),
    /// An HTTP error with an optional `Retry-After` and an OpenAI-style error body.
    Status(u16, Option<&'static str>),
    /// Wait, then take the inner step.
    Slow(Duration, Box<Step>),
    /// Wait until the test releases the gate (`Notify::notify_one`), then take the inner step:
    /// the request is held inside the gateway for as long as the test needs, with no timing.
    Held(Arc<Notify>, Box<Step>),
    /// 200 with a body that is not a chat completion.
    Malformed,
    /// Headers, then a body that never ends: the client has to give up.
    Hang,
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub api_key: Option<String>,
    /// The W3C `traceparent` header (the gateway's tracing).
    pub traceparent: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Step>>,
    received: Mutex<Vec<Received>>,
    arrived: Notify,
}

/// The running fake.
pub struct FakeLlm {
    pub url: String,
    shared: Arc<Shared>,
    abandoned: tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeLlm {
    /// Starts the fake on 127.0.0.1:0 with `script`.
    pub async fn start(script: Vec<Step>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let _ = acceptor.local_addr();
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            ..Default::default()
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let ep = FakeEndpoint {
            shared: shared.clone(),
            abandoned: tx,
        };
        let server = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(ep).await;
        });
        Self {
            url: format!("http://{addr}"),
            shared,
            abandoned: tokio::sync::Mutex::new(rx),
            _server: server,
        }
    }

    /// Adds steps to the script.
    pub fn push(&self, steps: impl IntoIterator<Item = Step>) {
        self.shared.script.lock().unwrap().extend(steps);
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived (10 s deadline).
    pub async fn wait_requests(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.shared.arrived.notified();
            if self.shared.received.lock().unwrap().len() >= n {
                return;
            }
            assert!(
                tokio::time::timeout_at(deadline, notified).await.is_ok(),
                "the fake LLM did not get {n} requests within 10 s"
            );
        }
    }

    /// Waits until a `Hang` answer was abandoned by its client (10 s deadline).
    pub async fn wait_abandoned(&self) {
        let mut rx = self.abandoned.lock().await;
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert!(
            matches!(got, Ok(Some(()))),
            "the hanging LLM request was not abandoned within 10 s"
        );
    }

    /// Steps not consumed yet.
    pub fn remaining(&self) -> usize {
        self.shared.script.lock().unwrap().len()
    }
}

struct FakeEndpoint {
    shared: Arc<Shared>,
    abandoned: mpsc::UnboundedSender<()>,
}

impl Endpoint for FakeEndpoint {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let body: Value = req.take_body().into_json().await.unwrap_or(Value::Null);
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let received = Received {
            path: req.uri().path().to_owned(),
            query: req.uri().query().unwrap_or_default().to_owned(),
            authorization: header("authorization"),
            api_key: header("api-key"),
            traceparent: header("traceparent"),
            body: body.clone(),
        };
        self.shared.received.lock().unwrap().push(received);
        self.shared.arrived.notify_waiters();
        let step = self
            .shared
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Step::Status(500, None));
        Ok(self.answer(step, &body).await)
    }
}

impl FakeEndpoint {
    async fn answer(&self, step: Step, body: &Value) -> Response {
        match step {
            Step::ToolCalls(calls) => {
                let calls: Vec<Value> = calls
                    .iter()
                    .enumerate()
                    .map(|(i, (name, args))| {
                        json!({"id": format!("call_{i}_{name}"), "type": "function",
                               "function": {"name": name, "arguments": args.to_string()}})
                    })
                    .collect();
                completion(
                    json!({"role": "assistant", "content": null, "tool_calls": calls}),
                    "tool_calls",
                )
            }
            Step::Text(text) => completion(json!({"role": "assistant", "content": text}), "stop"),
            Step::Echo(prefix) => {
                let last_tool = body["messages"]
                    .as_array()
                    .and_then(|m| m.iter().rev().find(|m| m["role"] == "tool"))
                    .and_then(|m| m["content"].as_str())
                    .unwrap_or("(no tool result)");
                completion(
                    json!({"role": "assistant", "content": format!("{prefix}{last_tool}")}),
                    "stop",
                )
            }
            Step::EchoTask(prefix) => {
                let task = body["messages"]
                    .as_array()
                    .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                    .and_then(|m| m["content"].as_str())
                    .unwrap_or("(no task)");
                completion(
                    json!({"role": "assistant", "content": format!("{prefix}{task}")}),
                    "stop",
                )
            }
            Step::Status(code, retry_after) => {
                let mut resp = Response::builder()
                    .status(StatusCode::from_u16(code).unwrap())
                    .content_type("application/json");
                if let Some(ra) = retry_after {
                    resp = resp.header("retry-after", ra);
                }
                resp.body(
                    json!({"error": {"message": format!("scripted {code}"), "type": "scripted_error", "param": null, "code": null}})
                        .to_string(),
                )
            }
            Step::Slow(delay, inner) => {
                tokio::time::sleep(delay).await;
                Box::pin(self.answer(*inner, body)).await
            }
            Step::Held(gate, inner) => {
                gate.notified().await;
                Box::pin(self.answer(*inner, body)).await
            }
            Step::Malformed => Response::builder()
                .content_type("application/json")
                .body("{\"this is\": \"not a completion\""),
            Step::Hang => {
                let guard = AbandonGuard(self.abandoned.clone());
                // A body that trickles whitespace forever: a write to a closed connection
                // fails, the stream is dropped, and the guard reports it.
                let stream = futures::stream::unfold(guard, |guard| async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some((
                        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b" ")),
                        guard,
                    ))
                });
                Response::builder()
                    .content_type("application/json")
                    .body(Body::from_bytes_stream(stream))
            }
        }
    }
}

struct AbandonGuard(mpsc::UnboundedSender<()>);

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

fn completion(message: Value, finish_reason: &str) -> Response {
    Response::builder().content_type("application/json").body(
        json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_764_000_000u32,
            "model": "fake-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        })
        .to_string(),
    )
}
