//! Resumable Streamable HTTP streams on any replica: rmcp's `EventStore` on Redis.
//!
//! Every message a session's stream sends is appended to a Redis list per stream
//! (`<prefix>:events:<stream id>`, kept [`EVENTS_TTL`] after its last event) before it goes
//! out, in one round trip (`RPUSH` and `PEXPIRE` pipelined), with the id
//! `<stream id>/<n>`: the n-th message of the stream, from 1. A client that reconnects with
//! `Last-Event-ID`, on whichever replica, gets the messages after that one from the list.
//!
//! Events without a message (the priming event that opens a stream, a `retry` hint) are not
//! written: nothing in them needs replaying, only their id must say where the client is.
//! A stream's priming event is `<stream id>/0` (replay from the first message), so opening
//! a stream costs no round trip and a call costs one. A message-less event later in a
//! stream (rmcp sends one before closing a stream early, which the gateway does not do
//! today) takes the position of the stream's last message (`LLEN`, one round trip).
//!
//! Redis away: events still go out, with ids that cannot be replayed (`<stream id>/-`); the
//! session keeps working, only resumption is lost for them.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use rmcp::model::ServerJsonRpcMessage;
use rmcp::transport::streamable_http_server::session::{
    EventId, EventStore, EventStoreError, EventStream, ServerSseMessage,
};
use serde::{Deserialize, Serialize};

use super::Cluster;

/// How long a stream's events stay replayable after its last one.
pub const EVENTS_TTL: Duration = Duration::from_secs(300);

/// One stored event.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<Arc<ServerJsonRpcMessage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_ms: Option<u64>,
}

/// The cluster's event store.
pub struct RedisEvents {
    cluster: Cluster,
    /// Streams this replica wrote a message of and did not see end yet.
    open: OpenStreams,
}

impl RedisEvents {
    /// Events of `cluster`'s streams.
    pub fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            open: OpenStreams::default(),
        }
    }

    fn list_key(&self, stream_id: &str) -> String {
        self.cluster.key(&format!("events:{stream_id}"))
    }
}

/// The id of the `n`-th message of `stream_id` (0: before the first).
fn event_id(stream_id: &str, n: impl std::fmt::Display) -> EventId {
    format!("{stream_id}/{n}")
}

/// The id of an event Redis did not take: it goes out, but cannot be replayed.
fn unreplayable(stream_id: &str) -> EventId {
    format!("{stream_id}/-")
}

#[async_trait::async_trait]
impl EventStore for RedisEvents {
    async fn store_event(
        &self,
        stream_id: &str,
        event: &ServerSseMessage,
    ) -> Result<EventId, EventStoreError> {
        let key = self.list_key(stream_id);
        let mut redis = self.cluster.0.redis.clone();
        let Some(message) = &event.message else {
            // A stream's priming event opens it: nothing stored yet, nothing to store.
            if !self.open.contains(stream_id) {
                return Ok(event_id(stream_id, 0));
            }
            let length: Result<i64, redis::RedisError> = redis.llen(&key).await;
            return Ok(match length {
                Ok(length) => event_id(stream_id, length),
                Err(e) => {
                    tracing::debug!(error = %e, "Cannot read a stream's length in Redis; the event's id will not be replayable.");
                    unreplayable(stream_id)
                }
            });
        };
        let payload = serde_json::to_string(&Stored {
            message: Some(message.clone()),
            retry_ms: event
                .retry
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        })?;
        let appended: Result<(i64,), redis::RedisError> = redis::pipe()
            .rpush(&key, payload)
            .pexpire(&key, EVENTS_TTL.as_millis() as i64)
            .ignore()
            .query_async(&mut redis)
            .await;
        // A request's stream ends with its answer (the common stream never ends).
        let ends = matches!(
            **message,
            ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)
        ) && !stream_id.ends_with(":common");
        self.open.wrote(stream_id, ends);
        Ok(match appended {
            Ok((length,)) => event_id(stream_id, length),
            Err(e) => {
                tracing::debug!(error = %e, "Cannot store a stream event in Redis; it will not be replayable.");
                unreplayable(stream_id)
            }
        })
    }

    async fn replay_events_after(
        &self,
        last_event_id: &str,
    ) -> Result<EventStream, EventStoreError> {
        let (stream_id, n) = last_event_id
            .rsplit_once('/')
            .ok_or_else(|| format!("{last_event_id:?} is not an event id of this gateway"))?;
        let n: isize = n
            .parse()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("event {last_event_id:?} cannot be replayed"))?;
        let mut redis = self.cluster.0.redis.clone();
        // Message n + 1 is at index n.
        let events: Vec<String> = redis.lrange(self.list_key(stream_id), n, -1).await?;
        let stream_id = stream_id.to_owned();
        let messages: Vec<ServerSseMessage> = events
            .into_iter()
            .enumerate()
            .filter_map(|(i, payload)| {
                let stored: Stored = serde_json::from_str(&payload).ok()?;
                // (The type is non-exhaustive: built from a constructor, then filled in.)
                let mut event = ServerSseMessage::retry(Duration::ZERO);
                event.event_id = Some(event_id(&stream_id, n + 1 + i as isize));
                event.message = stored.message;
                event.retry = stored.retry_ms.map(Duration::from_millis);
                Some(event)
            })
            .collect();
        Ok(Box::pin(futures::stream::iter(messages)))
    }
}

/// The streams this replica wrote a message of and has not seen end (a request's stream
/// ends with its answer), so that a message-less event later in one of them is placed after
/// its messages. A call's stream (priming event, answer) never enters; an entry whose stream
/// had no message for [`EVENTS_TTL`] is dropped (Redis dropped the stream's list too).
#[derive(Default)]
struct OpenStreams(std::sync::Mutex<OpenInner>);

#[derive(Default)]
struct OpenInner {
    last_message: std::collections::HashMap<String, std::time::Instant>,
    /// Sweep for old entries when there are this many.
    sweep_at: usize,
}

impl OpenStreams {
    fn inner(&self) -> std::sync::MutexGuard<'_, OpenInner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn contains(&self, stream_id: &str) -> bool {
        self.inner().last_message.contains_key(stream_id)
    }

    /// A message of `stream_id` was written; `ends`: it was the stream's last.
    fn wrote(&self, stream_id: &str, ends: bool) {
        let mut inner = self.inner();
        if ends {
            if !inner.last_message.is_empty() {
                inner.last_message.remove(stream_id);
            }
            return;
        }
        let now = std::time::Instant::now();
        if let Some(last) = inner.last_message.get_mut(stream_id) {
            *last = now;
            return;
        }
        inner.last_message.insert(stream_id.to_owned(), now);
        if inner.last_message.len() >= inner.sweep_at {
            inner
                .last_message
                .retain(|_, last| now.duration_since(*last) < EVENTS_TTL);
            inner.sweep_at = (inner.last_message.len() * 2).max(1024);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_open_from_its_first_message_until_its_answer() {
        let open = OpenStreams::default();
        // A call's stream: priming (nothing written), then its answer: never entered.
        open.wrote("call", true);
        assert!(!open.contains("call"));
        // A stream with progress first: open until its answer.
        open.wrote("long", false);
        open.wrote("long", false);
        assert!(open.contains("long"));
        open.wrote("long", true);
        assert!(!open.contains("long"));
        assert!(open.inner().last_message.is_empty());
    }

    #[test]
    fn streams_without_a_message_for_the_events_ttl_are_swept() {
        let open = OpenStreams::default();
        let long_ago = std::time::Instant::now()
            .checked_sub(EVENTS_TTL + Duration::from_secs(1))
            .unwrap_or_else(std::time::Instant::now);
        {
            let mut inner = open.inner();
            for i in 0..1500 {
                inner.last_message.insert(format!("old-{i}"), long_ago);
            }
            inner.sweep_at = 1500;
        }
        open.wrote("new", false);
        let inner = open.inner();
        assert_eq!(inner.last_message.len(), 1, "only the fresh stream is left");
        assert!(inner.last_message.contains_key("new"));
        assert_eq!(inner.sweep_at, 1024);
    }
}
