//! The agent tool's calls as MCP tasks (see [`crate::tasks`]): starting one, and who a task
//! belongs to. A child of the handler, which it extends.

use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, CreateTaskResult, ErrorCode};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};

use super::AgentServer;
use crate::ask::ClientAsker;
use crate::mcp::request::identity_of;
use crate::sessions::SessionStats;
use crate::tasks::{self, Tasks};

impl AgentServer {
    pub(super) fn tasks_or_refuse(&self) -> Result<&Tasks, McpError> {
        // rmcp answers -32601 before this when the extension is not advertised.
        self.tasks.as_ref().ok_or_else(|| {
            McpError::new(
                ErrorCode::METHOD_NOT_FOUND,
                "tasks are not served here",
                None,
            )
        })
    }

    /// Who a task of `tool` started by the caller of `context` belongs to.
    pub(super) fn task_owner(
        &self,
        tool: &str,
        context: &RequestContext<RoleServer>,
    ) -> tasks::Owner {
        tasks::Owner {
            agent: self.agent.name().as_str().to_owned(),
            tool: tool.to_owned(),
            principal: identity_of(&context.extensions).attribution(),
        }
    }

    /// Starts the call of the agent tool as a task: answered at once with the task; the run
    /// goes on without the request and without the session (a client may leave and poll from
    /// another). Its progress becomes the task's status message; its questions, the task's
    /// `inputRequests`, when the client declares form elicitation.
    pub(super) async fn start_task(
        &self,
        tasks: &Tasks,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, McpError> {
        let owner = self.task_owner(&request.name, &context);
        let can_ask = ClientAsker::can_be_asked_in_task(&context);
        let mut run_context = context;
        // The run outlives the request and its session: neither ending cancels it.
        run_context.extensions.remove::<Arc<SessionStats>>();
        let this = self.clone();
        let task = tasks
            .start(owner, move |asker, cancel, progress| async move {
                let asker = can_ask.then(|| Arc::new(ClientAsker::rounds(asker)));
                this.call(request, &run_context, cancel, asker, Some(progress))
                    .await
            })
            .await?;
        Ok(rmcp::model::CallToolResponse::Task(CreateTaskResult::new(
            task,
        )))
    }
}
