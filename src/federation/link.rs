//! One session's connection to one federated upstream: opened on first use (Streamable
//! HTTP, or a process of its own over stdio), opened again after it broke. A `command`
//! upstream's processes are bounded by its `max_processes` (counted across the sessions),
//! and one that cannot be started is tried again only after a [`Backoff`].

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientCacheConfig, RoleClient, ServiceExt as _};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ServerConfig;
use super::arrival::Stamped;
use super::http::{Opened, Upstream};
use super::relay::{Client, InFlight, Relay};
use crate::tools::upstream::{Backoff, Group, Launch, Live, StderrLog};

/// A federated upstream, as configured.
pub(super) struct Server {
    pub(super) config: ServerConfig,
    /// How logs and errors name it.
    pub(super) target: String,
    /// `command`: its processes running now, every session's.
    live: Arc<AtomicUsize>,
    /// `command`: the waits between failed starts, and the last failure's wait.
    starts: Mutex<Starts>,
}

#[derive(Default)]
struct Starts {
    backoff: Backoff,
    /// Why the last start failed, and when the next may be made.
    down: Option<(String, Instant)>,
}

impl Server {
    pub(super) fn new(config: &ServerConfig) -> Self {
        Self {
            target: config.target(),
            config: config.clone(),
            live: Arc::default(),
            starts: Mutex::default(),
        }
    }

    pub(super) fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs.max(1))
    }

    /// `command`: room for one more process, reserved until the returned value is dropped;
    /// an error when the last start failed less than its backoff ago, or when
    /// `max_processes` run already. `None` for `url`.
    ///
    /// # Errors
    /// Why no process may be started now, in words.
    fn reserve(&self) -> Result<Option<Live>, String> {
        if self.config.command.is_none() {
            return Ok(None);
        }
        if let Some((reason, at)) = &self.starts().down
            && *at > Instant::now()
        {
            return Err(format!(
                "upstream MCP server {} could not be started ({reason}); the gateway tries again in {:.1} s",
                self.target,
                at.saturating_duration_since(Instant::now()).as_secs_f64()
            ));
        }
        let max = self.config.max_processes();
        Live::reserve(&self.live, max).map(Some).ok_or_else(|| {
            format!(
                "upstream MCP server {} already runs {max} processes, one per MCP session (max_processes in its [[servers]] entry), and cannot start one for this session; retry when another session ends or has been idle for session_idle_secs",
                self.target
            )
        })
    }

    /// Counts a start's outcome (`command`): a failure sets the next wait.
    fn started(&self, outcome: Result<(), &str>) {
        if self.config.command.is_none() {
            return;
        }
        let mut starts = self.starts();
        match outcome {
            Ok(()) => {
                starts.backoff.succeeded();
                starts.down = None;
            }
            Err(reason) => {
                let wait = starts.backoff.failed(Duration::ZERO);
                tracing::warn!(upstream = %self.target, %reason, retry_in_ms = wait.as_millis() as u64, "Federated MCP server could not be started.");
                starts.down = Some((reason.to_owned(), Instant::now() + wait));
            }
        }
    }

    fn starts(&self) -> std::sync::MutexGuard<'_, Starts> {
        self.starts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An open connection.
pub(super) struct Conn {
    pub(super) service: RunningService<RoleClient, Relay>,
    pub(super) in_flight: Arc<InFlight>,
    /// Cancels the rmcp service.
    ct: CancellationToken,
    /// A stdio upstream's process: its stderr reader, its process group.
    _process: Option<Process>,
}

impl Conn {
    /// Whether the connection can still carry requests.
    pub(super) fn is_open(&self) -> bool {
        !self.service.is_transport_closed() && !self.ct.is_cancelled()
    }

    /// Ends the connection now (a stdio upstream's process is killed with its group when
    /// the connection is dropped).
    pub(super) fn close(&self) {
        self.ct.cancel();
    }
}

/// What a stdio connection owns besides the rmcp service.
struct Process {
    stderr: Option<tokio::task::JoinHandle<()>>,
    _group: Group,
    /// Counted among the server's processes while the connection lives.
    _live: Option<Live>,
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(task) = &self.stderr {
            task.abort();
        }
    }
}

/// Opens a connection to `server` for the session of `client` (its capabilities are
/// declared upstream), a child of `cancel`; within the server's timeout. A `command`
/// upstream's start is refused within its backoff and beyond its `max_processes`, and its
/// outcome counted.
///
/// # Errors
/// Why the upstream cannot be reached, in words, naming it.
pub(super) async fn open(
    server: &Server,
    client: Arc<Client>,
    cancel: &CancellationToken,
) -> Result<Conn, String> {
    let live = server.reserve()?;
    let opened = connect(server, client, cancel, live).await;
    server.started(opened.as_ref().map(drop).map_err(String::as_str));
    opened.map_err(|reason| {
        format!(
            "upstream MCP server {} is not reachable: {reason}",
            server.target
        )
    })
}

/// How long a new connection waits for its upstream to answer the standalone stream's `GET`.
const STANDALONE_STREAM_WAIT: Duration = Duration::from_secs(1);

async fn connect(
    server: &Server,
    client: Arc<Client>,
    cancel: &CancellationToken,
    live: Option<Live>,
) -> Result<Conn, String> {
    let relay = Relay::new(client, server.target.clone());
    let in_flight = relay.in_flight.clone();
    let ct = cancel.child_token();
    let service_ct = ct.clone();
    let upstream = server.config.as_upstream();
    let work = async {
        if let Some(launch) = Launch::of(&upstream) {
            let (transport, stderr, group) = launch
                .spawn()
                .map_err(|e| format!("cannot start {:?}: {e}", upstream.command))?;
            let pid = transport.id();
            let stderr = stderr.map(|s| {
                let mut log = StderrLog::new(s, server.target.clone(), pid);
                tokio::spawn(async move {
                    while !log.is_done() {
                        log.step().await;
                    }
                })
            });
            let process = Process {
                stderr,
                _group: group,
                _live: live,
            };
            let service = relay
                .serve_with_ct(Stamped::new(transport, in_flight.turns.clone()), ct)
                .await
                .map_err(|e| format!("it exited or failed during the MCP handshake: {e}"))?;
            Ok::<_, String>((service, Some(process)))
        } else {
            let url = upstream.url.clone().unwrap_or_default();
            let http = crate::net::shared_client()?;
            let headers = upstream.header_map()?;
            let opened = Arc::new(Opened::default());
            let transport = StreamableHttpClientTransport::with_client(
                Upstream::new(http, opened.clone()),
                StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
            );
            let service = relay
                .serve_with_ct(Stamped::new(transport, in_flight.turns.clone()), ct)
                .await
                .map_err(|e| format!("the MCP handshake failed: {e}"))?;
            // What the upstream sends on its standalone stream before that stream is open is
            // lost (see `http`): the first call waits for it.
            opened.wait(STANDALONE_STREAM_WAIT).await;
            Ok((service, None))
        }
    };
    let (service, process) = tokio::time::timeout(server.timeout(), work)
        .await
        .map_err(|_| {
            format!(
                "it did not complete the MCP handshake within {} s",
                server.timeout().as_secs()
            )
        })??;
    // Lists are read fresh: rmcp's cache would answer a list from memory after a `ttlMs`.
    service
        .peer()
        .set_response_cache_config(ClientCacheConfig::disabled())
        .await;
    tracing::debug!(upstream = %server.target, "Connected to the federated MCP server.");
    Ok(Conn {
        service,
        in_flight,
        ct: service_ct,
        _process: process,
    })
}
