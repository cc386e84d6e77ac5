//! Multi round-trip requests (MCP 2026-07-28, SEP-2322): how a call asks its client for
//! input when the protocol has no server-to-client requests.
//!
//! A `tools/call` that may need the user (an approval `by = "client"`) runs in a task of its
//! own. When it needs input it hands an [`InputRequest`] to its [`Asker`]; the request being
//! served answers `input_required` with that request and a `requestState`, and the call
//! stays **parked** here, still running (its timeouts go on), under that state. The client
//! retries the same call with `inputResponses` and the `requestState`; the retry delivers the
//! answer to the parked call and serves it from there: its result, or its next question.
//!
//! The state is a random id (122 bits), good once, bound to the tool and the caller: another
//! caller's retry, an id already used or one that expired gets -32602. A parked call nobody
//! comes back for is cancelled when its question expires (its own timeout plus a minute),
//! which withdraws it like a cancelled call. Parked calls live in this replica's memory: in
//! cluster mode the retry has to reach the same replica.
//!
//! The same [`Call`] and [`Asker`] serve a call run as an MCP task ([`crate::tasks`]): there
//! the question goes into the task's `inputRequests` instead of an `input_required` answer,
//! and `tasks/update` brings the answer.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolResponse, InputRequest, InputRequests, InputRequiredResult, InputResponses,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a parked call waits for its retry beyond its question's own timeout.
const GRACE: Duration = Duration::from_secs(60);

/// What a parked call asks.
pub struct Need {
    /// The key of the input request (`approval`).
    pub key: String,
    /// The request for the client.
    pub request: InputRequest,
    /// How long the asker waits for the answer.
    pub timeout: Duration,
    /// Where the answer goes.
    reply: oneshot::Sender<Value>,
}

impl Need {
    /// Hands the client's answer to the call that asked (which may have stopped waiting).
    pub fn answer(self, value: Value) {
        let _ = self.reply.send(value);
    }
}

/// The asking end a call carries: it hands questions to whoever serves the call.
#[derive(Clone)]
pub struct Asker {
    tx: mpsc::Sender<Need>,
}

impl Asker {
    /// Asks the client `request` (under `key`) and waits for the answer, up to `timeout`.
    ///
    /// # Errors
    /// The call is no longer served (the client went away and the parked call expired), or
    /// no answer in time (`None` then: timed out).
    pub async fn ask(
        &self,
        key: &str,
        request: InputRequest,
        timeout: Duration,
    ) -> Result<Value, Option<String>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Need {
                key: key.to_owned(),
                request,
                timeout,
                reply,
            })
            .await
            .map_err(|_| Some("the call is no longer being served".to_owned()))?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(Some(
                "the client did not come back with an answer".to_owned(),
            )),
            Err(_) => Err(None),
        }
    }
}

/// A call's task and the questions it asks.
pub struct Call {
    /// The call's task: its answer.
    pub(crate) task: JoinHandle<Result<CallToolResponse, McpError>>,
    /// The questions it asks.
    pub(crate) needs: mpsc::Receiver<Need>,
    /// Cancels it (and withdraws a question it waits on).
    pub(crate) cancel: CancellationToken,
}

impl Call {
    /// Runs `call` (given its asker and its cancellation) in a task of its own.
    pub fn spawn<F, Fut>(call: F) -> Self
    where
        F: FnOnce(Asker, CancellationToken) -> Fut,
        Fut: Future<Output = Result<CallToolResponse, McpError>> + Send + 'static,
    {
        let (tx, needs) = mpsc::channel(1);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(call(Asker { tx }, cancel.clone()));
        Self {
            task,
            needs,
            cancel,
        }
    }
}

/// Who may resume a parked call: the same tool, for the same caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The agent.
    pub agent: String,
    /// The tool called.
    pub tool: String,
    /// The caller (`Identity::attribution`), `None` for an anonymous one.
    pub caller: Option<String>,
}

struct Parked {
    call: Call,
    question: Need,
    owner: Owner,
}

/// The calls parked on this replica, waiting for their client to come back.
#[derive(Default)]
pub struct Rounds {
    parked: Arc<DashMap<String, Parked>>,
}

impl Rounds {
    /// Serves `call` until it ends (its result) or asks a question (`input_required`, the
    /// call parked); `cancel` is the request's: the caller gave up.
    pub async fn drive(
        &self,
        mut call: Call,
        owner: Owner,
        cancel: &CancellationToken,
    ) -> Result<CallToolResponse, McpError> {
        tokio::select! {
            done = &mut call.task => finished(done),
            Some(question) = call.needs.recv() => Ok(self.park(call, question, owner)),
            () = cancel.cancelled() => {
                call.cancel.cancel();
                finished(call.task.await)
            }
        }
    }

    /// The retry of a parked call: delivers `responses` and serves it on.
    ///
    /// # Errors
    /// -32602 when `state` names no call parked for `owner`, or the answer is missing.
    pub async fn resume(
        &self,
        state: &str,
        responses: Option<InputResponses>,
        owner: Owner,
        cancel: &CancellationToken,
    ) -> Result<CallToolResponse, McpError> {
        let parked = match self.parked.remove_if(state, |_, p| p.owner == owner) {
            Some((_, parked)) => parked,
            None => {
                return Err(McpError::invalid_params(
                    "requestState: no call of this tool waits for your input under this state \
                     (it was answered already, expired, or is not yours); call the tool again",
                    None,
                ));
            }
        };
        let Parked { call, question, .. } = parked;
        let Some(answer) = responses.and_then(|mut r| r.remove(&question.key)) else {
            // Put it back: the client may retry with the answer.
            let key = question.key.clone();
            self.parked.insert(
                state.to_owned(),
                Parked {
                    call,
                    question,
                    owner,
                },
            );
            return Err(McpError::invalid_params(
                format!("inputResponses: the answer to {key:?} is missing"),
                None,
            ));
        };
        // The call may have stopped waiting meanwhile (its question timed out): it goes on
        // to its result either way.
        question.answer(answer);
        self.drive(call, owner, cancel).await
    }

    /// Parks `call` until its client answers `question`; the `input_required` result.
    fn park(&self, call: Call, question: Need, owner: Owner) -> CallToolResponse {
        let state = uuid::Uuid::new_v4().simple().to_string();
        let mut requests = InputRequests::new();
        requests.insert(question.key.clone(), question.request.clone());
        let expires = question.timeout + GRACE;
        self.parked.insert(
            state.clone(),
            Parked {
                call,
                question,
                owner,
            },
        );
        // Nobody came back: the call is withdrawn (its task ends and records itself).
        let parked = self.parked.clone();
        let key = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(expires).await;
            if let Some((_, p)) = parked.remove(&key) {
                p.call.cancel.cancel();
                let _ = p.call.task.await;
            }
        });
        CallToolResponse::InputRequired(InputRequiredResult::new(Some(requests), Some(state)))
    }

    /// Calls parked now.
    pub fn len(&self) -> usize {
        self.parked.len()
    }

    /// Whether no call is parked.
    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }
}

fn finished(
    done: Result<Result<CallToolResponse, McpError>, tokio::task::JoinError>,
) -> Result<CallToolResponse, McpError> {
    match done {
        Ok(result) => result,
        Err(e) => Err(McpError::internal_error(
            format!("the call stopped unexpectedly: {e}"),
            None,
        )),
    }
}
