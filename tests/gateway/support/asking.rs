//! What the approval and `ask_user` tests share: the runtime fixture agents with
//! `[[approvals]]` rules appended, the operators' queue polled and decided through the admin
//! API, and an MCP client whose user answers elicitation requests as told (or cannot be asked),
//! on a session or on the 2026-07-28 stateless lifecycle.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction,
    Implementation, ProtocolVersion,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::Value;

use super::helpers::{TestGateway, fixture, http};

/// Writes the runtime fixture agents (servicenow, helpdesk) into `dir`, servicenow with
/// `rules` appended.
pub fn agents_with_rules(dir: &Path, rules: &str) {
    for f in ["servicenow.toml", "helpdesk.toml"] {
        let mut text = std::fs::read_to_string(fixture("agents/runtime").join(f)).unwrap();
        if f == "servicenow.toml" {
            text.push_str(rules);
        }
        std::fs::write(dir.join(f), text).unwrap();
    }
}

/// Waits (up to 10 s) until `n` calls wait according to `GET /admin/approvals`; they, oldest
/// first.
pub async fn pending(gw: &TestGateway, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = gw.get_json("/admin/approvals").await;
        assert_eq!(status, 200, "{body}");
        let list = body["approvals"].as_array().unwrap().clone();
        if list.len() == n {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} pending approvals: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST url` (a `/admin/approvals/{id}`) with `body`: status and JSON.
pub async fn decide_at(url: String, body: Value) -> (u16, Value) {
    let resp = http().post(url).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A user whose MCP client answers elicitation requests as told.
#[derive(Clone)]
pub struct User {
    /// The answer and its form content; `None`: the client does not declare elicitation.
    pub answer: Option<(ElicitationAction, Option<Value>)>,
    /// The protocol the client speaks.
    pub protocol: ProtocolVersion,
    /// What it was asked: each form's message and requested schema.
    pub asked: Arc<Mutex<Vec<(String, Value)>>>,
}

impl User {
    /// A user answering `answer` at `protocol`.
    pub fn new(
        protocol: ProtocolVersion,
        answer: Option<(ElicitationAction, Option<Value>)>,
    ) -> Self {
        Self {
            answer,
            protocol,
            asked: Arc::default(),
        }
    }

    /// The messages it was asked.
    pub fn messages(&self) -> Vec<String> {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// Connects to `url` (with `token` as bearer): a session at a protocol before
    /// 2026-07-28; at 2026-07-28, the stateless lifecycle (`server/discover`, no session).
    pub async fn connect(
        &self,
        url: &str,
        token: Option<&str>,
    ) -> RunningService<RoleClient, User> {
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        use rmcp::{ClientLifecycleMode, ClientServiceExt};
        http();
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
        if let Some(token) = token {
            config = config.auth_header(token);
        }
        let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
        if self.protocol >= ProtocolVersion::V_2026_07_28 {
            let preferred_versions = vec![self.protocol.clone()];
            self.clone()
                .serve_with_lifecycle(
                    transport,
                    ClientLifecycleMode::Discover { preferred_versions },
                )
                .await
                .expect("discover lifecycle must work")
        } else {
            self.clone().serve(transport).await.unwrap()
        }
    }
}

impl ClientHandler for User {
    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        if let ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } = &request
        {
            self.asked.lock().unwrap().push((
                message.clone(),
                serde_json::to_value(requested_schema).unwrap(),
            ));
        }
        let (action, content) = self.answer.clone().expect("asked without the capability");
        let mut result = ElicitResult::new(action);
        if let Some(content) = content {
            result = result.with_content(content);
        }
        Ok(result)
    }

    fn get_info(&self) -> ClientConfig {
        let capabilities = if self.answer.is_some() {
            ClientCapabilities::builder().enable_elicitation().build()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(capabilities, Implementation::new("user", "1.0"))
            .with_protocol_version(self.protocol.clone())
    }
}
