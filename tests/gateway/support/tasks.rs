//! A raw JSON-RPC MCP client for the tasks tests: over Streamable HTTP, on a session (an
//! `initialize` declaring its capabilities) or without one (MCP 2026-07-28: each request
//! carries its version and capabilities in `_meta`); and polling a task until a condition.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::helpers::{http, response_messages};

/// The capabilities of a client declaring the tasks extension (and, with `elicit`, form
/// elicitation).
pub fn task_capabilities(elicit: bool) -> Value {
    let mut caps = json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
    if elicit {
        caps["elicitation"] = json!({"form": {}});
    }
    caps
}

/// One client.
pub struct Raw {
    url: String,
    token: Option<String>,
    session: Option<String>,
    /// 2026-07-28: the capabilities sent in every request's `_meta`; `None`: a session.
    stateless: Option<Value>,
    next: AtomicI64,
}

impl Raw {
    /// A session at protocol 2025-11-25 declaring `capabilities`; and the `initialize`
    /// result.
    pub async fn session(url: &str, token: Option<&str>, capabilities: Value) -> (Self, Value) {
        let mut raw = Self {
            url: url.to_owned(),
            token: token.map(str::to_owned),
            session: None,
            stateless: None,
            next: AtomicI64::new(1),
        };
        let response = raw
            .post(
                "initialize",
                json!({"protocolVersion": "2025-11-25", "capabilities": capabilities,
                       "clientInfo": {"name": "raw", "version": "1"}}),
            )
            .await;
        assert_eq!(response.status(), 200);
        raw.session = Some(
            response.headers()["mcp-session-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        let init = response_messages(response).await.remove(0);
        let mut req = http()
            .post(&raw.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", raw.session.clone().unwrap());
        if let Some(token) = &raw.token {
            req = req.bearer_auth(token);
        }
        let ack = req
            .body(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(ack.status(), 202);
        (raw, init["result"].clone())
    }

    /// A 2026-07-28 client (no session) declaring `capabilities` in each request.
    pub fn stateless(url: &str, token: Option<&str>, capabilities: Value) -> Self {
        Self {
            url: url.to_owned(),
            token: token.map(str::to_owned),
            session: None,
            stateless: Some(capabilities),
            next: AtomicI64::new(1),
        }
    }

    async fn post(&self, method: &str, mut params: Value) -> reqwest::Response {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let version = match &self.stateless {
            Some(caps) => {
                params["_meta"] = json!({
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                    "io.modelcontextprotocol/clientCapabilities": caps,
                });
                "2026-07-28"
            }
            None => "2025-11-25",
        };
        let mut req = http()
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", version)
            .header("mcp-method", method);
        let name = params
            .get("name")
            .or_else(|| params.get("taskId"))
            .and_then(Value::as_str);
        if let Some(name) = name {
            req = req.header("mcp-name", name);
        }
        if let Some(session) = &self.session {
            req = req.header("mcp-session-id", session);
        }
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req.body(
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        )
        .send()
        .await
        .unwrap()
    }

    /// Sends a request; its JSON-RPC response (`result` or `error`).
    pub async fn request(&self, method: &str, params: Value) -> Value {
        let response = self.post(method, params).await;
        assert_eq!(response.status(), 200, "{method}");
        response_messages(response)
            .await
            .into_iter()
            .find(|m| m.get("result").is_some() || m.get("error").is_some())
            .unwrap_or_else(|| panic!("{method}: no response"))
    }

    /// `tools/call` of `tool` with `{"task": task}`: the result.
    pub async fn call(&self, tool: &str, task: &str) -> Value {
        let response = self
            .request(
                "tools/call",
                json!({"name": tool, "arguments": {"task": task}}),
            )
            .await;
        assert!(response.get("error").is_none(), "{response}");
        response["result"].clone()
    }

    /// `tasks/get`: the JSON-RPC response.
    pub async fn get(&self, task_id: &str) -> Value {
        self.request("tasks/get", json!({"taskId": task_id})).await
    }

    /// Polls `tasks/get` (up to 10 s) until the task's result satisfies `done`; the result.
    pub async fn poll_until(
        &self,
        task_id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let response = self.get(task_id).await;
            let result = &response["result"];
            if done(result) {
                return result.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {task_id}: not {what} within 10 s: {response}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until the task has `status`.
    pub async fn poll_status(&self, task_id: &str, status: &str) -> Value {
        self.poll_until(task_id, status, |r| r["status"] == status)
            .await
    }
}
