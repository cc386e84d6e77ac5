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
