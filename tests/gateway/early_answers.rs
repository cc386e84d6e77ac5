//! Early answers reach clients that write the whole request before reading (httpx, the
//! Python SDK, most HTTP libraries): a 413 (or any error answered before the body is read)
//! must not turn into a connection reset, and the connection stays usable afterwards.
//!
//! Each try is a raw socket that writes an 8 MiB request in full, then reads. Without the
//! gateway reading the rest of the body, the kernel resets the connection when the gateway
//! closes it with unread data, and the client's write (or read) fails: a race the tries
//! repeat enough to catch.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::support::helpers::{Options, SseClient, TestGateway};

/// Tries per endpoint: before the fix, every one failed here (a broken pipe while writing);
/// a slower writer (a Python raw socket) failed in 16 of 40.
const TRIES: usize = 30;
/// The body each try sends: twice the default `max_body_bytes` (4 MiB), and far past the
/// test gateway's (64 KiB).
const BODY_BYTES: usize = 8 * 1024 * 1024;

/// How the body is framed.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// `Content-Length`: the gateway can refuse before reading anything.
    Length,
    /// `Transfer-Encoding: chunked`: the gateway finds out while reading.
    Chunked,
}

/// One response read off a raw socket.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    body: Vec<u8>,
}

/// An 8 MiB JSON-RPC message (one long string parameter).
fn big_body() -> Vec<u8> {
    let head = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"pad":""#;
    let tail = br#""}}"#;
    let mut body = Vec::with_capacity(BODY_BYTES);
    body.extend_from_slice(head);
    body.resize(BODY_BYTES - tail.len(), b'x');
    body.extend_from_slice(tail);
    body
}

/// Writes a whole `POST path` request with `body` (and `headers`), then reads one response.
fn post(
    stream: &mut TcpStream,
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
    framing: Framing,
) -> Result<RawResponse, String> {
    let framing_header = match framing {
        Framing::Length => format!("content-length: {}", body.len()),
        Framing::Chunked => "transfer-encoding: chunked".to_owned(),
    };
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\n{extra}{framing_header}\r\n\r\n"
    );
    let mut request = head.into_bytes();
    match framing {
        Framing::Length => request.extend_from_slice(body),
        Framing::Chunked => {
            // Chunks of 64 KiB, as a streaming client would send them.
            for chunk in body.chunks(64 * 1024) {
                request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                request.extend_from_slice(chunk);
                request.extend_from_slice(b"\r\n");
            }
            request.extend_from_slice(b"0\r\n\r\n");
        }
    }
    stream
        .write_all(&request)
        .map_err(|e| format!("writing the request: {e}"))?;
    read_response(stream)
}

/// Reads one response with a `Content-Length` body.
fn read_response(stream: &mut TcpStream) -> Result<RawResponse, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("reading the response head: {e}"))?;
        if n == 0 {
            return Err(format!(
                "connection closed before a response head ({} bytes read)",
                buf.len()
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no content-length in {head:?}"))?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("reading the response body: {e}"))?;
        if n == 0 {
            return Err("connection closed inside the response body".into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(RawResponse { status, body })
}

/// `TRIES` connections, each writing an 8 MiB `POST path` before reading: every one must get
/// `status` with a JSON body of error `code`, and then answer a second request (keep-alive).
/// Returns the failures, one line each.
fn tries(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    status: u16,
    code: &str,
) -> Vec<String> {
    let body = big_body();
    let mut failures = Vec::new();
    for i in 0..TRIES {
        let framing = if i % 2 == 0 {
            Framing::Length
        } else {
            Framing::Chunked
        };
        let outcome = (|| {
            let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
            // A hang fails the try instead of the whole test run.
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            let resp = post(&mut stream, addr, path, headers, &body, framing)?;
            let json: Value = serde_json::from_slice(&resp.body).map_err(|e| {
                format!(
                    "status {}, body not JSON ({e}): {:?}",
                    resp.status,
                    String::from_utf8_lossy(&resp.body)
                )
            })?;
            if resp.status != status || json["code"] != code {
                return Err(format!("status {} with {json}", resp.status));
            }
            // The same connection serves the next request once the body is read.
            let next = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n");
            stream
                .write_all(next.as_bytes())
                .map_err(|e| format!("keep-alive request: {e}"))?;
            let resp = read_response(&mut stream).map_err(|e| format!("keep-alive: {e}"))?;
            if resp.status != 200 {
                return Err(format!("keep-alive request answered {}", resp.status));
            }
            Ok::<_, String>(())
        })();
        if let Err(e) = outcome {
            failures.push(format!("try {i} ({framing:?}): {e}"));
        }
    }
    failures
}

/// [`tries`] off the async runtime; asserts that none failed.
pub async fn assert_every_try_answered(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    status: u16,
    code: &'static str,
) {
    let path = path.to_owned();
    let headers: Vec<_> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    let failures = tokio::task::spawn_blocking(move || tries(addr, &path, &headers, status, code))
        .await
        .unwrap();
    assert!(
        failures.is_empty(),
        "{} of {TRIES} tries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn an_oversized_streamable_post_gets_its_413_not_a_reset() {
    // The default limit: the gateway reads 4 MiB before it finds a chunked body too large.
    let mut opts = Options::default();
    opts.settings.max_body_bytes = switchboard::config::ServerSpec::default().max_body_bytes;
    let gw = TestGateway::spawn_with(opts).await;
    let path = "/agents/servicenow/mcp";
    assert_every_try_answered(gw.addr, path, &[], 413, "body_too_large").await;
    gw.stop().await;
}

#[tokio::test]
async fn an_oversized_legacy_post_gets_its_413_not_a_reset() {
    let gw = TestGateway::spawn().await;
    let c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    let path = c
        .endpoint
        .trim_start_matches(&format!("http://{}", gw.addr));
    assert_every_try_answered(gw.addr, path, &[], 413, "body_too_large").await;
    gw.stop().await;
}

#[tokio::test]
async fn an_error_answered_before_the_body_is_read_is_not_a_reset() {
    // Unknown agent: 404 before the body is looked at.
    let gw = TestGateway::spawn().await;
    assert_every_try_answered(gw.addr, "/agents/nope/mcp", &[], 404, "unknown_agent").await;
    gw.stop().await;
}

#[tokio::test]
async fn a_client_waiting_for_100_continue_gets_the_413_without_sending_its_body() {
    let gw = TestGateway::spawn().await;
    let addr = gw.addr;
    let outcome = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "POST /agents/servicenow/mcp HTTP/1.1\r\nhost: {addr}\r\n\
             content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
             expect: 100-continue\r\ncontent-length: {BODY_BYTES}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        // The final answer comes first (no `100 Continue`), and the body is never sent.
        let resp = read_response(&mut stream)?;
        let mut rest = Vec::new();
        let closed = stream.read_to_end(&mut rest).map(|_| rest.is_empty());
        Ok::<_, String>((resp, closed))
    })
    .await
    .unwrap();
    let (resp, closed) = outcome.unwrap();
    assert_eq!(resp.status, 413);
    let json: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(json["code"], "body_too_large");
    // The body was never read, so the connection cannot serve another request: it closes.
    assert!(matches!(closed, Ok(true)), "{closed:?}");
    gw.stop().await;
}
