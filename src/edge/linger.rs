//! Lingering: a request body the gateway answered without reading to its end is read and
//! thrown away after the answer, within [`MAX_BYTES`] and [`MAX_TIME`], as nginx does for
//! its early answers (discarding the body, then lingering before it closes).
//!
//! Without it, an early answer (413 for a body over `max_body_bytes`, and equally a 404, a
//! 403 or a 429 answered before the body is read) reaches few clients: hyper stops reading
//! a request body that nobody holds any more and closes the connection after the answer,
//! and a socket closed with unread data is reset by the kernel. A client that writes its
//! whole request before reading (httpx, the Python SDK, most HTTP libraries) then sees
//! "connection reset" or "broken pipe" instead of the answer.
//!
//! Every request body is wrapped in a [`Lingering`] by the accept loop (`app::run`). When it
//! is dropped before its end, the rest is read in a task of its own while hyper writes the
//! answer; once the body is read, hyper keeps the connection alive for the next request.
//! Past either bound the task gives up and hyper closes the connection (a client still
//! writing may then see a reset). A client that sent `Expect: 100-continue` and was answered
//! before anything was read never sent its body: nothing is read, and the connection closes
//! after the answer.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, SizeHint};

/// The most bytes of an unwanted body read after an early answer (nginx reads without a
/// size bound, for up to 30 s): eight times the default `max_body_bytes`.
pub const MAX_BYTES: u64 = 32 * 1024 * 1024;

/// The longest an unwanted body is read after an early answer.
pub const MAX_TIME: Duration = Duration::from_secs(10);

/// A request body as poem hands it to the routes.
type Inner = BoxBody<Bytes, std::io::Error>;

/// A request body that reads the rest of itself, within bounds, when dropped unread.
pub struct Lingering {
    inner: Inner,
    /// Whether the body has been asked for a frame (for `Expect: 100-continue`, whether
    /// hyper has told the client to send it).
    polled: bool,
    /// Whether the client waits for `100 Continue` before it sends the body.
    awaits_continue: bool,
}

impl Lingering {
    /// Wraps `inner`, the body of a request that carried `Expect: 100-continue` when
    /// `awaits_continue`.
    pub fn new(inner: Inner, awaits_continue: bool) -> Self {
        Self {
            inner,
            polled: false,
            awaits_continue,
        }
    }
}

impl Body for Lingering {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.polled = true;
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if self.inner.is_end_stream()
            || (self.awaits_continue && !self.polled)
            // A body known to be past the bound is not worth reading in part.
            || self.inner.size_hint().lower() > MAX_BYTES
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let body = std::mem::take(&mut self.inner);
        runtime.spawn(discard(body));
    }
}

/// Reads `body` to its end within the bounds, and says in the log when it gives up.
async fn discard(mut body: Inner) {
    let mut read: u64 = 0;
    let reading = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(data) = frame.data_ref() {
                read = read.saturating_add(data.len() as u64);
                if read > MAX_BYTES {
                    return Err(format!("more than {MAX_BYTES} bytes"));
                }
            }
        }
        Ok(())
    };
    let outcome = match tokio::time::timeout(MAX_TIME, reading).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("still sending after {} s", MAX_TIME.as_secs())),
    };
    if let Err(why) = outcome {
        tracing::debug!(
            why,
            "Stopped reading an unwanted request body; closing the connection."
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// A body whose chunks arrive through a channel (the sender sees when it is dropped),
    /// announcing `length` bytes when given.
    struct Channel {
        rx: mpsc::Receiver<Bytes>,
        length: Option<u64>,
    }

    impl Body for Channel {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.rx.poll_recv(cx).map(|c| c.map(|c| Ok(Frame::data(c))))
        }

        fn size_hint(&self) -> SizeHint {
            self.length
                .map_or_else(SizeHint::default, SizeHint::with_exact)
        }
    }

    fn channel(length: Option<u64>) -> (mpsc::Sender<Bytes>, Inner) {
        let (tx, rx) = mpsc::channel(4);
        (tx, BoxBody::new(Channel { rx, length }))
    }

    #[tokio::test]
    async fn an_unread_body_is_read_to_its_end_after_the_drop() {
        let (tx, body) = channel(None);
        drop(Lingering::new(body, false));
        assert!(!tx.is_closed(), "the body must still be read");
        // More chunks than the channel holds: they go through only if someone reads them.
        let sending = async {
            for _ in 0..16 {
                tx.send(Bytes::from_static(&[0; 1024])).await.unwrap();
            }
        };
        let sent = tokio::time::timeout(Duration::from_secs(5), sending).await;
        assert!(sent.is_ok(), "nobody read the body");
    }

    #[tokio::test]
    async fn reading_stops_past_the_size_bound() {
        let (tx, body) = channel(None);
        drop(Lingering::new(body, false));
        let chunk = Bytes::from(vec![0u8; 1024 * 1024]);
        let mut sent = 0u64;
        // The reader takes every chunk until it has passed the bound, then drops the body.
        while tx.send(chunk.clone()).await.is_ok() {
            sent += chunk.len() as u64;
            assert!(
                sent <= MAX_BYTES + 8 * 1024 * 1024,
                "still read after {sent} bytes"
            );
        }
        assert!(sent > MAX_BYTES, "gave up after only {sent} bytes");
    }

    #[tokio::test]
    async fn a_client_waiting_for_100_continue_is_not_asked_for_its_body() {
        let (tx, body) = channel(None);
        drop(Lingering::new(body, true));
        assert!(tx.is_closed(), "the body must be dropped, not read");
    }

    #[tokio::test]
    async fn a_body_announced_past_the_bound_is_not_read() {
        let (tx, body) = channel(Some(MAX_BYTES + 1));
        drop(Lingering::new(body, false));
        assert!(tx.is_closed(), "the body must be dropped, not read");
        let (tx, body) = channel(Some(MAX_BYTES));
        drop(Lingering::new(body, false));
        assert!(!tx.is_closed(), "a body within the bound must be read");
    }
}
