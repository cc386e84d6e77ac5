//! Agent runs served as MCP tasks (the `io.modelcontextprotocol/tasks` extension of MCP
//! 2026-07-28, SEP-2663, as rmcp 3.11 implements it).
//!
//! When a client declares the extension (in `initialize` on a session, or in a 2026-07-28
//! request's `_meta`), a `tools/call` of an agent tool or workflow is answered at once with a
//! task (`{"resultType": "task", "taskId", "status": "working", ...}`) and the run goes on in
//! a tokio task of its own, owned here. The client polls `tasks/get`: the latest progress
//! step is the `statusMessage`; a question the run asks (`ask_user`, an approval by the
//! client) makes it `input_required` with the question in `inputRequests`, and `tasks/update`
//! brings the answer (the same [`Call`]/[`Asker`](crate::ask::rounds::Asker) as the
//! 2026-07-28 `input_required` rounds, see [`crate::ask::rounds`]); the end is `completed`
//! with the `CallToolResult` inlined, or `failed` with the JSON-RPC error. `tasks/cancel`
//! cancels the run and its model request.
//!
//! **Durable.** Every change is written to the store: `tasks.db` in the data directory on a
//! single node ([`sqlite`]), Redis in cluster mode ([`crate::cluster::tasks`]), so a client
//! may drop its session and poll from a new one, on any replica. Only the caller who started
//! a task (its `Identity::attribution`) may read, answer or cancel it; anyone else gets the
//! same `-32602 unknown task` as for an id that never existed. A finished task is kept for
//! `[tasks] ttl_secs` (default an hour), then dropped. A task whose run is gone (the
//! gateway stopped or crashed meanwhile, the replica left the cluster) is reported `failed`,
//! saying so, when it is next read.
//!
//! **Cluster mode.** A run lives on the replica that started it. `tasks/get` reads Redis on
//! any replica; `tasks/update` and `tasks/cancel` that land elsewhere leave mail in Redis,
//! which the running replica collects a few times a second.
//!
//! **Cost when off.** Only a call of the agent tool looks at the client's capabilities; a
//! client that does not declare the extension gets the call served as before, and nothing
//! here runs.

pub mod record;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolResponse, InputRequests, InputResponses, Task, TaskStatus};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ask::rounds::{Asker, Call, Need};
use crate::cluster::Cluster;
use crate::config::tasks::TasksSpec;
use crate::metrics::Metrics;
use crate::tools::ProgressFn;
use record::{Record, now_ms};
use sqlite::SqliteTasks;

/// What a task of a gateway that stopped says.
pub const SHUT_DOWN: &str =
    "the gateway shut down while this task was running; call the tool again";
/// What a task found running in the store, with no run behind it, says.
pub const RESTARTED: &str =
    "the gateway restarted while this task was running, and its run was lost; call the tool again";
/// What a task of a replica that left the cluster says.
pub const REPLICA_LEFT: &str =
    "the replica running this task left the cluster, and its run was lost; call the tool again";

/// How often a running task collects mail left through other replicas (cluster mode).
const MAIL_EVERY: Duration = Duration::from_millis(200);

/// Who a task belongs to, and what it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The agent (or workflow) served.
    pub agent: String,
    /// The tool called.
    pub tool: String,
    /// The caller (`Identity::attribution`); `None`: anonymous.
    pub principal: Option<String>,
}

/// Where tasks are kept.
#[derive(Clone)]
enum Store {
    Sqlite(Arc<SqliteTasks>),
    Redis(Cluster),
}

impl Store {
    async fn put(&self, record: &Record) -> Result<(), String> {
        match self {
            Self::Sqlite(s) => s.put(record).await,
            Self::Redis(c) => c
                .put_task(record, now_ms())
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, String> {
        match self {
            Self::Sqlite(s) => s.get(id).await,
            Self::Redis(c) => c.get_task(id).await.map_err(|e| e.to_string()),
        }
    }

    async fn list(&self, limit: usize) -> Result<Vec<Record>, String> {
        match self {
            Self::Sqlite(s) => s.list(limit).await,
            Self::Redis(c) => c.list_tasks(limit).await.map_err(|e| e.to_string()),
        }
    }
}

/// What a running task is told.
enum Control {
    /// The client's answers (`tasks/update`).
    Answer(InputResponses),
    /// Stop: `tasks/cancel` (by the client, or an operator).
    Cancel(String),
    /// The gateway shuts down.
    Shutdown,
}

/// A task running on this replica.
struct Running {
    control: mpsc::UnboundedSender<Control>,
    /// Cancelled once its final state is written.
    done: CancellationToken,
}

/// The gateway's tasks; cheap to clone.
#[derive(Clone)]
pub struct Tasks(Arc<Inner>);

struct Inner {
    store: Store,
    spec: TasksSpec,
    cluster: Option<Cluster>,
    /// The tasks running here, by id. Entered before a task's first write and left after
    /// its last, so a task in the store that is not running anywhere can be told apart.
    running: DashMap<String, Running>,
    metrics: Arc<Metrics>,
}

/// What an operator's cancel did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancelled {
    /// The task was running: it is being cancelled.
    Cancelling(Record),
    /// It had ended already.
    Ended(Record),
    /// No such task.
    Unknown,
}

impl Tasks {
    /// The tasks of a single gateway, in `tasks.db` in `data_dir` (see [`SqliteTasks::open`]).
    pub fn open(spec: TasksSpec, data_dir: &std::path::Path, metrics: Arc<Metrics>) -> Self {
        let store = Store::Sqlite(Arc::new(SqliteTasks::open(data_dir)));
        Self::with_store(spec, store, None, metrics)
    }

    /// The tasks of a replica of `cluster`, in Redis.
    pub fn shared(spec: TasksSpec, cluster: Cluster, metrics: Arc<Metrics>) -> Self {
        Self::with_store(spec, Store::Redis(cluster.clone()), Some(cluster), metrics)
    }

    fn with_store(
        spec: TasksSpec,
        store: Store,
        cluster: Option<Cluster>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self(Arc::new(Inner {
            store,
            spec,
            cluster,
            running: DashMap::new(),
            metrics,
        }))
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.0.spec.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn poll_ms(&self) -> u64 {
        u64::try_from(self.0.spec.poll_interval.as_millis()).unwrap_or(u64::MAX)
    }

    /// The task as MCP shows it (base fields).
    pub fn task_of(&self, record: &Record) -> Task {
        record.task(self.ttl_ms(), self.poll_ms())
    }

    /// The task with its payload, for `tasks/get`.
    pub fn detailed(&self, record: &Record) -> rmcp::model::DetailedTask {
        record.detailed(self.ttl_ms(), self.poll_ms())
    }

    /// How many tasks run on this replica.
    pub fn running(&self) -> usize {
        self.0.running.len()
    }

    /// Starts `run` (given its asker, cancellation and progress reporter) as a task of
    /// `owner`; its first state, once stored.
    ///
    /// # Errors
    /// The store could not record it (-32603): the run does not start.
    pub async fn start<F, Fut>(&self, owner: Owner, run: F) -> Result<Task, McpError>
    where
        F: FnOnce(Asker, CancellationToken, ProgressFn) -> Fut,
        Fut: Future<Output = Result<CallToolResponse, McpError>> + Send + 'static,
    {
        let now = now_ms();
        let record = Record {
            id: uuid::Uuid::new_v4().to_string(),
            agent: owner.agent,
            tool: owner.tool,
            principal: owner.principal,
            node: self.0.cluster.as_ref().map(Cluster::node_id),
            status: TaskStatus::Working,
            status_message: None,
            created_ms: now,
            updated_ms: now,
            expires_ms: None,
            input_requests: None,
            result: None,
            error: None,
        };
        let (control, controls) = mpsc::unbounded_channel();
        let done = CancellationToken::new();
        self.0.running.insert(
            record.id.clone(),
            Running {
                control,
                done: done.clone(),
            },
        );
        self.0.metrics.tasks_running(self.0.running.len());
        if let Err(e) = self.0.store.put(&record).await {
            self.0.running.remove(&record.id);
            self.0.metrics.tasks_running(self.0.running.len());
            tracing::warn!(agent = %record.agent, error = %e, "Task could not be stored.");
            return Err(McpError::internal_error(
                "the task could not be recorded; call again without the tasks extension, or later",
                None,
            ));
        }
        let (steps_tx, steps) = mpsc::unbounded_channel::<String>();
        let progress: ProgressFn = Arc::new(move |step: String| {
            let _ = steps_tx.send(step);
        });
        let call = Call::spawn(move |asker, cancel| run(asker, cancel, progress));
        let task = self.task_of(&record);
        tracing::info!(task = %record.id, agent = %record.agent, caller = record.principal.as_deref().unwrap_or("anonymous"), "Task started.");
        let this = self.clone();
        // Owned through `running`: the driver ends with its call, and shutdown waits for it
        // ([`Tasks::shut_down`]).
        tokio::spawn(async move {
            let id = record.id.clone();
            this.drive(record, call, steps, controls).await;
            this.0.running.remove(&id);
            this.0.metrics.tasks_running(this.0.running.len());
            done.cancel();
        });
        Ok(task)
    }

    /// Follows a running task until it ends, writing each change.
    async fn drive(
        &self,
        mut record: Record,
        mut call: Call,
        mut steps: mpsc::UnboundedReceiver<String>,
        mut controls: mpsc::UnboundedReceiver<Control>,
    ) {
        let mut question: Option<Need> = None;
        let mut ended_by: Option<Control> = None;
        let mut mail = tokio::time::interval(MAIL_EVERY);
        mail.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let outcome = loop {
            let controls_now = tokio::select! {
                done = &mut call.task => break done,
                Some(need) = call.needs.recv() => {
                    let mut requests = InputRequests::new();
                    requests.insert(need.key.clone(), need.request.clone());
                    record.status = TaskStatus::InputRequired;
                    record.input_requests = serde_json::to_value(requests).ok();
                    question = Some(need);
                    self.save(&mut record).await;
                    continue;
                }
                Some(step) = steps.recv() => {
                    record.status_message = Some(step);
                    self.save(&mut record).await;
                    continue;
                }
                Some(control) = controls.recv() => vec![control],
                _ = mail.tick(), if self.0.cluster.is_some() => self.collect_mail(&record.id).await,
            };
            for control in controls_now {
                self.apply(
                    control,
                    &mut record,
                    &mut question,
                    &mut ended_by,
                    &call.cancel,
                )
                .await;
            }
        };
        let now = now_ms();
        let ttl = self.ttl_ms();
        match ended_by {
            Some(Control::Cancel(by)) => {
                record.finish(TaskStatus::Cancelled, now, ttl);
                record.status_message = Some(format!("cancelled by {by}"));
            }
            Some(Control::Shutdown) => record.fail(SHUT_DOWN, now, ttl),
            _ => match outcome {
                Ok(Ok(CallToolResponse::Complete(result))) => {
                    record.result = serde_json::to_value(result).ok();
                    record.finish(TaskStatus::Completed, now, ttl);
                }
                Ok(Ok(_)) => record.fail(
                    "the run answered with something other than a tool result",
                    now,
                    ttl,
                ),
                Ok(Err(error)) => {
                    record.finish(TaskStatus::Failed, now, ttl);
                    record.status_message = Some(error.message.to_string());
                    record.error = serde_json::to_value(error).ok();
                }
                Err(e) => record.fail(&format!("the run stopped unexpectedly: {e}"), now, ttl),
            },
        }
        let status = record::status_name(record.status);
        tracing::info!(task = %record.id, agent = %record.agent, status, "Task ended.");
        self.0.metrics.task_ended(&record.agent, status);
        self.save(&mut record).await;
    }

    /// Applies `control` to the running task of `record`.
    async fn apply(
        &self,
        control: Control,
        record: &mut Record,
        question: &mut Option<Need>,
        ended_by: &mut Option<Control>,
        cancel: &CancellationToken,
    ) {
        match control {
            Control::Answer(mut responses) => {
                let Some(need) = question.take() else {
                    return;
                };
                match responses.remove(&need.key) {
                    Some(answer) => {
                        need.answer(answer);
                        record.status = TaskStatus::Working;
                        record.input_requests = None;
                        self.save(record).await;
                    }
                    None => *question = Some(need),
                }
            }
            stop => {
                if ended_by.is_none() {
                    *ended_by = Some(stop);
                }
                cancel.cancel();
            }
        }
    }

    /// Cluster mode: what was left for task `id` through other replicas.
    async fn collect_mail(&self, id: &str) -> Vec<Control> {
        let Some(cluster) = &self.0.cluster else {
            return Vec::new();
        };
        match cluster.take_task_mail(id).await {
            Ok(mail) => mail.into_iter().filter_map(control_of).collect(),
            Err(e) => {
                tracing::debug!(task = id, error = %e, "Task mail could not be read.");
                Vec::new()
            }
        }
    }

    async fn save(&self, record: &mut Record) {
        record.updated_ms = now_ms().max(record.updated_ms);
        if let Err(e) = self.0.store.put(record).await {
            tracing::warn!(task = %record.id, error = %e, "Task state could not be stored.");
        }
    }

    /// Task `id` of `owner` (same agent, same caller), as it is now.
    ///
    /// # Errors
    /// -32602 `unknown task` when there is none, it expired, or it is someone else's (the
    /// answer does not tell which); -32603 when the store fails.
    pub async fn get(&self, id: &str, owner: &Owner) -> Result<Record, McpError> {
        let record = self
            .0
            .store
            .get(id)
            .await
            .map_err(|e| {
                tracing::warn!(task = id, error = %e, "Task could not be read.");
                McpError::internal_error("the task store is unavailable; retry", None)
            })?
            .filter(|r| {
                !r.expired(now_ms()) && r.agent == owner.agent && r.principal == owner.principal
            })
            .ok_or_else(|| unknown(id))?;
        Ok(self.settle(record).await)
    }

    /// `record`, reported `failed` when it says it runs but no run is behind it any more.
    async fn settle(&self, mut record: Record) -> Record {
        if record.is_terminal() || self.0.running.contains_key(&record.id) {
            return record;
        }
        let lost = match (&self.0.cluster, &record.node) {
            (None, _) => RESTARTED,
            (Some(c), Some(node)) if *node == c.node_id() => RESTARTED,
            (Some(c), Some(node)) => match c.node_url(node).await {
                Ok(None) => REPLICA_LEFT,
                // Alive (it runs there), or Redis cannot say: as stored.
                _ => return record,
            },
            (Some(_), None) => RESTARTED,
        };
        // Read again: it may have ended just now.
        if let Ok(Some(again)) = self.0.store.get(&record.id).await {
            if again.is_terminal() {
                return again;
            }
            record = again;
        }
        tracing::info!(task = %record.id, agent = %record.agent, "Task found without its run: reported failed.");
        record.fail(lost, now_ms(), self.ttl_ms());
        if let Err(e) = self.0.store.put(&record).await {
            tracing::warn!(task = %record.id, error = %e, "Task state could not be stored.");
        }
        record
    }

    /// `tasks/update`: hands `responses` to task `id` of `owner`.
    ///
    /// # Errors
    /// As [`Tasks::get`]; -32602 when the task has ended.
    pub async fn update(
        &self,
        id: &str,
        responses: InputResponses,
        owner: &Owner,
    ) -> Result<(), McpError> {
        let record = self.get(id, owner).await?;
        if record.is_terminal() {
            return Err(McpError::invalid_params(
                format!(
                    "task {id} has ended ({}): it takes no input",
                    record::status_name(record.status)
                ),
                None,
            ));
        }
        self.tell(&record, Control::Answer(responses)).await
    }

    /// `tasks/cancel`: cancels task `id` of `owner` (nothing when it has ended).
    ///
    /// # Errors
    /// As [`Tasks::get`].
    pub async fn cancel(&self, id: &str, owner: &Owner) -> Result<(), McpError> {
        let record = self.get(id, owner).await?;
        if record.is_terminal() {
            return Ok(());
        }
        self.tell(&record, Control::Cancel("the client".to_owned()))
            .await
    }

    /// Sends `control` to the running task of `record`, here or (cluster mode) through Redis.
    async fn tell(&self, record: &Record, control: Control) -> Result<(), McpError> {
        if let Some(running) = self.0.running.get(&record.id) {
            let _ = running.control.send(control);
            return Ok(());
        }
        let Some(cluster) = &self.0.cluster else {
            return Ok(());
        };
        cluster
            .post_task_mail(&record.id, &mail_of(&control))
            .await
            .map_err(|e| {
                tracing::warn!(task = %record.id, error = %e, "Task mail could not be left.");
                McpError::internal_error("the task store is unavailable; retry", None)
            })
    }

    /// The newest `limit` tasks (all replicas' in cluster mode), newest first.
    ///
    /// # Errors
    /// The store failed.
    pub async fn list(&self, limit: usize) -> Result<Vec<Record>, String> {
        let now = now_ms();
        let mut out = Vec::new();
        for record in self.0.store.list(limit).await? {
            if !record.expired(now) {
                out.push(self.settle(record).await);
            }
        }
        Ok(out)
    }

    /// An operator cancels task `id`, whoever's it is.
    ///
    /// # Errors
    /// The store failed.
    pub async fn cancel_by_operator(&self, id: &str) -> Result<Cancelled, String> {
        let Some(record) = self.0.store.get(id).await?.filter(|r| !r.expired(now_ms())) else {
            return Ok(Cancelled::Unknown);
        };
        let record = self.settle(record).await;
        if record.is_terminal() {
            return Ok(Cancelled::Ended(record));
        }
        self.tell(&record, Control::Cancel("an operator".to_owned()))
            .await
            .map_err(|e| e.message.to_string())?;
        Ok(Cancelled::Cancelling(record))
    }

    /// Drops the tasks past their time (the single node's file; Redis expires its own).
    pub async fn sweep(&self) {
        if let Store::Sqlite(s) = &self.0.store {
            match s.delete_expired(now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(tasks = n, "Dropped expired tasks."),
                Err(e) => tracing::warn!(error = %e, "Expired tasks could not be dropped."),
            }
        }
    }

    /// Shutdown: every task running here ends `failed` ([`SHUT_DOWN`]), written before this
    /// returns (or `limit` passes).
    pub async fn shut_down(&self, limit: Duration) {
        let done: Vec<CancellationToken> = self
            .0
            .running
            .iter()
            .map(|r| {
                let _ = r.control.send(Control::Shutdown);
                r.done.clone()
            })
            .collect();
        if done.is_empty() {
            return;
        }
        tracing::info!(tasks = done.len(), "Ending running tasks.");
        let all = futures::future::join_all(done.iter().map(|d| d.cancelled()));
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                "Tasks did not record their end in time; they are reported failed when read."
            );
        }
    }
}

fn unknown(id: &str) -> McpError {
    McpError::invalid_params(format!("unknown task: {id}"), None)
}

/// `control` as mail through Redis.
fn mail_of(control: &Control) -> Value {
    match control {
        Control::Answer(responses) => json!({"answer": responses}),
        Control::Cancel(by) => json!({"cancel": by}),
        Control::Shutdown => json!({"cancel": "shutdown"}),
    }
}

/// The control a piece of mail carries.
fn control_of(mail: Value) -> Option<Control> {
    if let Some(by) = mail.get("cancel").and_then(Value::as_str) {
        return Some(Control::Cancel(by.to_owned()));
    }
    let answer = mail.get("answer")?.clone();
    serde_json::from_value(answer).ok().map(Control::Answer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mail_through_redis_carries_answers_and_cancels_intact() {
        let mut responses = InputResponses::new();
        responses.insert(
            "ask_user".into(),
            json!({"action": "accept", "content": {"answer": "Lyon"}}),
        );
        let mail = mail_of(&Control::Answer(responses.clone()));
        let Some(Control::Answer(back)) =
            control_of(serde_json::from_str(&mail.to_string()).unwrap())
        else {
            panic!("not an answer: {mail}");
        };
        assert_eq!(back, responses);
        let Some(Control::Cancel(by)) = control_of(mail_of(&Control::Cancel("the client".into())))
        else {
            panic!("not a cancel");
        };
        assert_eq!(by, "the client");
        assert!(control_of(json!({"other": 1})).is_none());
    }
}
