//! Spans of the request path and the W3C trace context they take in and pass on.
//!
//! The MCP request's span ([`RequestSpan`]) is an OpenTelemetry SDK span, made by the
//! tracer directly: it is made for every request, and going through `tracing` cost more than
//! the span itself (the registry's slot, the layer's builder and field visitor, enter and
//! exit on every poll, the close). The work under it runs in its OpenTelemetry context
//! ([`RequestSpan::run`]). The spans below it (agent runs, chat turns, tool executions, HTTP
//! client calls) are `tracing` spans of target [`TARGET`], turned into OpenTelemetry spans by
//! tracing-opentelemetry, which takes that context as their parent. When `[telemetry]` is off
//! the target is filtered out (see [`super::init`]): the span macros find their callsite
//! disabled and build nothing (their fields are not even evaluated), and [`on`] is one
//! relaxed load for what is not a macro (the request span, headers, `_meta`).
//!
//! Names and attributes follow the OpenTelemetry semantic conventions for GenAI and MCP:
//! `tools/call <tool>` (the MCP request, kind server), `invoke_agent <agent>`,
//! `chat <model>` (kind client), `execute_tool <tool>`, and the HTTP client spans of
//! upstream MCP servers and ServiceNow.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of every span that is exported.
pub const TARGET: &str = "switchboard::otel";

static ON: AtomicBool = AtomicBool::new(false);
static CAPTURE: AtomicBool = AtomicBool::new(false);
/// The tracer of the request spans (the one tracing-opentelemetry's layer has too).
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether traces are exported (`[telemetry]`).
#[inline]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Whether chat spans carry the messages (`[telemetry] capture_content`).
pub fn capture_content() -> bool {
    CAPTURE.load(Ordering::Relaxed)
}

pub(super) fn switch_on(capture: bool, tracer: SdkTracer) {
    CAPTURE.store(capture, Ordering::Relaxed);
    let _ = TRACER.set(tracer);
    ON.store(true, Ordering::Relaxed);
}

/// A W3C trace context: the `traceparent` and `tracestate` a caller sent or that go on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// `00-<trace id>-<parent id>-<flags>`.
    pub traceparent: String,
    /// Vendors' state, passed on as it came.
    pub tracestate: Option<String>,
}

impl Extractor for TraceContext {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(&self.traceparent),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

impl Injector for TraceContext {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.traceparent = value,
            "tracestate" if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

impl TraceContext {
    /// The context of HTTP `headers`, if they carry one.
    pub fn from_headers(headers: &poem::http::HeaderMap) -> Option<Self> {
        let traceparent = headers.get("traceparent")?.to_str().ok()?;
        Some(Self {
            traceparent: traceparent.trim().to_owned(),
            tracestate: headers
                .get("tracestate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        })
    }

    /// The context of an MCP request's `_meta` (the `traceparent` and `tracestate` keys the
    /// MCP SDKs use, SEP-414), if it carries one: a plain JSON object or rmcp's `MetaObject`,
    /// which derefs to one. (The edge's peek at a Streamable body reads the same two keys
    /// straight from the bytes.)
    pub fn from_meta(meta: &serde_json::Map<String, serde_json::Value>) -> Option<Self> {
        let traceparent = meta.get("traceparent")?.as_str()?;
        Some(Self {
            traceparent: traceparent.trim().to_owned(),
            tracestate: meta
                .get("tracestate")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        })
    }

    /// The context to pass on from the current span: the `tracing` span entered, else the
    /// MCP request's (the OpenTelemetry context the work runs in); `None` when tracing is off
    /// or there is no span.
    pub fn current() -> Option<Self> {
        if !on() {
            return None;
        }
        Self::of(&Span::current()).or_else(|| Context::map_current(Self::of_context))
    }

    /// The context to pass on from `span`.
    pub fn of(span: &Span) -> Option<Self> {
        if span.is_disabled() {
            return None;
        }
        Self::of_context(&span.context())
    }

    /// The context to pass on from `cx`'s span.
    fn of_context(cx: &Context) -> Option<Self> {
        if !cx.span().span_context().is_valid() {
            return None;
        }
        let mut out = Self::default();
        TraceContextPropagator::new().inject_context(cx, &mut out);
        (!out.traceparent.is_empty()).then_some(out)
    }

    /// Adds the headers to an outgoing request.
    pub fn add_to(&self, headers: &mut reqwest::header::HeaderMap) {
        if let Ok(v) = reqwest::header::HeaderValue::from_str(&self.traceparent) {
            headers.insert("traceparent", v);
        }
        if let Some(v) = self
            .tracestate
            .as_deref()
            .and_then(|s| reqwest::header::HeaderValue::from_str(s).ok())
        {
            headers.insert("tracestate", v);
        }
    }

    /// Adds the keys to an MCP request's `_meta`.
    pub fn add_to_meta(&self, meta: &mut serde_json::Map<String, serde_json::Value>) {
        meta.insert("traceparent".into(), self.traceparent.clone().into());
        if let Some(state) = &self.tracestate {
            meta.insert("tracestate".into(), state.clone().into());
        }
    }
}

/// `params` with the current span's context in their `_meta` (the keys of MCP SEP-414),
/// for an upstream MCP server; unchanged when tracing is off.
pub fn with_meta(
    mut params: rmcp::model::CallToolRequestParams,
) -> rmcp::model::CallToolRequestParams {
    if let Some(trace) = TraceContext::current() {
        let meta = params.meta.get_or_insert_default();
        meta.set_traceparent(trace.traceparent);
        if let Some(state) = trace.tracestate {
            meta.set_tracestate(state);
        }
    }
    params
}

/// The `traceparent`/`tracestate` headers of an outgoing MCP message: its `_meta`'s.
pub fn headers_of_message(
    message: &rmcp::model::ClientJsonRpcMessage,
    headers: &mut std::collections::HashMap<poem::http::HeaderName, poem::http::HeaderValue>,
) {
    use rmcp::model::{ClientJsonRpcMessage, ClientRequest, GetMeta};
    if !on() {
        return;
    }
    let ClientJsonRpcMessage::Request(r) = message else {
        return;
    };
    let meta: &rmcp::model::MetaObject = match &r.request {
        ClientRequest::CallToolRequest(call) => match &call.params.meta {
            Some(meta) => meta,
            None => r.request.get_meta(),
        },
        other => other.get_meta(),
    };
    for (name, value) in [
        ("traceparent", meta.get_traceparent()),
        ("tracestate", meta.get_tracestate()),
    ] {
        if let Some(value) = value.and_then(|v| poem::http::HeaderValue::from_str(v).ok()) {
            headers.insert(poem::http::HeaderName::from_static(name), value);
        }
    }
}

/// Runs `work` outside every span, on a task of its own (cancelled with the caller).
///
/// For work that outlives the call it is started by: rmcp's client service keeps the span
/// current when it is started for as long as the connection lives, which would keep the
/// call's spans (and so their trace) from ever ending. With tracing off, `work` just runs.
pub async fn detached<F>(work: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if !on() {
        return work.await;
    }
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(tokio::spawn(work));
    match (&mut task.0).await {
        Ok(output) => output,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only dropping `task` aborts it, and then nobody waits here.
        Err(_) => std::future::pending().await,
    }
}

/// The caller's context, the parent of a request span: none (a trace of its own) when it
/// sent none or an invalid `traceparent`.
fn parent_context(parent: Option<&TraceContext>) -> Context {
    let Some(parent) = parent else {
        return Context::new();
    };
    let cx = TraceContextPropagator::new().extract(parent);
    if cx.span().span_context().is_valid() {
        cx
    } else {
        Context::new()
    }
}

/// The W3C `traceresponse` of a span (`00-<trace id>-<span id>-<flags>`), the header the
/// client learns its trace from; `None` when it has no valid context.
fn traceresponse(sc: &opentelemetry::trace::SpanContext) -> Option<String> {
    if !sc.is_valid() {
        return None;
    }
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    hex(&mut out, &sc.trace_id().to_bytes());
    out.push('-');
    hex(&mut out, &sc.span_id().to_bytes());
    out.push('-');
    hex(&mut out, &[sc.trace_flags().to_u8()]);
    Some(out)
}

/// A span's name of two parts, `first second` (`tools/call search_incident`, `chat gpt-4o`),
/// for an `otel.name = span_name(..).as_str()` field: written by hand and recorded as a `str`,
/// where `format!` and a `%` (Display) field each went through the formatting machinery
/// (`perf`, legacy SSE with every call traced: ~0.5 % of the gateway's CPU in
/// `format_inner` alone, for the request span's name).
pub fn span_name(first: &str, second: &str) -> String {
    let mut name = String::with_capacity(first.len() + 1 + second.len());
    name.push_str(first);
    name.push(' ');
    name.push_str(second);
    name
}

/// Appends `bytes` as lowercase hex (the ids' `Display`, without the formatting machinery:
/// this runs for every traced request).
fn hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// Records that `span`'s operation failed: status error with `message`, `error.type`.
pub fn fail(span: &Span, error_type: &'static str, message: impl Into<String>) {
    if span.is_disabled() {
        return;
    }
    span.set_attribute("error.type", error_type);
    span.set_status(Status::error(message.into()));
}

/// Sets one attribute of `span` (nothing when it is not exported).
pub fn set(span: &Span, key: &'static str, value: impl Into<opentelemetry::Value>) {
    if !span.is_disabled() {
        span.set_attribute(key, value);
    }
}

/// Records that the current MCP request failed (the request span of the work running, see
/// [`RequestSpan::run`]): status error with `message`, `error.type`.
pub fn fail_request(error_type: &'static str, message: impl Into<String>) {
    Context::map_current(|cx| {
        let span = cx.span();
        if span.is_recording() {
            span.set_attribute(KeyValue::new("error.type", error_type));
            span.set_status(Status::error(message.into()));
        }
    });
}

/// Sets one attribute of the current MCP request's span (nothing when it is not recorded).
pub fn set_on_request(key: &'static str, value: impl Into<opentelemetry::Value>) {
    Context::map_current(|cx| {
        let span = cx.span();
        if span.is_recording() {
            span.set_attribute(KeyValue::new(key, value));
        }
    });
}

/// The id of the current MCP request's trace (32 hex digits); `None` when it is not traced.
pub fn request_trace_id() -> Option<String> {
    Context::map_current(|cx| {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| {
            let mut out = String::with_capacity(32);
            hex(&mut out, &sc.trace_id().to_bytes());
            out
        })
    })
}

/// The span of one MCP request, carried from the edge to the handler in the request's
/// extensions, with its `traceresponse`: both the answer's header and the call's trace id in
/// the session's recent calls. The span ends when the last copy is dropped (the edge's, the
/// request's, the handler's).
#[derive(Debug, Clone)]
pub struct RequestSpan {
    /// The span, in the context its children are made in.
    cx: Context,
    traceresponse: Option<std::sync::Arc<str>>,
}

impl RequestSpan {
    /// Runs `work` in the span's context: the spans it makes are its children, and
    /// [`TraceContext::current`] passes it on.
    pub fn run<F: Future>(&self, work: F) -> opentelemetry::context::WithContext<F> {
        work.with_context(self.cx.clone())
    }

    /// The W3C `traceresponse` of the span; `None` when it has no valid context.
    pub fn traceresponse(&self) -> Option<&str> {
        self.traceresponse.as_deref()
    }

    /// The id of the span's trace (32 hex digits); `None` when it has no valid context.
    pub fn trace_id(&self) -> Option<&str> {
        self.traceresponse.as_deref().and_then(|t| t.get(3..35))
    }
}

/// What the MCP request span is made of.
pub struct McpRequest<'a> {
    /// `tools/call`, `initialize`, ...
    pub method: &'a str,
    /// The tool of a `tools/call`.
    pub tool: Option<&'a str>,
    /// The agent the URL serves.
    pub agent: &'a str,
    /// `Mcp-Session-Id`, or the legacy session's id.
    pub session: Option<&'a str>,
    /// `streamable_http`, `sse` or `stdio`.
    pub transport: &'static str,
    /// The caller's context: `_meta`'s, else the headers'.
    pub parent: Option<&'a TraceContext>,
}

impl McpRequest<'_> {
    /// Starts the span (kind server, a child of the caller's context); `None` when tracing is
    /// off.
    pub fn start(&self) -> Option<RequestSpan> {
        if !on() {
            return None;
        }
        let tracer = TRACER.get()?;
        let name = match self.tool {
            Some(tool) => span_name(self.method, tool),
            None => self.method.to_owned(),
        };
        let mut attributes = Vec::with_capacity(10);
        attributes.push(KeyValue::new("mcp.method.name", method_value(self.method)));
        if let Some(tool) = self.tool {
            attributes.push(KeyValue::new("gen_ai.tool.name", tool.to_owned()));
            attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        }
        attributes.push(KeyValue::new("gen_ai.agent.name", self.agent.to_owned()));
        if let Some(session) = self.session {
            attributes.push(KeyValue::new("mcp.session.id", session.to_owned()));
        }
        if self.transport == "stdio" {
            attributes.push(KeyValue::new("network.transport", "pipe"));
        } else {
            attributes.push(KeyValue::new("network.transport", "tcp"));
            attributes.push(KeyValue::new("network.protocol.name", "http"));
        }
        attributes.push(KeyValue::new("switchboard.transport", self.transport));
        let parent = parent_context(self.parent);
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        let traceresponse = traceresponse(span.span_context()).map(std::sync::Arc::from);
        Some(RequestSpan {
            cx: parent.with_span(span),
            traceresponse,
        })
    }
}

/// `mcp.method.name`'s value: the methods of the specification as static strings (no copy
/// for the span and its export), another as it came.
fn method_value(method: &str) -> opentelemetry::Value {
    const KNOWN: [&str; 8] = [
        "tools/call",
        "tools/list",
        "initialize",
        "ping",
        "notifications/initialized",
        "notifications/cancelled",
        "tasks/get",
        "tasks/result",
    ];
    match KNOWN.iter().find(|m| **m == method) {
        Some(m) => (*m).into(),
        None => method.to_owned().into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_context_is_read_from_headers_and_meta() {
        let mut headers = poem::http::HeaderMap::new();
        assert_eq!(TraceContext::from_headers(&headers), None);
        headers.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        headers.insert("tracestate", "vendor=1".parse().unwrap());
        let from_headers = TraceContext::from_headers(&headers).unwrap();
        assert_eq!(from_headers.tracestate.as_deref(), Some("vendor=1"));
        let meta = serde_json::json!({
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "progressToken": 1,
        });
        let from_meta = TraceContext::from_meta(meta.as_object().unwrap()).unwrap();
        assert_eq!(from_meta.traceparent, from_headers.traceparent);
        assert_eq!(from_meta.tracestate, None);
        let cx = TraceContextPropagator::new().extract(&from_meta);
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
    }

    #[test]
    fn ids_are_written_as_w3c_hex() {
        let mut out = String::new();
        hex(&mut out, &[0x0a, 0xf7, 0x00, 0xff]);
        assert_eq!(out, "0af700ff");
        let id =
            opentelemetry::trace::TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
        let mut ours = String::new();
        hex(&mut ours, &id.to_bytes());
        assert_eq!(ours, id.to_string());
    }

    #[test]
    fn nothing_is_made_while_tracing_is_off() {
        let span = McpRequest {
            method: "tools/call",
            tool: Some("search_incident"),
            agent: "servicenow",
            session: None,
            transport: "streamable_http",
            parent: None,
        }
        .start();
        assert!(span.is_none());
        assert_eq!(TraceContext::current(), None);
        assert_eq!(request_trace_id(), None);
    }
}
