//! `GET /admin/tasks` and `POST /admin/tasks/{id}/cancel`: agent runs served as MCP tasks
//! (see [`crate::tasks`]), running and recent, and an operator's cancel.
//!
//! Cluster mode: tasks are kept in Redis, so any replica lists every replica's tasks and
//! cancels any of them (the replica running it collects the cancel).

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use rmcp::model::TaskStatus;

use super::dto::ErrorBody;
use super::{AdminAuth, AdminErrors, ApiTags, handle_error};
use crate::state::AppState;
use crate::tasks::Cancelled;
use crate::tasks::record::{Record, now_ms, status_name};

/// The tasks operations.
pub struct TasksApi;

/// Largest `limit`.
const MAX_LIMIT: u32 = 1000;

/// A task.
#[derive(Debug, Clone, Object)]
pub struct TaskView {
    /// Its id (the MCP `taskId`).
    pub id: String,
    /// The agent or workflow it runs.
    pub agent: String,
    /// The tool called.
    pub tool: String,
    /// Who started it (`alice@example.com`, `client helpdesk-app`); absent: anonymous.
    pub principal: Option<String>,
    /// `working`, `input_required`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// The latest progress step, or how it ended.
    pub status_message: Option<String>,
    /// When it was started (RFC 3339, UTC).
    pub created_at: String,
    /// When it was started (Unix ms).
    pub created_ms: i64,
    /// When it last changed (Unix ms).
    pub updated_ms: i64,
    /// Seconds since it was started.
    pub age_secs: u64,
    /// Cluster mode: the replica running it.
    pub node: Option<String>,
}

impl TaskView {
    fn of(r: &Record, now: u64) -> Self {
        Self {
            id: r.id.clone(),
            agent: r.agent.clone(),
            tool: r.tool.clone(),
            principal: r.principal.clone(),
            status: status_name(r.status).to_owned(),
            status_message: r.status_message.clone(),
            created_at: crate::tasks::record::rfc3339(r.created_ms),
            created_ms: i64::try_from(r.created_ms).unwrap_or(i64::MAX),
            updated_ms: i64::try_from(r.updated_ms).unwrap_or(i64::MAX),
            age_secs: now.saturating_sub(r.created_ms) / 1000,
            node: r.node.clone(),
        }
    }
}

/// Tasks, newest first.
#[derive(Debug, Clone, Object)]
pub struct TaskList {
    /// The tasks.
    pub tasks: Vec<TaskView>,
}

/// Which tasks to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum TaskFilter {
    /// Not ended yet (`working` or `input_required`).
    Running,
    /// Ended (`completed`, `failed` or `cancelled`).
    Ended,
    /// `working`.
    Working,
    /// `input_required`.
    InputRequired,
    /// `completed`.
    Completed,
    /// `failed`.
    Failed,
    /// `cancelled`.
    Cancelled,
}

impl TaskFilter {
    fn matches(self, status: TaskStatus) -> bool {
        match self {
            Self::Running => !status.is_terminal(),
            Self::Ended => status.is_terminal(),
            Self::Working => status == TaskStatus::Working,
            Self::InputRequired => status == TaskStatus::InputRequired,
            Self::Completed => status == TaskStatus::Completed,
            Self::Failed => status == TaskStatus::Failed,
            Self::Cancelled => status == TaskStatus::Cancelled,
        }
    }
}

admin_response! {
/// `GET /admin/tasks`.
pub enum ListTasksResponse {
    /// The tasks.
    #[oai(status = 200)]
    Ok(Json<TaskList>),
    /// The task store (`tasks.db`, or Redis in cluster mode) does not answer.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}
}

admin_response! {
/// `POST /admin/tasks/{id}/cancel`.
pub enum CancelTaskResponse {
    /// The task is being cancelled: its run and model request stop, and it ends
    /// `cancelled` (its caller reads "cancelled by an operator").
    #[oai(status = 202)]
    Accepted(Json<TaskView>),
    /// No such task (never was, or expired).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The task has ended already.
    #[oai(status = 409)]
    Ended(Json<TaskView>),
    /// The task store (`tasks.db`, or Redis in cluster mode) does not answer.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}
}

#[OpenApi(prefix_path = "/admin")]
impl TasksApi {
    /// List tasks
    ///
    /// Agent runs served as MCP tasks (clients declaring the `io.modelcontextprotocol/tasks`
    /// extension), running and recent, newest first: the agent, who started it, its status,
    /// latest progress and age. Ended tasks are listed until they expire (`[tasks]
    /// ttl_secs`). In cluster mode, every replica's.
    #[oai(
        path = "/tasks",
        method = "get",
        operation_id = "listTasks",
        tag = "ApiTags::Tasks"
    )]
    async fn list_tasks(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
        /// Only tasks in this state.
        status: Query<Option<TaskFilter>>,
        /// At most this many (default 100, at most 1000), newest first.
        limit: Query<Option<u32>>,
    ) -> ListTasksResponse {
        let limit = limit.0.unwrap_or(100).clamp(1, MAX_LIMIT) as usize;
        // A filter looks further back, so that it still finds `limit` of its kind.
        let scan = if status.0.is_some() {
            MAX_LIMIT as usize
        } else {
            limit
        };
        match state.tasks().list(scan).await {
            Ok(records) => {
                let now = now_ms();
                let tasks = records
                    .iter()
                    .filter(|r| status.0.is_none_or(|f| f.matches(r.status)))
                    .take(limit)
                    .map(|r| TaskView::of(r, now))
                    .collect();
                ListTasksResponse::Ok(Json(TaskList { tasks }))
            }
            Err(e) => {
                tracing::warn!(error = %e, "Tasks could not be listed.");
                ListTasksResponse::Unavailable(Json(unavailable()))
            }
        }
    }

    /// Cancel a task
    ///
    /// Cancels a running task, whoever started it: its run and its model requests stop, and
    /// its caller's next `tasks/get` reads `cancelled`.
    #[oai(
        path = "/tasks/:id/cancel",
        method = "post",
        operation_id = "cancelTask",
        tag = "ApiTags::Tasks"
    )]
    async fn cancel_task(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
        /// The task's id.
        id: Path<String>,
    ) -> CancelTaskResponse {
        let now = now_ms();
        match state.tasks().cancel_by_operator(&id.0).await {
            Ok(Cancelled::Cancelling(r)) => {
                tracing::info!(task = %r.id, agent = %r.agent, "Operator cancelled a task.");
                CancelTaskResponse::Accepted(Json(TaskView::of(&r, now)))
            }
            Ok(Cancelled::Ended(r)) => CancelTaskResponse::Ended(Json(TaskView::of(&r, now))),
            Ok(Cancelled::Unknown) => CancelTaskResponse::NotFound(Json(ErrorBody::new(
                "task_not_found",
                format!("no task {:?} (it never existed, or it expired)", id.0),
            ))),
            Err(e) => {
                tracing::warn!(error = %e, "Task could not be cancelled.");
                CancelTaskResponse::Unavailable(Json(unavailable()))
            }
        }
    }
}

fn unavailable() -> ErrorBody {
    ErrorBody::new(
        "task_store_unavailable",
        "the task store does not answer; retry shortly",
    )
}
