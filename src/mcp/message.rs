//! A client's JSON-RPC message read from the body of a legacy POST, as rmcp's types.
//!
//! rmcp reads a [`ClientJsonRpcMessage`] by trying each kind of client request in turn
//! (`ClientRequest` is an untagged enum of 22 request types; `tools/call` is the 14th), and
//! each miss builds an error message on the way: ~31k instructions for a `tools/call` of
//! three arguments, a tenth of a whole `search_incident` call over legacy SSE. A `tools/call`
//! request, the message a busy session sends most, is read here straight into rmcp's
//! `CallToolRequest` (rmcp's own deserializer for it, chosen by the method instead of by
//! trial) after a scan of its top-level keys that applies rmcp's rule for telling requests
//! from responses. Anything else, and any `tools/call` that does not read cleanly that way,
//! goes through rmcp's reader, so what is accepted and what each error says stay rmcp's.

use std::borrow::Cow;

use rmcp::model::{CallToolRequest, ClientJsonRpcMessage, ClientRequest, JsonRpcRequest};
use serde::de::IgnoredAny;

use crate::error::Error;

/// The client message in `body`.
///
/// # Errors
/// A JSON-RPC parse error (-32700) or invalid request (-32600).
pub fn parse(body: &[u8]) -> Result<ClientJsonRpcMessage, Error> {
    if let Some(message) = tools_call(body) {
        return Ok(message);
    }
    serde_json::from_slice(body).map_err(|e| Error::from_json_error(body, &e))
}

/// `body` as a `tools/call` request, when it is one that rmcp reads as one.
fn tools_call(body: &[u8]) -> Option<ClientJsonRpcMessage> {
    /// The top-level keys rmcp's reader tells the kind of message by.
    #[derive(serde::Deserialize)]
    struct Keys<'a> {
        #[serde(borrow, default)]
        method: Option<Cow<'a, str>>,
        #[serde(default)]
        id: Present,
        #[serde(default)]
        result: Present,
        #[serde(default)]
        error: Present,
    }
    /// Whether a key is there, whatever its value (`null` included, as for rmcp).
    #[derive(Default)]
    struct Present(bool);
    impl<'de> serde::Deserialize<'de> for Present {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            IgnoredAny::deserialize(d)?;
            Ok(Present(true))
        }
    }
    let keys: Keys<'_> = serde_json::from_slice(body).ok()?;
    // rmcp: a request has a method and an id, and neither a result nor an error. (`"id":
    // null` counts as present for rmcp too; the typed read below refuses it, and rmcp's
    // reader says why.)
    if keys.method.as_deref() != Some("tools/call") || !keys.id.0 || keys.result.0 || keys.error.0 {
        return None;
    }
    let request: JsonRpcRequest<CallToolRequest> = serde_json::from_slice(body).ok()?;
    Some(ClientJsonRpcMessage::Request(JsonRpcRequest {
        jsonrpc: request.jsonrpc,
        id: request.id,
        request: ClientRequest::CallToolRequest(request.request),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// rmcp's own reading of `body`.
    fn rmcp(body: &str) -> Result<ClientJsonRpcMessage, String> {
        serde_json::from_str(body).map_err(|e| e.to_string())
    }

    #[test]
    fn a_tools_call_reads_as_rmcp_reads_it() {
        let bodies = [
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search_incident","arguments":{"query":"VPN","limit":5}}}"#,
            r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"x"}}"#,
            r#"{"method":"tools/call","params":{"arguments":{"n":1.5,"s":"\"q\"","l":[1,-2,{"k":null}]},"name":"get_incident","_meta":{"progressToken":3,"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},"jsonrpc":"2.0","id":-4}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{},"task":{"ttl":1000}},"extra":true}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools\/call","params":{"name":"t"}}"#,
        ];
        for body in bodies {
            let ours = tools_call(body.as_bytes()).unwrap_or_else(|| panic!("not read: {body}"));
            let theirs = rmcp(body).unwrap();
            assert_eq!(
                serde_json::to_value(&ours).unwrap(),
                serde_json::to_value(&theirs).unwrap(),
                "{body}"
            );
            let ClientJsonRpcMessage::Request(r) = ours else {
                panic!("not a request: {body}");
            };
            assert!(matches!(r.request, ClientRequest::CallToolRequest(_)));
        }
    }

    #[test]
    fn anything_else_is_left_to_rmcp_with_its_errors() {
        let bodies = [
            // Other methods, notifications, responses.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            // A tools/call rmcp refuses, each for its own reason.
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"error":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}]"#,
            r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"tools/call","params":{"name":"t"}}"#,
        ];
        for body in bodies {
            let theirs = rmcp(body);
            if theirs.as_ref().is_ok_and(|m| {
                matches!(m, ClientJsonRpcMessage::Request(r)
                    if matches!(r.request, ClientRequest::CallToolRequest(_)))
            }) {
                panic!("rmcp reads a tools/call here, the test is wrong: {body}");
            }
            assert!(tools_call(body.as_bytes()).is_none(), "{body}");
            match (parse(body.as_bytes()), theirs) {
                (Ok(ours), Ok(theirs)) => assert_eq!(
                    serde_json::to_value(&ours).unwrap(),
                    serde_json::to_value(&theirs).unwrap()
                ),
                (Err(_), Err(_)) => {}
                (ours, theirs) => panic!("{body}: ours {ours:?}, rmcp's {theirs:?}"),
            }
        }
    }
}
