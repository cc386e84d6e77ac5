//! Cluster mode with real processes: Debian's `redis-server` on a Unix socket, several gateway
//! replicas (the built binary) sharing it, and Debian's nginx in front of them with the compose
//! file's own balancer config.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::binary::{Spawned, serve_command, spawn_binary};
use crate::support::helpers::{call_result, fixture, http, start_call};

/// How long a test waits for something that should happen (a replica's entry expiring,
/// readiness changing) before it fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// A `redis-server` of its own on a Unix socket in a temp dir (`--port 0`: no TCP at all), no
/// persistence. A socket path is never picked, released and raced for as a free port is.
pub(crate) struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self { child: None, dir };
        server.start_again();
        server
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// Starts (again) on the same socket, and waits until it answers PING.
    fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the cluster tests need Debian's redis-server \
                     package (`apt-get install redis-server`; .ci/run installs it)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not answer PING",
                self.socket().display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut conn) = std::os::unix::net::UnixStream::connect(self.socket()) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        conn.write_all(b"PING\r\n").is_ok()
            && conn.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// The answer to an integer command (`LLEN key`), as redis-cli would print it.
    fn integer(&self, command: &str) -> i64 {
        let mut conn = std::os::unix::net::UnixStream::connect(self.socket()).unwrap();
        conn.set_read_timeout(Some(DEADLINE)).unwrap();
        conn.write_all(format!("{command}\r\n").as_bytes()).unwrap();
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            conn.read_exact(&mut byte).unwrap();
            reply.push(byte[0]);
        }
        let reply = String::from_utf8_lossy(&reply);
        reply
            .trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{command}: {reply}"))
    }

    /// Kills the server (as a crash or a network cut would look to the replicas).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One gateway process, a member of the cluster.
pub(crate) struct Replica {
    gateway: Spawned,
    addr: String,
}

impl Replica {
    /// Starts `switchboard serve` with `config` on a free port and waits until it listens.
    pub(crate) fn start(config: &Path, data: &Path) -> Self {
        Self::start_with(config, data, &fixture("agents/valid"), &[])
    }

    /// With the agents of `agents` and `env` added to the environment.
    pub(crate) fn start_with(
        config: &Path,
        data: &Path,
        agents: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = serve_agents(config, data, agents);
        command.envs(env.iter().copied());
        let gateway = spawn_binary(&mut command);
        let addr = gateway.addr.clone();
        Self { gateway, addr }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GETs `path` from this replica: its status and JSON body.
    pub(crate) async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = http().get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn cluster(&self) -> (u16, Value) {
        self.get_json("/admin/cluster").await
    }

    async fn node_ids(&self) -> Vec<String> {
        let (status, body) = self.cluster().await;
        assert_eq!(status, 200, "{body}");
        body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn ready(&self) -> (u16, Value) {
        self.get_json("/readyz").await
    }

    fn kill9(&mut self) {
        let _ = self.gateway.child.kill();
        let _ = self.gateway.child.wait();
    }

    fn terminate(&mut self) {
        let pid = self.gateway.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let _ = self.gateway.child.wait();
    }
}

fn serve(config: &Path, data: &Path) -> Command {
    serve_agents(config, data, &fixture("agents/valid"))
}

fn serve_agents(config: &Path, data: &Path, agents: &Path) -> Command {
    let mut command = serve_command();
    command
        .arg("--config")
        .arg(config)
        .arg("--agents")
        .arg(agents)
        .arg("--data")
        .arg(data);
    command
}

/// A `switchboard.toml` with `[cluster]` on `redis_url` (short heartbeat and TTL, so that
/// the tests see a dead replica leave quickly), written into `dir`.
pub(crate) fn cluster_config(dir: &Path, redis_url: &str, extra: &str) -> PathBuf {
    let path = dir.join("switchboard.toml");
    std::fs::write(
        &path,
        format!(
            "[cluster]\nredis_url = \"{redis_url}\"\nheartbeat_ms = 200\nnode_ttl_ms = 1000\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// Polls `check` until it holds or [`DEADLINE`] passes; returns how long it took.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn replicas_see_each_other_and_a_dead_one_leaves_within_its_ttl() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = cluster_config(tmp.path(), &redis.url(), "");
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::start(&config, &tmp.path().join(format!("data{i}"))))
        .collect();

    // Every replica lists all three, and marks itself.
    for replica in &replicas {
        let (status, body) = replica.cluster().await;
        assert_eq!(status, 200, "{body}");
        let nodes = body["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3, "{body}");
        let this: Vec<_> = nodes.iter().filter(|n| n["this"] == true).collect();
        assert_eq!(this.len(), 1, "{body}");
        assert_eq!(this[0]["id"], body["node"]);
        assert_eq!(this[0]["url"], format!("http://{}", replica.addr));
        assert_eq!(body["redis"], redis.url());
        assert_eq!(replica.ready().await.0, 200);
    }
    let ids = replicas[0].node_ids().await;

    // kill -9: no goodbye; its registration expires within the TTL (1 s) plus a heartbeat.
    let killed = replicas[2].node_ids().await;
    let killed_id = replicas[2].cluster().await.1["node"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(killed.contains(&killed_id));
    replicas[2].kill9();
    let took = eventually("the killed replica leaves the list", || async {
        !replicas[0].node_ids().await.contains(&killed_id)
    })
    .await;
    assert!(took < Duration::from_millis(2500), "took {took:?}");

    // SIGTERM: the replica deregisters on its way out.
    let stopped_id = replicas[1].cluster().await.1["node"]
        .as_str()
        .unwrap()
        .to_owned();
    replicas[1].terminate();
    let remaining = replicas[0].node_ids().await;
    assert!(!remaining.contains(&stopped_id), "{remaining:?}");
    assert_eq!(remaining.len(), 1, "{ids:?} -> {remaining:?}");
}

#[tokio::test]
async fn redis_unreachable_at_start_is_a_clear_error_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    // A socket nobody listens on: bound, then its listener closed (connect: refused). Ours
    // alone, unlike a "free" TCP port that another process may take meanwhile.
    let socket = tmp.path().join("gone.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let url = format!("unix://{}", socket.display());
    let config = cluster_config(tmp.path(), &url, "");
    let out = serve(&config, &tmp.path().join("data")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "switchboard.toml: cluster.redis_url: cannot reach Redis at {url}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(!stderr.contains("Switchboard listening."), "{stderr}");
}

#[tokio::test]
async fn a_node_id_held_by_a_live_replica_is_refused() {
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = cluster_config(tmp.path(), &redis.url(), "node_id = \"gw-1\"\n");
    let first = Replica::start(&config, &tmp.path().join("data1"));
    let out = serve(&config, &tmp.path().join("data2")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another live replica is registered as node \"gw-1\""),
        "{stderr}"
    );
    assert_eq!(first.node_ids().await, ["gw-1"]);
}

#[tokio::test]
async fn losing_redis_fails_readiness_with_clear_503s_and_the_replica_recovers() {
    let mut redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = cluster_config(tmp.path(), &redis.url(), "");
    let replica = Replica::start(&config, &tmp.path().join("data"));
    assert_eq!(replica.ready().await.0, 200);
    let mcp = replica.url("/agents/servicenow/mcp");
    let session = crate::support::helpers::streamable_initialize(&http(), &mcp).await;
    let mut sse =
        crate::support::helpers::SseClient::connect(&replica.url("/agents/servicenow/sse")).await;
    sse.initialize().await;

    redis.stop();
    eventually("readiness fails without Redis", || async {
        replica.ready().await.0 == 503
    })
    .await;
    assert_eq!(replica.ready().await.1["status"], "redis_unreachable");
    let response = http()
        .get(replica.url("/admin/cluster"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(
        response.headers().get("retry-after").is_some(),
        "{:?}",
        response.headers()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "redis_unreachable");
    assert!(
        body["message"].as_str().unwrap().contains(&redis.url()),
        "{body}"
    );
    // Sessions already here keep working, on both transports.
    assert_eq!(streamable_status(&mcp, &session).await, 200);
    let answer = sse
        .call_tool(
            5,
            "get_incident",
            serde_json::json!({"number": "INC0012346"}),
        )
        .await;
    assert_eq!(
        crate::support::helpers::tool_json(&answer)["number"],
        "INC0012346"
    );
    // A new session needs the shared state: a clear 503 to retry.
    let opening = crate::support::helpers::streamable_open(&http(), &mcp).await;
    assert_eq!(opening.status(), 503);
    assert_eq!(opening.headers()["retry-after"], "1");
    let body: Value = opening.json().await.unwrap();
    assert_eq!(body["code"], "cluster_unavailable", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach the cluster's Redis"),
        "{body}"
    );
    // The process itself is alive, and serves what needs no shared state.
    assert_eq!(
        http()
            .get(replica.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    redis.start_again();
    eventually("readiness recovers with Redis", || async {
        replica.ready().await.0 == 200
    })
    .await;
    // Its registration is back (Redis lost everything: it started empty), and sessions open.
    assert_eq!(replica.node_ids().await.len(), 1);
    crate::support::helpers::streamable_initialize(&http(), &mcp).await;
}

/// Redis, `n` replicas on it and nginx in front of them (the compose balancer config).
struct Cluster {
    redis: RedisServer,
    _tmp: tempfile::TempDir,
    replicas: Vec<Replica>,
    /// Debian's nginx with the compose file's balancer config, in front of the replicas.
    proxy: crate::support::nginx::Nginx,
}

impl Cluster {
    async fn start(n: usize) -> Self {
        Self::start_with(n, "").await
    }

    /// With `extra` appended to every replica's `switchboard.toml`.
    async fn start_with(n: usize, extra: &str) -> Self {
        Self::start_full(n, extra, &fixture("agents/valid"), &[]).await
    }

    /// With `extra` in every replica's `switchboard.toml`, the agents of `agents` and
    /// `env` in every replica's environment.
    async fn start_full(n: usize, extra: &str, agents: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_on(n, extra, agents, env, false).await
    }

    /// `shared_store`: every replica on the same data directory (one SQLite file).
    async fn start_on(
        n: usize,
        extra: &str,
        agents: &Path,
        env: &[(&str, &str)],
        shared_store: bool,
    ) -> Self {
        let redis = RedisServer::start();
        let tmp = tempfile::tempdir().unwrap();
        let config = cluster_config(tmp.path(), &redis.url(), extra);
        let replicas: Vec<Replica> = (0..n)
            .map(|i| {
                let data = if shared_store {
                    tmp.path().join("data")
                } else {
                    tmp.path().join(format!("data{i}"))
                };
                Replica::start_with(&config, &data, agents, env)
            })
            .collect();
        let backends: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
        let proxy = crate::support::nginx::Nginx::start(&backends);
        Self {
            redis,
            _tmp: tmp,
            replicas,
            proxy,
        }
    }

    /// The session ids each replica holds, by replica.
    async fn sessions_held(&self) -> Vec<Vec<String>> {
        let mut held = Vec::new();
        for replica in &self.replicas {
            let (_, body) = replica.get_json("/admin/sessions").await;
            held.push(
                body["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["id"].as_str().unwrap().to_owned())
                    .collect(),
            );
        }
        held
    }
}

#[tokio::test]
async fn a_streamable_session_is_served_by_every_replica_without_a_new_handshake() {
    use rmcp::model::CallToolRequestParams;
    let cluster = Cluster::start(3).await;
    let client =
        crate::support::helpers::rmcp_client(&cluster.proxy.url("/agents/servicenow/mcp")).await;
    for _ in 0..2 {
        let tools = client.list_all_tools().await.unwrap();
        assert!(
            tools.iter().any(|t| t.name == "search_incident"),
            "{tools:?}"
        );
    }
    for _ in 0..3 {
        let result = client
            .call_tool(
                CallToolRequestParams::new("get_incident").with_arguments(
                    serde_json::json!({"number": "INC0012346"})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            )
            .await
            .unwrap();
        assert_ne!(result.is_error, Some(true), "{result:?}");
        assert!(format!("{result:?}").contains("VPN"), "{result:?}");
    }
    // Requests went to every replica in turn, and every replica now holds the session.
    every_replica_served(&cluster.proxy, 3).await;
    let held = cluster.sessions_held().await;
    let id = held[0]
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("{held:?}"));
    for (i, ids) in held.iter().enumerate() {
        assert_eq!(ids, std::slice::from_ref(&id), "replica {i}: {held:?}");
    }
    // Two replicas took it over from the one that opened it; every replica reaches Redis.
    let mut taken_over = 0.0;
    for replica in &cluster.replicas {
        let metrics = http()
            .get(replica.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("switchboard_cluster_redis_up 1"),
            "{metrics}"
        );
        taken_over += metric(
            &metrics,
            "switchboard_cluster_events_total{event=\"session_taken_over\"}",
        );
    }
    assert_eq!(taken_over, 2.0);

    // The client's DELETE (on whichever replica) ends it everywhere.
    client.cancel().await.unwrap();
    for replica in &cluster.replicas {
        eventually("the ended session is gone from every replica", || async {
            streamable_status(&replica.url("/agents/servicenow/mcp"), &id).await == 404
        })
        .await;
    }
    assert_eq!(cluster.sessions_held().await, vec![Vec::<String>::new(); 3]);
}

/// Waits until nginx's log shows requests served by each of the `n` replicas.
async fn every_replica_served(proxy: &crate::support::nginx::Nginx, n: usize) {
    eventually("requests reach every replica in turn", || async {
        let served = proxy.served_by();
        (0..n).all(|i| served.contains(&i))
    })
    .await;
}

/// The status a `tools/list` in session `id` gets at `url`.
async fn streamable_status(url: &str, id: &str) -> u16 {
    crate::support::helpers::streamable_post(
        &http(),
        url,
        Some(id),
        serde_json::json!({"jsonrpc":"2.0","id":9,"method":"tools/list"}).to_string(),
    )
    .await
    .status()
    .as_u16()
}

#[tokio::test]
async fn an_admin_ends_a_session_from_another_replica() {
    let cluster = Cluster::start(2).await;
    let [a, b] = &cluster.replicas[..] else {
        unreachable!()
    };
    let mcp_a = a.url("/agents/servicenow/mcp");
    let id = crate::support::helpers::streamable_initialize(&http(), &mcp_a).await;
    // B serves it too (takes it over from the shared record).
    assert_eq!(
        streamable_status(&b.url("/agents/servicenow/mcp"), &id).await,
        200
    );
    let response = http()
        .delete(b.url(&format!("/admin/sessions/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for url in [&mcp_a, &b.url("/agents/servicenow/mcp")] {
        eventually("the session ended by an admin is gone", || async {
            streamable_status(url, &id).await == 404
        })
        .await;
    }
    let again = http()
        .delete(a.url(&format!("/admin/sessions/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    // A legacy session lives on its stream's replica; an admin on the other ends it too.
    let mut sse =
        crate::support::helpers::SseClient::connect(&a.url("/agents/servicenow/sse")).await;
    sse.initialize().await;
    let response = http()
        .delete(b.url(&format!("/admin/sessions/{}", sse.session_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    sse.closed().await;
    let gone = http()
        .get(b.url(&format!("/admin/sessions/{}", sse.session_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
}

const TOKEN: &str = "cluster-test-token";
const ONE_CLIENT: &str =
    "\n[[clients]]\nname = \"desk\"\ntoken = \"cluster-test-token\"\nagents = [\"*\"]\n";

#[tokio::test]
async fn legacy_sse_posts_reach_their_stream_from_any_replica() {
    use crate::support::helpers::{SseClient, tool_json};
    use serde_json::json;
    let mut cluster = Cluster::start_with(3, ONE_CLIENT).await;
    let mut c =
        SseClient::connect_with(&cluster.proxy.url("/agents/servicenow/sse"), Some(TOKEN)).await;
    c.initialize().await;
    for id in 1..=4 {
        let answer = c
            .call_tool(id, "get_incident", json!({"number": "INC0012346"}))
            .await;
        assert_eq!(tool_json(&answer)["number"], "INC0012346", "{answer}");
    }
    every_replica_served(&cluster.proxy, 3).await;
    // The token is checked wherever the POST lands, forwarded or not.
    for _ in 0..3 {
        let refused = c
            .post_as(
                Some("wrong"),
                json!({"jsonrpc":"2.0","id":9,"method":"tools/list"}).to_string(),
            )
            .await;
        assert_eq!(refused.status(), 401);
    }

    // The session id names the replica holding the stream.
    let owner_node = c.session_id.split('~').next().unwrap().to_owned();
    let mut owner = None;
    for (i, replica) in cluster.replicas.iter().enumerate() {
        if replica.cluster().await.1["node"] == owner_node.as_str() {
            owner = Some(i);
        }
    }
    let owner = owner.unwrap_or_else(|| panic!("no replica is {owner_node}"));
    let other = (owner + 1) % 3;
    let other_url = cluster.replicas[other].url(&format!(
        "/agents/servicenow/messages?session_id={}",
        c.session_id
    ));
    let post = |url: String| async move {
        http()
            .post(url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(json!({"jsonrpc":"2.0","id":20,"method":"tools/list"}).to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post(other_url.clone()).await, 202);
    assert_eq!(c.next_message().await["id"], 20);

    // Another client's stream on another replica is not touched by the owner's death.
    let mut bystander = SseClient::connect_with(
        &cluster.replicas[other].url("/agents/servicenow/sse"),
        Some(TOKEN),
    )
    .await;
    bystander.initialize().await;
    cluster.replicas[owner].kill9();
    c.closed().await;
    // Its session is gone: 503 while its replica is still listed, 404 once it is not.
    eventually("a dead replica's session gets 404", || {
        let url = other_url.clone();
        async move { post(url).await == 404 }
    })
    .await;
    let answer = bystander
        .call_tool(30, "get_incident", json!({"number": "INC0012346"}))
        .await;
    assert_eq!(tool_json(&answer)["number"], "INC0012346");
    // The client whose stream ended reconnects (through the balancer, to a live replica).
    let mut again =
        SseClient::connect_with(&cluster.proxy.url("/agents/servicenow/sse"), Some(TOKEN)).await;
    again.initialize().await;
    let answer = again
        .call_tool(40, "get_incident", json!({"number": "INC0012346"}))
        .await;
    assert_eq!(tool_json(&answer)["number"], "INC0012346");
}

#[tokio::test]
async fn an_oversized_legacy_post_gets_its_413_on_the_replica_that_would_forward_it() {
    use crate::support::helpers::SseClient;
    // Every try counts against the client's requests on the replica holding the stream.
    let cluster = Cluster::start_with(2, &format!("{ONE_CLIENT}[limits]\nburst = 10000\n")).await;
    let mut c = SseClient::connect_with(
        &cluster.replicas[0].url("/agents/servicenow/sse"),
        Some(TOKEN),
    )
    .await;
    c.initialize().await;
    // Replica 1 does not hold the stream: it answers 413 itself instead of forwarding.
    let path = format!("/agents/servicenow/messages?session_id={}", c.session_id);
    let bearer = format!("Bearer {TOKEN}");
    for replica in &cluster.replicas {
        crate::early_answers::assert_every_try_answered(
            replica.addr.parse().unwrap(),
            &path,
            &[("authorization", &bearer)],
            413,
            "body_too_large",
        )
        .await;
    }
    // And it forwards an ordinary POST of the same session to its stream.
    let forwarded = http()
        .post(cluster.replicas[1].url(&path))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":20,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 202);
    assert_eq!(c.next_message().await["id"], 20);
}

/// A client whose requests carry `TOKEN`.
fn client_with_token() -> reqwest::Client {
    switchboard::net::install_crypto_provider();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_clients_request_quota_holds_across_replicas() {
    // 6 requests at once, then one every 10 s: the test runs well inside one refill.
    let limits = "\n[limits]\nrequests_per_minute = 6\nburst = 6\n";
    let cluster = Cluster::start_with(3, &format!("{limits}{ONE_CLIENT}")).await;
    let h = client_with_token();
    let url = cluster.proxy.url("/agents/servicenow/mcp");
    // initialize + notifications/initialized: 2 of the 6.
    let id = crate::support::helpers::streamable_initialize(&h, &url).await;
    let mut statuses = Vec::new();
    for i in 0..9 {
        let response = crate::support::helpers::streamable_post(
            &h,
            &url,
            Some(&id),
            serde_json::json!({"jsonrpc":"2.0","id":i,"method":"tools/list"}).to_string(),
        )
        .await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            let retry: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=10).contains(&retry), "Retry-After {retry}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                body["error"]["data"]["limit"], "requests_per_minute",
                "{body}"
            );
        }
    }
    // Each replica alone would have let all 9 through (6 each); together they let 4.
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429, 429, 429, 429, 429],
        "served by {:?}",
        cluster.proxy.served_by()
    );
}

#[tokio::test]
async fn a_clients_max_sessions_holds_across_replicas() {
    let limits = "\n[limits]\nmax_sessions = 2\n";
    let cluster = Cluster::start_with(3, &format!("{limits}{ONE_CLIENT}")).await;
    let h = client_with_token();
    let mcp = |i: usize| cluster.replicas[i].url("/agents/servicenow/mcp");
    let initialize = |url: String| {
        let h = h.clone();
        async move { crate::support::helpers::streamable_open(&h, &url).await }
    };
    let first = initialize(mcp(0)).await;
    assert_eq!(first.status(), 200);
    let first_id = first.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(initialize(mcp(1)).await.status(), 200);
    // Two sessions on two other replicas: the third replica refuses a third.
    let refused = initialize(mcp(2)).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["data"]["limit"], "max_sessions", "{body}");

    // One ends (DELETE on yet another replica): a new one may open anywhere.
    let ended = h
        .delete(mcp(2))
        .header("mcp-session-id", &first_id)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert!(ended.status().is_success(), "{}", ended.status());
    eventually("a slot frees up once a session ended", || async {
        let response = initialize(mcp(2)).await;
        response.status() == 200
    })
    .await;
}

#[tokio::test]
async fn any_replica_lists_every_replicas_sessions_with_its_node() {
    use crate::support::helpers::SseClient;
    let cluster = Cluster::start(3).await;
    let node = |i: usize| {
        let replica = &cluster.replicas[i];
        async move {
            replica.cluster().await.1["node"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (node0, node2) = (node(0).await, node(2).await);
    let mut sse = SseClient::connect(&cluster.replicas[0].url("/agents/servicenow/sse")).await;
    sse.initialize().await;
    let streamable = crate::support::helpers::streamable_initialize(
        &http(),
        &cluster.replicas[1].url("/agents/servicenow/mcp"),
    )
    .await;
    // Used last on replica 2 (which takes it over).
    assert_eq!(
        streamable_status(
            &cluster.replicas[2].url("/agents/servicenow/mcp"),
            &streamable
        )
        .await,
        200
    );

    for replica in &cluster.replicas {
        let (_, body) = replica.get_json("/admin/sessions").await;
        assert_eq!(body["total"], 2, "{body}");
        assert_eq!(body["unreachable_nodes"], serde_json::json!([]), "{body}");
        let sessions = body["sessions"].as_array().unwrap();
        let by_id = |id: &str| sessions.iter().find(|s| s["id"] == id).cloned().unwrap();
        assert_eq!(by_id(&sse.session_id)["node"], node0.as_str(), "{body}");
        assert_eq!(by_id(&sse.session_id)["transport"], "sse");
        let shared = by_id(&streamable);
        assert_eq!(shared["node"], node2.as_str(), "{body}");
        // The replica that took it over knows the client from its recorded handshake.
        assert_eq!(shared["mcp_client_name"], "raw", "{body}");
        assert_eq!(shared["client_ip"], "127.0.0.1", "{body}");
        // initialize + initialized on replica 1, tools/list on replica 2.
        assert_eq!(shared["requests"], 2, "{body}");
    }
    // One session, from any replica; and each replica's own with scope=local.
    let (_, one) = cluster.replicas[1]
        .get_json(&format!("/admin/sessions/{}", sse.session_id))
        .await;
    assert_eq!(one["node"], node0.as_str(), "{one}");
    let (_, local) = cluster.replicas[0]
        .get_json("/admin/sessions?scope=local")
        .await;
    assert_eq!(local["total"], 1, "{local}");
    assert_eq!(local["sessions"][0]["id"], sse.session_id.as_str());
}

#[tokio::test]
async fn an_agent_run_reports_progress_through_the_cluster_and_survives_a_dead_replica() {
    use crate::support::fake_llm::{FakeLlm, Step};
    use rmcp::ServiceExt;

    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![(
            "search_incident",
            serde_json::json!({"query": "VPN"}),
        )]),
        Step::Text("Found INC0012346."),
        Step::Text("Still here."),
    ])
    .await;
    let mut cluster = Cluster::start_full(
        3,
        "",
        &fixture("agents/runtime"),
        &[("FAKE_LLM_URL", &fake.url)],
    )
    .await;
    switchboard::net::install_crypto_provider();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(
        cluster.proxy.url("/agents/servicenow/mcp"),
    );
    let client = crate::support::helpers::Recorder::default()
        .serve(transport)
        .await
        .unwrap();
    let ask = |task: &'static str| {
        let client = &client;
        async move {
            let handle = start_call(client, "servicenow", serde_json::json!({"task": task})).await;
            let result = call_result(handle).await;
            format!("{:?}", result.content)
        }
    };
    let answer = ask("find the VPN incident").await;
    assert!(answer.contains("Found INC0012346."), "{answer}");
    eventually("the run's progress arrives", || async {
        client.service().progress.lock().unwrap().len() >= 4
    })
    .await;
    let steps: Vec<String> = client
        .service()
        .progress
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.message.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        steps,
        [
            "servicenow: model turn 1",
            "servicenow: calling search_incident",
            "servicenow: model turn 2",
            "servicenow: done"
        ]
    );

    // kill -9 a replica: the session goes on on the others, without a new handshake.
    cluster.replicas[0].kill9();
    for _ in 0..3 {
        let tools = client.list_all_tools().await.unwrap();
        assert!(tools.iter().any(|t| t.name == "servicenow"));
    }
    let answer = ask("still there?").await;
    assert!(answer.contains("Still here."), "{answer}");
    assert_eq!(fake.received().len(), 3, "the fake saw 3 model turns");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn replicas_on_one_host_share_the_embedded_store_without_losing_a_write() {
    use rmcp::model::CallToolRequestParams;
    // Open access: one IP's limits, shared by the cluster; high enough for this test.
    let limits = "\n[limits]\nrequests_per_minute = 100000\nburst = 10000\n";
    let cluster = Cluster::start_on(3, limits, &fixture("agents/valid"), &[], true).await;
    const EACH: usize = 15;
    // Every replica creates EACH incidents, all of them at once.
    let mut clients = Vec::new();
    for replica in &cluster.replicas {
        clients.push(
            crate::support::helpers::rmcp_client(&replica.url("/agents/servicenow/mcp")).await,
        );
    }
    let creates = clients.iter().enumerate().flat_map(|(r, client)| {
        (0..EACH).map(move |i| async move {
            let result = client
                .call_tool(
                    CallToolRequestParams::new("create_incident").with_arguments(
                        serde_json::json!({"short_description": format!("shared store r{r} #{i}")})
                            .as_object()
                            .unwrap()
                            .clone(),
                    ),
                )
                .await
                .unwrap();
            assert_ne!(result.is_error, Some(true), "{result:?}");
            result.structured_content.unwrap()["number"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    });
    let numbers: Vec<String> = futures::future::join_all(creates).await;
    let unique: std::collections::BTreeSet<&String> = numbers.iter().collect();
    assert_eq!(unique.len(), 3 * EACH, "duplicate numbers: {numbers:?}");
    // Each replica reads every one of them back.
    for client in &clients {
        for number in &numbers {
            let got = client
                .call_tool(
                    CallToolRequestParams::new("get_incident").with_arguments(
                        serde_json::json!({"number": number})
                            .as_object()
                            .unwrap()
                            .clone(),
                    ),
                )
                .await
                .unwrap();
            assert_ne!(got.is_error, Some(true), "{number}: {got:?}");
        }
    }
    for client in clients {
        client.cancel().await.unwrap();
    }
}

#[test]
fn check_warns_that_the_embedded_store_belongs_to_one_host() {
    let tmp = tempfile::tempdir().unwrap();
    // `check` validates only: it does not need Redis to be there.
    let config = cluster_config(tmp.path(), "redis://127.0.0.1:1", "");
    let out = crate::support::binary::switchboard()
        .args(["check", "--config"])
        .arg(&config)
        .arg("--agents")
        .arg(fixture("agents/valid"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "servicenow.toml: cluster mode: agent \"servicenow\" uses the embedded incident store"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("store = \"table_api\""), "{stderr}");
    // Without [cluster], no such warning.
    let single = tmp.path().join("single.toml");
    std::fs::write(&single, "").unwrap();
    let out = crate::support::binary::switchboard()
        .args(["check", "--config"])
        .arg(&single)
        .arg("--agents")
        .arg(fixture("agents/valid"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).is_empty());
}

/// The `id:` of each event of an SSE body, in order.
fn event_ids(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|id| id.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn a_streamable_client_resumes_its_stream_on_another_replica() {
    let cluster = Cluster::start(2).await;
    let (a, b) = (&cluster.replicas[0], &cluster.replicas[1]);
    let h = http();
    // A 2025-11-25 client: its streams start with a priming event (older clients get none).
    let id = crate::support::helpers::streamable_initialize_at(
        &h,
        &a.url("/agents/servicenow/mcp"),
        "2025-11-25",
    )
    .await;
    let body = crate::support::helpers::streamable_post(
        &h,
        &a.url("/agents/servicenow/mcp"),
        Some(&id),
        serde_json::json!({"jsonrpc":"2.0","id":7,"method":"tools/list"}).to_string(),
    )
    .await
    .text()
    .await
    .unwrap();
    let ids = event_ids(&body);
    assert!(ids.len() >= 2, "a priming event, then the answer: {body}");
    assert!(body.contains("search_incident"), "{body}");

    // The client lost the answer after the priming event; it resumes on the other replica.
    let resumed = tokio::time::timeout(
        Duration::from_secs(10),
        h.get(b.url("/agents/servicenow/mcp"))
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &id)
            .header("mcp-protocol-version", "2025-06-18")
            .header("last-event-id", &ids[0])
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resumed.status(), 200);
    let mut stream = resumed.bytes_stream();
    let mut replayed = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !replayed.contains("search_incident") {
        use futures::StreamExt;
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => replayed.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("no replay of the answer: {other:?}; got {replayed:?}"),
        }
    }
    assert!(replayed.contains("\"id\":7"), "{replayed}");
    assert_eq!(event_ids(&replayed)[0], ids[1], "{replayed}");

    // The priming event was never written to Redis (it has nothing to replay): the stream's
    // list holds the answer alone, and resuming after the answer replays nothing.
    let (stream, priming) = ids[0].rsplit_once('/').unwrap();
    assert_eq!(priming, "0", "{ids:?}");
    assert_eq!(ids[1], format!("{stream}/1"), "{ids:?}");
    assert_eq!(
        cluster
            .redis
            .integer(&format!("LLEN switchboard:events:{stream}")),
        1
    );
    let after_answer = h
        .get(a.url("/agents/servicenow/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &id)
        .header("mcp-protocol-version", "2025-06-18")
        .header("last-event-id", &ids[1])
        .send()
        .await
        .unwrap();
    assert_eq!(after_answer.status(), 200);
    let rest = tokio::time::timeout(Duration::from_secs(10), after_answer.text())
        .await
        .unwrap()
        .unwrap();
    assert!(event_ids(&rest).is_empty(), "{rest}");
    assert!(!rest.contains("search_incident"), "{rest}");
}

#[tokio::test]
async fn a_session_in_use_on_any_replica_lives_and_an_idle_one_ends_everywhere() {
    // Every margin below is a fraction of this setting, not a guess at the machine's speed.
    const IDLE: Duration = Duration::from_secs(2);
    let cluster = Cluster::start_with(
        2,
        &format!(
            "\n[server]\nsession_idle_timeout_secs = {}\n",
            IDLE.as_secs()
        ),
    )
    .await;
    let urls = [
        cluster.replicas[0].url("/agents/servicenow/mcp"),
        cluster.replicas[1].url("/agents/servicenow/mcp"),
    ];
    let id = crate::support::helpers::streamable_initialize(&http(), &urls[0]).await;
    // Used by turns on both replicas for twice the idle timeout: it lives. A turn starts
    // IDLE/10 after the previous one answered; were the machine so slow that a gap reached
    // IDLE, the session could rightly end, so the test says so rather than blame the gateway.
    let started = Instant::now();
    let mut last_use = Instant::now();
    let mut turn = 1;
    while started.elapsed() < 2 * IDLE {
        let gap = last_use.elapsed();
        assert!(
            gap < IDLE / 2,
            "turn {turn} came {gap:?} after the last: too slow to test an idle timeout of {IDLE:?}"
        );
        assert_eq!(
            streamable_status(&urls[turn % 2], &id).await,
            200,
            "turn {turn}"
        );
        last_use = Instant::now();
        turn += 1;
        tokio::time::sleep(IDLE / 10).await;
    }
    // Left alone, it ends on both: the idle timeout holds for the cluster. (Watched through
    // the admin API: a request in the session would keep it alive.)
    eventually("an idle session ends on every replica", || async {
        http()
            .get(cluster.replicas[0].url(&format!("/admin/sessions/{id}")))
            .send()
            .await
            .unwrap()
            .status()
            == 404
    })
    .await;
    // Its shared record is gone too: no replica takes it in again.
    for url in &urls {
        assert_eq!(streamable_status(url, &id).await, 404);
    }
}

/// The value of the sample `name` (with its labels) in an OpenMetrics text; 0 if absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

// === Redis lost and back: what replicas hold is announced again ===

/// Two replicas: `a` straight on Redis, `b` through a proxy the test can cut (the proxy runs
/// on the test's runtime while a replica's start blocks: the tests run multi-threaded).
struct CutCluster {
    redis: RedisServer,
    _tmp: tempfile::TempDir,
    a: Replica,
    b: Replica,
    b_link: crate::support::cut_proxy::CutProxy,
}

impl CutCluster {
    async fn start() -> Self {
        let redis = RedisServer::start();
        let b_link = crate::support::cut_proxy::CutProxy::spawn(redis.socket()).await;
        let tmp = tempfile::tempdir().unwrap();
        let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&dir_a).unwrap();
        std::fs::create_dir_all(&dir_b).unwrap();
        let a = Replica::start(
            &cluster_config(&dir_a, &redis.url(), ""),
            &dir_a.join("data"),
        );
        let b = Replica::start(
            &cluster_config(&dir_b, &format!("redis://127.0.0.1:{}", b_link.port), ""),
            &dir_b.join("data"),
        );
        Self {
            redis,
            _tmp: tmp,
            a,
            b,
            b_link,
        }
    }
}

/// Whether `replica` holds session `id` itself.
async fn holds(replica: &Replica, id: &str) -> bool {
    replica
        .get_json(&format!("/admin/sessions/{id}?scope=local"))
        .await
        .0
        == 200
}

async fn readiness(replica: &Replica, status: u16) {
    eventually(&format!("readiness {status}"), || async {
        replica.ready().await.0 == status
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_while_a_replica_was_cut_off_ends_there_when_it_is_back() {
    let cluster = CutCluster::start().await;
    let (a, b) = (&cluster.a, &cluster.b);
    let id =
        crate::support::helpers::streamable_initialize(&http(), &a.url("/agents/servicenow/mcp"))
            .await;
    assert_eq!(
        streamable_status(&b.url("/agents/servicenow/mcp"), &id).await,
        200
    );
    assert!(holds(b, &id).await, "b took the session over");

    cluster.b_link.cut();
    readiness(b, 503).await;
    let deleted = http()
        .delete(a.url("/agents/servicenow/mcp"))
        .header("mcp-session-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    cluster.b_link.restore();
    readiness(b, 200).await;

    // b missed the announcement; the tombstone tells it.
    eventually(
        "b ends its copy of the session ended while it was away",
        || async { !holds(b, &id).await },
    )
    .await;
    assert_eq!(
        streamable_status(&b.url("/agents/servicenow/mcp"), &id).await,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_on_a_cut_off_replica_is_announced_when_it_is_back() {
    let cluster = CutCluster::start().await;
    let (a, b) = (&cluster.a, &cluster.b);
    // Opened on b (the replica that will be cut off), taken over by a.
    let id =
        crate::support::helpers::streamable_initialize(&http(), &b.url("/agents/servicenow/mcp"))
            .await;
    assert_eq!(
        streamable_status(&a.url("/agents/servicenow/mcp"), &id).await,
        200
    );
    assert!(holds(a, &id).await);

    cluster.b_link.cut();
    readiness(b, 503).await;
    // The client ends it on b, which cannot tell anyone yet.
    let deleted = http()
        .delete(b.url("/agents/servicenow/mcp"))
        .header("mcp-session-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert!(holds(a, &id).await, "a cannot know yet");
    cluster.b_link.restore();

    eventually("a ends its copy once b is back", || async {
        !holds(a, &id).await
    })
    .await;
    assert_eq!(
        streamable_status(&a.url("/agents/servicenow/mcp"), &id).await,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_redis_that_restarts_empty() {
    let mut cluster = CutCluster::start().await;
    let id = crate::support::helpers::streamable_initialize(
        &http(),
        &cluster.a.url("/agents/servicenow/mcp"),
    )
    .await;
    cluster.redis.stop();
    readiness(&cluster.a, 503).await;
    cluster.redis.start_again();
    readiness(&cluster.a, 200).await;
    readiness(&cluster.b, 200).await;

    // a announced its session again: b (which never held it) takes it over.
    eventually(
        "b serves the session opened on a before Redis restarted",
        || async { streamable_status(&cluster.b.url("/agents/servicenow/mcp"), &id).await == 200 },
    )
    .await;
    assert!(holds(&cluster.b, &id).await);
}

// === Redis over TLS, with a password-protected ACL user ===

/// A CA and a certificate for `localhost` it signed, made with the `openssl` command.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run openssl ({e}): the TLS test needs it (`apt-get install openssl`; .ci/run installs it)")
            });
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// A TLS-only `redis-server` with one ACL user, on a port free a moment ago; `None` if it
/// could not bind that port (taken meanwhile) or exited.
fn start_tls_redis(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> Option<(Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let conf = dir.join("redis.conf");
    std::fs::write(
        &conf,
        format!(
            "port 0\ntls-port {port}\nbind 127.0.0.1\ntls-cert-file {}\ntls-key-file {}\n\
             tls-ca-cert-file {}\ntls-auth-clients no\nsave \"\"\nappendonly no\ndir {}\n\
             user default off\n\
             user gateway on >gw-s3cret ~switchboard:* &switchboard:* +@all -@dangerous\n",
            cert.display(),
            key.display(),
            ca.display(),
            dir.display()
        ),
    )
    .unwrap();
    let mut server = Command::new("redis-server")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): .ci/run installs it"));
    let deadline = Instant::now() + DEADLINE;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((server, port));
        }
        if server.try_wait().ok().flatten().is_some() || Instant::now() >= deadline {
            let _ = server.kill();
            let _ = server.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_replica_reaches_redis_over_tls_as_an_acl_user() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(tmp.path());
    // TLS only (no plain TCP port), and no default user: the replica must present its ACL
    // user's password. Redis cannot take a port from the OS for TLS: a port free a moment
    // ago may be taken when it binds, so a start that fails is retried on another one.
    let (mut server, port) = (0..5)
        .find_map(|_| start_tls_redis(tmp.path(), &ca, &cert, &key))
        .expect("redis-server starts with TLS within 5 tries (.ci/run installs it)");
    let config = cluster_config(
        tmp.path(),
        &format!("rediss://gateway:gw-s3cret@localhost:{port}"),
        "",
    );
    let replica = Replica::start_with(
        &config,
        &tmp.path().join("data"),
        &fixture("agents/valid"),
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    let (status, body) = replica.cluster().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["nodes"].as_array().map(Vec::len), Some(1), "{body}");
    // Sessions are recorded in Redis through that connection: a new one opens (503 if not).
    crate::support::helpers::streamable_initialize(&http(), &replica.url("/agents/servicenow/mcp"))
        .await;
    let _ = server.kill();
    let _ = server.wait();
}

/// Many first requests of a session at once on a replica that does not hold it: one takes it
/// over and restores its engine, the others wait for that and are served (a request that
/// checked for the engine just before the restore and registered its own restore just after
/// it used to get a 500 from rmcp's "restore session").
#[tokio::test]
async fn concurrent_first_requests_on_a_replica_that_takes_a_session_over_are_all_served() {
    let cluster = Cluster::start(2).await;
    let (a, b) = (&cluster.replicas[0], &cluster.replicas[1]);
    let h = http();
    for round in 0..8 {
        let id =
            crate::support::helpers::streamable_initialize(&h, &a.url("/agents/servicenow/mcp"))
                .await;
        let url = b.url("/agents/servicenow/mcp");
        let calls = (0..24).map(|i| {
            let (h, url, id) = (h.clone(), url.clone(), id.clone());
            async move {
                let response = crate::support::helpers::streamable_post(
                    &h,
                    &url,
                    Some(&id),
                    serde_json::json!({"jsonrpc":"2.0","id":i,"method":"tools/list"}).to_string(),
                )
                .await;
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
        });
        for (status, body) in futures::future::join_all(calls).await {
            assert_eq!(status, 200, "round {round}: {body}");
            assert!(body.contains("search_incident"), "round {round}: {body}");
        }
    }
}
