//! What an upstream sends during a call reaches the client in the order it was sent, and
//! before the call's answer.
//!
//! rmcp hands every incoming notification to a task of its own and the answer straight to the
//! waiting caller, so two progress notifications that arrive back to back can be handled in
//! either order (a client would see progress go backwards; the MCP spec says it increases),
//! and the answer can overtake them (a notification after the answer has no stream left).
//! [`Stamped`] wraps the upstream transport and numbers each relayed notification (progress,
//! log message, resource update) as it is received, in an extension rmcp moves into the
//! handler's `NotificationContext`. With [`Turns`], the handler of number `n` forwards only
//! after number `n - 1` has, and an answer waits until every notification received before it
//! has gone. A number that never reaches a handler is waited for at most [`TURN_WAIT`] (or the
//! answer's own limit), then passed over.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::{GetExtensions as _, JsonRpcMessage, ServerNotification};
use rmcp::service::{NotificationContext, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::watch;

/// How long a notification waits for the one received before it.
const TURN_WAIT: Duration = Duration::from_millis(250);

/// The place of a relayed notification in its connection's arrival order (from 0).
#[derive(Clone, Copy, Debug)]
struct Arrival(u64);

/// An upstream transport whose relayed notifications carry their [`Arrival`].
pub(super) struct Stamped<T> {
    inner: T,
    turns: Arc<Turns>,
}

impl<T> Stamped<T> {
    pub(super) fn new(inner: T, turns: Arc<Turns>) -> Self {
        Self { inner, turns }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Stamped<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        let Self { inner, turns } = self;
        async move {
            let mut message = inner.receive().await;
            if let Some(JsonRpcMessage::Notification(n)) = &mut message
                && matches!(
                    n.notification,
                    ServerNotification::ProgressNotification(_)
                        | ServerNotification::LoggingMessageNotification(_)
                        | ServerNotification::ResourceUpdatedNotification(_)
                )
            {
                let arrival = Arrival(turns.received.fetch_add(1, Ordering::SeqCst));
                n.notification.extensions_mut().insert(arrival);
            }
            message
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Whose turn it is to forward, on one connection.
#[derive(Default)]
pub(super) struct Turns {
    /// How many notifications [`Stamped`] has numbered.
    received: AtomicU64,
    /// The number allowed to forward now: every one below it has gone (or was passed over).
    current: watch::Sender<u64>,
}

impl Turns {
    /// Waits until the notification of `context` may be forwarded; its turn ends when the
    /// returned value is dropped. One without an [`Arrival`] goes at once.
    pub(super) async fn wait(&self, context: &NotificationContext<RoleClient>) -> Option<Turn<'_>> {
        let Arrival(n) = *context.extensions.get::<Arrival>()?;
        if !self.reach(n, TURN_WAIT).await {
            self.pass(n);
        }
        Some(Turn { turns: self, n })
    }

    /// Waits (at most `limit`) until every notification received so far has been forwarded:
    /// an answer's, received after them.
    pub(super) async fn drain(&self, limit: Duration) {
        let all = self.received.load(Ordering::SeqCst);
        if !self.reach(all, limit).await {
            self.pass(all);
        }
    }

    /// Whether `current` reached `n` within `limit`.
    async fn reach(&self, n: u64, limit: Duration) -> bool {
        let mut current = self.current.subscribe();
        let reached = current.wait_for(|&c| c >= n);
        matches!(tokio::time::timeout(limit, reached).await, Ok(Ok(_)))
    }

    /// Moves the turn to `n` at least, and wakes whoever waits for it.
    fn pass(&self, n: u64) {
        self.current.send_if_modified(|c| {
            let moved = n > *c;
            *c = (*c).max(n);
            moved
        });
    }
}

/// The turn of arrival `n`; dropping it gives the turn to `n + 1`.
pub(super) struct Turn<'a> {
    turns: &'a Turns,
    n: u64,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.pass(self.n + 1);
    }
}
