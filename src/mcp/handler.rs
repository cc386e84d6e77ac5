//! `AgentServer`: the rmcp `ServerHandler` of one agent, shared by both transports.
//!
//! One value per agent; every session gets a cheap clone (an `Arc` inside).

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::agents::Agent;
use crate::tools;

/// Serves one agent's tools over MCP.
#[derive(Clone)]
pub struct AgentServer {
    agent: Arc<Agent>,
}

impl AgentServer {
    /// A handler for `agent`.
    pub fn new(agent: Arc<Agent>) -> Self {
        Self { agent }
    }

    /// The tools MCP clients see.
    fn visible_tools(&self) -> &[Tool] {
        if self.agent.spec.expose_tools {
            self.agent.tool_definitions()
        } else {
            &[]
        }
    }
}

impl ServerHandler for AgentServer {
    fn get_info(&self) -> ServerConfig {
        let spec = &self.agent.spec;
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new(
                    format!("switchboard/{}", spec.name),
                    env!("CARGO_PKG_VERSION"),
                )
                .with_title(spec.name.to_string()),
            )
            .with_instructions(spec.description.clone())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(
            self.visible_tools().to_vec(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.visible_tools()
            .iter()
            .find(|t| t.name == name)
            .cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, McpError> {
        let name = request.name.as_ref();
        if !self.agent.spec.expose_tools {
            return Err(unknown_tool(name));
        }
        let args = request.arguments.unwrap_or_default();
        let started = std::time::Instant::now();
        let Some(outcome) = self.agent.call_tool(name, args).await else {
            return Err(unknown_tool(name));
        };
        let elapsed_us = started.elapsed().as_micros() as u64;
        let agent = self.agent.name();
        match outcome {
            Ok(value) => {
                tracing::debug!(%agent, tool = name, elapsed_us, outcome = "ok", "Tool call.");
                Ok(CallToolResult::structured(value).into())
            }
            Err(tools::Error::InvalidArguments(msg)) => {
                tracing::debug!(%agent, tool = name, elapsed_us, outcome = "invalid_arguments", "Tool call.");
                Err(McpError::invalid_params(
                    format!("{name}: invalid arguments: {msg}"),
                    None,
                ))
            }
            Err(tools::Error::Failed(msg)) => {
                tracing::debug!(%agent, tool = name, elapsed_us, outcome = "error", "Tool call.");
                Ok(CallToolResult::error(vec![ContentBlock::text(msg)]).into())
            }
        }
    }
}

fn unknown_tool(name: &str) -> McpError {
    McpError::invalid_params(format!("unknown tool {name:?}"), None)
}
