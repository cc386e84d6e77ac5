//! The operators' queue: calls waiting for an approval, and the decisions that free them.
//!
//! A waiting call owns its entry: it puts it in the queue, waits on a oneshot channel for a
//! decision, and takes the entry out whatever ends the wait (decision, timeout, the caller
//! giving up: the future is dropped), so nothing stale stays behind. A decision takes the
//! entry out and sends on its channel; a call that went away meanwhile makes the decision
//! fail with [`DecideError::Gone`] instead of being lost silently.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// A call waiting for an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// The approval request's id.
    pub id: String,
    /// The agent whose tool it is.
    pub agent: String,
    /// The tool.
    pub tool: String,
    /// The arguments, redacted as in the audit trail.
    pub arguments: serde_json::Value,
    /// SHA-256 (hex) of the arguments as received.
    pub arguments_sha256: String,
    /// Who the call is for, as people read it.
    pub caller: String,
    /// The OAuth subject.
    pub principal: Option<String>,
    /// The client.
    pub client: Option<String>,
    /// The MCP session.
    pub session: Option<String>,
    /// The audit tree the call is part of.
    pub root_id: Option<String>,
    /// The call's own audit record.
    pub record_id: Option<String>,
    /// The `[[approvals]]` rule (`approvals[0]`).
    pub rule: String,
    /// The rule's argument conditions, as one line.
    pub conditions: Option<String>,
    /// The rule's message to the approver.
    pub message: Option<String>,
    /// When it was asked for (Unix ms).
    pub requested_ms: i64,
    /// When it is denied if nobody decides (Unix ms).
    pub expires_ms: i64,
    /// Cluster mode: the replica the call waits on.
    pub node: Option<String>,
}

/// An operator's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the call may run.
    pub approve: bool,
    /// Who decided.
    pub by: String,
    /// Why.
    pub reason: Option<String>,
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    /// Someone decided.
    Decided(Decision),
    /// Nobody did in time.
    TimedOut,
    /// The caller gave up.
    Withdrawn,
}

/// Why a decision could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// No call waits under this id (never did, already decided, or timed out).
    #[error("no call waits for approval under id {0:?} (it was decided, timed out or withdrawn)")]
    Unknown(String),
    /// The call went away just as the decision came.
    #[error("the call {0:?} was withdrawn by its caller before the decision reached it")]
    Gone(String),
}

struct Waiting {
    pending: Pending,
    decide: oneshot::Sender<Decision>,
}

/// The calls waiting on this replica.
pub struct Queue {
    waiting: DashMap<String, Waiting>,
    /// Bumped on every change, so a watcher (the console) can wait for one.
    changes: watch::Sender<u64>,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// An empty queue.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            waiting: DashMap::new(),
            changes: watch::Sender::new(0),
            metrics,
        })
    }

    /// The waiting calls, oldest first.
    pub fn list(&self) -> Vec<Pending> {
        let mut all: Vec<Pending> = self
            .waiting
            .iter()
            .map(|w| w.value().pending.clone())
            .collect();
        all.sort_by(|a, b| (a.requested_ms, &a.id).cmp(&(b.requested_ms, &b.id)));
        all
    }

    /// One waiting call.
    pub fn get(&self, id: &str) -> Option<Pending> {
        self.waiting.get(id).map(|w| w.pending.clone())
    }

    /// A receiver that sees a new value whenever a call starts or stops waiting.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Delivers `decision` to the call waiting under `id`.
    ///
    /// # Errors
    /// No such call, or it went away.
    pub fn decide(&self, id: &str, decision: Decision) -> Result<Pending, DecideError> {
        let (_, waiting) = self
            .waiting
            .remove(id)
            .ok_or_else(|| DecideError::Unknown(id.to_owned()))?;
        self.changed();
        waiting
            .decide
            .send(decision)
            .map_err(|_| DecideError::Gone(id.to_owned()))?;
        Ok(waiting.pending)
    }

    /// Puts `pending` in the queue and waits up to `timeout` for a decision, calling
    /// `report` now and every [`super::PROGRESS_EVERY`]; gives up when `cancel` fires (or
    /// when the future is dropped), taking the entry out either way.
    pub async fn wait(
        &self,
        pending: Pending,
        timeout: Duration,
        cancel: &CancellationToken,
        report: &(dyn Fn() + Send + Sync),
    ) -> Waited {
        let (tx, mut rx) = oneshot::channel();
        let id = pending.id.clone();
        self.waiting.insert(
            id.clone(),
            Waiting {
                pending,
                decide: tx,
            },
        );
        let _leave = Leave { queue: self, id };
        self.changed();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut progress = tokio::time::interval(super::PROGRESS_EVERY);
        loop {
            tokio::select! {
                decided = &mut rx => {
                    return match decided {
                        Ok(decision) => Waited::Decided(decision),
                        // Only dropping the entry drops the sender: it was taken out.
                        Err(_) => Waited::Withdrawn,
                    };
                }
                () = tokio::time::sleep_until(deadline) => return Waited::TimedOut,
                () = cancel.cancelled() => return Waited::Withdrawn,
                _ = progress.tick() => report(),
            }
        }
    }

    fn changed(&self) {
        self.metrics.approvals_pending(self.waiting.len());
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// Takes a call's entry out of the queue when its wait ends, however it ends.
struct Leave<'a> {
    queue: &'a Queue,
    id: String,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if self.queue.waiting.remove(&self.id).is_some() {
            self.queue.changed();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pending(id: &str) -> Pending {
        Pending {
            id: id.into(),
            agent: "desk".into(),
            tool: "update_incident".into(),
            arguments: serde_json::json!({}),
            arguments_sha256: String::new(),
            caller: "alice".into(),
            principal: None,
            client: None,
            session: None,
            root_id: None,
            record_id: None,
            rule: "approvals[0]".into(),
            conditions: None,
            message: None,
            requested_ms: 0,
            expires_ms: 0,
            node: None,
        }
    }

    async fn listed(queue: &Queue, id: &str) {
        let mut changes = queue.changes();
        while queue.get(id).is_none() {
            changes.changed().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_decision_frees_the_waiting_call_and_leaves_nothing_behind() {
        let queue = Queue::new(Arc::new(Metrics::new()));
        let cancel = CancellationToken::new();
        let q = queue.clone();
        let waiter = tokio::spawn(async move {
            q.wait(pending("a"), Duration::from_secs(60), &cancel, &|| {})
                .await
        });
        listed(&queue, "a").await;
        let decision = Decision {
            approve: false,
            by: "ops".into(),
            reason: Some("not now".into()),
        };
        assert_eq!(
            queue.decide("a", decision.clone()).unwrap().tool,
            "update_incident"
        );
        assert_eq!(waiter.await.unwrap(), Waited::Decided(decision.clone()));
        assert!(queue.list().is_empty());
        assert_eq!(
            queue.decide("a", decision),
            Err(DecideError::Unknown("a".into()))
        );
    }

    #[tokio::test]
    async fn a_timeout_or_a_cancel_ends_the_wait_and_withdraws_the_entry() {
        let queue = Queue::new(Arc::new(Metrics::new()));
        let cancel = CancellationToken::new();
        let reports = std::sync::atomic::AtomicU32::new(0);
        let waited = queue
            .wait(pending("t"), Duration::from_millis(50), &cancel, &|| {
                reports.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })
            .await;
        assert_eq!(waited, Waited::TimedOut);
        // At once (then every 10 s).
        assert_eq!(reports.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(queue.get("t").is_none());

        cancel.cancel();
        let waited = queue
            .wait(pending("c"), Duration::from_secs(25), &cancel, &|| {})
            .await;
        assert_eq!(waited, Waited::Withdrawn);
        assert!(queue.list().is_empty());
    }

    #[tokio::test]
    async fn a_dropped_wait_withdraws_its_entry() {
        let queue = Queue::new(Arc::new(Metrics::new()));
        let cancel = CancellationToken::new();
        let q = queue.clone();
        let waiter = tokio::spawn(async move {
            q.wait(pending("d"), Duration::from_secs(60), &cancel, &|| {})
                .await
        });
        listed(&queue, "d").await;
        waiter.abort();
        let _ = waiter.await;
        assert!(queue.get("d").is_none());
    }
}
