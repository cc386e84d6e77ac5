//! The real binary, as a user starts it: URLs in the log, and a crash loses no
//! acknowledged write.

use std::process::Command;

use serde_json::json;

use crate::support::binary::{Spawned, serve_command, spawn_binary};
use crate::support::helpers::{SseClient, fixture, tool_json};

/// Starts `switchboard serve` with the fixture agents and `data` on a free port.
fn start(data: &std::path::Path) -> Spawned {
    spawn_binary(
        serve_command()
            .arg("--agents")
            .arg(fixture("agents/valid"))
            .arg("--data")
            .arg(data),
    )
}

#[tokio::test]
async fn binary_logs_each_agents_urls_and_an_acknowledged_write_survives_sigkill() {
    crate::support::helpers::http();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    let gateway = start(&data);
    let (addr, lines) = (gateway.addr.clone(), &gateway.startup);
    let url_line = lines
        .iter()
        .find(|l| l.contains("agent=servicenow"))
        .expect("one line per agent");
    assert!(
        url_line.contains(&format!("sse=http://{addr}/agents/servicenow/sse")),
        "{url_line}"
    );
    assert!(
        url_line.contains(&format!("mcp=http://{addr}/agents/servicenow/mcp")),
        "{url_line}"
    );
    assert!(
        !url_line.contains('\u{1b}'),
        "no colour codes when not on a terminal"
    );
    // tools=N counts what clients see: the agent tool and the four incident tools here, the
    // four incident tools alone for helpdesk (expose = ["tools"]).
    assert!(url_line.contains("tools=5"), "{url_line}");
    let helpdesk_line = lines
        .iter()
        .find(|l| l.contains("agent=helpdesk"))
        .expect("one line per agent");
    assert!(helpdesk_line.contains("tools=4"), "{helpdesk_line}");

    let mut c = SseClient::connect(&format!("http://{addr}/agents/servicenow/sse")).await;
    c.initialize().await;
    let created = tool_json(
        &c.call_tool(
            1,
            "create_incident",
            json!({"short_description": "Written before the crash"}),
        )
        .await,
    );
    // The answer arrived: the write is acknowledged. Now crash without any shutdown.
    drop(gateway);
    drop(c);

    let gateway = start(&data);
    let addr = gateway.addr.clone();
    let mut c = SseClient::connect(&format!("http://{addr}/agents/servicenow/sse")).await;
    c.initialize().await;
    let got = tool_json(
        &c.call_tool(1, "get_incident", json!({"number": created["number"]}))
            .await,
    );
    assert_eq!(got["short_description"], "Written before the crash");
}

#[tokio::test]
async fn sigterm_stops_the_binary_with_exit_code_0() {
    let tmp = tempfile::tempdir().unwrap();
    let gateway = start(&tmp.path().join("data"));
    let addr = gateway.addr.clone();
    // An open legacy stream must not keep the process alive.
    let mut c = SseClient::connect(&format!("http://{addr}/agents/servicenow/sse")).await;
    let pid = gateway.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || gateway.wait())
        .await
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    c.closed().await;
}

#[tokio::test]
async fn tokens_never_reach_the_logs_even_at_trace_level() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("switchboard.toml");
    std::fs::write(
        &config,
        "[[clients]]\nname = \"carol\"\ntoken = \"carol-secret-token-123\"\nagents = [\"*\"]\n\n[admin]\ntoken = \"admin-secret-token-456\"\n",
    )
    .unwrap();
    let gateway = spawn_binary(
        serve_command()
            .arg("--config")
            .arg(&config)
            .arg("--agents")
            .arg(fixture("agents/valid"))
            .arg("--data")
            .arg(tmp.path().join("data"))
            .env("RUST_LOG", "trace")
            .env("MCP_SECRET_TOKEN", "seed-secret-token-789"),
    );
    let addr = gateway.addr.clone();

    // Traffic with good and bad tokens, on every route.
    let h = crate::support::helpers::http();
    let mut c = SseClient::connect_with(
        &format!("http://{addr}/agents/servicenow/sse"),
        Some("carol-secret-token-123"),
    )
    .await;
    c.initialize().await;
    c.call_tool(1, "get_incident", json!({"number": "INC0012346"}))
        .await;
    let client = crate::support::helpers::rmcp_client_with(
        &format!("http://{addr}/agents/servicenow/mcp"),
        Some("seed-secret-token-789"),
    )
    .await;
    client.list_all_tools().await.unwrap();
    client.cancel().await.unwrap();
    // Each refused or admin request really ran its path: a token that is not a client's is
    // 401 on the MCP route, the admin token there too; on the admin API it is 200, a wrong
    // one 401.
    for (token, path, status) in [
        ("wrong-token-xyz", "/agents/servicenow/sse", 401),
        ("admin-secret-token-456", "/agents/servicenow/sse", 401),
        ("admin-secret-token-456", "/admin/sessions", 200),
        ("wrong-admin-token", "/admin/sessions", 401),
    ] {
        let answer = h
            .get(format!("http://{addr}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), status, "{token} on {path}");
    }
    drop(c);
    let logs = gateway.kill_and_logs();
    assert!(
        logs.lines().count() > 20,
        "trace logging produced too little to be a real check"
    );
    for secret in [
        "carol-secret-token-123",
        "seed-secret-token-789",
        "admin-secret-token-456",
        "wrong-token-xyz",
        "wrong-admin-token",
    ] {
        assert!(!logs.contains(secret), "a token reached the logs: {secret}");
    }
    assert!(
        logs.contains("carol"),
        "the client's name is what the logs show"
    );
}

#[tokio::test]
async fn a_call_without_a_session_is_logged_and_counted_under_its_client() {
    let tmp = tempfile::tempdir().unwrap();
    let gateway = spawn_binary(
        serve_command()
            .arg("--agents")
            .arg(fixture("agents/valid"))
            .arg("--data")
            .arg(tmp.path().join("data"))
            .env("MCP_SECRET_TOKEN", "seed-token")
            // Tool-call lines are `debug` (the audit trail keeps the per-call record).
            .env("RUST_LOG", "info,switchboard::mcp::handler=debug"),
    );
    let addr = gateway.addr.clone();
    // MCP 2026-07-28: no handshake, no session; version and capabilities in `_meta`.
    let answer = crate::support::helpers::http()
        .post(format!("http://{addr}/agents/servicenow/mcp"))
        .bearer_auth("seed-token")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "get_incident")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {
                "name": "get_incident",
                "arguments": {"number": "INC0012346"},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {}
                }
            }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body = answer.text().await.unwrap();
    assert!(body.contains("VPN not working"), "{body}");
    let metrics = crate::support::helpers::http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "switchboard_stateless_requests_total{agent=\"servicenow\",client=\"default\"} 1"
        ),
        "{metrics}"
    );
    let logs = gateway.kill_and_logs();
    let line = logs
        .lines()
        .find(|l| l.contains("Tool call.") && l.contains("get_incident"))
        .expect("the call is logged");
    assert!(line.contains("client=\"default\""), "{line}");
}

/// How many writers write at once in the crash test: the c = 16 of the write benchmark.
const CRASH_WRITERS: usize = 16;

/// How many acknowledged writes the crash test waits for before it kills the gateway.
const CRASH_AFTER_WRITES: usize = 800;

/// What the gateway acknowledged before it died.
#[derive(Default)]
struct Acknowledged {
    /// Incident number → short description, of each acknowledged create.
    created: Vec<(String, String)>,
    /// Incident number → work note, of each acknowledged update.
    updated: Vec<(String, String)>,
}

/// One writer of the crash test: on its own Streamable HTTP session, creates an incident,
/// adds a work note to it, and again, recording each answer, until a call fails (the
/// gateway is gone) or the test stops it.
async fn crash_writer(
    client: rmcp::service::RunningService<rmcp::RoleClient, ()>,
    writer: usize,
    acks: std::sync::Arc<std::sync::Mutex<Acknowledged>>,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use rmcp::model::CallToolRequestParams;
    use std::sync::atomic::Ordering;

    use crate::support::helpers::{args, tool_text};
    let call = |tool: &'static str, arguments: serde_json::Value| {
        let request = CallToolRequestParams::new(tool).with_arguments(args(arguments));
        let client = &client;
        async move {
            // Bounded: a call the dying gateway never answers must not hang the test.
            let answer = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                client.call_tool(request),
            )
            .await;
            match answer {
                Ok(Ok(result)) if result.is_error != Some(true) => {
                    Some(serde_json::from_str::<serde_json::Value>(&tool_text(&result)).unwrap())
                }
                Ok(Ok(result)) => panic!("{tool} failed while the gateway ran: {result:?}"),
                _ => None,
            }
        }
    };
    for i in 0.. {
        let summary = format!("writer {writer} incident {i}");
        let Some(created) = call("create_incident", json!({"short_description": summary})).await
        else {
            return;
        };
        let number = created["number"].as_str().unwrap().to_owned();
        acks.lock().unwrap().created.push((number.clone(), summary));
        count.fetch_add(1, Ordering::Relaxed);
        let note = format!("writer {writer} note {i}");
        let Some(updated) = call(
            "update_incident",
            json!({"number": number, "work_notes": note}),
        )
        .await
        else {
            return;
        };
        assert_eq!(updated["number"], number.as_str());
        acks.lock().unwrap().updated.push((number, note));
        count.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acknowledged_writes_all_survive_sigkill() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let gateway = start(&data);
    let url = format!("http://{}/agents/servicenow/mcp", gateway.addr);
    let acks = Arc::new(std::sync::Mutex::new(Acknowledged::default()));
    let count = Arc::new(AtomicUsize::new(0));
    let killed = tokio_util::sync::CancellationToken::new();
    let mut clients = Vec::new();
    for _ in 0..CRASH_WRITERS {
        clients.push(crate::support::helpers::rmcp_client(&url).await);
    }
    let writers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(w, client)| {
            let writer = crash_writer(client, w, acks.clone(), count.clone());
            let killed = killed.clone();
            tokio::spawn(async move { killed.run_until_cancelled(writer).await })
        })
        .collect();

    // Kill -9 in the middle of the writing, without any shutdown.
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::Relaxed) < CRASH_AFTER_WRITES {
        assert!(
            Instant::now() < deadline,
            "only {} writes acknowledged in 120 s",
            count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let logs = gateway.kill_and_logs();
    // The process is gone: no answer can come any more, so calls still waiting stop now
    // (the client would otherwise wait for its timeout).
    killed.cancel();
    for writer in writers {
        writer.await.unwrap();
    }

    // Every write answered before the kill is in the store the next start opens.
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    assert!(
        acks.created.len() + acks.updated.len() >= CRASH_AFTER_WRITES,
        "{logs}"
    );
    let store = switchboard::incidents::EmbeddedStore::open(&data).unwrap();
    let mut numbers = std::collections::HashSet::new();
    for (number, summary) in &acks.created {
        assert!(numbers.insert(number.clone()), "{number} given twice");
        let stored = store.get(number).await.unwrap();
        let stored = stored.unwrap_or_else(|| panic!("acknowledged create {number} lost"));
        assert_eq!(&stored.short_description, summary);
    }
    for (number, note) in &acks.updated {
        let stored = store.get(number).await.unwrap().unwrap();
        let journal = stored.work_notes.unwrap_or_default();
        assert!(
            journal.contains(note.as_str()),
            "acknowledged update of {number} lost: {journal:?}"
        );
    }
}
