//! The legacy HTTP+SSE transport (MCP 2024-11-05) as an rmcp client transport, so that the
//! tests drive `/agents/<name>/sse` with rmcp's own client (rmcp ≥ 0.11 ships none): a
//! `GET` stream whose first event names the endpoint, and one `POST` per message there.

use futures::{Sink, Stream, StreamExt as _};
use rmcp::RoleClient;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};

/// Why a message could not be posted.
#[derive(Debug, thiserror::Error)]
#[error("POST to the SSE endpoint failed: {0}")]
pub struct PostFailed(String);

/// The messages of one SSE stream (`event:` name and `data:`), as they come.
fn events(
    body: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Send + Unpin + 'static,
) -> impl Stream<Item = (String, String)> + Send + Unpin + 'static {
    Box::pin(futures::stream::unfold(
        (body, String::new()),
        |(mut body, mut buf)| async move {
            loop {
                if let Some(end) = buf.find("\n\n") {
                    let raw: String = buf.drain(..end + 2).collect();
                    let (mut event, mut data) = ("message".to_owned(), Vec::new());
                    for line in raw.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    return Some(((event, data.join("\n")), (body, buf)));
                }
                match body.next().await {
                    Some(Ok(chunk)) => buf.push_str(&String::from_utf8_lossy(&chunk)),
                    _ => return None,
                }
            }
        },
    ))
}

/// Opens the stream at `url` (`…/sse`) and returns the transport: messages posted to the
/// endpoint its first event names, and the `message` events of the stream.
///
/// # Panics
/// When the stream does not open or names no endpoint.
pub async fn connect(
    url: &str,
) -> (
    impl Sink<TxJsonRpcMessage<RoleClient>, Error = PostFailed> + Send + Unpin + 'static,
    impl Stream<Item = RxJsonRpcMessage<RoleClient>> + Send + Unpin + 'static,
) {
    let response = reqwest::Client::new()
        .get(url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("the SSE stream opens");
    assert_eq!(response.status(), 200, "GET {url}");
    let mut events = events(Box::pin(response.bytes_stream()));
    let (event, path) = events.next().await.expect("the endpoint event");
    assert_eq!(event, "endpoint");
    let endpoint = url::Url::parse(url)
        .and_then(|base| base.join(&path))
        .expect("the endpoint is a URL")
        .to_string();
    let http = reqwest::Client::new();
    let sink = Box::pin(futures::sink::unfold(
        (http, endpoint),
        |(http, endpoint), message: TxJsonRpcMessage<RoleClient>| async move {
            let response = http
                .post(&endpoint)
                .json(&message)
                .send()
                .await
                .map_err(|e| PostFailed(e.to_string()))?;
            if !response.status().is_success() {
                return Err(PostFailed(format!("status {}", response.status())));
            }
            Ok((http, endpoint))
        },
    ));
    let stream = events.filter_map(|(event, data)| async move {
        (event == "message")
            .then(|| serde_json::from_str(&data).ok())
            .flatten()
    });
    (sink, Box::pin(stream))
}
