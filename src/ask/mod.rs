//! Approval by the calling user: an elicitation request (form mode) to their MCP client.
//!
//! Only a session that can take server-to-client requests can be asked: one negotiated at a
//! protocol before 2026-07-28 (rmcp refuses such requests on later ones) whose client
//! declared the `elicitation` capability with form mode. The request is sent on the stream
//! of the client's own `tools/call` (rmcp's `OriginatingRequestId` marker), so a client
//! sees it as part of that call, even when an agent run deep inside it needs the approval.
//! The form has one optional field, `reason`; "accept" approves, "decline" denies (with the
//! reason, if given), "cancel" (dismissed) denies.

use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{
    CancelledNotification, CancelledNotificationParam, ClientResult, ElicitRequest,
    ElicitRequestParams, ElicitationAction, ElicitationSchema, ProtocolVersion, RequestId,
    ServerRequest,
};
use rmcp::service::{OriginatingRequestId, Peer, PeerRequestOptions, RequestContext};
use tokio_util::sync::CancellationToken;

/// The client of one `tools/call`, able to be asked.
pub struct ClientAsker {
    peer: Peer<RoleServer>,
    request: RequestId,
}

/// What the user answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Approved.
    Accept {
        /// A note, if the user wrote one.
        reason: Option<String>,
    },
    /// Denied.
    Decline {
        /// Why, if the user wrote it.
        reason: Option<String>,
    },
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
    /// The asker of the client that sent the request of `context`; `None` when that client
    /// cannot be asked (see the module).
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
        let elicitation = info.capabilities.elicitation.as_ref()?;
        // An empty capability means form mode (its first version had no modes).
        if elicitation.form.is_none() && elicitation.url.is_some() {
            return None;
        }
        Some(Self {
            peer: context.peer.clone(),
            request: context.id.clone(),
        })
    }

    /// Asks the user to approve, showing `message`; waits up to `timeout`, or until
    /// `cancel` fires (then tells the client the request is cancelled).
    pub async fn ask(
        &self,
        message: &str,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Answer {
        let schema = match ElicitationSchema::builder()
            .optional_string_with("reason", |s| {
                s.description("Optional: why you approve or deny this call")
            })
            .build()
        {
            Ok(schema) => schema,
            Err(e) => return Answer::Failed(format!("the approval form could not be built: {e}")),
        };
        let mut request = ElicitRequest::new(ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.to_owned(),
            requested_schema: schema,
        });
        request
            .extensions
            .insert(OriginatingRequestId(self.request.clone()));
        let options = PeerRequestOptions::with_timeout(timeout);
        let handle = match self
            .peer
            .send_request_with_option(ServerRequest::ElicitRequest(request), options)
            .await
        {
            Ok(handle) => handle,
            Err(e) => return Answer::Failed(e.to_string()),
        };
        let id = handle.id.clone();
        tokio::select! {
            answer = handle.await_response() => match answer {
                Ok(ClientResult::ElicitResult(result)) => {
                    let reason = result
                        .content
                        .as_ref()
                        .and_then(|c| c.get("reason"))
                        .and_then(|r| r.as_str())
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned);
                    match result.action {
                        ElicitationAction::Accept => Answer::Accept { reason },
                        ElicitationAction::Decline => Answer::Decline { reason },
                        ElicitationAction::Cancel => Answer::Cancel,
                        other => Answer::Failed(format!("the client answered the approval request with {other:?}")),
                    }
                }
                Ok(other) => Answer::Failed(format!("the client answered the approval request with something else: {other:?}")),
                Err(rmcp::service::ServiceError::Timeout { .. }) => Answer::TimedOut,
                Err(e) => Answer::Failed(e.to_string()),
            },
            () = cancel.cancelled() => {
                let notification = CancelledNotification::new(CancelledNotificationParam::new(
                    Some(id),
                    Some("the call that needed approval was cancelled".into()),
                ));
                let _ = self.peer.send_notification(notification.into()).await;
                Answer::Withdrawn
            }
        }
    }
}
