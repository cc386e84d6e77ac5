//! Asking the calling user something through their MCP client: an elicitation request (form
//! mode), whichever way the client's protocol allows.
//!
//! - **A session before 2026-07-28** whose client declared the `elicitation` capability:
//!   a server-to-client `elicitation/create` request, sent on the stream of the client's own
//!   `tools/call` (rmcp's `OriginatingRequestId` marker), so that a client sees it as part of
//!   that call, even when an agent run deep inside it asks.
//! - **A 2026-07-28 request** (no server-to-client requests) whose client declares the
//!   capability: the call runs in a task and its request answers `input_required` with the
//!   question; the client's retry brings the answer ([`rounds`]).
//!
//! - **A call run as an MCP task** ([`crate::tasks`]) whose client declares the capability:
//!   the task turns `input_required` with the question, and `tasks/update` brings the answer
//!   (the same asker as the rounds).
//!
//! Any other client cannot be asked: [`ClientAsker::of`] is `None` and whoever wanted to ask
//! says so in its error.

pub mod rounds;

use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{
    CancelledNotification, CancelledNotificationParam, ClientCapabilities, ClientResult,
    ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema,
    InputRequest, ProtocolVersion, RequestId, ServerRequest,
};
use rmcp::service::{OriginatingRequestId, Peer, PeerRequestOptions, RequestContext};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The client of one `tools/call`, able to be asked.
pub struct ClientAsker {
    way: Way,
}

enum Way {
    /// A server-to-client request on the session.
    Session {
        peer: Peer<RoleServer>,
        request: RequestId,
    },
    /// An `input_required` round (2026-07-28).
    Rounds(rounds::Asker),
}

/// What the user answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Accepted, with the form's content.
    Accept(Option<Value>),
    /// Declined, with the form's content if any.
    Decline(Option<Value>),
    /// The user dismissed the request.
    Cancel,
    /// No answer in time.
    TimedOut,
    /// The call was cancelled while it waited.
    Withdrawn,
    /// The request could not be sent, or the answer was not one.
    Failed(String),
}

impl ClientAsker {
    /// The asker of a session's client for the request of `context`; `None` when that
    /// client cannot be asked by a server-to-client request (see the module).
    pub fn of(context: &RequestContext<RoleServer>) -> Option<Self> {
        // A session's handshake is what a legacy client declares its capabilities in; one
        // of 2026-07-28 (stateless, no server-to-client requests) has none of its own.
        let info = context.peer.peer_info()?;
        if info.protocol_version >= ProtocolVersion::V_2026_07_28
            || context
                .protocol_version()
                .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
        {
            return None;
        }
        if !can_elicit_forms(&info.capabilities) {
            return None;
        }
        Some(Self {
            way: Way::Session {
                peer: context.peer.clone(),
                request: context.id.clone(),
            },
        })
    }

    /// Whether the request of `context` is of 2026-07-28 or later from a client that
    /// declares form elicitation: one that can be asked in `input_required` rounds.
    pub fn rounds_possible(context: &RequestContext<RoleServer>) -> bool {
        context
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
            && context
                .client_capabilities()
                .is_some_and(|c| can_elicit_forms(&c))
    }

    /// Whether the client of `context`, whose call runs as an MCP task, can be asked in the
    /// task's `inputRequests` (it declares form elicitation, at any protocol version).
    pub fn can_be_asked_in_task(context: &RequestContext<RoleServer>) -> bool {
        context
            .client_capabilities()
            .is_some_and(|c| can_elicit_forms(&c))
    }

    /// The asker of a call served in `input_required` rounds, or as a task.
    pub fn rounds(asker: rounds::Asker) -> Self {
        Self {
            way: Way::Rounds(asker),
        }
    }

    /// Asks the user `message` with the form `schema` (under `key`, in a round); waits up
    /// to `timeout`, or until `cancel` fires (then withdraws the request).
    pub async fn elicit(
        &self,
        key: &str,
        message: &str,
        schema: ElicitationSchema,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Answer {
        let request = ElicitRequest::new(ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.to_owned(),
            requested_schema: schema,
        });
        match &self.way {
            Way::Session { peer, request: id } => {
                session_elicit(peer, id, request, timeout, cancel).await
            }
            Way::Rounds(asker) => {
                tokio::select! {
                    answer = asker.ask(key, InputRequest::Elicitation(request), timeout) => match answer {
                        Ok(value) => match serde_json::from_value::<ElicitResult>(value) {
                            Ok(result) => answer_of(result),
                            Err(e) => Answer::Failed(format!("inputResponses.{key} is not an elicitation result: {e}")),
                        },
                        Err(None) => Answer::TimedOut,
                        Err(Some(e)) => Answer::Failed(e),
                    },
                    () = cancel.cancelled() => Answer::Withdrawn,
                }
            }
        }
    }
}

fn can_elicit_forms(capabilities: &ClientCapabilities) -> bool {
    // An empty capability means form mode (its first version had no modes).
    capabilities
        .elicitation
        .as_ref()
        .is_some_and(|e| e.form.is_some() || e.url.is_none())
}

fn answer_of(result: ElicitResult) -> Answer {
    match result.action {
        ElicitationAction::Accept => Answer::Accept(result.content),
        ElicitationAction::Decline => Answer::Decline(result.content),
        ElicitationAction::Cancel => Answer::Cancel,
        other => Answer::Failed(format!("the client answered with {other:?}")),
    }
}

async fn session_elicit(
    peer: &Peer<RoleServer>,
    originating: &RequestId,
    mut request: ElicitRequest,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Answer {
    request
        .extensions
        .insert(OriginatingRequestId(originating.clone()));
    let options = PeerRequestOptions::with_timeout(timeout);
    let handle = match peer
        .send_request_with_option(ServerRequest::ElicitRequest(request), options)
        .await
    {
        Ok(handle) => handle,
        Err(e) => return Answer::Failed(e.to_string()),
    };
    let id = handle.id.clone();
    tokio::select! {
        answer = handle.await_response() => match answer {
            Ok(ClientResult::ElicitResult(result)) => answer_of(result),
            Ok(other) => Answer::Failed(format!("the client answered the request with something else: {other:?}")),
            Err(rmcp::service::ServiceError::Timeout { .. }) => Answer::TimedOut,
            Err(e) => Answer::Failed(e.to_string()),
        },
        () = cancel.cancelled() => {
            let notification = CancelledNotification::new(CancelledNotificationParam::new(
                Some(id),
                Some("the call that asked was cancelled".into()),
            ));
            let _ = peer.send_notification(notification.into()).await;
            Answer::Withdrawn
        }
    }
}
