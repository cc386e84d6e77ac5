//! `command` upstreams: MCP servers the gateway starts itself and speaks to over stdio (rmcp's
//! `TokioChildProcess`), supervised.
//!
//! # Processes
//!
//! `process = "per_agent"` (the default): one process for every caller of the agent, started
//! by the first connect or call (at startup, the agents' `connect_upstreams`).
//! `process = "per_session"`: one per MCP session, for servers that keep per-client state,
//! started by the session's first call and ended when the session ends; at most
//! `max_processes` run at once (a call that would need one more is refused with a tool error).
//! A call without a session (a stateless MCP 2026-07-28 request) gets a process of its own,
//! ended after the call, and so does listing the tools before any session has a process.
//!
//! # Supervision
//!
//! Every process has a supervisor task: spawn it (in a process group of its own; stdin and
//! stdout are the MCP transport, stderr goes to the log, [`super::stderr`]), make the MCP
//! handshake and list its tools within `timeout_secs`, then wait for it to end. One that ends
//! by itself, or cannot be started, is started again after a backoff: 0.5 s, doubling up to
//! 30 s, and back to 0.5 s once a process has run for a minute ([`super::backoff`]). While it is down, calls fail at
//! once with a tool error saying when it is tried again; a call in flight when it dies fails
//! with a tool error; the call after the restart works. A hung process (one that does not
//! answer) is not a dead one: a call ends at `timeout_secs` (its future is dropped, and rmcp
//! sends the process `notifications/cancelled`), and the process goes on serving the others.
//!
//! # Ending
//!
//! [`Processes::stop`] (the agent reloaded with another entry, or removed; the gateway
//! shutting down) ends every process for good: rmcp's graceful shutdown (stdin closed, then
//! SIGTERM, then SIGKILL, 3 s apart), then SIGKILL to whatever is left of its process group
//! (grandchildren, such as the server an `npx` wrapper starts), each waited for within
//! [`STOP_LIMIT`]. The same group sweep follows a process that ended by itself. Every
//! supervisor is a task of a `JoinSet` the [`Processes`] own; dropped without `stop`, the
//! tasks are aborted and the children killed on drop (tokio's `kill_on_drop`, the group
//! guard), so no process outlives them. A gateway killed outright (`kill -9`) runs none of
//! this: each group's watchdog ([`Group`]) kills the group then.
//!
//! # Environment
//!
//! A process gets its `env`, and from the gateway's own environment only [`INHERITED`]: never
//! the gateway's secrets (model keys, tokens).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ErrorCode, Implementation, JsonObject,
};
use rmcp::service::{ClientInitializeError, Peer};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientCacheConfig, RoleClient, ServiceError, ServiceExt as _};
use tokio::process::ChildStderr;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::config::{DEFAULT_MAX_PROCESSES, ProcessMode, UpstreamToolConfig};
use super::outcome::{error_chain, failure_detail, into_output, is_transport_failure};
use super::stderr::StderrLog;
use super::{Error, Listing, Output};
use crate::tools::ClientSession;

/// How long [`Processes::stop`] waits for every process to end; then the rest are killed.
pub const STOP_LIMIT: Duration = Duration::from_secs(10);
/// How long one process's graceful close may take (rmcp: 2 s to drain, 3 s after stdin
/// closes, 3 s after SIGTERM), within [`STOP_LIMIT`].
const CLOSE_LIMIT: Duration = Duration::from_secs(9);
/// How long the rest of an ended process's stderr is read.
const STDERR_FLUSH: Duration = Duration::from_millis(250);
/// The gateway's variables a process inherits (what the official MCP SDKs pass on, and the
/// locale, time zone and temporary directory).
pub const INHERITED: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LC_ALL", "TZ", "TMPDIR",
];

/// How to start the process.
pub(crate) struct Launch {
    command: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    /// How logs and errors name the upstream.
    target: String,
    /// Bound of a start: spawn, handshake, listing.
    timeout: Duration,
}

impl Launch {
    /// How `config` (a `command` upstream) starts its process; `None` for a `url` one.
    pub(crate) fn of(config: &UpstreamToolConfig) -> Option<Self> {
        Some(Self {
            command: config.command.clone()?,
            args: config.args.clone(),
            env: config
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cwd: config.cwd.as_ref().map(PathBuf::from),
            target: config.target(),
            timeout: Duration::from_secs(config.timeout_secs.max(1)),
        })
    }

    /// Spawns the process: its own process group (with its watchdog, [`Group`]), killed on
    /// drop, stderr piped.
    pub(crate) fn spawn(&self) -> std::io::Result<(TokioChildProcess, Option<ChildStderr>, Group)> {
        let mut command = tokio::process::Command::new(&self.command);
        command.args(&self.args).env_clear().kill_on_drop(true);
        for name in INHERITED {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        let mut wrapped = process_wrap::tokio::CommandWrap::from(command);
        #[cfg(unix)]
        wrapped.wrap(process_wrap::tokio::ProcessGroup::leader());
        wrapped.wrap(process_wrap::tokio::KillOnDrop);
        let (transport, stderr) = TokioChildProcess::builder(wrapped)
            .stderr(Stdio::piped())
            .spawn()?;
        let group = Group::of(transport.id(), &self.target);
        Ok((transport, stderr, group))
    }
}

/// Where one supervised process is, as calls see it.
#[derive(Clone)]
enum Status {
    /// Being started (or started again): calls wait for it.
    Starting,
    /// Serving.
    Up(Peer<RoleClient>),
    /// Not running: why, and when it is started again (`None`: it is not).
    Down {
        reason: String,
        retry_at: Option<Instant>,
    },
    /// Ended for good.
    Stopped,
}

/// One supervised process.
struct Slot {
    status: watch::Sender<Status>,
    /// Cancelled to end the process for good.
    stop: CancellationToken,
}

impl Slot {
    fn new(stop: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            status: watch::Sender::new(Status::Starting),
            stop,
        })
    }

    fn set(&self, status: Status) {
        self.status.send_replace(status);
    }

    fn is_stopped(&self) -> bool {
        matches!(*self.status.borrow(), Status::Stopped)
    }

    /// The process's client, once it is up; an error at once when it is down.
    async fn ready(&self, target: &str) -> Result<Peer<RoleClient>, Error> {
        let mut status = self.status.subscribe();
        loop {
            let now = status.borrow_and_update().clone();
            match now {
                Status::Up(peer) => return Ok(peer),
                Status::Starting => {
                    if status.changed().await.is_err() {
                        return Err(stopped(target));
                    }
                }
                Status::Down { reason, retry_at } => return Err(down(target, &reason, retry_at)),
                Status::Stopped => return Err(stopped(target)),
            }
        }
    }
}

/// The processes of one `command` upstream.
pub(super) struct Processes {
    launch: Arc<Launch>,
    listing: Arc<Listing>,
    mode: ProcessMode,
    /// `per_session`: most processes at once.
    max: usize,
    /// Processes whose supervisor runs (starting, up, down or ending).
    live: Arc<AtomicUsize>,
    /// Parent of every process's stop token.
    cancel: CancellationToken,
    /// A `std` mutex: held only to look up, insert or spawn, never across `.await`.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Set by [`Processes::stop`]: nothing starts any more.
    stopped: bool,
    /// `per_agent`: the process.
    shared: Option<Arc<Slot>>,
    /// `per_session`: each session's process.
    sessions: HashMap<Arc<str>, Arc<Slot>>,
    /// The supervisors.
    tasks: JoinSet<()>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        // The supervisors are aborted with the `JoinSet`; this ends those that are between
        // two polls first.
        self.cancel.cancel();
    }
}

impl Processes {
    /// The processes of `config`, when it names a `command`; none is started yet.
    pub(super) fn new(config: &UpstreamToolConfig, listing: Arc<Listing>) -> Option<Self> {
        Some(Self {
            launch: Arc::new(Launch::of(config)?),
            listing,
            mode: config.process,
            max: config.max_processes.unwrap_or(DEFAULT_MAX_PROCESSES).max(1),
            live: Arc::default(),
            cancel: CancellationToken::new(),
            state: Mutex::new(State::default()),
        })
    }

    /// Starts the process (`per_agent`, or `session`'s with `per_session`) and waits until
    /// it is up or has failed; without a session (`per_session`), lists the tools with a
    /// process of its own when none are listed yet.
    ///
    /// # Errors
    /// Why the process is not up.
    pub(super) async fn connect(&self, session: Option<&ClientSession>) -> Result<(), Error> {
        let target = &self.launch.target;
        match (self.mode, session) {
            (ProcessMode::PerAgent, _) => self.shared()?.ready(target).await.map(drop),
            (ProcessMode::PerSession, Some(session)) => {
                self.for_session(session)?.ready(target).await.map(drop)
            }
            (ProcessMode::PerSession, None) => {
                if !self.listing.definitions().is_empty() {
                    return Ok(());
                }
                let slot = self.start_alone()?;
                let _stop = slot.stop.clone().drop_guard();
                slot.ready(target).await.map(drop)
            }
        }
    }

    /// Calls tool `name` (as listed: prefixed) on the process of this call: the agent's, or
    /// `session`'s (`per_session`), or one of its own (`per_session` without a session).
    ///
    /// # Errors
    /// The process is down, stopped or cannot be had; the tool is unknown; the call failed.
    pub(super) async fn call(
        &self,
        name: &str,
        args: JsonObject,
        session: Option<&ClientSession>,
    ) -> Result<Output, Error> {
        let target = &self.launch.target;
        let (slot, _alone) = match (self.mode, session) {
            (ProcessMode::PerAgent, _) => (self.shared()?, None),
            (ProcessMode::PerSession, Some(session)) => (self.for_session(session)?, None),
            (ProcessMode::PerSession, None) => {
                let slot = self.start_alone()?;
                let stop = slot.stop.clone().drop_guard();
                (slot, Some(stop))
            }
        };
        let peer = slot.ready(target).await?;
        let upstream = match self.listing.upstream_name(name) {
            Some(upstream) => upstream,
            None => {
                // The process may offer the tool since it was listed: look once more.
                let tools = peer
                    .list_all_tools()
                    .await
                    .map_err(|e| self.call_error("tools/list", e))?;
                self.listing.store(tools);
                self.listing.upstream_name(name).ok_or_else(|| {
                    Error::InvalidArguments(format!(
                        "unknown tool {name:?}: the upstream MCP server {target} does not offer it"
                    ))
                })?
            }
        };
        let params = CallToolRequestParams::new(upstream.clone()).with_arguments(args);
        let params = crate::telemetry::trace::with_meta(params);
        match peer.call_tool(params).await {
            Ok(result) => into_output(result, &upstream),
            Err(e) => Err(self.call_error(&upstream, e)),
        }
    }

    /// Ends every process for good and waits (within [`STOP_LIMIT`]) until they have.
    pub(super) async fn stop(&self) {
        let mut tasks = {
            let mut state = self.state();
            state.stopped = true;
            state.shared = None;
            state.sessions.clear();
            std::mem::take(&mut state.tasks)
        };
        self.cancel.cancel();
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_LIMIT, all).await.is_err() {
            tracing::warn!(upstream = %self.launch.target, "Upstream MCP server processes did not end in time; killing them.");
            // Aborting a supervisor drops its process: killed, its group swept.
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }

    /// The agent's process, started if it is not yet.
    fn shared(&self) -> Result<Arc<Slot>, Error> {
        let mut state = self.state();
        if state.stopped {
            return Err(stopped(&self.launch.target));
        }
        if let Some(slot) = &state.shared {
            return Ok(slot.clone());
        }
        let slot = self.start(&mut state, None, true);
        state.shared = Some(slot.clone());
        Ok(slot)
    }

    /// `session`'s process, started if it has none yet (and there is room).
    fn for_session(&self, session: &ClientSession) -> Result<Arc<Slot>, Error> {
        let mut state = self.state();
        if state.stopped {
            return Err(stopped(&self.launch.target));
        }
        state.sessions.retain(|_, slot| !slot.is_stopped());
        if let Some(slot) = state.sessions.get(&session.id) {
            return Ok(slot.clone());
        }
        if session.ended.is_cancelled() {
            return Err(Error::Cancelled);
        }
        self.room()?;
        let slot = self.start(&mut state, Some(session.ended.clone()), true);
        state.sessions.insert(session.id.clone(), slot.clone());
        Ok(slot)
    }

    /// A process for one use, not restarted; the caller stops it.
    fn start_alone(&self) -> Result<Arc<Slot>, Error> {
        let mut state = self.state();
        if state.stopped {
            return Err(stopped(&self.launch.target));
        }
        self.room()?;
        Ok(self.start(&mut state, None, false))
    }

    /// Whether one more process may start (`per_session`).
    fn room(&self) -> Result<(), Error> {
        if self.live.load(Ordering::SeqCst) >= self.max {
            return Err(Error::Failed(format!(
                "upstream MCP server {} already runs {} processes (max_processes: one per MCP session) and cannot start another; retry when a session ends",
                self.launch.target, self.max
            )));
        }
        Ok(())
    }

    /// Spawns the supervisor of a new process; `ended` ends it too; `restart`: started
    /// again when it ends by itself.
    fn start(
        &self,
        state: &mut State,
        ended: Option<CancellationToken>,
        restart: bool,
    ) -> Arc<Slot> {
        // Supervisors that have finished are collected here, so the set stays small.
        while state.tasks.try_join_next().is_some() {}
        let slot = Slot::new(self.cancel.child_token());
        self.live.fetch_add(1, Ordering::SeqCst);
        let supervisor = Supervisor {
            slot: slot.clone(),
            launch: self.launch.clone(),
            listing: self.listing.clone(),
            ended,
            restart,
            _live: Live(self.live.clone()),
        };
        state.tasks.spawn(supervisor.run());
        slot
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Maps a failed request to the process.
    fn call_error(&self, tool: &str, e: ServiceError) -> Error {
        let target = &self.launch.target;
        if is_transport_failure(&e) {
            let detail = match &e {
                ServiceError::TransportSend(error) => failure_detail(error),
                _ => "it exited or closed its stdout".to_owned(),
            };
            return Error::Failed(format!(
                "upstream MCP server {target} stopped during the call ({detail}); the gateway starts it again"
            ));
        }
        match e {
            ServiceError::McpError(data) if data.code == ErrorCode::INVALID_PARAMS => {
                Error::InvalidArguments(data.message.into_owned())
            }
            ServiceError::McpError(data) => Error::Failed(format!(
                "upstream MCP server {target} failed on {tool}: {} (code {})",
                data.message, data.code.0
            )),
            ServiceError::Timeout { .. } => Error::TimedOut(format!(
                "upstream MCP server {target} did not answer {tool} in time"
            )),
            other => Error::Failed(format!(
                "upstream MCP server {target} failed on {tool}: {}",
                error_chain(&other)
            )),
        }
    }
}

/// Counts a process as live until it ends (a supervisor's, or a federated session's).
pub(crate) struct Live(Arc<AtomicUsize>);

impl Live {
    /// Counts one more in `count` unless it has reached `max` already.
    pub(crate) fn reserve(count: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count.clone()))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A process's group: what is left of it is killed when this is dropped (the grandchildren
/// of a server that ended, or was dropped, without taking them along), and by its watchdog
/// when the gateway itself is killed (`kill -9`: no `Drop` runs).
///
/// The watchdog is `sh`, in a process group of its own (not the server's: waiting for the
/// server waits for its whole group), reading a pipe whose other end only the gateway holds
/// (close-on-exec: no other child inherits it). Nothing is ever written to the pipe: when
/// the gateway dies, the kernel closes its end, `read` sees the end of the input, and the
/// watchdog kills the server's group. While the gateway lives, the watchdog is killed with
/// this value (after the group).
pub(crate) struct Group {
    pgid: Option<u32>,
    /// Killed (and reaped by tokio) when dropped, after the group.
    _watchdog: Option<tokio::process::Child>,
}

/// The watchdog's script (`$1`: the group): wait for the end of stdin, then kill the group.
#[cfg(unix)]
const WATCHDOG: &str = "while read -r _; do :; done; kill -s KILL -- \"-$1\"";

impl Group {
    /// The group led by `pid` (the process just spawned), with its watchdog.
    pub(crate) fn of(pid: Option<u32>, target: &str) -> Self {
        #[cfg(unix)]
        let watchdog = pid.and_then(|pid| {
            let mut command = tokio::process::Command::new("/bin/sh");
            command
                .args(["-c", WATCHDOG, "switchboard-watchdog", &pid.to_string()])
                .env_clear()
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .process_group(0);
            command
                .spawn()
                .inspect_err(|e| {
                    tracing::warn!(upstream = %target, error = %e, "Cannot start the watchdog that ends an upstream MCP server's processes if the gateway is killed.");
                })
                .ok()
        });
        #[cfg(not(unix))]
        let watchdog = {
            let _ = target;
            None
        };
        Self {
            pgid: pid,
            _watchdog: watchdog,
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pgid) = self.pgid.and_then(|pid| i32::try_from(pid).ok()) {
            // ESRCH (nothing left in the group) is the usual answer.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// How one run of a process ended.
enum Ended {
    /// Stopped on purpose (stop, or its session ended).
    Stopped,
    /// Ended by itself, or could not be started.
    Failed {
        reason: String,
        ran: Duration,
        stderr: Vec<String>,
    },
}

/// The task that keeps one process running.
struct Supervisor {
    slot: Arc<Slot>,
    launch: Arc<Launch>,
    listing: Arc<Listing>,
    /// The end of the session the process is for.
    ended: Option<CancellationToken>,
    /// Whether it is started again when it ends by itself.
    restart: bool,
    _live: Live,
}

impl Supervisor {
    async fn run(self) {
        let target = &self.launch.target;
        let mut backoff = Backoff::default();
        loop {
            self.slot.set(Status::Starting);
            let (reason, ran, stderr) = match self.serve_once().await {
                Ended::Stopped => break,
                Ended::Failed {
                    reason,
                    ran,
                    stderr,
                } => (reason, ran, stderr),
            };
            if !self.restart {
                tracing::warn!(upstream = %target, %reason, ?stderr, "Upstream MCP server process ended.");
                self.slot.set(Status::Down {
                    reason,
                    retry_at: None,
                });
                return;
            }
            let wait = backoff.failed(ran);
            tracing::warn!(upstream = %target, %reason, ?stderr, retry_in_ms = wait.as_millis() as u64, "Upstream MCP server process ended; starting it again.");
            self.slot.set(Status::Down {
                reason,
                retry_at: Some(Instant::now() + wait),
            });
            tokio::select! {
                () = self.stopped() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.slot.set(Status::Stopped);
    }

    /// Resolves when the process is to end for good.
    async fn stopped(&self) {
        match &self.ended {
            Some(ended) => tokio::select! {
                () = self.slot.stop.cancelled() => {}
                () = ended.cancelled() => {}
            },
            None => self.slot.stop.cancelled().await,
        }
    }

    /// Starts the process, serves with it until it ends or is stopped, and ends it.
    async fn serve_once(&self) -> Ended {
        let launch = &self.launch;
        let failed = |reason: String, stderr: Vec<String>| Ended::Failed {
            reason,
            ran: Duration::ZERO,
            stderr,
        };
        let (transport, stderr, _group) = match launch.spawn() {
            Ok(spawned) => spawned,
            Err(e) => {
                return failed(
                    format!("cannot start {:?}: {e}", launch.command),
                    Vec::new(),
                );
            }
        };
        // `_group`, declared before anything that holds the child, is dropped after them.
        let pid = transport.id();
        let mut log = stderr.map(|s| StderrLog::new(s, launch.target.clone(), pid));
        let cancel = CancellationToken::new();
        let handshake = tokio::time::timeout(launch.timeout, async {
            let identity = ClientConfig::new(
                ClientCapabilities::default(),
                Implementation::new("switchboard", env!("CARGO_PKG_VERSION")),
            );
            let service = identity
                .serve_with_ct(transport, cancel.clone())
                .await
                .map_err(init_failure)?;
            // The listing is ours to refresh: rmcp's cache would answer from memory.
            service
                .peer()
                .set_response_cache_config(ClientCacheConfig::disabled())
                .await;
            let tools = service
                .peer()
                .list_all_tools()
                .await
                .map_err(|e| format!("it could not list its tools: {}", error_chain(&e)))?;
            Ok::<_, String>((service, tools))
        });
        let started = tokio::select! {
            // Dropping the handshake drops the child: killed, its group swept.
            () = self.stopped() => return Ended::Stopped,
            started = alongside(handshake, log.as_mut()) => started,
        };
        let (service, tools) = match started {
            Ok(Ok(started)) => started,
            Ok(Err(reason)) => {
                let stderr = flush(&mut log).await;
                return failed(reason, stderr);
            }
            Err(_) => {
                let stderr = flush(&mut log).await;
                return failed(
                    format!(
                        "it did not complete the MCP handshake and list its tools within {} s",
                        launch.timeout.as_secs()
                    ),
                    stderr,
                );
            }
        };
        let count = self.listing.store(tools);
        let since = Instant::now();
        self.slot.set(Status::Up(service.peer().clone()));
        tracing::info!(upstream = %launch.target, pid, tools = count, "Upstream MCP server process started.");
        let mut waiting = std::pin::pin!(service.waiting());
        let stop = tokio::select! {
            () = self.stopped() => true,
            _ = alongside(&mut waiting, log.as_mut()) => false,
        };
        if !stop {
            let stderr = flush(&mut log).await;
            return Ended::Failed {
                reason: "it exited".to_owned(),
                ran: since.elapsed(),
                stderr,
            };
        }
        // No call picks it up any more; the calls in flight fail as it closes.
        self.slot.set(Status::Stopped);
        cancel.cancel();
        if tokio::time::timeout(CLOSE_LIMIT, alongside(&mut waiting, log.as_mut()))
            .await
            .is_err()
        {
            tracing::warn!(upstream = %launch.target, pid, "Upstream MCP server process did not end in time; killing its process group.");
        }
        flush(&mut log).await;
        tracing::info!(upstream = %launch.target, pid, "Upstream MCP server process ended.");
        Ended::Stopped
    }
}

/// Runs `work` while the process's stderr (if any) is read into the log.
async fn alongside<F: Future>(work: F, log: Option<&mut StderrLog<ChildStderr>>) -> F::Output {
    let mut work = std::pin::pin!(work);
    let Some(log) = log else {
        return work.await;
    };
    loop {
        tokio::select! {
            out = &mut work => return out,
            () = log.step(), if !log.is_done() => {}
        }
    }
}

/// Logs the rest of an ended process's stderr; its last lines.
async fn flush(log: &mut Option<StderrLog<ChildStderr>>) -> Vec<String> {
    match log {
        Some(log) => {
            log.finish(STDERR_FLUSH).await;
            log.tail()
        }
        None => Vec::new(),
    }
}

/// Why the MCP handshake failed, in words.
fn init_failure(e: ClientInitializeError) -> String {
    match e {
        ClientInitializeError::JsonRpcError(data) => format!(
            "it refused the MCP handshake: {} (code {})",
            data.message, data.code.0
        ),
        ClientInitializeError::ConnectionClosed(_)
        | ClientInitializeError::TransportError { .. } => {
            "it exited (or closed its stdout) during the MCP handshake".to_owned()
        }
        other => format!("the MCP handshake failed: {}", error_chain(&other)),
    }
}

/// The error of a call while the process is down.
fn down(target: &str, reason: &str, retry_at: Option<Instant>) -> Error {
    match retry_at {
        Some(at) => Error::Failed(format!(
            "upstream MCP server {target} is not running ({reason}); the gateway starts it again in {:.1} s",
            at.saturating_duration_since(Instant::now()).as_secs_f64()
        )),
        None => Error::Failed(format!(
            "upstream MCP server {target} is not running ({reason})"
        )),
    }
}

/// The error of a call after the processes were stopped for good.
fn stopped(target: &str) -> Error {
    Error::Failed(format!(
        "upstream MCP server {target} was stopped: its agent was reloaded or removed, or the gateway is shutting down; open a new MCP session to use the agent as it is now"
    ))
}
