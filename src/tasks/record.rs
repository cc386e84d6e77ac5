//! A task as the store keeps it, and as MCP shows it (rmcp's `DetailedTask`).

use rmcp::model::{DetailedTask, InputRequests, JsonObject, Task, TaskPayload, TaskStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One task: an agent run started by a `tools/call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Its id (a UUID, random).
    pub id: String,
    /// The agent (or workflow) it runs.
    pub agent: String,
    /// The tool called.
    pub tool: String,
    /// Who started it (`Identity::attribution`); `None`: an anonymous caller. Only the same
    /// caller may read, answer or cancel it.
    pub principal: Option<String>,
    /// Cluster mode: the replica running it.
    pub node: Option<String>,
    /// `working`, `input_required`, `completed`, `failed`, `cancelled`.
    pub status: TaskStatus,
    /// The latest progress ("calling search_incident"), or why it ended.
    pub status_message: Option<String>,
    /// When it was created, Unix milliseconds.
    pub created_ms: u64,
    /// When it last changed, Unix milliseconds.
    pub updated_ms: u64,
    /// When it is dropped, Unix milliseconds; `None` while it runs.
    pub expires_ms: Option<u64>,
    /// While `input_required`: what the client is asked (`inputRequests`).
    pub input_requests: Option<Value>,
    /// Once `completed`: the `CallToolResult`.
    pub result: Option<Value>,
    /// Once `failed`: the JSON-RPC error.
    pub error: Option<Value>,
}

impl Record {
    /// Whether it has ended.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// Whether it is past its time at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|e| e <= now_ms)
    }

    /// Ends it `failed` with `message` (a JSON-RPC internal error), kept `ttl_ms` from now.
    pub fn fail(&mut self, message: &str, now_ms: u64, ttl_ms: u64) {
        self.finish(TaskStatus::Failed, now_ms, ttl_ms);
        self.status_message = Some(message.to_owned());
        self.error = Some(serde_json::json!({
            "code": rmcp::model::ErrorCode::INTERNAL_ERROR.0,
            "message": message,
        }));
    }

    /// Ends it with `status`, kept `ttl_ms` from now.
    pub fn finish(&mut self, status: TaskStatus, now_ms: u64, ttl_ms: u64) {
        self.status = status;
        self.input_requests = None;
        self.updated_ms = now_ms;
        self.expires_ms = Some(now_ms.saturating_add(ttl_ms));
    }

    /// The task's base fields as MCP shows them.
    pub fn task(&self, ttl_ms: u64, poll_interval_ms: u64) -> Task {
        // While it runs, the TTL counts from now on at least; once it ended, up to its expiry.
        let ttl = match self.expires_ms {
            Some(expires) => expires.saturating_sub(self.created_ms),
            None => ttl_ms.max(self.updated_ms.saturating_sub(self.created_ms) + ttl_ms),
        };
        let mut task = Task::new(
            self.id.clone(),
            self.status,
            rfc3339(self.created_ms),
            rfc3339(self.updated_ms),
        )
        .with_ttl_ms(ttl)
        .with_poll_interval_ms(poll_interval_ms);
        task.status_message = self.status_message.clone();
        task
    }

    /// The task with its payload (`inputRequests`, `result` or `error`), for `tasks/get`.
    pub fn detailed(&self, ttl_ms: u64, poll_interval_ms: u64) -> DetailedTask {
        let object = |v: &Option<Value>| -> JsonObject {
            match v {
                Some(Value::Object(o)) => o.clone(),
                _ => JsonObject::new(),
            }
        };
        let payload = match self.status {
            TaskStatus::InputRequired => TaskPayload::InputRequired {
                input_requests: self
                    .input_requests
                    .clone()
                    .and_then(|v| serde_json::from_value::<InputRequests>(v).ok())
                    .unwrap_or_default(),
            },
            TaskStatus::Completed => TaskPayload::Completed {
                result: object(&self.result),
            },
            TaskStatus::Failed => TaskPayload::Failed {
                error: object(&self.error),
            },
            TaskStatus::Cancelled => TaskPayload::Cancelled,
            _ => TaskPayload::Working,
        };
        DetailedTask::new(self.task(ttl_ms, poll_interval_ms), payload)
    }
}

/// The status as the wire spells it (`input_required`).
pub fn status_name(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Working => "working",
        TaskStatus::InputRequired => "input_required",
        TaskStatus::Completed => "completed",
        TaskStatus::Failed => "failed",
        TaskStatus::Cancelled => "cancelled",
        _ => "unknown",
    }
}

/// The status `name` spells (the reverse of [`status_name`]).
pub fn status_of(name: &str) -> Option<TaskStatus> {
    serde_json::from_value(Value::String(name.to_owned())).ok()
}

/// `ms` (Unix milliseconds) in RFC 3339.
pub fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Now, Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(status: TaskStatus) -> Record {
        Record {
            id: "t1".into(),
            agent: "helpdesk".into(),
            tool: "helpdesk".into(),
            principal: Some("client a".into()),
            node: None,
            status,
            status_message: Some("calling servicenow".into()),
            created_ms: 1_700_000_000_000,
            updated_ms: 1_700_000_001_000,
            expires_ms: None,
            input_requests: None,
            result: None,
            error: None,
        }
    }

    #[test]
    fn a_completed_task_inlines_its_result_as_rmcp_serialises_it() {
        let mut r = record(TaskStatus::Working);
        r.result = Some(
            serde_json::json!({"content": [{"type": "text", "text": "done"}], "isError": false}),
        );
        r.finish(TaskStatus::Completed, 1_700_000_002_000, 60_000);
        let wire =
            serde_json::to_value(rmcp::model::GetTaskResult::new(r.detailed(60_000, 500))).unwrap();
        assert_eq!(wire["status"], "completed");
        assert_eq!(wire["taskId"], "t1");
        assert_eq!(wire["result"]["content"][0]["text"], "done");
        assert_eq!(wire["ttlMs"], 62_000);
        assert_eq!(wire["pollIntervalMs"], 500);
        assert_eq!(wire["createdAt"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn a_failed_task_carries_its_error_and_message() {
        let mut r = record(TaskStatus::Working);
        r.fail("the gateway restarted", 1_700_000_002_000, 1000);
        let wire = serde_json::to_value(r.detailed(1000, 500)).unwrap();
        assert_eq!(wire["status"], "failed");
        assert_eq!(wire["error"]["message"], "the gateway restarted");
        assert_eq!(wire["statusMessage"], "the gateway restarted");
        assert_eq!(status_of("input_required"), Some(TaskStatus::InputRequired));
        assert_eq!(status_name(TaskStatus::InputRequired), "input_required");
    }
}
