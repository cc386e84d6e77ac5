//! fake-llm: an OpenAI-compatible chat-completions endpoint that answers after a fixed delay.
//!
//! `POST /v1/chat/completions` (non-streaming) sleeps `--latency-ms`, then answers:
//! * no message with role "tool" in `messages`: a call of `search_incident` with
//!   `{"query":"VPN","limit":5}` (finish_reason "tool_calls");
//! * otherwise a final text answer (finish_reason "stop"): `FAKE-ANSWER: ...`, or
//!   `FAKE-TOOL-ERROR: <result>` when a tool result starts with "error" (how the gateway's agent
//!   loop hands a failed tool back to the model), so a caller can tell the inner call failed.
//!
//! `GET /stats`: the counters as JSON. `GET /last/first`, `GET /last/second`: the last request
//! body of a first turn (no tool result) and of a second turn (with one), verbatim, so
//! `llm-probe` can replay exactly what the gateway sends. Anything else: 404.
//! Prints `listening <addr>` on stdout once bound (`--listen 127.0.0.1:0` picks a free port).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Fake OpenAI-compatible chat completions with a fixed latency"
)]
struct Args {
    /// address to listen on (port 0: any free port)
    #[arg(long, default_value = "127.0.0.1:18810")]
    listen: SocketAddr,
    /// time each completion takes, in milliseconds
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// tokio worker threads
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Default)]
struct State {
    latency: Duration,
    requests: AtomicU64,
    tool_call_answers: AtomicU64,
    final_answers: AtomicU64,
    tool_errors_seen: AtomicU64,
    bad_requests: AtomicU64,
    next_call_id: AtomicU64,
    last_first: Mutex<Bytes>,
    last_second: Mutex<Bytes>,
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().unwrap());
    r
}

fn api_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

/// The text of a message's `content` (a string, or an array of `{type:"text", text}` parts).
fn content_text(m: &Value) -> String {
    match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    }
}

async fn handle(
    req: Request<Incoming>,
    st: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let last = |m: &Mutex<Bytes>| {
        let body = m.lock().unwrap().clone();
        let mut r = Response::new(Full::new(body));
        r.headers_mut()
            .insert(CONTENT_TYPE, "application/json".parse().unwrap());
        r
    };
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/chat/completions") => {}
        (&Method::GET, "/stats") => {
            let n = |a: &AtomicU64| a.load(Relaxed);
            return Ok(reply(
                StatusCode::OK,
                json!({
                    "latency_ms": st.latency.as_millis() as u64, "requests": n(&st.requests),
                    "tool_call_answers": n(&st.tool_call_answers), "final_answers": n(&st.final_answers),
                    "tool_errors_seen": n(&st.tool_errors_seen), "bad_requests": n(&st.bad_requests),
                }),
            ));
        }
        (&Method::GET, "/last/first") => return Ok(last(&st.last_first)),
        (&Method::GET, "/last/second") => return Ok(last(&st.last_second)),
        _ => return Ok(api_error(StatusCode::NOT_FOUND, "not found")),
    }
    st.requests.fetch_add(1, Relaxed);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(api_error(
                StatusCode::BAD_REQUEST,
                "could not read the body",
            ));
        }
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(messages) = request["messages"].as_array() else {
        st.bad_requests.fetch_add(1, Relaxed);
        return Ok(api_error(
            StatusCode::BAD_REQUEST,
            "messages: expected an array",
        ));
    };
    let tool_results: Vec<String> = messages
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(content_text)
        .collect();
    let model = request["model"].as_str().unwrap_or("fake").to_owned();
    *(if tool_results.is_empty() {
        &st.last_first
    } else {
        &st.last_second
    })
    .lock()
    .unwrap() = body.clone();

    tokio::time::sleep(st.latency).await;

    let (message, finish_reason) = if tool_results.is_empty() {
        st.tool_call_answers.fetch_add(1, Relaxed);
        let id = format!("call_{}", st.next_call_id.fetch_add(1, Relaxed));
        let call = json!({"id": id, "type": "function",
                          "function": {"name": "search_incident", "arguments": r#"{"query":"VPN","limit":5}"#}});
        (
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [call]}),
            "tool_calls",
        )
    } else {
        st.final_answers.fetch_add(1, Relaxed);
        let text = match tool_results
            .iter()
            .find(|r| r.trim_start().starts_with("error"))
        {
            Some(err) => {
                st.tool_errors_seen.fetch_add(1, Relaxed);
                format!("FAKE-TOOL-ERROR: {err}")
            }
            None => format!(
                "FAKE-ANSWER: read {} tool result(s), {} bytes",
                tool_results.len(),
                tool_results.iter().map(String::len).sum::<usize>()
            ),
        };
        (
            json!({"role": "assistant", "content": text, "refusal": null}),
            "stop",
        )
    };
    let prompt_tokens = body.len() as u64 / 4;
    let completion_tokens = 12u64;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(reply(
        StatusCode::OK,
        json!({
            "id": format!("chatcmpl-fake-{}", st.requests.load(Relaxed)),
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }),
    ))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening {}", listener.local_addr()?);
    let st = Arc::new(State {
        latency: Duration::from_millis(args.latency_ms),
        ..Default::default()
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let st = st.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, st.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(serve(args)) {
        eprintln!("fake-llm: {e}");
        std::process::exit(1);
    }
}
