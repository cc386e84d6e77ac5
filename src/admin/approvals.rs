//! `GET /admin/approvals` and `POST /admin/approvals/{id}`: the calls waiting for an
//! operator's approval (`[[approvals]]` with `by = "operator"`), and the decision that lets
//! one run or denies it.
//!
//! Cluster mode: a call waits on the replica running it, and its approval id names that
//! replica (`<node>~<uuid>`). The list gathers every live replica's own list (asked with
//! `scope=local`, as a hop, the way `GET /admin/sessions` gathers sessions).

use poem::web::{Data, RemoteAddr};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::dto::{ErrorBody, Scope};
use super::{AdminAuth, AdminErrors, ApiTags, handle_error};
use crate::approvals::queue::{DecideError, Decision, Pending};
use crate::state::AppState;

/// The approvals operations.
pub struct ApprovalsApi;

/// Longest reason kept.
const MAX_REASON: usize = 2000;

/// A call waiting for an operator.
#[derive(Debug, Clone, Object)]
pub struct PendingApproval {
    /// The approval request (what `POST /admin/approvals/{id}` takes).
    pub id: String,
    /// The agent whose tool it is.
    pub agent: String,
    /// The tool, as that agent names it.
    pub tool: String,
    /// The arguments, redacted as in the audit trail (`[audit] redact`).
    pub arguments: serde_json::Value,
    /// SHA-256 (hex) of the arguments as received.
    pub arguments_sha256: String,
    /// Who the call is for, as people read it (`alice@example.com (client acme)`).
    pub caller: String,
    /// The OAuth subject, if a token identified the caller.
    pub principal: Option<String>,
    /// The configured client, or the OAuth client id.
    pub client: Option<String>,
    /// The MCP session the call came in on.
    pub session: Option<String>,
    /// The audit tree the call is part of (`GET /admin/audit/{root_id}`), when the trail is on.
    pub root_id: Option<String>,
    /// The call's own audit record, written when it ends.
    pub record_id: Option<String>,
    /// The `[[approvals]]` rule that asked (`approvals[0]`).
    pub rule: String,
    /// The rule's argument conditions (`state = "Resolved"`), if it has any.
    pub conditions: Option<String>,
    /// The rule's message to the approver.
    pub message: Option<String>,
    /// When it was asked for (RFC 3339, UTC).
    pub requested_at: String,
    /// When it was asked for (Unix ms).
    pub requested_ms: i64,
    /// When it is denied if nobody decides (Unix ms).
    pub expires_ms: i64,
    /// Cluster mode: the replica the call waits on (its node id).
    pub node: Option<String>,
}

impl PendingApproval {
    fn of(p: Pending) -> Self {
        Self {
            requested_at: super::audit::rfc3339_ms(p.requested_ms),
            id: p.id,
            agent: p.agent,
            tool: p.tool,
            arguments: p.arguments,
            arguments_sha256: p.arguments_sha256,
            caller: p.caller,
            principal: p.principal,
            client: p.client,
            session: p.session,
            root_id: p.root_id,
            record_id: p.record_id,
            rule: p.rule,
            conditions: p.conditions,
            message: p.message,
            requested_ms: p.requested_ms,
            expires_ms: p.expires_ms,
            node: p.node,
        }
    }
}

/// The calls waiting, oldest first.
#[derive(Debug, Clone, Object)]
pub struct ApprovalList {
    /// The pending calls.
    pub approvals: Vec<PendingApproval>,
    /// Cluster mode, every replica's list: replicas that did not answer (their pending
    /// calls are missing here).
    #[oai(skip_serializing_if_is_none)]
    pub unreachable_nodes: Option<Vec<String>>,
}

/// What the operator decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum DecisionName {
    /// The call runs.
    Approve,
    /// The call does not run; its caller gets a tool error saying so and why.
    Deny,
}

/// An operator's decision.
#[derive(Debug, Clone, Object)]
pub struct DecisionBody {
    /// `approve` or `deny`.
    pub decision: DecisionName,
    /// Why (shown to the caller on a denial, and kept in the audit record).
    pub reason: Option<String>,
    /// Who decides, for the audit record (default: `admin@<peer address>`).
    pub operator: Option<String>,
}

/// The decision as delivered.
#[derive(Debug, Clone, Object)]
pub struct Decided {
    /// The approval request.
    pub id: String,
    /// `approved` or `denied`.
    pub decision: String,
    /// Who decided.
    pub decided_by: String,
    /// The reason given.
    pub reason: Option<String>,
    /// The agent whose tool it is.
    pub agent: String,
    /// The tool.
    pub tool: String,
}

admin_response! {
/// `GET /admin/approvals`.
pub enum ListApprovalsResponse {
    /// The calls waiting.
    #[oai(status = 200)]
    Ok(Json<ApprovalList>),
}
}

admin_response! {
/// `POST /admin/approvals/{id}`.
pub enum DecideResponse {
    /// Delivered: the call runs (approve) or ends with a tool error (deny).
    #[oai(status = 200)]
    Ok(Json<Decided>),
    /// No call waits under this id (never did, already decided, timed out or withdrawn).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The call was withdrawn by its caller just as the decision came.
    #[oai(status = 409)]
    Gone(Json<ErrorBody>),
}
}

#[OpenApi(prefix_path = "/admin")]
impl ApprovalsApi {
    /// List pending approvals
    ///
    /// Calls waiting for an operator's approval (`[[approvals]]` rules with
    /// `by = "operator"`), oldest first: the agent, tool, redacted arguments, who the call
    /// is for and when it is denied if nobody decides. In cluster mode every live replica's,
    /// each with its `node`; replicas that did not answer are in `unreachable_nodes`.
    #[oai(
        path = "/approvals",
        method = "get",
        operation_id = "listApprovals",
        tag = "ApiTags::Approvals"
    )]
    async fn list_approvals(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
        /// Cluster mode: every live replica's pending calls (`cluster`, the default) or this
        /// replica's only (`local`).
        scope: Query<Option<Scope>>,
    ) -> ListApprovalsResponse {
        let mut approvals: Vec<PendingApproval> = state
            .approvals()
            .queue()
            .list()
            .into_iter()
            .map(PendingApproval::of)
            .collect();
        let mut unreachable_nodes = None;
        if let Some(cluster) = state.cluster()
            && scope.0 != Some(Scope::Local)
        {
            let (items, missing) = super::views::gather_from_others(
                cluster,
                "/admin/approvals?scope=local",
                "approvals",
            )
            .await;
            approvals.extend(items.into_iter().filter_map(parse_json::<PendingApproval>));
            approvals.sort_by(|a, b| (a.requested_ms, &a.id).cmp(&(b.requested_ms, &b.id)));
            unreachable_nodes = Some(missing);
        }
        ListApprovalsResponse::Ok(Json(ApprovalList {
            approvals,
            unreachable_nodes,
        }))
    }

    /// Approve or deny a call
    ///
    /// `{"decision": "approve"}` lets the call run; `{"decision": "deny", "reason": "..."}`
    /// ends it with a tool error (`isError: true`) that says it was denied and why. Either
    /// goes into the call's audit record with who decided.
    #[oai(
        path = "/approvals/:id",
        method = "post",
        operation_id = "decideApproval",
        tag = "ApiTags::Approvals"
    )]
    async fn decide_approval(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
        peer: &RemoteAddr,
        /// The approval request's id.
        id: Path<String>,
        body: Json<DecisionBody>,
    ) -> DecideResponse {
        let body = body.0;
        let clean = |s: Option<String>| {
            s.map(|s| s.trim().chars().take(MAX_REASON).collect::<String>())
                .filter(|s| !s.is_empty())
        };
        let by = clean(body.operator).unwrap_or_else(|| match peer.as_socket_addr() {
            Some(addr) => format!("admin@{}", addr.ip()),
            None => "admin".to_owned(),
        });
        let decision = Decision {
            approve: body.decision == DecisionName::Approve,
            by: by.clone(),
            reason: clean(body.reason),
        };
        let reason = decision.reason.clone();
        let approve = decision.approve;
        match state.approvals().queue().decide(&id.0, decision) {
            Ok(pending) => {
                tracing::info!(id = %id.0, agent = %pending.agent, tool = %pending.tool, decided_by = %by, approve, "Operator decided an approval.");
                DecideResponse::Ok(Json(Decided {
                    id: id.0,
                    decision: if approve { "approved" } else { "denied" }.to_owned(),
                    decided_by: by,
                    reason,
                    agent: pending.agent,
                    tool: pending.tool,
                }))
            }
            Err(DecideError::Unknown(_)) => DecideResponse::NotFound(Json(not_waiting(&id.0))),
            Err(e @ DecideError::Gone(_)) => {
                DecideResponse::Gone(Json(ErrorBody::new("approval_withdrawn", e.to_string())))
            }
        }
    }
}

/// An admin object from another replica's JSON.
fn parse_json<T: poem_openapi::types::ParseFromJSON>(value: serde_json::Value) -> Option<T> {
    T::parse_from_json(Some(value)).ok()
}

fn not_waiting(id: &str) -> ErrorBody {
    ErrorBody::new(
        "approval_not_found",
        format!(
            "no call waits for approval under id {id:?} (it was decided, timed out or withdrawn)"
        ),
    )
}
