//! One session's connection to one federated upstream: opened on first use (Streamable
//! HTTP, or a process of its own over stdio), opened again after it broke.

use std::sync::Arc;
use std::time::Duration;

use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientCacheConfig, RoleClient, ServiceExt as _};
use tokio_util::sync::CancellationToken;

use super::ServerConfig;
use super::relay::{Client, InFlight, Relay};
use crate::tools::upstream::{Group, Launch, StderrLog};

/// A federated upstream, as configured.
pub(super) struct Server {
    pub(super) config: ServerConfig,
    /// How logs and errors name it.
    pub(super) target: String,
}

impl Server {
    pub(super) fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs.max(1))
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
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(task) = &self.stderr {
            task.abort();
        }
    }
}

/// Opens a connection to `server` for the session of `client` (its capabilities are
/// declared upstream), a child of `cancel`; within the server's timeout.
///
/// # Errors
/// Why the upstream cannot be reached, in words.
pub(super) async fn open(
    server: &Server,
    client: Arc<Client>,
    cancel: &CancellationToken,
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
            };
            let service = relay
                .serve_with_ct(transport, ct)
                .await
                .map_err(|e| format!("it exited or failed during the MCP handshake: {e}"))?;
            Ok::<_, String>((service, Some(process)))
        } else {
            let url = upstream.url.clone().unwrap_or_default();
            if rustls::crypto::CryptoProvider::get_default().is_none() {
                return Err("no TLS crypto provider is installed".to_owned());
            }
            let headers = upstream.header_map()?;
            let transport = StreamableHttpClientTransport::with_client(
                reqwest::Client::default(),
                StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
            );
            let service = relay
                .serve_with_ct(transport, ct)
                .await
                .map_err(|e| format!("the MCP handshake failed: {e}"))?;
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
