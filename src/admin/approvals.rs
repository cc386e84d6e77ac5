//! `GET /admin/approvals` and `POST /admin/approvals/{id}`: the calls waiting for an
//! operator's approval (`[[approvals]]` with `by = "operator"`), and the decision that lets
//! one run or denies it.
//!
//! Cluster mode: a call waits on the replica running it, and its approval id names that
//! replica (`<node>~<uuid>`). The list gathers every live replica's own list (asked with
//! `scope=local`, as a hop, the way `GET /admin/sessions` gathers sessions); a decision for
//! a call waiting elsewhere is forwarded (as a hop, the way a legacy POST reaches its
//! stream's replica) to the replica its id names, whose queue alone can deliver it, and its
//! answer is relayed.

use poem::Request;
use poem::web::{Data, RemoteAddr};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::dto::{ErrorBody, Scope};
use super::{AdminAuth, AdminErrors, ApiTags, handle_error};
use crate::approvals::queue::{DecideError, Decision, Pending};
use crate::cluster::Cluster;
use crate::cluster::forward::ForwardError;
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
    /// Cluster mode: the replica where the call waits did not answer, or answered with an
    /// error; the decision may not have reached it (`GET /admin/approvals` shows whether the
    /// call still waits).
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// Cluster mode: the call waits on another replica, and Redis, which says where that
    /// replica is, does not answer.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before asking again.
        #[oai(header = "Retry-After")]
        u64,
    ),
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
    /// goes into the call's audit record with who decided. In cluster mode any replica
    /// takes the decision for a call waiting on any replica: it is handed to that replica
    /// (the one the id names), and its answer is this answer.
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
        req: &Request,
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
        // Cluster mode: the call waits on the replica its id names, and only that replica
        // can deliver the decision (a hop is never handed on again).
        if let Some(cluster) = state.cluster()
            && let Some(node) = crate::approvals::owner(&id.0)
            && node != cluster.node_id()
            && !cluster.is_hop(req.headers())
        {
            let client_ip = peer
                .as_socket_addr()
                .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip());
            let request_id = req
                .extensions()
                .get::<crate::mcp::request::RequestId>()
                .map_or_else(String::new, |r| r.0.to_string());
            let answer =
                decide_elsewhere(cluster, node, &id.0, &decision, client_ip, &request_id).await;
            if matches!(answer, DecideResponse::Ok(_)) {
                state.metrics().cluster_event("approval_forwarded");
            }
            return answer;
        }
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

/// Hands `decision` on the call `id` to replica `node`, where it waits, and relays that
/// replica's answer. One attempt, never repeated: the owner's queue delivers a decision at
/// most once, and an attempt whose outcome is unknown answers 502 saying so.
async fn decide_elsewhere(
    cluster: &Cluster,
    node: &str,
    id: &str,
    decision: &Decision,
    client_ip: std::net::IpAddr,
    request_id: &str,
) -> DecideResponse {
    let body = serde_json::json!({
        "decision": if decision.approve { "approve" } else { "deny" },
        "reason": decision.reason,
        // Who decided is named here: the owner would see this replica as the peer.
        "operator": decision.by,
    });
    let path = format!("/admin/approvals/{}", crate::net::percent_encode(id));
    let relayed = match cluster
        .forward(
            node,
            &path,
            None,
            request_id,
            client_ip,
            bytes::Bytes::from(body.to_string()),
        )
        .await
    {
        Ok(relayed) => relayed,
        Err(ForwardError::OwnerGone) => {
            tracing::info!(%id, %node, "A decision names a replica that is not in the cluster.");
            return DecideResponse::NotFound(Json(ErrorBody::new(
                "approval_not_found",
                format!(
                    "no call waits for approval under id {id:?}: it waited on replica {node:?}, which is not a live member of the cluster"
                ),
            )));
        }
        Err(ForwardError::OwnerUnreachable { reason, .. }) => {
            tracing::warn!(%id, %node, error = %reason, "The replica where a call waits for approval did not take the decision.");
            return DecideResponse::BadGateway(Json(ErrorBody::new(
                "approval_node_unreachable",
                format!(
                    "the call {id:?} waits on replica {node:?}, which did not answer ({reason}): the decision may not have reached it; GET /admin/approvals shows whether the call still waits"
                ),
            )));
        }
        Err(ForwardError::Redis(e)) => {
            return DecideResponse::Unavailable(
                Json(ErrorBody::new(
                    "redis_unreachable",
                    format!(
                        "the call {id:?} waits on replica {node:?}, and the cluster's Redis, which says where it is, does not answer: {e}"
                    ),
                )),
                cluster.heartbeat().as_secs().max(1),
            );
        }
    };
    let status = relayed.status.as_u16();
    let answer = serde_json::from_slice::<serde_json::Value>(&relayed.body).ok();
    let response = match status {
        200 => answer.and_then(parse_json::<Decided>).map(|d| {
            tracing::info!(%id, %node, decided_by = %d.decided_by, decision = %d.decision, "Handed an operator's decision to the replica where the call waits.");
            DecideResponse::Ok(Json(d))
        }),
        404 => answer
            .and_then(parse_json::<ErrorBody>)
            .map(|e| DecideResponse::NotFound(Json(e))),
        409 => answer
            .and_then(parse_json::<ErrorBody>)
            .map(|e| DecideResponse::Gone(Json(e))),
        _ => None,
    };
    response.unwrap_or_else(|| {
        tracing::warn!(%id, %node, status, "The replica where a call waits for approval answered a decision with an error.");
        let said: String = String::from_utf8_lossy(&relayed.body)
            .trim()
            .chars()
            .take(200)
            .collect();
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(" ({said})")
        };
        let outcome = if status == 200 {
            "it took the decision, but its answer cannot be read"
        } else {
            "the decision may not have reached it"
        };
        DecideResponse::BadGateway(Json(ErrorBody::new(
            "approval_node_failed",
            format!(
                "the call {id:?} waits on replica {node:?}, which answered the decision with HTTP {status}{said}: {outcome}; GET /admin/approvals shows whether the call still waits"
            ),
        )))
    })
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
