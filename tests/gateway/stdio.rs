//! `switchboard stdio <agent>`: the real binary, started as MCP hosts start local servers
//! (rmcp's child-process transport, or raw pipes where the bytes on stdout matter). The
//! agent's tools answer exactly as over HTTP, on the same data directory as a running
//! gateway; stdout carries JSON-RPC and nothing else; closing stdin, SIGTERM and SIGINT end
//! it with exit code 0 (calls still running are answered "cancelled" and recorded); the
//! caller `--as` names is under its `[[policies]]` and in the audit trail; and what keeps it
//! from starting says why on stderr.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ErrorCode};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{Options, TestGateway, args, fixture, rmcp_client, tool_text};
use crate::support::scenarios::{self, structured, tool_names};

/// How long anything the process should do promptly may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// `switchboard stdio <agent> --agents <agents> --data <data> <extra>` at `RUST_LOG=info`,
/// started in a directory of its own (hosts start servers anywhere).
fn command(agent: &str, agents: &Path, data: &Path, extra: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .arg("stdio")
        .arg(agent)
        .arg("--agents")
        .arg(agents)
        .arg("--data")
        .arg(data)
        .args(extra)
        .current_dir(data.parent().expect("the data dir is in a temp dir"))
        .env("RUST_LOG", "info")
        .env_remove("MCP_SECRET_TOKEN")
        .kill_on_drop(true);
    command
}

/// What a process writes on stderr, collected line by line as it comes.
struct Log(tokio::sync::watch::Receiver<String>);

impl Log {
    fn drain(stderr: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(String::new());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tx.send_modify(|log| {
                    log.push_str(&line);
                    log.push('\n');
                });
            }
        });
        Self(rx)
    }

    /// Waits (up to [`DEADLINE`]) until the log contains `needle`; the whole log then.
    async fn wait_for(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(DEADLINE, self.0.wait_for(|log| log.contains(needle)))
            .await
            .map(|seen| seen.map(|log| String::clone(&log)));
        match found {
            Ok(Ok(log)) => log,
            _ => panic!(
                "the log never said {needle:?}; it said:\n{}",
                *self.0.borrow()
            ),
        }
    }

    fn text(&self) -> String {
        self.0.borrow().clone()
    }
}

/// An rmcp client of `command`, spawned by rmcp's child-process transport (as a host does),
/// and the process's log.
async fn connect(command: tokio::process::Command) -> (RunningService<rmcp::RoleClient, ()>, Log) {
    let (process, stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let log = Log::drain(stderr.expect("stderr is piped"));
    let client = match ().serve(process).await {
        Ok(client) => client,
        Err(e) => panic!("the handshake failed: {e}; the log:\n{}", log.text()),
    };
    (client, log)
}

/// The binary on raw pipes: every line it writes on stdout is checked to be one JSON-RPC
/// 2.0 message.
struct Raw {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    log: Log,
}

impl Raw {
    fn spawn(mut command: tokio::process::Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let log = Log::drain(child.stderr.take().expect("stderr is piped"));
        Self {
            child,
            stdin,
            stdout,
            log,
        }
    }

    async fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        let mut line = serde_json::to_vec(&message).unwrap();
        line.push(b'\n');
        stdin.write_all(&line).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// The next line of stdout, which must be one JSON-RPC 2.0 message; `None` at EOF.
    async fn next(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(DEADLINE, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("stdout stayed silent; the log:\n{}", self.log.text()))
            .expect("stdout is readable")?;
        let message: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "stdout carried a line that is not JSON ({e}): {line:?}\nthe log:\n{}",
                self.log.text()
            )
        });
        assert_eq!(message["jsonrpc"], "2.0", "not JSON-RPC 2.0: {line}");
        assert!(
            message.get("id").is_some() || message.get("method").is_some(),
            "neither an answer nor a request or notification: {line}"
        );
        Some(message)
    }

    /// The answer to request `id` (notifications before it are checked and passed over).
    async fn answer(&mut self, id: u64) -> Value {
        loop {
            let message = self
                .next()
                .await
                .unwrap_or_else(|| panic!("stdout ended before the answer to {id}"));
            if message["id"] == id && message.get("method").is_none() {
                return message;
            }
        }
    }

    async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        self.answer(id).await
    }

    /// `initialize` (id 0, MCP 2025-06-18) and `notifications/initialized`.
    async fn initialize(&mut self) -> Value {
        let init = self
            .request(
                0,
                "initialize",
                json!({
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "raw-test", "version": "1"}
                }),
            )
            .await;
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        init
    }

    async fn call(&mut self, id: u64, tool: &str, arguments: Value) -> Value {
        self.request(
            id,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
        .await
    }

    /// Sends a call without waiting for its answer.
    async fn start_call(&mut self, id: u64, tool: &str, arguments: Value) {
        self.send(json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}
        }))
        .await;
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Reads stdout to its end, checking every line.
    async fn read_to_end(&mut self) {
        while self.next().await.is_some() {}
    }

    /// Waits (up to [`DEADLINE`]) for the process to exit.
    async fn exit(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the process did not exit within {DEADLINE:?}; the log:\n{}",
                    self.log.text()
                )
            })
            .unwrap()
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the process runs").to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }
}

/// A temp dir holding `agents/` with `files` (name, content) and the path `data/`.
fn agents_dir(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let agents = tmp.path().join("agents");
    std::fs::create_dir(&agents).unwrap();
    for (name, content) in files {
        std::fs::write(agents.join(name), content).unwrap();
    }
    let data = tmp.path().join("data");
    (tmp, agents, data)
}

/// The incident agent with its tools and a model at the fake LLM (`FAKE_LLM_URL`), patient
/// enough that only the test ends a call.
const MODEL_AGENT: &str = r#"
description = "Manages ServiceNow incidents: create, update, search."
instructions = "You are a ServiceNow assistant."
expose = ["agent", "tools"]

[model]
base_url = "${FAKE_LLM_URL}/v1"
api_key = "test-key"
model = "fake-model"
request_timeout_secs = 60
run_timeout_secs = 120

[[tools]]
type = "servicenow"
"#;

/// The text of a raw `tools/call` answer's result.
fn result_text(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content: {answer}"))
}

async fn call(
    client: &RunningService<rmcp::RoleClient, ()>,
    tool: &str,
    arguments: Value,
) -> Value {
    structured(
        &client
            .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments)))
            .await
            .unwrap(),
    )
}

/// The audit records of `tool`, read through the admin API of a gateway on `data`.
async fn audit_records(data: &Path, tool: &str) -> Vec<Value> {
    let gw = TestGateway::spawn_with(Options {
        data_dir: Some(data.to_owned()),
        ..Options::default()
    })
    .await;
    let (status, page) = gw.get_json(&format!("/admin/audit?tool={tool}")).await;
    assert_eq!(status, 200, "{page}");
    gw.stop().await;
    page["records"].as_array().unwrap().clone()
}

#[tokio::test]
async fn rmcp_client_lists_and_calls_every_tool_over_stdio_and_closing_stdin_ends_it() {
    // Arrange
    let tmp = tempfile::tempdir().unwrap();
    let (client, mut log) = connect(command(
        "servicenow",
        &fixture("agents/valid"),
        &tmp.path().join("data"),
        &[],
    ))
    .await;

    // Act / Assert: the scenario every HTTP transport passes.
    scenarios::every_tool(&client, "servicenow").await;
    // rmcp's transport closes stdin, then waits 3 s before it sends SIGTERM.
    client.cancel().await.unwrap();

    let log = log.wait_for("Stopped.").await;
    assert!(log.contains("Stdin closed"), "{log}");
    assert!(
        log.contains("ended=Closed"),
        "ended by EOF, not a signal:\n{log}"
    );
    assert!(log.contains("Serving over stdio."), "{log}");
    assert!(log.contains("tools=5"), "{log}");
}

#[tokio::test]
async fn stdio_answers_exactly_what_a_running_gateway_answers_on_the_same_data() {
    // Arrange: a gateway serving the data dir, and the stdio server on it too.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let gw = TestGateway::spawn_with(Options {
        data_dir: Some(data.clone()),
        ..Options::default()
    })
    .await;
    let http = rmcp_client(&gw.url("/agents/servicenow/mcp")).await;
    let (stdio, _log) = connect(command("servicenow", &fixture("agents/valid"), &data, &[])).await;

    // Act / Assert: reads.
    let vpn = call(&stdio, "get_incident", json!({"number": "INC0012346"})).await;
    assert_eq!(vpn["number"], "INC0012346");
    assert_eq!(vpn["short_description"], "VPN not working");
    assert_eq!(vpn["state"], "In Progress");
    assert_eq!(vpn["urgency"], "2 - Medium");
    assert_eq!(
        vpn,
        call(&http, "get_incident", json!({"number": "INC0012346"})).await
    );
    let found = call(&stdio, "search_incident", json!({"query": "vpn"})).await;
    assert_eq!(found["count"], 1, "{found}");
    assert_eq!(found["incidents"][0], vpn);
    assert_eq!(
        found,
        call(&http, "search_incident", json!({"query": "vpn"})).await
    );

    // Writes by one process are read by the other, both ways.
    let created = call(
        &stdio,
        "create_incident",
        json!({"short_description": "Printer on fire", "urgency": "1", "impact": "High"}),
    )
    .await;
    assert_eq!(created["short_description"], "Printer on fire");
    assert_eq!(created["state"], "New");
    assert_eq!(created["priority"], "1 - Critical");
    let number = created["number"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&http, "get_incident", json!({"number": number})).await,
        created
    );
    let over_http = call(
        &http,
        "create_incident",
        json!({"short_description": "Second printer on fire"}),
    )
    .await;
    assert_ne!(
        over_http["number"], created["number"],
        "numbers never repeat"
    );
    assert_eq!(
        call(
            &stdio,
            "get_incident",
            json!({"number": over_http["number"]})
        )
        .await,
        over_http
    );

    stdio.cancel().await.unwrap();
    http.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn bad_arguments_get_32602_saying_what_is_wrong_and_the_session_lives_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (client, _log) = connect(command(
        "servicenow",
        &fixture("agents/valid"),
        &tmp.path().join("data"),
        &[],
    ))
    .await;
    let cases = [
        (
            "get_incident",
            json!({"number": 42}),
            "get_incident: invalid arguments: number must be a string, got 42",
        ),
        (
            "search_incident",
            json!({"limit": 0}),
            "search_incident: invalid arguments: limit must be an integer from 1 to 100, got 0",
        ),
        (
            "create_incident",
            json!({}),
            "create_incident: invalid arguments: missing field `short_description`",
        ),
        (
            "delete_incident",
            json!({"number": "INC0012346"}),
            "unknown tool \"delete_incident\"",
        ),
    ];
    for (tool, arguments, expected) in cases {
        // Act
        let err = client
            .call_tool(
                CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments.clone())),
            )
            .await
            .unwrap_err();

        // Assert
        let rmcp::ServiceError::McpError(data) = err else {
            panic!("case {tool} {arguments}: expected a JSON-RPC error, got {err:?}");
        };
        assert_eq!(
            data.code,
            ErrorCode::INVALID_PARAMS,
            "case {tool}: {data:?}"
        );
        assert_eq!(data.message, expected, "case {tool} {arguments}");
        let found = call(&client, "search_incident", json!({"query": "vpn"})).await;
        assert_eq!(found["count"], 1, "after case {tool}: {found}");
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn stdout_carries_only_json_rpc_even_with_every_log_line_on() {
    // Arrange: everything logged, from every crate.
    let tmp = tempfile::tempdir().unwrap();
    let mut command = command(
        "servicenow",
        &fixture("agents/valid"),
        &tmp.path().join("data"),
        &[],
    );
    command.env("RUST_LOG", "trace");
    let mut raw = Raw::spawn(command);

    // Act: a session with answers, a tool error and a protocol error, each line checked.
    let init = raw.initialize().await;
    let list = raw.request(1, "tools/list", json!({})).await;
    let found = raw
        .call(2, "search_incident", json!({"query": "vpn"}))
        .await;
    let missing = raw
        .call(3, "get_incident", json!({"number": "INC0999999"}))
        .await;
    let bad = raw.call(4, "get_incident", json!({"number": 42})).await;
    let ping = raw.request(5, "ping", json!({})).await;
    raw.close_stdin();
    raw.read_to_end().await;
    let status = raw.exit().await;

    // Assert
    assert_eq!(
        init["result"]["serverInfo"]["name"],
        "switchboard/servicenow"
    );
    let mut names: Vec<String> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, tool_names("servicenow"));
    assert_eq!(found["result"]["structuredContent"]["count"], 1, "{found}");
    assert_eq!(missing["result"]["isError"], true, "{missing}");
    assert_eq!(result_text(&missing), "incident INC0999999 not found");
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert_eq!(ping["result"], json!({}));
    assert!(status.success(), "exit status {status:?}");
    let log = raw.log.text();
    for needle in [
        "Serving over stdio.",
        "Tool call.",
        "DEBUG",
        "TRACE",
        "Stopped.",
    ] {
        assert!(log.contains(needle), "the log lacks {needle:?}:\n{log}");
    }
}

#[tokio::test]
async fn a_client_that_closes_stdin_right_after_its_request_still_gets_the_answer() {
    // Arrange: what `printf '...' | switchboard stdio servicenow` does.
    let tmp = tempfile::tempdir().unwrap();
    let mut raw = Raw::spawn(command(
        "servicenow",
        &fixture("agents/valid"),
        &tmp.path().join("data"),
        &[],
    ));
    raw.send(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "script", "version": "1"}}}),
    )
    .await;
    raw.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    raw.start_call(1, "get_incident", json!({"number": "INC0012346"}))
        .await;

    // Act
    raw.close_stdin();

    // Assert
    let answer = raw.answer(1).await;
    assert_eq!(
        answer["result"]["structuredContent"]["short_description"], "VPN not working",
        "{answer}"
    );
    raw.read_to_end().await;
    let status = raw.exit().await;
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn closing_stdin_gives_a_running_call_a_second_then_cancels_it_and_exits_0() {
    // Arrange: an agent run whose model never answers.
    let fake = FakeLlm::start(vec![Step::Hang]).await;
    let (_tmp, agents, data) = agents_dir(&[("servicenow.toml", MODEL_AGENT)]);
    let mut command = command("servicenow", &agents, &data, &[]);
    command.env("FAKE_LLM_URL", &fake.url);
    let mut raw = Raw::spawn(command);
    raw.initialize().await;
    raw.start_call(
        1,
        "servicenow",
        json!({"task": "Look up the VPN incident."}),
    )
    .await;
    fake.wait_requests(1).await;

    // Act
    let closed = Instant::now();
    raw.close_stdin();

    // Assert: answered, as cancelled, after the grace second.
    let answer = raw.answer(1).await;
    let waited = closed.elapsed();
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(result_text(&answer), "servicenow: cancelled");
    assert!(
        waited >= Duration::from_millis(900),
        "the call was cancelled after {waited:?}, before its grace second"
    );
    raw.read_to_end().await;
    let status = raw.exit().await;
    assert!(status.success(), "exit status {status:?}");
    fake.wait_abandoned().await;
    let records = audit_records(&data, "servicenow").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], "cancelled");
    assert_eq!(records[0]["transport"], "stdio");
}

#[tokio::test]
async fn sigterm_and_sigint_answer_a_running_call_as_cancelled_and_exit_0() {
    for signal in ["-TERM", "-INT"] {
        // Arrange: a session with a call in flight, stdin left open.
        let fake = FakeLlm::start(vec![Step::Hang]).await;
        let (_tmp, agents, data) = agents_dir(&[("servicenow.toml", MODEL_AGENT)]);
        let mut command = command("servicenow", &agents, &data, &[]);
        command.env("FAKE_LLM_URL", &fake.url);
        let mut raw = Raw::spawn(command);
        raw.initialize().await;
        raw.start_call(
            1,
            "servicenow",
            json!({"task": "Look up the VPN incident."}),
        )
        .await;
        fake.wait_requests(1).await;

        // Act
        raw.signal(signal);

        // Assert
        let answer = raw.answer(1).await;
        assert_eq!(answer["result"]["isError"], true, "{signal}: {answer}");
        assert_eq!(result_text(&answer), "servicenow: cancelled", "{signal}");
        raw.read_to_end().await;
        let status = raw.exit().await;
        assert!(status.success(), "{signal}: exit status {status:?}");
        fake.wait_abandoned().await;
        let log = raw.log.wait_for("Stopped.").await;
        assert!(log.contains("ended=Stopped"), "{signal}:\n{log}");
        let records = audit_records(&data, "servicenow").await;
        assert_eq!(records[0]["outcome"], "cancelled", "{signal}: {records:?}");
    }
}

#[tokio::test]
async fn the_agent_tool_runs_its_model_loop_over_stdio() {
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![("search_incident", json!({"query": "vpn"}))]),
        Step::Echo("Found: "),
    ])
    .await;
    let (_tmp, agents, data) = agents_dir(&[("servicenow.toml", MODEL_AGENT)]);
    let mut command = command("servicenow", &agents, &data, &[]);
    command.env("FAKE_LLM_URL", &fake.url);
    let (client, _log) = connect(command).await;

    let result = client
        .call_tool(
            CallToolRequestParams::new("servicenow")
                .with_arguments(args(json!({"task": "Any VPN incidents?"}))),
        )
        .await
        .unwrap();

    assert_eq!(result.is_error, Some(false), "{result:?}");
    let text = tool_text(&result);
    assert!(text.starts_with("Found: "), "{text}");
    assert!(text.contains("INC0012346"), "{text}");
    assert_eq!(fake.received().len(), 2);
    client.cancel().await.unwrap();
}

/// Clients and `[[policies]]`: `laptop` may call the incident agent's tools but not update.
const LAPTOP: &str = r#"
[[clients]]
name = "laptop"
token = "never-used-over-stdio"
agents = ["servicenow"]

[[clients]]
name = "desk"
token = "another"
agents = ["helpdesk"]

[[policies]]
effect = "allow"
clients = ["laptop"]
tools = ["servicenow/*"]

[[policies]]
name = "no-updates"
effect = "deny"
clients = ["laptop"]
tools = ["servicenow/update_incident"]
"#;

#[tokio::test]
async fn as_names_a_configured_client_whose_policies_apply_and_whom_the_trail_records() {
    // Arrange
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("switchboard.toml");
    std::fs::write(&config, LAPTOP).unwrap();
    let config = config.to_str().unwrap();
    let data = tmp.path().join("data");
    let mut laptop_command = command(
        "servicenow",
        &fixture("agents/valid"),
        &data,
        &["--config", config, "--as", "laptop"],
    );
    // Tool-call lines are `debug` (the audit trail keeps the per-call record).
    laptop_command.env("RUST_LOG", "info,switchboard::mcp::handler=debug");
    let (laptop, mut log) = connect(laptop_command).await;

    // Act
    let mut names: Vec<String> = laptop
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    let refused = laptop
        .call_tool(
            CallToolRequestParams::new("update_incident").with_arguments(args(
                json!({"number": "INC0012346", "work_notes": "Looking into it"}),
            )),
        )
        .await
        .unwrap_err();
    let created = call(
        &laptop,
        "create_incident",
        json!({"short_description": "Filed from a laptop"}),
    )
    .await;
    laptop.cancel().await.unwrap();
    let log = log.wait_for("Stopped.").await;

    // Assert: the policies of `laptop` apply.
    let mut expected = tool_names("servicenow");
    expected.retain(|n| n != "update_incident");
    assert_eq!(names, expected);
    let rmcp::ServiceError::McpError(data_err) = refused else {
        panic!("expected a JSON-RPC error, got {refused:?}");
    };
    assert_eq!(data_err.code, ErrorCode::INVALID_PARAMS);
    assert_eq!(
        data_err.data.as_ref().unwrap()["code"],
        "tool_not_allowed",
        "{data_err:?}"
    );
    assert!(
        created["work_notes"]
            .as_str()
            .unwrap()
            .contains("Opened via Switchboard for client laptop"),
        "{created}"
    );
    assert!(log.contains("caller=laptop"), "{log}");
    assert!(
        log.contains("client=\"laptop\""),
        "the tool call lines name it:\n{log}"
    );

    // ... and the trail names it, the transport and the session the log named.
    let session = log
        .split("session=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("the start line names the session")
        .to_owned();
    let records = audit_records(&data, "create_incident").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["client"], "laptop");
    assert_eq!(records[0]["transport"], "stdio");
    assert_eq!(records[0]["session"], session.as_str());
    let refusals = audit_records(&data, "update_incident").await;
    assert_eq!(refusals[0]["outcome"], "refused", "{refusals:?}");

    // Without --as the caller is anonymous, whom no rule allows anything.
    let (anonymous, _log) = connect(command(
        "servicenow",
        &fixture("agents/valid"),
        &data,
        &["--config", config],
    ))
    .await;
    assert!(anonymous.list_all_tools().await.unwrap().is_empty());
    anonymous.cancel().await.unwrap();
}

#[tokio::test]
async fn operator_approvals_are_refused_at_once_saying_why() {
    let agent = r#"
description = "Incident tools."
expose = ["tools"]

[[tools]]
type = "servicenow"

[[approvals]]
tools = ["update_incident"]
by = "operator"
"#;
    let (_tmp, agents, data) = agents_dir(&[("servicenow.toml", agent)]);
    let (client, _log) = connect(command("servicenow", &agents, &data, &[])).await;

    let result = tokio::time::timeout(
        Duration::from_secs(5),
        client.call_tool(
            CallToolRequestParams::new("update_incident").with_arguments(args(
                json!({"number": "INC0012346", "work_notes": "Looking into it"}),
            )),
        ),
    )
    .await
    .expect("refused at once, not after the rule's timeout")
    .unwrap();

    assert_eq!(result.is_error, Some(true), "{result:?}");
    assert_eq!(
        tool_text(&result),
        "update_incident needs an operator's approval (approvals[0]), and this server \
         (switchboard stdio) has no admin API where an operator could give it: call the agent \
         through a gateway (switchboard serve), or have the rule ask you instead (by = \"client\")"
    );
    let vpn = call(&client, "get_incident", json!({"number": "INC0012346"})).await;
    assert!(
        !vpn["work_notes"]
            .as_str()
            .unwrap_or("")
            .contains("Looking into it"),
        "the update did not run: {vpn}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn unknown_agent_exits_non_zero_naming_the_agents() {
    let tmp = tempfile::tempdir().unwrap();
    let agents = fixture("agents/valid");

    let out = command("nope", &agents, &tmp.path().join("data"), &[])
        .output()
        .await
        .unwrap();

    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: unknown agent \"nope\": the agents in {} are helpdesk, servicenow",
            agents.display()
        )),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "stdout: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn as_an_unknown_client_exits_non_zero_naming_the_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("switchboard.toml");
    std::fs::write(&config, LAPTOP).unwrap();
    let config = config.to_str().unwrap();
    let agents = fixture("agents/valid");
    let data = tmp.path().join("data");

    let unknown = command(
        "servicenow",
        &agents,
        &data,
        &["--config", config, "--as", "tablet"],
    )
    .output()
    .await
    .unwrap();
    let not_allowed = command(
        "servicenow",
        &agents,
        &data,
        &["--config", config, "--as", "desk"],
    )
    .output()
    .await
    .unwrap();

    for (out, expected) in [
        (
            &unknown,
            format!(
                "error: --as \"tablet\": unknown client: the clients of {config} are laptop, desk"
            ),
        ),
        (
            &not_allowed,
            format!(
                "error: --as \"desk\": {config}: clients[1].agents: client \"desk\" may not use agent \"servicenow\""
            ),
        ),
    ] {
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[tokio::test]
async fn a_workflow_is_served_over_stdio_as_its_one_tool() {
    let fake = FakeLlm::start(vec![
        Step::EchoTask("triage: "),
        Step::EchoTask("records: "),
        Step::EchoTask("writer: "),
    ])
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let mut command = command(
        "review",
        &fixture("agents/workflows"),
        &tmp.path().join("data"),
        &[],
    );
    command.env("FAKE_LLM_URL", &fake.url);
    let (client, _log) = connect(command).await;

    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(
        tools.iter().map(|t| t.name.as_ref()).collect::<Vec<_>>(),
        ["review"]
    );
    let result = client
        .call_tool(
            CallToolRequestParams::new("review").with_arguments(args(json!({"task": "VPN down"}))),
        )
        .await
        .unwrap();

    // Every step ran, in order, and the last one's output is the answer.
    assert_eq!(result.is_error, Some(false), "{result:?}");
    let text = tool_text(&result);
    assert!(text.starts_with("writer: Task: VPN down\n"), "{text}");
    assert!(
        text.contains("records: Find records for: triage: VPN down"),
        "{text}"
    );
    assert_eq!(fake.received().len(), 3);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_call_over_stdio_is_traced_under_the_trace_its_meta_carries() {
    // Arrange: the stdio server exporting to the tests' OTLP receiver.
    let receiver = crate::support::otlp::Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[telemetry]\nenabled = true\nendpoint = \"{}\"\n",
            receiver.url
        ),
    )
    .unwrap();
    let mut raw = Raw::spawn(command(
        "servicenow",
        &fixture("agents/valid"),
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    ));
    raw.initialize().await;

    // Act: a call whose `_meta` carries a trace (padded, as some SDKs send it), then EOF,
    // which flushes the exporter.
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let answer = raw
        .request(
            2,
            "tools/call",
            json!({"name": "search_incident", "arguments": {"query": "VPN"},
                   "_meta": {"traceparent": format!(" 00-{trace}-b7ad6b7169203331-01 ")}}),
        )
        .await;
    assert!(
        answer["result"]["structuredContent"].is_object(),
        "{answer}"
    );
    raw.close_stdin();
    raw.read_to_end().await;
    assert!(raw.exit().await.success());

    // Assert: the call's span is a child of the caller's, named as over HTTP.
    let spans = receiver
        .trace_with(trace, "tools/call search_incident")
        .await;
    let span = spans
        .iter()
        .find(|s| s.name == "tools/call search_incident")
        .unwrap();
    assert_eq!(span.parent_span_id, "b7ad6b7169203331", "{span:#?}");
    assert_eq!(span.attr("switchboard.transport"), Some("stdio"));
    assert_eq!(span.attr("gen_ai.tool.name"), Some("search_incident"));
}
