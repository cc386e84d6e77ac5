//! Human approval of tool calls.
//!
//! An agent file's `[[approvals]]` rules ([`crate::config::approvals`]) say which calls of
//! its tools wait for a person, and who that is: an **operator**, deciding in the admin API
//! or the console from the [`queue`] of pending calls, or the **client**, the calling user,
//! asked through their MCP client with an elicitation request ([`client`]). A call waits
//! until someone decides, its rule's timeout passes (which denies), or its caller gives up
//! (cancel, session end: the request is withdrawn). Whatever happens is an [`Approval`],
//! which goes into the call's audit record.
//!
//! The gate sits where a tool runs: the client's own call (`mcp::handler`) and each call an
//! agent's model makes (`agents::run`), after `[[policies]]` allowed it.
//!
//! Cluster mode: a call waits on the replica running it, which never changes (the waiting
//! call is a future in that process), so an approval's id names its replica
//! (`<node>~<uuid>`, as a legacy session's id names the replica holding its stream). Any
//! replica lists every replica's pending calls (`GET /admin/approvals?scope=local` on each)
//! and hands a decision for another replica's call to that replica, which alone can deliver
//! it (see `admin::approvals`). A single gateway's ids are plain UUIDs.

pub mod queue;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::ask::Answer;
use crate::audit::Entry;
use crate::audit::redact::Redaction;
use crate::config::approvals::{ApprovalRule, Approver, first_covering};
use crate::identity::Identity;
use crate::metrics::Metrics;

pub use crate::ask::ClientAsker;
pub use crate::audit::Approval;
pub use queue::{Decision, Pending, Queue};

/// How often a waiting call tells its client (progress notification) that it still waits.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// A call its approval did not let run.
#[derive(Debug, Clone)]
pub struct Denied {
    /// What happened, for the audit record.
    pub approval: Approval,
    /// The tool error the caller reads: it says it was denied and why.
    pub message: String,
}

impl Denied {
    /// Whether the caller gave up (the call is cancelled rather than refused).
    pub fn withdrawn(&self) -> bool {
        self.approval.decision == "withdrawn"
    }

    /// Whether the wait ran out.
    pub fn timed_out(&self) -> bool {
        self.approval.decision == "timeout"
    }
}

/// The gateway's approval service: the operators' queue, and how arguments are shown.
pub struct Approvals {
    queue: Arc<Queue>,
    redaction: Redaction,
    metrics: Arc<Metrics>,
    /// Cluster mode: this replica's node id, which its approvals' ids and entries name.
    node: Option<String>,
    /// Whether an operator can see the queue (an admin API serves it); `false` in
    /// `switchboard stdio`, where a call that needs an operator is refused at once.
    operators: bool,
}

impl Approvals {
    /// The service, showing arguments redacted by `redaction`; `node`: this replica's id in
    /// cluster mode (`None` for a single gateway).
    pub fn new(
        queue: Arc<Queue>,
        redaction: Redaction,
        metrics: Arc<Metrics>,
        node: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            queue,
            redaction,
            metrics,
            node,
            operators: true,
        })
    }

    /// The service of a process that serves no admin API (`switchboard stdio`): no operator
    /// can see its queue, so a call a `by = "operator"` rule covers is refused at once, saying
    /// so, instead of waiting out its timeout; `by = "client"` rules ask the caller as usual.
    pub fn without_operators(redaction: Redaction, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            queue: Queue::new(metrics.clone()),
            redaction,
            metrics,
            node: None,
            operators: false,
        })
    }

    /// The operators' queue.
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Cluster mode: this replica's node id.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }
}

/// A new approval id: a UUID (v7, so ids sort by time), prefixed with `node~` in cluster mode.
pub fn new_id(node: Option<&str>) -> String {
    let uuid = uuid::Uuid::now_v7();
    match node {
        Some(node) => format!("{node}~{uuid}"),
        None => uuid.to_string(),
    }
}

/// The replica an approval id names (cluster mode), if it names one.
pub fn owner(id: &str) -> Option<&str> {
    id.split_once('~')
        .map(|(node, _)| node)
        .filter(|node| !node.is_empty())
}

/// Who can approve a call: carried in its `CallContext`, down through every hop.
#[derive(Clone, Default)]
pub struct Approvers {
    /// The gateway's service; `None` (tests): a call that needs approval is refused.
    pub service: Option<Arc<Approvals>>,
}

/// The call that needs approval.
pub struct Ask<'a> {
    /// The rule that covers it.
    pub rule: &'a ApprovalRule,
    /// The agent whose tool it is.
    pub agent: &'a str,
    /// The tool.
    pub tool: &'a str,
    /// Its arguments, as received.
    pub arguments: &'a serde_json::Map<String, Value>,
    /// The caller, as people read it (`alice@example.com (client acme)`).
    pub caller: String,
    /// The OAuth subject.
    pub principal: Option<String>,
    /// The client's name or OAuth client id.
    pub client: Option<String>,
    /// The MCP session.
    pub session: Option<String>,
    /// The audit record of the call and of its tree, when the trail is on.
    pub record: Option<(String, String)>,
}

impl Approvers {
    /// The gate of one call of `tool` of `agent`: when a rule of `rules` covers it, asks
    /// for the approval and waits; `Ok(None)` when none does (it runs at once).
    ///
    /// # Errors
    /// The call may not run (see [`Approvers::ask`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn gate(
        &self,
        rules: &[ApprovalRule],
        agent: &str,
        tool: &str,
        arguments: &serde_json::Map<String, Value>,
        identity: &Identity,
        record: Option<&Entry>,
        user: Option<&ClientAsker>,
        cancel: &CancellationToken,
        progress: Option<&(dyn Fn(String) + Send + Sync)>,
    ) -> Result<Option<Approval>, Denied> {
        let Some(rule) = first_covering(rules, tool, arguments) else {
            return Ok(None);
        };
        let who = identity.who();
        let caller = match (who.subject, who.client.or(who.client_id)) {
            (Some(s), Some(c)) => format!("{s} (client {c})"),
            (Some(s), None) => s.to_owned(),
            (None, Some(c)) => format!("client {c}"),
            (None, None) => "an anonymous caller".to_owned(),
        };
        tracing::info!(agent, tool, caller = %caller, rule = %rule.key, by = rule.by.as_str(), "Tool call waits for approval.");
        let ask = Ask {
            rule,
            agent,
            tool,
            arguments,
            principal: who.subject.map(str::to_owned),
            client: who.client.or(who.client_id).map(str::to_owned),
            session: record.and_then(Entry::session).map(str::to_owned),
            record: record.map(|e| (e.id().to_owned(), e.root_id().to_owned())),
            caller,
        };
        let report = |message: String| {
            if let Some(progress) = progress {
                progress(message);
            }
        };
        let result = self.ask(ask, user, cancel, &report).await;
        let approval = match &result {
            Ok(a) => a,
            Err(d) => &d.approval,
        };
        tracing::info!(agent, tool, rule = %rule.key, id = %approval.id, decision = %approval.decision, decided_by = approval.decided_by.as_deref().unwrap_or("-"), waited_ms = approval.waited_ms, "Approval decided.");
        result.map(Some)
    }

    /// Asks for the approval `ask` needs and waits for it, reporting progress with `report`
    /// while an operator decides.
    ///
    /// # Errors
    /// The call may not run: denied, timed out, withdrawn (`cancel`), or nobody to ask.
    pub async fn ask(
        &self,
        ask: Ask<'_>,
        user: Option<&ClientAsker>,
        cancel: &CancellationToken,
        report: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Approval, Denied> {
        let started = Instant::now();
        let requested_ms = unix_ms();
        let by = ask.rule.by;
        let id = new_id(self.service.as_ref().and_then(|s| s.node()));
        let finish =
            |decision: &'static str, decided_by: Option<String>, reason: Option<String>| {
                if let Some(service) = &self.service {
                    service.metrics.approval(by.as_str(), decision);
                }
                Approval {
                    id: id.clone(),
                    rule: ask.rule.key.clone(),
                    by: by.as_str().to_owned(),
                    decision: decision.to_owned(),
                    decided_by,
                    reason,
                    requested_ms,
                    waited_ms: started.elapsed().as_millis() as u64,
                }
            };
        let Some(service) = &self.service else {
            let approval = finish("unavailable", None, None);
            return Err(Denied {
                message: format!(
                    "{} needs approval ({}), and this gateway has no approvals service to ask",
                    ask.tool, ask.rule.key
                ),
                approval,
            });
        };
        let (arguments, arguments_sha256) = service.redaction.apply(ask.arguments);
        let summary = Summary {
            agent: ask.agent,
            tool: ask.tool,
            caller: &ask.caller,
            rule: ask.rule,
            arguments: &arguments,
        };
        match by {
            Approver::Operator if !service.operators => Err(Denied {
                message: format!(
                    "{} needs an operator's approval ({}), and this server (switchboard stdio) has no \
                     admin API where an operator could give it: call the agent through a gateway \
                     (switchboard serve), or have the rule ask you instead (by = \"client\")",
                    ask.tool, ask.rule.key
                ),
                approval: finish("unavailable", None, None),
            }),
            Approver::Operator => {
                let pending = Pending {
                    id: id.clone(),
                    agent: ask.agent.to_owned(),
                    tool: ask.tool.to_owned(),
                    arguments,
                    arguments_sha256,
                    caller: ask.caller.clone(),
                    principal: ask.principal,
                    client: ask.client,
                    session: ask.session,
                    root_id: ask.record.as_ref().map(|r| r.1.clone()),
                    record_id: ask.record.map(|r| r.0),
                    rule: ask.rule.key.clone(),
                    conditions: Some(ask.rule.describe_when()).filter(|w| !w.is_empty()),
                    message: ask.rule.message.clone(),
                    requested_ms,
                    expires_ms: requested_ms + ask.rule.timeout.as_millis() as i64,
                    node: service.node.clone(),
                };
                let waiting = format!(
                    "{} waits for an operator's approval (id {id}, up to {} s)",
                    ask.tool,
                    ask.rule.timeout.as_secs()
                );
                match service
                    .queue
                    .wait(pending, ask.rule.timeout, cancel, &|| {
                        report(waiting.clone())
                    })
                    .await
                {
                    queue::Waited::Decided(Decision {
                        approve: true,
                        by: who,
                        reason,
                    }) => Ok(finish("approved", Some(who), reason)),
                    queue::Waited::Decided(Decision {
                        approve: false,
                        by: who,
                        reason,
                    }) => {
                        let message = match &reason {
                            Some(r) => {
                                format!("{} was denied by an operator ({who}): {r}", ask.tool)
                            }
                            None => format!("{} was denied by an operator ({who})", ask.tool),
                        };
                        Err(Denied {
                            approval: finish("denied", Some(who), reason),
                            message,
                        })
                    }
                    queue::Waited::TimedOut => Err(Denied {
                        message: format!(
                            "{} was denied: no operator approved it within {} s ({})",
                            ask.tool,
                            ask.rule.timeout.as_secs(),
                            ask.rule.key
                        ),
                        approval: finish("timeout", None, None),
                    }),
                    queue::Waited::Withdrawn => Err(Denied {
                        message: format!("{} was cancelled while it waited for approval", ask.tool),
                        approval: finish("withdrawn", None, None),
                    }),
                }
            }
            Approver::Client => {
                let Some(asker) = user else {
                    return Err(Denied {
                        message: format!(
                            "{} requires approval by the calling user ({}), but this client cannot be asked: \
                             it did not declare the elicitation capability (form mode). Use a client that supports \
                             elicitation, or ask an operator to change the rule",
                            ask.tool, ask.rule.key
                        ),
                        approval: finish("unavailable", None, None),
                    });
                };
                let schema = match rmcp::model::ElicitationSchema::builder()
                    .optional_string_with("reason", |s| {
                        s.description("Optional: why you approve or deny this call")
                    })
                    .build()
                {
                    Ok(schema) => schema,
                    Err(e) => {
                        return Err(Denied {
                            message: format!(
                                "{}: the approval form could not be built: {e}",
                                ask.tool
                            ),
                            approval: finish("unavailable", None, Some(e.to_string())),
                        });
                    }
                };
                let answer = asker
                    .elicit(
                        "approval",
                        &summary.message(),
                        schema,
                        ask.rule.timeout,
                        cancel,
                    )
                    .await;
                let who = ask.principal.clone().or(Some(ask.caller.clone()));
                let reason_of = |content: Option<Value>| {
                    content
                        .as_ref()
                        .and_then(|c| c.get("reason"))
                        .and_then(Value::as_str)
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned)
                };
                match answer {
                    Answer::Accept(content) => Ok(finish("approved", who, reason_of(content))),
                    Answer::Decline(content) => {
                        let reason = reason_of(content);
                        Err(Denied {
                            message: match &reason {
                                Some(r) => format!("{} was denied by the user: {r}", ask.tool),
                                None => format!("{} was denied by the user (declined)", ask.tool),
                            },
                            approval: finish("denied", who, reason),
                        })
                    }
                    Answer::Cancel => Err(Denied {
                        message: format!(
                            "{} was denied: the user dismissed the approval request",
                            ask.tool
                        ),
                        approval: finish("denied", who, Some("dismissed".into())),
                    }),
                    Answer::TimedOut => Err(Denied {
                        message: format!(
                            "{} was denied: the user did not answer within {} s",
                            ask.tool,
                            ask.rule.timeout.as_secs()
                        ),
                        approval: finish("timeout", None, None),
                    }),
                    Answer::Withdrawn => Err(Denied {
                        message: format!("{} was cancelled while it waited for approval", ask.tool),
                        approval: finish("withdrawn", None, None),
                    }),
                    Answer::Failed(e) => Err(Denied {
                        message: format!(
                            "{} requires approval by the calling user, and asking the client failed: {e}",
                            ask.tool
                        ),
                        approval: finish("unavailable", None, Some(e)),
                    }),
                }
            }
        }
    }
}

/// What a person is shown.
struct Summary<'a> {
    agent: &'a str,
    tool: &'a str,
    caller: &'a str,
    rule: &'a ApprovalRule,
    arguments: &'a Value,
}

impl Summary<'_> {
    fn message(&self) -> String {
        let mut text = String::new();
        if let Some(m) = &self.rule.message {
            text.push_str(m);
            text.push_str("\n\n");
        }
        text.push_str(&format!(
            "Approve this call?\nAgent: {}\nTool: {}\nFor: {}\nArguments: {}",
            self.agent,
            self.tool,
            self.caller,
            serde_json::to_string_pretty(self.arguments).unwrap_or_default()
        ));
        text
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_id_names_its_replica_in_cluster_mode_only() {
        let single = new_id(None);
        assert!(uuid::Uuid::parse_str(&single).is_ok(), "{single}");
        assert_eq!(owner(&single), None);
        let clustered = new_id(Some("gw-1"));
        assert_eq!(owner(&clustered), Some("gw-1"));
        let (_, uuid) = clustered.split_once('~').unwrap();
        assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{clustered}");
        assert_eq!(owner("~abc"), None);
    }
}
