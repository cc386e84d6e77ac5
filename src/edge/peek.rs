//! What admission needs to know of a JSON-RPC message before a transport sees it: its
//! method and, for `tools/call`, the tool (an agent run costs more than a tool call).

use crate::error::Error;

/// What the gateway needs to know of a JSON-RPC message before rmcp sees it.
#[derive(Debug, Default)]
pub struct Peek {
    /// Its method, for requests and notifications.
    pub method: Option<String>,
    /// `params.name`, the tool of a `tools/call`.
    pub tool: Option<String>,
    /// `params._meta.traceparent` and `tracestate`: the caller's trace (MCP SEP-414).
    pub trace: Option<crate::telemetry::trace::TraceContext>,
}

/// Reads the method and tool name of a JSON-RPC message body, checking that it is one.
///
/// # Errors
/// [`Error::InvalidJsonRpc`]: -32700 for a body that is not JSON, -32600 for JSON that is
/// not a JSON-RPC message.
pub fn peek(body: &[u8]) -> Result<Peek, Error> {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        jsonrpc: std::borrow::Cow<'a, str>,
        #[serde(borrow, default)]
        method: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default)]
        params: Option<Params<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(borrow, default)]
        name: Option<std::borrow::Cow<'a, str>>,
        #[serde(default, rename = "_meta")]
        meta: Option<Lenient<Meta>>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        traceparent: Option<Lenient<String>>,
        #[serde(default)]
        tracestate: Option<Lenient<String>>,
    }
    /// A value of the wrong type is no trace context, not a bad message (rmcp judges the
    /// message).
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Lenient<T> {
        Fit(T),
        Misfit(serde::de::IgnoredAny),
    }
    impl<T> Lenient<T> {
        fn fit(self) -> Option<T> {
            match self {
                Lenient::Fit(t) => Some(t),
                Lenient::Misfit(_) => None,
            }
        }
    }
    let m: Message<'_> =
        serde_json::from_slice(body).map_err(|e| Error::from_json_error(body, &e))?;
    if m.jsonrpc != "2.0" {
        return Err(Error::InvalidJsonRpc {
            code: -32600,
            message: format!(
                "Invalid Request: jsonrpc must be \"2.0\", not {:?}",
                m.jsonrpc
            ),
        });
    }
    let (tool, meta) = m.params.map(|p| (p.name, p.meta)).unwrap_or_default();
    Ok(Peek {
        method: m.method.map(|m| m.into_owned()),
        tool: tool.map(|n| n.into_owned()),
        trace: meta.and_then(Lenient::fit).and_then(|m| {
            Some(crate::telemetry::trace::TraceContext {
                traceparent: m.traceparent?.fit()?.trim().to_owned(),
                tracestate: m.tracestate.and_then(Lenient::fit),
            })
        }),
    })
}
