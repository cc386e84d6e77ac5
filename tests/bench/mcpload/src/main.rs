//! mcpload: closed-loop load generator for MCP servers over HTTP.
//!
//! * `--transport sse`        legacy HTTP+SSE: GET the stream, read the `endpoint` event,
//!                            POST JSON-RPC to it (expects 2xx), read responses on the stream.
//! * `--transport streamable` Streamable HTTP: POST JSON-RPC with `Mcp-Session-Id`; the response
//!                            is `application/json` or a (short) `text/event-stream`.
//! * `--transport stateless`  Streamable HTTP under MCP 2026-07-28, no session: no `initialize`;
//!                            every `tools/call` carries the protocol version, client info and
//!                            capabilities in `params._meta` and `Mcp-Method`/`Mcp-Name` headers.
//!
//! Switchboard's copy of ../shared/bench/mcpload (same code and dependency versions), with the
//! `stateless` transport added for the gateway's benchmark of the 2026-07-28 path.
//!
//! Load mode (default): C sessions, each initialises (initialize + notifications/initialized)
//! and then loops `tools/call` one at a time (closed loop) for `--warmup` + `--duration` seconds;
//! only calls started after the warm-up and finished before the end are recorded.
//!
//! Idle mode (`--idle-sessions N[,M...]`): opens initialised sessions up to each cumulative
//! target, samples the RSS of `--server-pid` (and its descendants) at each stage, holds.
//!
//! Output: a human summary, then one JSON object on the last stdout line.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use url::Url;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
enum Transport {
    Sse,
    Streamable,
    /// Streamable HTTP, MCP 2026-07-28, without a session.
    Stateless,
}

#[derive(Parser, Debug, Clone)]
#[command(version, about = "Closed-loop MCP load generator (legacy HTTP+SSE and Streamable HTTP)")]
struct Args {
    /// sse (legacy HTTP+SSE), streamable (Streamable HTTP) or stateless (Streamable HTTP,
    /// MCP 2026-07-28, no session)
    #[arg(long, value_enum)]
    transport: Transport,
    /// SSE stream URL (sse) or MCP endpoint URL (streamable)
    #[arg(long)]
    url: String,
    /// concurrent sessions, each with one call in flight
    #[arg(short = 'c', long, default_value_t = 1)]
    concurrency: usize,
    /// measured seconds (load mode) / hold seconds per stage (idle mode)
    #[arg(short = 'd', long, default_value_t = 10.0)]
    duration: f64,
    /// unrecorded seconds before the measurement window
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// tool to call
    #[arg(long, default_value = "echo")]
    tool: String,
    /// JSON arguments of the tool call
    #[arg(long, default_value = r#"{"text":"hello"}"#)]
    args: String,
    /// idle mode: cumulative session targets, e.g. 1000 or 1000,5000
    #[arg(long, value_delimiter = ',')]
    idle_sessions: Option<Vec<usize>>,
    /// sessions opened at once while establishing
    #[arg(long, default_value_t = 64)]
    open_concurrency: usize,
    /// idle streamable sessions also hold the GET (server-to-client) SSE stream
    #[arg(long)]
    streamable_get: bool,
    /// sends Authorization: Bearer TOKEN on every request
    #[arg(long)]
    bearer: Option<String>,
    /// tokio worker threads of the load generator
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// upper bound on calls started (load mode)
    #[arg(long, default_value_t = 5_000_000)]
    max_calls: u64,
    /// per-request timeout in seconds (also bounds session setup)
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// protocolVersion sent in initialize
    #[arg(long, default_value = "2025-06-18")]
    protocol_version: String,
    /// PID of the server: its RSS (plus descendants') is sampled and reported
    #[arg(long)]
    server_pid: Option<u32>,
    /// seconds to wait before each RSS sample in idle mode
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// free-form label copied into the JSON output
    #[arg(long, default_value = "")]
    label: String,
}

// ---------------------------------------------------------------- errors

#[derive(Debug, Clone)]
enum Err {
    Http(u16),
    Transport(String),
    Timeout,
    Closed,
    Protocol(String),
}

impl std::fmt::Display for Err {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Err::Http(s) => write!(f, "http status {s}"),
            Err::Transport(e) => write!(f, "transport: {e}"),
            Err::Timeout => write!(f, "timeout"),
            Err::Closed => write!(f, "stream closed"),
            Err::Protocol(e) => write!(f, "protocol: {e}"),
        }
    }
}

impl From<hyper::Error> for Err {
    fn from(e: hyper::Error) -> Self {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        Err::Transport(s)
    }
}

impl From<std::io::Error> for Err {
    fn from(e: std::io::Error) -> Self {
        Err::Transport(e.to_string())
    }
}

#[derive(Default, Debug, Clone, Copy)]
struct ErrCounts {
    http: u64,
    transport: u64,
    timeout: u64,
    closed: u64,
    protocol: u64,
    rpc: u64,
}

impl ErrCounts {
    fn add(&mut self, e: &Err) {
        match e {
            Err::Http(_) => self.http += 1,
            Err::Transport(_) => self.transport += 1,
            Err::Timeout => self.timeout += 1,
            Err::Closed => self.closed += 1,
            Err::Protocol(_) => self.protocol += 1,
        }
    }
    fn merge(&mut self, o: &ErrCounts) {
        self.http += o.http;
        self.transport += o.transport;
        self.timeout += o.timeout;
        self.closed += o.closed;
        self.protocol += o.protocol;
        self.rpc += o.rpc;
    }
    fn total(&self) -> u64 {
        self.http + self.transport + self.timeout + self.closed + self.protocol + self.rpc
    }
    fn json(&self) -> Value {
        json!({"total": self.total(), "http": self.http, "transport": self.transport, "timeout": self.timeout,
               "closed": self.closed, "protocol": self.protocol, "rpc": self.rpc})
    }
}

// ---------------------------------------------------------------- SSE parsing

#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

struct SseEvent {
    event: String,
    data: String,
}

impl SseParser {
    /// Feeds bytes; complete events are appended to `out`. LF and CRLF line ends.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        self.buf.extend_from_slice(chunk);
        let SseParser { buf, event, data, has_data } = self;
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let mut line = &buf[start..end];
            start = end + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.is_empty() {
                if *has_data {
                    data.pop(); // trailing '\n'
                    let name = if event.is_empty() { "message".to_string() } else { std::mem::take(event) };
                    out.push(SseEvent { event: name, data: std::mem::take(data) });
                }
                event.clear();
                data.clear();
                *has_data = false;
                continue;
            }
            if line[0] == b':' {
                continue; // comment / keep-alive
            }
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &b""[..]),
            };
            match field {
                b"event" => *event = String::from_utf8_lossy(value).into_owned(),
                b"data" => {
                    data.push_str(&String::from_utf8_lossy(value));
                    data.push('\n');
                    *has_data = true;
                }
                _ => {}
            }
        }
        buf.drain(..start);
    }
}

// ---------------------------------------------------------------- JSON-RPC

#[derive(Deserialize)]
struct RpcMsg {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

/// (id, is_error) of every response in a JSON-RPC message or batch.
fn parse_responses(data: &[u8]) -> Vec<(Option<u64>, bool)> {
    // (a derived struct also accepts a JSON array as a tuple, so dispatch on the first byte)
    if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        if let Ok(ms) = serde_json::from_slice::<Vec<RpcMsg>>(data) {
            return ms.into_iter().map(|m| (m.id.as_ref().and_then(Value::as_u64), m.error.is_some())).collect();
        }
    } else if let Ok(m) = serde_json::from_slice::<RpcMsg>(data) {
        return vec![(m.id.as_ref().and_then(Value::as_u64), m.error.is_some())];
    }
    Vec::new()
}

struct Ctx {
    args: Args,
    url: Url,
    /// host:port to connect to
    addr: String,
    timeout: Duration,
    call_params: String,
    init_params: String,
    auth: Option<HeaderValue>,
    /// `Mcp-Name` of a stateless call (the tool).
    tool_name: HeaderValue,
}

// ---------------------------------------------------------------- HTTP/1.1 connections
//
// Each session owns its connections (no shared pool): one for POSTs and, for the legacy
// transport, one for the GET stream. Hyper's client connection API, TCP_NODELAY on.

type Body = Full<Bytes>;

struct Conn {
    sender: Option<SendRequest<Body>>,
    driver: Option<JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(d) = &self.driver {
            d.abort();
        }
    }
}

impl Conn {
    fn new() -> Self {
        Conn { sender: None, driver: None }
    }

    async fn connect(&mut self, ctx: &Ctx) -> Result<(), Err> {
        if let Some(d) = self.driver.take() {
            d.abort();
        }
        self.sender = None;
        let tcp = tokio::time::timeout(ctx.timeout, tokio::net::TcpStream::connect(&ctx.addr))
            .await
            .map_err(|_| Err::Timeout)??;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        self.driver = Some(tokio::spawn(async move {
            let _ = conn.await;
        }));
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends on this connection, (re)connecting first if it is closed.
    async fn send(&mut self, ctx: &Ctx, req: Request<Body>) -> Result<Response<Incoming>, Err> {
        let usable = match self.sender.as_mut() {
            Some(s) if !s.is_closed() => s.ready().await.is_ok(),
            _ => false,
        };
        if !usable {
            self.connect(ctx).await?;
            self.sender.as_mut().unwrap().ready().await?;
        }
        Ok(self.sender.as_mut().unwrap().send_request(req).await?)
    }

    /// Drops the connection (idle sessions do not keep their POST connection).
    fn close(&mut self) {
        self.sender = None;
        if let Some(d) = self.driver.take() {
            d.abort();
        }
    }
}

fn build(ctx: &Ctx, method: Method, url: &Url, headers: &[(&'static str, &HeaderValue)], body: Bytes) -> Request<Body> {
    let pq = match url.query() {
        Some(q) => format!("{}?{}", url.path(), q),
        None => url.path().to_string(),
    };
    let mut b = Request::builder().method(method).uri(pq);
    let h = b.headers_mut().unwrap();
    h.insert(HOST, HeaderValue::from_str(&ctx.addr).unwrap());
    if let Some(a) = &ctx.auth {
        h.insert(AUTHORIZATION, a.clone());
    }
    for (k, v) in headers {
        h.insert(*k, (*v).clone());
    }
    b.body(Full::new(body)).unwrap()
}

static JSON: HeaderValue = HeaderValue::from_static("application/json");
static EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
static BOTH: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");
static TOOLS_CALL: HeaderValue = HeaderValue::from_static("tools/call");
const STATELESS_VERSION: &str = "2026-07-28";

fn request_body(id: u64, method: &str, params: &str) -> Bytes {
    Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#))
}

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

fn check_status(resp: &Response<Incoming>) -> Result<(), Err> {
    if resp.status().is_success() { Ok(()) } else { Err(Err::Http(resp.status().as_u16())) }
}

async fn drain(resp: Response<Incoming>) -> Result<Bytes, Err> {
    Ok(resp.into_body().collect().await?.to_bytes())
}

// ---------------------------------------------------------------- legacy SSE session

enum SseItem {
    Endpoint(String),
    Rpc { id: Option<u64>, error: bool, at: Instant },
}

async fn sse_reader(resp: Response<Incoming>, tx: mpsc::UnboundedSender<SseItem>, _conn: Conn) {
    let mut body = resp.into_body();
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        let Ok(chunk) = frame.into_data() else { continue };
        parser.feed(&chunk, &mut events);
        let at = Instant::now();
        for ev in events.drain(..) {
            if ev.event == "endpoint" {
                if tx.send(SseItem::Endpoint(ev.data)).is_err() {
                    return;
                }
            } else if ev.event == "message" {
                for (id, error) in parse_responses(ev.data.as_bytes()) {
                    if tx.send(SseItem::Rpc { id, error, at }).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

struct SseSession {
    post_url: Url,
    post: Conn,
    rx: mpsc::UnboundedReceiver<SseItem>,
    reader: JoinHandle<()>,
    next_id: u64,
}

impl Drop for SseSession {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl SseSession {
    async fn open(ctx: &Ctx, keep_post_conn: bool) -> Result<Self, Err> {
        let fut = async {
            let mut stream_conn = Conn::new();
            let req = build(ctx, Method::GET, &ctx.url, &[("accept", &EVENT_STREAM)], Bytes::new());
            let resp = stream_conn.send(ctx, req).await?;
            check_status(&resp)?;
            let (tx, mut rx) = mpsc::unbounded_channel();
            let reader = tokio::spawn(sse_reader(resp, tx, stream_conn));
            let endpoint = match rx.recv().await {
                None => {
                    return Err(Err::Closed);
                }
                Some(SseItem::Endpoint(e)) => e,
                Some(_) => {
                    reader.abort();
                    return Err(Err::Protocol("first event is not `endpoint`".into()));
                }
            };
            let post_url = ctx.url.join(endpoint.trim()).map_err(|e| Err::Protocol(format!("endpoint url: {e}")))?;
            let mut s = SseSession { post_url, post: Conn::new(), rx, reader, next_id: 0 };
            s.rpc(ctx, "initialize", &ctx.init_params).await?;
            s.send_post(ctx, Bytes::from_static(INITIALIZED.as_bytes())).await?;
            if !keep_post_conn {
                s.post.close();
            }
            Ok(s)
        };
        tokio::time::timeout(ctx.timeout, fut).await.map_err(|_| Err::Timeout)?
    }

    async fn send_post(&mut self, ctx: &Ctx, body: Bytes) -> Result<(), Err> {
        let req = build(ctx, Method::POST, &self.post_url, &[("content-type", &JSON)], body);
        let resp = self.post.send(ctx, req).await?;
        check_status(&resp)?;
        drain(resp).await?; // so the connection can carry the next POST
        Ok(())
    }

    /// Returns (latency, is JSON-RPC error).
    async fn rpc(&mut self, ctx: &Ctx, method: &str, params: &str) -> Result<(Duration, bool), Err> {
        self.next_id += 1;
        let id = self.next_id;
        let body = request_body(id, method, params);
        let t0 = Instant::now();
        self.send_post(ctx, body).await?;
        loop {
            match self.rx.recv().await {
                Some(SseItem::Rpc { id: Some(got), error, at }) if got == id => {
                    return Ok((at.saturating_duration_since(t0), error));
                }
                Some(_) => continue,
                None => return Err(Err::Closed),
            }
        }
    }

    fn alive(&self) -> bool {
        !self.reader.is_finished()
    }
}

// ---------------------------------------------------------------- Streamable HTTP session

struct HttpSession {
    conn: Conn,
    session_id: Option<HeaderValue>,
    protocol: Option<HeaderValue>,
    next_id: u64,
    get_stream: Option<JoinHandle<()>>,
    /// No session (MCP 2026-07-28): every call names its method and tool in headers.
    stateless: bool,
}

impl Drop for HttpSession {
    fn drop(&mut self) {
        if let Some(h) = &self.get_stream {
            h.abort();
        }
    }
}

impl HttpSession {
    fn request(&self, ctx: &Ctx, method: Method, accept: &HeaderValue, body: Bytes) -> Request<Body> {
        let mut hs: Vec<(&'static str, &HeaderValue)> = vec![("accept", accept)];
        if !body.is_empty() {
            hs.push(("content-type", &JSON));
        }
        if let Some(sid) = &self.session_id {
            hs.push(("mcp-session-id", sid));
        }
        if let Some(p) = &self.protocol {
            hs.push(("mcp-protocol-version", p));
        }
        if self.stateless {
            hs.push(("mcp-method", &TOOLS_CALL));
            hs.push(("mcp-name", &ctx.tool_name));
        }
        build(ctx, method, &ctx.url, &hs, body)
    }

    async fn open(ctx: &Ctx, with_get: bool, keep_conn: bool) -> Result<Self, Err> {
        let mut s = HttpSession { conn: Conn::new(), session_id: None, protocol: None, next_id: 0, get_stream: None, stateless: false };
        let fut = async {
            s.next_id += 1;
            let req = s.request(ctx, Method::POST, &BOTH, request_body(s.next_id, "initialize", &ctx.init_params));
            let resp = s.conn.send(ctx, req).await?;
            check_status(&resp)?;
            s.session_id = resp.headers().get("mcp-session-id").cloned();
            let (_, _, result) = read_response(resp, s.next_id, true).await?;
            let proto = result
                .as_ref()
                .and_then(|v| v.pointer("/result/protocolVersion"))
                .and_then(Value::as_str)
                .unwrap_or(&ctx.args.protocol_version)
                .to_string();
            s.protocol = HeaderValue::from_str(&proto).ok();
            let req = s.request(ctx, Method::POST, &BOTH, Bytes::from_static(INITIALIZED.as_bytes()));
            let resp = s.conn.send(ctx, req).await?;
            check_status(&resp)?;
            drain(resp).await?;
            if with_get {
                let mut c = Conn::new();
                let req = s.request(ctx, Method::GET, &EVENT_STREAM, Bytes::new());
                let resp = c.send(ctx, req).await?;
                check_status(&resp)?;
                let (tx, _rx) = mpsc::unbounded_channel();
                s.get_stream = Some(tokio::spawn(sse_reader(resp, tx, c)));
            }
            if !keep_conn {
                s.conn.close();
            }
            Ok::<(), Err>(())
        };
        tokio::time::timeout(ctx.timeout, fut).await.map_err(|_| Err::Timeout)??;
        Ok(s)
    }

    /// A 2026-07-28 client: nothing to open; the connection is made by the first call.
    fn stateless() -> Self {
        HttpSession {
            conn: Conn::new(),
            session_id: None,
            protocol: Some(HeaderValue::from_static(STATELESS_VERSION)),
            next_id: 0,
            get_stream: None,
            stateless: true,
        }
    }

    async fn rpc(&mut self, ctx: &Ctx, method: &str, params: &str) -> Result<(Duration, bool), Err> {
        self.next_id += 1;
        let id = self.next_id;
        let req = self.request(ctx, Method::POST, &BOTH, request_body(id, method, params));
        let t0 = Instant::now();
        let resp = self.conn.send(ctx, req).await?;
        check_status(&resp)?;
        let (at, error, _) = read_response(resp, id, false).await?;
        Ok((at.saturating_duration_since(t0), error))
    }

    async fn delete(&mut self, ctx: &Ctx) {
        if self.session_id.is_some() {
            let req = self.request(ctx, Method::DELETE, &BOTH, Bytes::new());
            if let Ok(Ok(r)) = tokio::time::timeout(ctx.timeout, self.conn.send(ctx, req)).await {
                let _ = tokio::time::timeout(ctx.timeout, drain(r)).await;
            }
        }
    }

    fn alive(&self) -> bool {
        self.get_stream.as_ref().is_none_or(|h| !h.is_finished())
    }
}

/// Reads a Streamable HTTP response until the response with `want` arrives.
/// Returns (arrival instant, is_error, full message if `keep`).
async fn read_response(resp: Response<Incoming>, want: u64, keep: bool) -> Result<(Instant, bool, Option<Value>), Err> {
    let ctype = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if ctype.starts_with("application/json") {
        let body = drain(resp).await?;
        let at = Instant::now();
        for (id, error) in parse_responses(&body) {
            if id == Some(want) {
                let full = if keep { serde_json::from_slice(&body).ok() } else { None };
                return Ok((at, error, full));
            }
        }
        return Err(Err::Protocol("JSON response without the request id".into()));
    }
    if ctype.starts_with("text/event-stream") {
        let mut body = resp.into_body();
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        let mut found: Option<(Instant, bool, Option<Value>)> = None;
        while found.is_none() {
            let Some(frame) = body.frame().await else { break };
            let Ok(chunk) = frame?.into_data() else { continue };
            parser.feed(&chunk, &mut events);
            let at = Instant::now();
            for ev in events.drain(..) {
                if ev.event != "message" {
                    continue;
                }
                for (id, error) in parse_responses(ev.data.as_bytes()) {
                    if id == Some(want) && found.is_none() {
                        let full = if keep { serde_json::from_str(&ev.data).ok() } else { None };
                        found = Some((at, error, full));
                    }
                }
            }
        }
        let Some(found) = found else { return Err(Err::Closed) };
        // read the rest of the short stream (bounded) so the connection can be reused
        let _ = tokio::time::timeout(Duration::from_secs(1), async { while let Some(Ok(_)) = body.frame().await {} }).await;
        return Ok(found);
    }
    Err(Err::Protocol(format!("unexpected content-type {ctype:?}")))
}

// ---------------------------------------------------------------- sessions

enum Session {
    Sse(SseSession),
    Http(HttpSession),
}

impl Session {
    /// `idle`: the session will only be held, so its POST connection is not kept open.
    async fn open(ctx: &Ctx, idle: bool) -> Result<Self, Err> {
        match ctx.args.transport {
            Transport::Sse => SseSession::open(ctx, !idle).await.map(Session::Sse),
            Transport::Streamable => HttpSession::open(ctx, idle && ctx.args.streamable_get, !idle).await.map(Session::Http),
            Transport::Stateless => Ok(Session::Http(HttpSession::stateless())),
        }
    }
    async fn call(&mut self, ctx: &Ctx) -> Result<(Duration, bool), Err> {
        match self {
            Session::Sse(s) => s.rpc(ctx, "tools/call", &ctx.call_params).await,
            Session::Http(s) => s.rpc(ctx, "tools/call", &ctx.call_params).await,
        }
    }
    fn alive(&self) -> bool {
        match self {
            Session::Sse(s) => s.alive(),
            Session::Http(s) => s.alive(),
        }
    }
    async fn close(mut self, ctx: &Ctx) {
        if let Session::Http(s) = &mut self {
            s.delete(ctx).await;
        }
    }
}

/// Opens `n` sessions, at most `open_concurrency` at a time.
async fn open_many(ctx: &Arc<Ctx>, n: usize, idle: bool) -> (Vec<Session>, u64, HashMap<String, u64>) {
    let mut ok = Vec::with_capacity(n);
    let mut failed = 0u64;
    let mut reasons: HashMap<String, u64> = HashMap::new();
    let mut stream = futures_util::stream::iter(0..n)
        .map(|_| {
            let ctx = ctx.clone();
            async move { Session::open(&ctx, idle).await }
        })
        .buffer_unordered(ctx.args.open_concurrency.max(1));
    while let Some(r) = stream.next().await {
        match r {
            Ok(s) => ok.push(s),
            Err(e) => {
                failed += 1;
                let mut key = e.to_string();
                key.truncate(160);
                *reasons.entry(key).or_default() += 1;
            }
        }
    }
    (ok, failed, reasons)
}

async fn close_many(ctx: &Arc<Ctx>, sessions: Vec<Session>) {
    futures_util::stream::iter(sessions)
        .map(|s| {
            let ctx = ctx.clone();
            async move { s.close(&ctx).await }
        })
        .buffer_unordered(ctx.args.open_concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
}

// ---------------------------------------------------------------- RSS

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// RSS of `pid` plus all its descendants (uvicorn --workers forks children).
fn tree_rss_kib(pid: u32) -> Option<u64> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                // pid (comm) state ppid ...
                if let Some(rest) = stat.rsplit_once(')').map(|x| x.1) {
                    if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|x| x.parse().ok()) {
                        parent_of.push((p, ppid));
                    }
                }
            }
        }
    }
    let mut total = rss_kib(pid)?;
    let mut frontier = vec![pid];
    while let Some(cur) = frontier.pop() {
        for &(child, ppid) in &parent_of {
            if ppid == cur {
                total += rss_kib(child).unwrap_or(0);
                frontier.push(child);
            }
        }
    }
    Some(total)
}

/// utime+stime (clock ticks, all threads) of `pid` and its descendants.
fn tree_cpu_ticks(pid: u32) -> Option<u64> {
    let ticks = |p: u32| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // after ')': state(0) ppid(1) ... utime(11) stime(12)
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    };
    let mut kids: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            if let Some(ppid) = stat.rsplit_once(')').and_then(|x| x.1.split_whitespace().nth(1)).and_then(|x| x.parse().ok()) {
                kids.push((p, ppid));
            }
        }
    }
    let mut total = ticks(pid)?;
    let mut frontier = vec![pid];
    while let Some(cur) = frontier.pop() {
        for &(c, pp) in &kids {
            if pp == cur {
                total += ticks(c).unwrap_or(0);
                frontier.push(c);
            }
        }
    }
    Some(total)
}

/// Busy ticks of the whole machine from /proc/stat: (user+nice+system+steal, irq+softirq).
/// Loopback packet processing mostly lands in softirq, which is charged to no process.
fn machine_busy_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let g = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    Some((g(0) + g(1) + g(2) + g(7), g(5) + g(6)))
}

#[derive(Clone, Copy)]
struct CpuSample {
    server: Option<u64>,
    me: Option<u64>,
    machine: Option<(u64, u64)>,
    at: Instant,
}

fn cpu_sample(server_pid: Option<u32>) -> CpuSample {
    CpuSample {
        server: server_pid.and_then(tree_cpu_ticks),
        me: tree_cpu_ticks(std::process::id()),
        machine: machine_busy_ticks(),
        at: Instant::now(),
    }
}

/// Cores used over the window by the server, by mcpload, by other processes (noise) and by
/// irq/softirq (mostly the loopback network path itself).
/// Assumes USER_HZ = 100 (Linux default).
fn cpu_report(a: &CpuSample, b: &CpuSample, calls: u64) -> Value {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let d = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / 100.0),
        _ => None,
    };
    let server = d(a.server, b.server);
    let me = d(a.me, b.me);
    let tasks = d(a.machine.map(|m| m.0), b.machine.map(|m| m.0));
    let irq = d(a.machine.map(|m| m.1), b.machine.map(|m| m.1));
    let other = match (tasks, server, me) {
        (Some(m), s, Some(me)) => Some((m - s.unwrap_or(0.0) - me).max(0.0)),
        _ => None,
    };
    let r2 = |x: Option<f64>| x.map(|v| (v / secs * 100.0).round() / 100.0);
    json!({
        "server_cores": r2(server), "mcpload_cores": r2(me), "other_cores": r2(other), "softirq_cores": r2(irq),
        "server_cpu_us_per_call": server.filter(|_| calls > 0).map(|s| (s * 1e6 / calls as f64).round()),
    })
}

// ---------------------------------------------------------------- modes

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run_load(ctx: Arc<Ctx>) -> Value {
    let a = &ctx.args;
    let setup_t0 = Instant::now();
    let (sessions, failed, reasons) = open_many(&ctx, a.concurrency, false).await;
    let setup_s = setup_t0.elapsed().as_secs_f64();
    let opened = sessions.len();
    if opened == 0 {
        eprintln!("no session could be opened: {reasons:?}");
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.duration);
    let started = Arc::new(AtomicU64::new(0));
    let server_pid = a.server_pid;
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let s0 = tokio::task::spawn_blocking(move || cpu_sample(server_pid)).await.unwrap();
        tokio::time::sleep_until(end.into()).await;
        let s1 = tokio::task::spawn_blocking(move || cpu_sample(server_pid)).await.unwrap();
        (s0, s1)
    });

    let mut tasks = Vec::new();
    for mut s in sessions {
        let ctx = ctx.clone();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::with_capacity(1 << 14);
            let mut errs = ErrCounts::default();
            let mut lost = false;
            loop {
                let t0 = Instant::now();
                if t0 >= end || started.fetch_add(1, Ordering::Relaxed) >= ctx.args.max_calls {
                    break;
                }
                let deadline = (t0 + ctx.timeout).min(end);
                let r = tokio::time::timeout_at(deadline.into(), s.call(&ctx)).await;
                let done = Instant::now();
                let counted = t0 >= measure_from && done <= end;
                match r {
                    Ok(Ok((d, rpc_err))) => {
                        if counted {
                            if rpc_err {
                                errs.rpc += 1;
                            } else {
                                lat.push(d.as_micros().min(u32::MAX as u128) as u32);
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        if t0 >= measure_from {
                            errs.add(&e);
                        }
                        if matches!(e, Err::Closed) || !s.alive() {
                            lost = true;
                            break;
                        }
                        if matches!(e, Err::Transport(_)) {
                            tokio::time::sleep(Duration::from_millis(10)).await; // no hot spin on refused connects
                        }
                    }
                    Err(_) => {
                        if deadline < end && t0 >= measure_from {
                            errs.add(&Err::Timeout);
                        }
                    }
                }
            }
            s.close(&ctx).await;
            (lat, errs, lost)
        }));
    }
    let mut lat = Vec::new();
    let mut errs = ErrCounts::default();
    let mut lost = 0u64;
    for t in tasks {
        if let Ok((l, e, x)) = t.await {
            lat.extend(l);
            errs.merge(&e);
            lost += x as u64;
        }
    }
    lat.sort_unstable();
    let n = lat.len() as u64;
    let cpu = match sampler.await {
        Ok((s0, s1)) => cpu_report(&s0, &s1, n),
        Err(_) => Value::Null,
    };
    let mean = if n > 0 { lat.iter().map(|&x| x as u64).sum::<u64>() as f64 / n as f64 } else { 0.0 };
    let rate = n as f64 / a.duration;
    let (p50, p90, p99, max) = (percentile(&lat, 0.50), percentile(&lat, 0.90), percentile(&lat, 0.99), lat.last().copied().unwrap_or(0));
    println!(
        "{} {:?} c={} threads={} {}s (+{}s warm-up): {} calls, {:.0} calls/s, latency us p50={} p90={} p99={} max={} mean={:.0}, errors={} sessions ok={} failed={} lost={}",
        a.label, a.transport, a.concurrency, a.threads, a.duration, a.warmup, n, rate, p50, p90, p99, max, mean,
        errs.total(), opened, failed, lost
    );
    println!("cpu over the window (cores): {cpu}");
    if !reasons.is_empty() {
        println!("session failures: {reasons:?}");
    }
    json!({
        "mode": "load", "label": a.label, "transport": format!("{:?}", a.transport).to_lowercase(), "url": a.url,
        "tool": a.tool, "concurrency": a.concurrency, "threads": a.threads, "duration_s": a.duration, "warmup_s": a.warmup,
        "sessions_ok": opened, "sessions_failed": failed, "sessions_lost": lost, "setup_s": setup_s,
        "calls": n, "calls_per_s": (rate * 10.0).round() / 10.0,
        "latency_us": {"p50": p50, "p90": p90, "p99": p99, "max": max, "mean": mean.round()},
        "errors": errs.json(), "session_failure_reasons": reasons, "cpu": cpu, "server_pid": a.server_pid,
    })
}

async fn run_idle(ctx: Arc<Ctx>, targets: Vec<usize>) -> Value {
    let a = &ctx.args;
    let settle = Duration::from_secs_f64(a.settle);
    let rss = |pid: Option<u32>| pid.and_then(tree_rss_kib);
    let rss0 = rss(a.server_pid);
    let mut sessions: Vec<Session> = Vec::new();
    let mut failed_total = 0u64;
    let mut stages = Vec::new();
    let mut all_reasons: HashMap<String, u64> = HashMap::new();
    for &target in &targets {
        let want = target.saturating_sub(sessions.len());
        let t0 = Instant::now();
        let (opened, failed, reasons) = open_many(&ctx, want, true).await;
        let open_s = t0.elapsed().as_secs_f64();
        failed_total += failed;
        for (k, v) in reasons {
            *all_reasons.entry(k).or_default() += v;
        }
        sessions.extend(opened);
        tokio::time::sleep(settle).await;
        let alive = sessions.iter().filter(|s| s.alive()).count();
        let r = rss(a.server_pid);
        let per = match (r, rss0) {
            (Some(r), Some(r0)) if !sessions.is_empty() => Some((r as f64 - r0 as f64) / sessions.len() as f64),
            _ => None,
        };
        println!(
            "READY target={target} established={} alive={alive} failed_so_far={failed_total} open_s={open_s:.2} server_rss_kib={:?} (baseline {:?}) kib_per_session={:?}",
            sessions.len(), r, rss0, per.map(|x| (x * 10.0).round() / 10.0)
        );
        stages.push(json!({"target": target, "established": sessions.len(), "alive": alive, "open_s": open_s,
                           "server_rss_kib": r, "kib_per_session": per}));
        tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    }
    let alive_end = sessions.iter().filter(|s| s.alive()).count();
    let rss_end = rss(a.server_pid);
    println!("held: alive at end {alive_end}/{} server_rss_kib={rss_end:?}", sessions.len());
    let established = sessions.len();
    close_many(&ctx, sessions).await;
    json!({
        "mode": "idle", "label": a.label, "transport": format!("{:?}", a.transport).to_lowercase(), "url": a.url,
        "streamable_get": a.streamable_get, "targets": targets, "established": established, "failed": failed_total,
        "alive_at_end": alive_end, "server_pid": a.server_pid, "baseline_rss_kib": rss0, "end_rss_kib": rss_end,
        "stages": stages, "session_failure_reasons": all_reasons,
    })
}

fn main() {
    let args = Args::parse();
    eprintln!("mcpload pid={}", std::process::id());
    let url = match Url::parse(&args.url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("bad --url: {e}");
            std::process::exit(2);
        }
    };
    let tool_args: Value = match serde_json::from_str(&args.args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("bad --args JSON: {e}");
            std::process::exit(2);
        }
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    if url.scheme() != "http" {
        eprintln!("only http:// URLs are supported (loopback benchmarking)");
        std::process::exit(2);
    }
    let addr = format!("{}:{}", url.host_str().unwrap_or("127.0.0.1"), url.port_or_known_default().unwrap_or(80));
    let auth = args.bearer.as_ref().map(|t| HeaderValue::from_str(&format!("Bearer {t}")).expect("bearer token"));
    let call_params = if args.transport == Transport::Stateless {
        json!({"name": args.tool, "arguments": tool_args, "_meta": {
            "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
            "io.modelcontextprotocol/clientInfo": {"name": "mcpload", "version": env!("CARGO_PKG_VERSION")},
            "io.modelcontextprotocol/clientCapabilities": {},
        }})
        .to_string()
    } else {
        json!({"name": args.tool, "arguments": tool_args}).to_string()
    };
    let tool_name = match HeaderValue::from_str(&args.tool) {
        Ok(v) => v,
        Err(_) => {
            eprintln!("bad --tool: not a header value");
            std::process::exit(2);
        }
    };
    let init_params = json!({"protocolVersion": args.protocol_version, "capabilities": {},
                             "clientInfo": {"name": "mcpload", "version": env!("CARGO_PKG_VERSION")}})
    .to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    let idle = args.idle_sessions.clone();
    let ctx = Arc::new(Ctx { args, url, addr, timeout, call_params, init_params, auth, tool_name });
    let out = rt.block_on(async move {
        match idle {
            Some(t) if !t.is_empty() => run_idle(ctx, t).await,
            _ => run_load(ctx).await,
        }
    });
    println!("{out}");
    rt.shutdown_timeout(Duration::from_secs(2));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_handles_split_crlf_and_multiline() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        p.feed(b"event: endpoint\r\ndata: /messages?x=1\r\n", &mut out);
        assert!(out.is_empty());
        p.feed(b"\r\n: ping\n\ndata: {\"a\":\ndata: 1}\n", &mut out);
        p.feed(b"\n", &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].event, "endpoint");
        assert_eq!(out[0].data, "/messages?x=1");
        assert_eq!(out[1].event, "message");
        assert_eq!(out[1].data, "{\"a\":\n1}");
    }

    #[test]
    fn parses_ids_and_errors() {
        assert_eq!(parse_responses(br#"{"jsonrpc":"2.0","id":7,"result":{}}"#), vec![(Some(7), false)]);
        assert_eq!(parse_responses(br#"{"jsonrpc":"2.0","id":8,"error":{"code":1}}"#), vec![(Some(8), true)]);
        assert_eq!(parse_responses(br#"[{"id":1,"result":1},{"id":2,"result":2}]"#).len(), 2);
    }

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
    }
}
