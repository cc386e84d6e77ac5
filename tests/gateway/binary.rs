//! The real binary, as a user starts it: URLs in the log, and a crash loses no
//! acknowledged write.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{SseClient, fixture, tool_json};

/// Starts `switchboard serve` with the fixture agents on a free port; returns the child, its
/// address and its log lines up to "listening".
fn start(data: &std::path::Path) -> (Child, String, Vec<String>) {
    let agents = fixture("agents/valid");
    start_serve(&[
        "--agents".as_ref(),
        agents.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
    ])
}

/// Starts `switchboard serve --listen 127.0.0.1:0 <args>`; returns the child, its address and
/// its log lines up to "listening".
pub(crate) fn start_serve(args: &[&std::ffi::OsStr]) -> (Child, String, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining after the test stops listening, so the gateway never blocks on a
        // full pipe.
        for line in BufReader::new(stderr).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway logs 'listening' within 30 s");
        let done = line.contains("Switchboard listening.");
        lines.push(line);
        if done {
            break;
        }
    }
    let last = lines.last().unwrap();
    let addr = last
        .split("addr=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    (child, addr, lines)
}

#[tokio::test]
async fn binary_logs_each_agents_urls_and_an_acknowledged_write_survives_sigkill() {
    crate::helpers::http();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    let (mut child, addr, lines) = start(&data);
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
    child.kill().unwrap();
    child.wait().unwrap();
    drop(c);

    let (mut child, addr, _) = start(&data);
    let mut c = SseClient::connect(&format!("http://{addr}/agents/servicenow/sse")).await;
    c.initialize().await;
    let got = tool_json(
        &c.call_tool(1, "get_incident", json!({"number": created["number"]}))
            .await,
    );
    assert_eq!(got["short_description"], "Written before the crash");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn sigterm_stops_the_binary_with_exit_code_0() {
    let tmp = tempfile::tempdir().unwrap();
    let (child, addr, _) = start(&tmp.path().join("data"));
    // An open legacy stream must not keep the process alive.
    let mut c = SseClient::connect(&format!("http://{addr}/agents/servicenow/sse")).await;
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "exit status {:?}", output.status);
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--agents")
        .arg(fixture("agents/valid"))
        .arg("--data")
        .arg(tmp.path().join("data"))
        .env("RUST_LOG", "trace")
        .env("MCP_SECRET_TOKEN", "seed-secret-token-789")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if line.contains("Switchboard listening.") {
                let _ = tx.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let line = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the gateway starts");
    let addr = line
        .split("addr=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    // Traffic with good and bad tokens, on every route.
    let h = crate::helpers::http();
    let mut c = SseClient::connect_with(
        &format!("http://{addr}/agents/servicenow/sse"),
        Some("carol-secret-token-123"),
    )
    .await;
    c.initialize().await;
    c.call_tool(1, "get_incident", json!({"number": "INC0012346"}))
        .await;
    let client = crate::helpers::rmcp_client_with(
        &format!("http://{addr}/agents/servicenow/mcp"),
        Some("seed-secret-token-789"),
    )
    .await;
    client.list_all_tools().await.unwrap();
    client.cancel().await.unwrap();
    for token in ["wrong-token-xyz", "admin-secret-token-456"] {
        let _ = h
            .get(format!("http://{addr}/agents/servicenow/sse"))
            .bearer_auth(token)
            .send()
            .await;
    }
    let _ = h
        .get(format!("http://{addr}/admin/sessions"))
        .bearer_auth("admin-secret-token-456")
        .send()
        .await;
    let _ = h
        .get(format!("http://{addr}/admin/sessions"))
        .bearer_auth("wrong-admin-token")
        .send()
        .await;
    drop(c);
    child.kill().unwrap();
    child.wait().unwrap();
    let logs = reader.join().unwrap();
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
