//! What an upstream's answers and failures mean for a tool call: a `tools/call` result as
//! [`Output`] or the failure it reports, and rmcp's transport errors in words.

use rmcp::ServiceError;
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};

use super::{Error, Output};

/// Whether `e` means the session cannot be used any more.
pub(super) fn is_transport_failure(e: &ServiceError) -> bool {
    matches!(
        e,
        ServiceError::TransportClosed
            | ServiceError::TransportSend(_)
            | ServiceError::Cancelled { .. }
    )
}

/// What went wrong with the transport, in words for the operator.
pub(super) fn transport_detail(e: &ServiceError) -> String {
    match e {
        ServiceError::TransportSend(error) => failure_detail(error),
        ServiceError::TransportClosed => "the connection to it closed".to_owned(),
        ServiceError::Cancelled { .. } => "the MCP session ended".to_owned(),
        other => error_chain(other),
    }
}

/// The innermost cause of a transport error (rmcp's wrappers name Rust types), with the
/// usual network failures spelled out: the HTTP client's error says which request failed
/// but keeps its cause (refused, DNS, TLS, ...) out of its message and out of reach of
/// `source()` behind rmcp's wrapper, so it is read from the `Debug` text.
pub(super) fn failure_detail(e: &(dyn std::error::Error + 'static)) -> String {
    let innermost = crate::net::innermost(e);
    let text = innermost.to_string();
    let text = text.strip_prefix("Client error: ").unwrap_or(&text);
    match crate::net::network_cause(innermost) {
        // "error sending request for url (...)" only repeats the URL the message names.
        Some(cause) if text.starts_with("error sending request") => cause.to_owned(),
        Some(cause) => format!("{text}: {cause}"),
        None => text.to_owned(),
    }
}

/// `e` and its sources, `: `-separated, without repeats (wrappers often repeat their source).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The output of a successful `tools/call` reply, or the failure it reports.
pub(super) fn into_output(result: CallToolResult, tool: &str) -> Result<Output, Error> {
    if result.is_error == Some(true) {
        let text = content_text(&result.content);
        return Err(Error::Failed(if text.trim().is_empty() {
            format!("upstream tool {tool} failed without saying why")
        } else {
            text
        }));
    }
    match result.structured_content {
        Some(value) if !value.is_null() => Ok(Output::Json(value)),
        _ => Ok(Output::Text(content_text(&result.content))),
    }
}

/// The text of `content`, one block a line; non-text blocks are described briefly.
pub(crate) fn content_text(content: &[ContentBlock]) -> String {
    content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(text) => text.text.clone(),
            ContentBlock::Image(image) => format!("[image {}]", image.mime_type),
            ContentBlock::Audio(audio) => format!("[audio {}]", audio.mime_type),
            ContentBlock::Resource(embedded) => match &embedded.resource {
                ResourceContents::TextResourceContents { text, .. } => text.clone(),
                ResourceContents::BlobResourceContents { uri, .. } => format!("[resource {uri}]"),
                _ => "[resource]".to_owned(),
            },
            ContentBlock::ResourceLink(link) => format!("[resource link {}]", link.uri),
            _ => "[content]".to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
