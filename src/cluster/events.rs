//! Resumable Streamable HTTP streams on any replica: rmcp's `EventStore` on Redis.
//!
//! Every event a session's stream sends is appended to a Redis list per stream
//! (`<prefix>:events:<stream id>`, kept [`EVENTS_TTL`] after its last event) before it goes
//! out, with the id `<stream id>/<index>`. A client that reconnects with `Last-Event-ID`,
//! on whichever replica, gets the events after that one from the list.
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
}

impl RedisEvents {
    /// Events of `cluster`'s streams.
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }

    fn list_key(&self, stream_id: &str) -> String {
        self.cluster.key(&format!("events:{stream_id}"))
    }
}

#[async_trait::async_trait]
impl EventStore for RedisEvents {
    async fn store_event(
        &self,
        stream_id: &str,
        event: &ServerSseMessage,
    ) -> Result<EventId, EventStoreError> {
        let stored = Stored {
            message: event.message.clone(),
            retry_ms: event
                .retry
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        let payload = serde_json::to_string(&stored)?;
        let key = self.list_key(stream_id);
        let mut redis = self.cluster.0.redis.clone();
        let appended: Result<(i64,), redis::RedisError> = redis::pipe()
            .rpush(&key, payload)
            .pexpire(&key, EVENTS_TTL.as_millis() as i64)
            .ignore()
            .query_async(&mut redis)
            .await;
        Ok(match appended {
            Ok((length,)) => format!("{stream_id}/{}", length - 1),
            Err(e) => {
                tracing::debug!(error = %e, "Cannot store a stream event in Redis; it will not be replayable.");
                format!("{stream_id}/-")
            }
        })
    }

    async fn replay_events_after(
        &self,
        last_event_id: &str,
    ) -> Result<EventStream, EventStoreError> {
        let (stream_id, index) = last_event_id
            .rsplit_once('/')
            .ok_or_else(|| format!("{last_event_id:?} is not an event id of this gateway"))?;
        let index: isize = index
            .parse()
            .map_err(|_| format!("event {last_event_id:?} cannot be replayed"))?;
        let mut redis = self.cluster.0.redis.clone();
        let events: Vec<String> = redis
            .lrange(self.list_key(stream_id), index + 1, -1)
            .await?;
        let stream_id = stream_id.to_owned();
        let messages: Vec<ServerSseMessage> = events
            .into_iter()
            .enumerate()
            .filter_map(|(i, payload)| {
                let stored: Stored = serde_json::from_str(&payload).ok()?;
                // (The type is non-exhaustive: built from a constructor, then filled in.)
                let mut event = ServerSseMessage::retry(Duration::ZERO);
                event.event_id = Some(format!("{stream_id}/{}", index + 1 + i as isize));
                event.message = stored.message;
                event.retry = stored.retry_ms.map(Duration::from_millis);
                Some(event)
            })
            .collect();
        Ok(Box::pin(futures::stream::iter(messages)))
    }
}
