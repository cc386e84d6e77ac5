//! `GET /admin/audit` and `GET /admin/audit/{root_id}`: the audit trail, filtered and paged,
//! or one client's call as its whole tree.

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, ResponseContent};

use super::dto::ErrorBody;
use super::{AdminAuth, AdminErrors, ApiTags, handle_error};
use crate::audit::Filter;
use crate::audit::{Outcome, Record};
use crate::state::AppState;

/// The audit operations.
pub struct AuditApi;

/// Largest page of `GET /admin/audit`.
const MAX_LIMIT: u32 = 1000;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum OutcomeName {
    /// It produced a result.
    Ok,
    /// A tool error or invalid arguments (`error` says which).
    Error,
    /// `[[policies]]` (or an approval) did not let it run.
    Refused,
    /// The caller gave up.
    Cancelled,
    /// It ran out of time.
    Timeout,
}

impl OutcomeName {
    fn of(o: Outcome) -> Self {
        match o {
            Outcome::Ok => Self::Ok,
            Outcome::Error => Self::Error,
            Outcome::Refused => Self::Refused,
            Outcome::Cancelled => Self::Cancelled,
            Outcome::Timeout => Self::Timeout,
        }
    }

    fn outcome(self) -> Outcome {
        match self {
            Self::Ok => Outcome::Ok,
            Self::Error => Outcome::Error,
            Self::Refused => Outcome::Refused,
            Self::Cancelled => Outcome::Cancelled,
            Self::Timeout => Outcome::Timeout,
        }
    }
}

/// The export format of `GET /admin/audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum AuditFormat {
    /// One JSON page: `{"records": [...], "next_cursor": ...}`.
    Json,
    /// The page's records as JSON lines (`application/x-ndjson`), for a SIEM.
    Jsonl,
}

/// One tool call at one hop.
#[derive(Debug, Clone, Object)]
pub struct AuditRecordView {
    /// The record (a time-ordered UUID).
    pub id: String,
    /// The client's call this one is part of (its own id for the client's call).
    pub root_id: String,
    /// The call that made this one; null for the client's call.
    pub parent_id: Option<String>,
    /// When the call began (RFC 3339, UTC).
    pub time: String,
    /// The OAuth subject, if a token identified the caller.
    pub principal: Option<String>,
    /// The configured client, or the OAuth client id.
    pub client: Option<String>,
    /// The agent whose tool was called.
    pub agent: String,
    /// The tool, as that agent names it.
    pub tool: String,
    /// `streamable_http`, `sse` or `stdio`.
    pub transport: Option<String>,
    /// The MCP session.
    pub session: Option<String>,
    /// Agent runs enclosing the call (0: the client's own call).
    pub depth: u32,
    /// The arguments, redacted (`[audit] redact`).
    pub arguments: serde_json::Value,
    /// SHA-256 (hex) of the arguments as received.
    pub arguments_sha256: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// The `[[policies]]` rule that decided, if one did.
    pub rule: Option<String>,
    /// How it ended.
    pub outcome: OutcomeName,
    /// The error, for any outcome but `ok`.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: f64,
    /// Agent runs: the model.
    pub model: Option<String>,
    /// Agent runs: model turns taken.
    pub turns: Option<u32>,
    /// Agent runs: prompt tokens of this run.
    pub prompt_tokens: Option<u64>,
    /// Agent runs: completion tokens of this run.
    pub completion_tokens: Option<u64>,
    /// The approval the call needed (`[[approvals]]`): who decided what, when and why.
    pub approval: Option<ApprovalView>,
}

/// What became of a call's approval.
#[derive(Debug, Clone, Object)]
pub struct ApprovalView {
    /// The approval request.
    pub id: String,
    /// The `[[approvals]]` rule that asked for it.
    pub rule: String,
    /// `operator` or `client`.
    pub by: String,
    /// `approved`, `denied`, `timeout`, `withdrawn` (the caller gave up) or `unavailable`
    /// (nobody could be asked).
    pub decision: String,
    /// Who decided: the operator, or the user asked.
    pub decided_by: Option<String>,
    /// The reason given.
    pub reason: Option<String>,
    /// When it was asked for (RFC 3339, UTC).
    pub requested_at: String,
    /// How long the call waited, in milliseconds.
    pub waited_ms: u64,
}

impl AuditRecordView {
    fn of(r: Record) -> Self {
        Self {
            time: rfc3339_ms(r.time_ms),
            id: r.id,
            root_id: r.root_id,
            parent_id: r.parent_id,
            principal: r.principal,
            client: r.client,
            agent: r.agent,
            tool: r.tool,
            transport: r.transport,
            session: r.session,
            depth: r.depth,
            arguments: r.arguments.to_value(),
            arguments_sha256: r.arguments_sha256,
            decision: r.decision,
            rule: r.rule,
            outcome: OutcomeName::of(r.outcome),
            error: r.error,
            duration_ms: r.duration_ms,
            model: r.model,
            turns: r.turns,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            approval: r.approval.map(|a| ApprovalView {
                requested_at: rfc3339_ms(a.requested_ms),
                id: a.id,
                rule: a.rule,
                by: a.by,
                decision: a.decision,
                decided_by: a.decided_by,
                reason: a.reason,
                waited_ms: a.waited_ms,
            }),
        }
    }
}

/// One page of the trail, newest written first.
#[derive(Debug, Clone, Object)]
pub struct AuditPage {
    /// The records.
    pub records: Vec<AuditRecordView>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// One client's call, as its whole tree.
#[derive(Debug, Clone, Object)]
pub struct AuditTree {
    /// The client's call.
    pub root_id: String,
    /// Every record of the tree, flat, oldest first (`parent_id` links them).
    pub records: Vec<AuditRecordView>,
}

/// The body of a page.
#[derive(ResponseContent)]
pub enum AuditPageContent {
    /// `format=json` (the default).
    Json(Json<AuditPage>),
    /// `format=jsonl`: one record per line.
    #[oai(content_type = "application/x-ndjson")]
    Jsonl(PlainText<String>),
}

admin_response! {
/// `GET /admin/audit`.
pub enum ListAuditResponse {
    /// One page of records.
    #[oai(status = 200)]
    Ok(AuditPageContent),
    /// `[audit] enabled = false`: no trail is kept.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The trail cannot be read.
    #[oai(status = 500)]
    Failed(Json<ErrorBody>),
}
}

admin_response! {
/// `GET /admin/audit/{root_id}`.
pub enum GetAuditTreeResponse {
    /// Every record of the call's tree.
    #[oai(status = 200)]
    Ok(Json<AuditTree>),
    /// No record has this root, or no trail is kept.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The trail cannot be read.
    #[oai(status = 500)]
    Failed(Json<ErrorBody>),
}
}

fn disabled() -> Json<ErrorBody> {
    Json(ErrorBody::new(
        "audit_disabled",
        "no audit trail is kept: [audit] enabled = false in switchboard.toml",
    ))
}

// `list_audit` takes one argument per documented query parameter.
#[allow(clippy::too_many_arguments)]
#[OpenApi(prefix_path = "/admin")]
impl AuditApi {
    /// List audit records
    ///
    /// Tool calls at every hop, newest written first, narrowed by any of the filters;
    /// `cursor` pages on. `format=jsonl` answers the same page as JSON lines.
    #[oai(
        path = "/audit",
        method = "get",
        operation_id = "listAudit",
        tag = "ApiTags::Audit"
    )]
    async fn list_audit(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
        /// Calls that began at or after this time (RFC 3339).
        from: Query<Option<String>>,
        /// Calls that began before this time (RFC 3339).
        to: Query<Option<String>>,
        /// Only this OAuth subject's calls.
        principal: Query<Option<String>>,
        /// Only this client's calls.
        client: Query<Option<String>>,
        /// Only calls of this agent's tools.
        agent: Query<Option<String>>,
        /// Only calls of this tool.
        tool: Query<Option<String>>,
        /// Only calls that ended so.
        outcome: Query<Option<OutcomeName>>,
        /// Only the records of this client's call.
        root_id: Query<Option<String>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Page size (1 to 1000, default 100).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// `json` (default) or `jsonl`.
        format: Query<Option<AuditFormat>>,
    ) -> ListAuditResponse {
        let Some(trail) = state.audit() else {
            return ListAuditResponse::NotFound(disabled());
        };
        let time = |name: &str, v: Option<String>| match v {
            None => Ok(None),
            Some(text) => parse_time(&text).map(Some).ok_or_else(|| {
                format!("{name}: {text:?} is not an RFC 3339 time, e.g. 2026-12-06T07:00:00Z")
            }),
        };
        let before = match cursor.0.as_deref().map(str::parse::<i64>) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => {
                return ListAuditResponse::bad_request(ErrorBody::new(
                    "bad_request",
                    "cursor: not a cursor of this API (use next_cursor as given)",
                ));
            }
        };
        let (from_ms, to_ms) = match (time("from", from.0), time("to", to.0)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => {
                return ListAuditResponse::bad_request(ErrorBody::new("bad_request", e));
            }
        };
        let limit = limit.0.min(MAX_LIMIT);
        let filter = Filter {
            from_ms,
            to_ms,
            principal: principal.0,
            client: client.0,
            agent: agent.0,
            tool: tool.0,
            outcome: outcome.0.map(OutcomeName::outcome),
            root_id: root_id.0,
            before,
            limit,
        };
        let rows = match trail.store().list(filter).await {
            Ok(rows) => rows,
            Err(e) => {
                return ListAuditResponse::Failed(Json(ErrorBody::new("audit_unavailable", e)));
            }
        };
        let next_cursor = (rows.len() == limit as usize)
            .then(|| rows.last().map(|(seq, _)| seq.to_string()))
            .flatten();
        if format.0 == Some(AuditFormat::Jsonl) {
            let mut lines = String::new();
            for (_, record) in rows {
                if let Ok(line) = serde_json::to_string(&AuditLine(AuditRecordView::of(record))) {
                    lines.push_str(&line);
                    lines.push('\n');
                }
            }
            return ListAuditResponse::Ok(AuditPageContent::Jsonl(PlainText(lines)));
        }
        let records = rows
            .into_iter()
            .map(|(_, r)| AuditRecordView::of(r))
            .collect();
        ListAuditResponse::Ok(AuditPageContent::Json(Json(AuditPage {
            records,
            next_cursor,
        })))
    }

    /// Get an audit tree
    ///
    /// Every record of one client's call: the call itself, each tool its agent called,
    /// each delegated agent and its calls, flat and oldest first.
    #[oai(
        path = "/audit/:root_id",
        method = "get",
        operation_id = "getAuditTree",
        tag = "ApiTags::Audit"
    )]
    async fn get_audit_tree(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
        /// The client's call (the `root_id` of any record of it).
        root_id: Path<String>,
    ) -> GetAuditTreeResponse {
        let Some(trail) = state.audit() else {
            return GetAuditTreeResponse::NotFound(disabled());
        };
        match trail.store().tree(root_id.0.clone()).await {
            Ok(records) if records.is_empty() => {
                GetAuditTreeResponse::NotFound(Json(ErrorBody::new(
                    "audit_tree_not_found",
                    format!("no audit record has root_id {:?}", root_id.0),
                )))
            }
            Ok(records) => GetAuditTreeResponse::Ok(Json(AuditTree {
                root_id: root_id.0,
                records: records.into_iter().map(AuditRecordView::of).collect(),
            })),
            Err(e) => GetAuditTreeResponse::Failed(Json(ErrorBody::new("audit_unavailable", e))),
        }
    }
}

fn default_limit() -> u32 {
    100
}

/// A record as one JSON line (the same fields as in the JSON page).
struct AuditLine(AuditRecordView);

impl serde::Serialize for AuditLine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        poem_openapi::types::ToJSON::to_json(&self.0)
            .unwrap_or(serde_json::Value::Null)
            .serialize(s)
    }
}

fn parse_time(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

pub(super) fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_default()
}
