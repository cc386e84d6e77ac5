//! What the README promises and no other test showed: each feature used as an operator or a
//! client would, and asserted by what it must do (so each test fails when the feature does).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::binary::{serve_command, spawn_binary, switchboard};
use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{
    Options, TestGateway, call_result, copy_valid_agents, fixture, http, rmcp_client, start_call,
    streamable_initialize, streamable_open, tool_text,
};
use crate::support::nginx::Nginx;

/// How long a test waits for something that should happen before it fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// `switchboard serve` on the fixture agents with a data dir in `tmp`, no admin token.
fn serve_fixture(tmp: &std::path::Path) -> Command {
    let mut command = serve_command();
    command
        .arg("--agents")
        .arg(fixture("agents/valid"))
        .arg("--data")
        .arg(tmp.join("data"))
        .env_remove("SWITCHBOARD_ADMIN_TOKEN")
        .env_remove("SWITCHBOARD_ALLOWED_HOSTS")
        .env_remove("SWITCHBOARD_TRUSTED_PROXIES")
        .env_remove("SWITCHBOARD_HEALTHCHECK_URL");
    command
}

/// `kill -<signal> <pid>`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

// === Reload on SIGHUP ===

/// The agent files are symlinks into another directory (as a Kubernetes ConfigMap mounts
/// them), so editing their targets makes no event in the watched directory: only the SIGHUP
/// can apply the change. Without it, the test times out.
#[tokio::test]
async fn sighup_reloads_the_agents() {
    let tmp = tempfile::tempdir().unwrap();
    let (real, agents) = (tmp.path().join("real"), tmp.path().join("agents"));
    copy_valid_agents(&real);
    std::fs::create_dir_all(&agents).unwrap();
    for f in ["servicenow.toml", "helpdesk.toml"] {
        std::os::unix::fs::symlink(real.join(f), agents.join(f)).unwrap();
    }
    let gateway = spawn_binary(
        serve_command()
            .arg("--agents")
            .arg(&agents)
            .arg("--data")
            .arg(tmp.path().join("data"))
            .env_remove("SWITCHBOARD_ADMIN_TOKEN"),
    );
    let view = format!("http://{}/admin/agents/helpdesk", gateway.addr);
    let description = || async {
        let body: Value = http()
            .get(&view)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["description"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(description().await, "Helpdesk tools.");

    let text = std::fs::read_to_string(real.join("helpdesk.toml")).unwrap();
    std::fs::write(
        real.join("helpdesk.toml"),
        text.replace("Helpdesk tools.", "Helpdesk tools, after SIGHUP."),
    )
    .unwrap();
    signal(gateway.child.id(), "HUP");
    let deadline = Instant::now() + DEADLINE;
    while description().await != "Helpdesk tools, after SIGHUP." {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the agents"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still running (SIGHUP's default action would have ended it), and it said why.
    let logs = gateway.kill_and_logs();
    assert!(logs.contains("SIGHUP received: reloading agents"), "{logs}");
    assert!(logs.contains("changed=[\"helpdesk\"]"), "{logs}");
}

// === 503 for new MCP requests during shutdown ===

/// A call in flight keeps the drain going; a request whose head was half sent before the
/// shutdown began is completed during it, and is refused with 503 `shutting_down`, while
/// the call in flight still gets its answer.
#[tokio::test]
async fn new_mcp_requests_during_shutdown_get_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gate = Arc::new(tokio::sync::Notify::new());
    let fake = FakeLlm::start(vec![Step::Held(
        gate.clone(),
        Box::new(Step::Text("finished during the drain")),
    )])
    .await;
    let gw = TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/runtime"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        ..Options::default()
    })
    .await;
    let client = rmcp_client(&gw.url("/agents/servicenow/mcp")).await;
    let held = start_call(client.peer(), "servicenow", json!({"task": "slow"})).await;
    fake.wait_requests(1).await;

    // A connection opened before the shutdown, its request head half sent.
    let body = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"late","version":"1"}}}).to_string();
    let mut late = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    late.write_all(b"POST /agents/servicenow/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();

    let state = gw.state.clone();
    let stopping = tokio::spawn(gw.stop());
    let deadline = Instant::now() + DEADLINE;
    while !state.is_draining() {
        assert!(Instant::now() < deadline, "the shutdown did not begin");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    late.write_all(
        format!(
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, late.read_to_string(&mut answer))
        .await
        .expect("the late request is answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let json_body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap())
        .unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(json_body["code"], "shutting_down", "{answer}");

    // The call that was in flight finishes within the grace period.
    gate.notify_one();
    let result = call_result(held).await;
    assert_eq!(tool_text(&result), "finished during the drain");
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("the gateway stops")
        .unwrap();
}

// === The 4-level nesting bound of agents calling agents ===

/// `level0` → `level1` → … → `level5`, each agent asking for the next: runs at depths 0 to 4
/// reach the model, the run at depth 5 is refused with the bound's message, which travels
/// back up as each level's tool result.
#[tokio::test]
async fn agents_calling_agents_stop_at_four_levels() {
    let mut script = Vec::new();
    for next in ["level1", "level2", "level3", "level4", "level5"] {
        script.push(Step::ToolCalls(vec![(next, json!({"task": "go deeper"}))]));
    }
    // Each level answers with what its tool (the level below) said.
    script.extend((0..5).map(|_| Step::Echo("")));
    let fake = FakeLlm::start(script).await;
    let gw = TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/nesting"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        ..Options::default()
    })
    .await;
    let client = rmcp_client(&gw.url("/agents/level0/mcp")).await;
    let result =
        call_result(start_call(client.peer(), "level0", json!({"task": "go"})).await).await;
    assert!(
        tool_text(&result).contains("agents call each other too deeply (more than 4 levels)"),
        "{result:?}"
    );
    // Which levels reached the model: 0 to 4, never 5.
    let mut levels: Vec<String> = fake
        .received()
        .iter()
        .map(|r| {
            r.body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    levels.dedup();
    assert_eq!(
        levels,
        [
            "level 0", "level 1", "level 2", "level 3", "level 4", "level 3", "level 2", "level 1",
            "level 0"
        ],
        "the model calls, in order"
    );
    assert_eq!(fake.remaining(), 0);
    client.cancel().await.unwrap();
    gw.stop().await;
}

// === switchboard openapi, switchboard healthcheck ===

#[test]
fn openapi_prints_the_checked_in_spec() {
    let out = switchboard().arg("openapi").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let checked_in = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/admin.yaml"),
    )
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), checked_in);
}

/// A one-shot HTTP server on a socket of its own that answers `response` (or nothing at
/// all, holding the connection, when `None`); its URL.
fn one_answer(response: Option<&'static str>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let mut head = [0u8; 1024];
        let _ = conn.read(&mut head);
        match response {
            Some(r) => {
                let _ = conn.write_all(r.as_bytes());
            }
            // Hold the connection open, unanswered, until the client gives up.
            None => {
                let _ = conn.read(&mut head);
            }
        }
    });
    url
}

#[test]
fn healthcheck_exits_0_on_a_healthy_gateway_and_1_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let gateway = spawn_binary(&mut serve_fixture(tmp.path()));
    let healthz = format!("http://{}/healthz", gateway.addr);
    let probe = |args: &[&str], env: Option<&str>| {
        let mut command = switchboard();
        command.arg("healthcheck").args(args);
        command.env_remove("SWITCHBOARD_HEALTHCHECK_URL");
        if let Some(url) = env {
            command.env("SWITCHBOARD_HEALTHCHECK_URL", url);
        }
        command.output().unwrap()
    };
    // By --url, and by SWITCHBOARD_HEALTHCHECK_URL.
    assert!(probe(&["--url", &healthz], None).status.success());
    assert!(probe(&[], Some(&healthz)).status.success());
    // 503, and no answer within --timeout: exit 1, saying why.
    let unavailable = one_answer(Some(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ));
    let out = probe(&["--url", &unavailable], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unhealthy"),
        "{out:?}"
    );
    let silent = one_answer(None);
    let started = Instant::now();
    let out = probe(&["--url", &silent, "--timeout", "1"], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "--timeout 1 was not honoured"
    );
}

// === --log-format json ===

#[tokio::test]
async fn log_format_json_writes_one_json_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = serve_fixture(tmp.path())
        .arg("--log-format")
        .arg("json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|e| panic!("no 'listening' line ({e}): {lines:#?}"));
        let parsed: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        lines.push(parsed.clone());
        if parsed["fields"]["message"] == "Switchboard listening." {
            break parsed["fields"]["addr"].as_str().unwrap().to_owned();
        }
    };
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "Agent ready."
                && l["fields"]["agent"] == "servicenow"),
        "{lines:#?}"
    );
    // A request's line is JSON too.
    let id = streamable_initialize(&http(), &format!("http://{addr}/agents/servicenow/mcp")).await;
    let _ = child.kill();
    let _ = child.wait();
    let rest: Vec<String> = rx.iter().collect();
    for line in &rest {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        assert!(parsed["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        rest.iter().any(|l| l.contains(&id)),
        "the session's line: {rest:#?}"
    );
}

// === SWITCHBOARD_ALLOWED_HOSTS, SWITCHBOARD_TRUSTED_PROXIES ===

/// The status of an `initialize` POST sent to `addr` with `Host: host`.
async fn initialize_status(addr: &str, host: &str) -> u16 {
    http()
        .post(format!("http://{addr}/agents/servicenow/mcp"))
        .header("host", host)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}).to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn switchboard_allowed_hosts_replaces_the_host_list() {
    let tmp = tempfile::tempdir().unwrap();
    let default = spawn_binary(&mut serve_fixture(tmp.path()));
    assert_eq!(initialize_status(&default.addr, "localhost").await, 200);
    assert_eq!(initialize_status(&default.addr, "gw.example").await, 403);
    drop(default);

    let tmp = tempfile::tempdir().unwrap();
    let named = spawn_binary(
        serve_fixture(tmp.path()).env("SWITCHBOARD_ALLOWED_HOSTS", "gw.example, other.example"),
    );
    assert_eq!(initialize_status(&named.addr, "gw.example").await, 200);
    assert_eq!(initialize_status(&named.addr, "other.example").await, 200);
    // Replaced, not added to: the default names are refused now.
    assert_eq!(initialize_status(&named.addr, "localhost").await, 403);
}

/// Behind nginx with the compose file's balancer config (which appends the peer to
/// `X-Forwarded-For`), the client address a session records: the one nginx names when the
/// gateway trusts it by `SWITCHBOARD_TRUSTED_PROXIES`, nginx's own when it does not.
#[tokio::test]
async fn switchboard_trusted_proxies_believes_the_compose_balancers_x_forwarded_for() {
    for (trusted, expected) in [(Some("127.0.0.1"), "203.0.113.7"), (None, "127.0.0.1")] {
        let tmp = tempfile::tempdir().unwrap();
        let mut command = serve_fixture(tmp.path());
        if let Some(list) = trusted {
            command.env("SWITCHBOARD_TRUSTED_PROXIES", list);
        }
        let gateway = spawn_binary(&mut command);
        let nginx = Nginx::start(std::slice::from_ref(&gateway.addr));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap();
        let id = streamable_initialize(&client, &nginx.url("/agents/servicenow/mcp")).await;
        let sessions: Value = http()
            .get(format!("http://{}/admin/sessions", gateway.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{sessions}"));
        assert_eq!(
            session["client_ip"], expected,
            "trusted {trusted:?}: {session}"
        );
    }
}

// === The request-head timeout ===

/// A connection that sends half a request head is closed once `request_head_timeout_secs`
/// passes (1 s here; 30 s by default), not before; a whole request is still served.
#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off_after_its_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let timeout = Duration::from_secs(1);
    let mut opts = Options::default();
    opts.settings.request_head_timeout = timeout;
    let gw = TestGateway::spawn_with(opts).await;
    let started = Instant::now();
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(timeout + DEADLINE, slow.read_to_end(&mut rest)).await;
    let took = started.elapsed();
    assert!(read.is_ok(), "the connection stayed open {took:?}");
    assert!(took >= timeout, "closed after {took:?}, before the timeout");
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
        "{rest}"
    );
    assert_eq!(
        streamable_open(&http(), &gw.url("/agents/servicenow/mcp"))
            .await
            .status(),
        200
    );
    gw.stop().await;
}
