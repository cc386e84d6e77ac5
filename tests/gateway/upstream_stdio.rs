//! Stdio upstreams (`[[tools]] type = "mcp"` with `command`): the official MCP reference
//! server (server-everything) started by the gateway and called through an agent with
//! `expose = ["tools"]` from an rmcp client over Streamable HTTP; and a tiny server of ours
//! whose process dies in the middle of a call (a tool error, then the call after the restart
//! works), hangs (`timeout_secs`), keeps a process per session, and never outlives the gateway,
//! a reload or a removal (its PID, and its process group, checked in `/proc`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use serde_json::{Value, json};
use switchboard::config::Vars;

use crate::support::helpers::{Options, TestGateway, args, rmcp_client, tool_text};
use crate::support::stdio_upstream::{
    agent, alive, everything, exists, group, node, tiny_agent, wait_dead,
};

type Client = RunningService<RoleClient, ()>;

/// A gateway serving the agents `(name, file)` (interpolated from `vars`), and the folder
/// they are in (kept as long as the gateway is used).
async fn gateway(agents: &[(&str, String)], vars: Vars) -> (TestGateway, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = agents_dir(&tmp);
    std::fs::create_dir(&dir).unwrap();
    for (name, file) in agents {
        std::fs::write(dir.join(format!("{name}.toml")), file).unwrap();
    }
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir,
        vars,
        ..Options::default()
    })
    .await;
    (gw, tmp)
}

fn agents_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("agents")
}

async fn client(gw: &TestGateway, agent: &str) -> Client {
    rmcp_client(&gw.url(&format!("/agents/{agent}/mcp"))).await
}

async fn call(c: &Client, tool: &str, arguments: Value) -> CallToolResult {
    c.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments)))
        .await
        .unwrap()
}

/// The text of a successful call.
async fn ok_text(c: &Client, tool: &str, arguments: Value) -> String {
    let result = call(c, tool, arguments).await;
    assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
    tool_text(&result)
}

/// The text of a call that failed with a tool error.
async fn error_text(c: &Client, tool: &str, arguments: Value) -> String {
    let result = call(c, tool, arguments).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} should fail: {result:?}"
    );
    tool_text(&result)
}

/// The process id the tiny server answers with.
async fn pid(c: &Client) -> u32 {
    ok_text(c, "t_pid", json!({})).await.parse().unwrap()
}

/// The process id the tiny server answers with once its process is running again (within
/// 10 s); until then each call must fail with a text containing one of `down`.
async fn pid_once_restarted(c: &Client, down: &[&str]) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let result = call(c, "t_pid", json!({})).await;
        if result.is_error != Some(true) {
            return tool_text(&result).parse::<u32>().unwrap();
        }
        let text = tool_text(&result);
        assert!(down.iter().any(|d| text.contains(d)), "{text}");
        assert!(
            Instant::now() < deadline,
            "not restarted within 10 s: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_reference_server_runs_over_stdio_and_its_tools_answer_exactly_through_an_agent() {
    // Arrange: server-everything as a stdio upstream, a variable of the file interpolated
    // into its environment.
    let file = agent(
        &node(),
        &[&everything().display().to_string(), "stdio"],
        "ev_",
        "env = { GREETING = \"${TEST_GREETING}\" }\ntimeout_secs = 30",
    );
    let vars: Vars = [(
        "TEST_GREETING".to_owned(),
        "hello from the agent file".to_owned(),
    )]
    .into_iter()
    .collect();
    let (gw, _tmp) = gateway(&[("everything", file)], vars).await;
    let c = client(&gw, "everything").await;

    // Act + Assert: its tools are listed under the prefix and answer exactly.
    let names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    for expected in ["ev_echo", "ev_get-sum", "ev_get-env"] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    assert_eq!(
        ok_text(&c, "ev_echo", json!({"message": "hi over stdio"})).await,
        "Echo: hi over stdio"
    );
    assert_eq!(
        ok_text(&c, "ev_get-sum", json!({"a": 2, "b": 40})).await,
        "The sum of 2 and 40 is 42."
    );
    // Its environment: `env` (interpolated), the few inherited variables, no other of ours.
    let env: Value = serde_json::from_str(&ok_text(&c, "ev_get-env", json!({})).await).unwrap();
    assert_eq!(env["GREETING"], "hello from the agent file");
    assert_eq!(
        env["PATH"].as_str(),
        std::env::var("PATH").ok().as_deref(),
        "PATH is inherited"
    );
    let ours = std::env::vars()
        .map(|(name, _)| name)
        .find(|name| !switchboard::tools::upstream::INHERITED.contains(&name.as_str()))
        .expect("the test process has some variable of its own");
    assert!(env.get(&ours).is_none(), "{ours} leaked into the upstream");
    // An argument it refuses is the client's mistake: -32602, or a tool error saying so.
    let refused = c
        .call_tool(
            CallToolRequestParams::new("ev_get-sum".to_owned())
                .with_arguments(args(json!({"a": "two"}))),
        )
        .await;
    match refused {
        Err(e) => assert!(e.to_string().contains("-32602"), "{e}"),
        Ok(result) => assert_eq!(result.is_error, Some(true), "{result:?}"),
    }

    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_process_that_dies_mid_call_is_a_tool_error_and_the_call_after_its_restart_works() {
    // Arrange
    let (gw, _tmp) = gateway(&[("tiny", tiny_agent("first", ""))], Vars::new()).await;
    let c = client(&gw, "tiny").await;
    let first = pid(&c).await;

    // Act: the process exits in the middle of the call.
    let error = error_text(&c, "t_die", json!({})).await;

    // Assert: a clear tool error; the process is gone (reaped); it is started again.
    assert!(
        error.contains("stopped during the call") && error.contains("starts it again"),
        "{error}"
    );
    wait_dead(first, "the dead server").await;
    // While it is down, calls fail at once, saying when it is tried again.
    let second = pid_once_restarted(&c, &["is not running (it exited)", "stopped during"]).await;
    assert_ne!(second, first, "a new process");
    assert_eq!(ok_text(&c, "t_echo", json!({"text": "back"})).await, "back");

    c.cancel().await.unwrap();
    gw.stop().await;
    assert!(!exists(second), "the restarted server outlived the gateway");
}

#[tokio::test]
async fn a_hung_call_ends_at_timeout_secs_and_the_process_goes_on_serving() {
    // Arrange
    let (gw, _tmp) = gateway(
        &[("tiny", tiny_agent("hung", "timeout_secs = 1"))],
        Vars::new(),
    )
    .await;
    let c = client(&gw, "tiny").await;
    let before = pid(&c).await;

    // Act
    let started = Instant::now();
    let error = error_text(&c, "t_hang", json!({})).await;

    // Assert: the tool's timeout applied; the upstream was told the request is abandoned
    // (nothing keeps waiting for it); the same process answers the next calls.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(error.contains("did not answer within 1s"), "{error}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok_text(&c, "t_cancelled", json!({})).await != "1" {
        assert!(
            Instant::now() < deadline,
            "the upstream never got notifications/cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pid(&c).await, before);

    c.cancel().await.unwrap();
    gw.stop().await;
    assert!(!exists(before));
}

#[tokio::test]
async fn no_process_outlives_the_gateway_not_even_a_grandchild() {
    // Arrange: the server has started a grandchild in its process group.
    let (gw, _tmp) = gateway(&[("tiny", tiny_agent("orphans", ""))], Vars::new()).await;
    let c = client(&gw, "tiny").await;
    let server = pid(&c).await;
    let grandchild: u32 = ok_text(&c, "t_spawn_grandchild", json!({}))
        .await
        .parse()
        .unwrap();
    assert!(alive(server) && alive(grandchild));
    assert_eq!(group(server).len(), 2, "the server leads its own group");
    c.cancel().await.unwrap();

    // Act
    gw.stop().await;

    // Assert: the server has ended and was reaped by the time the gateway stopped; the
    // grandchild (which outlives a server that exits on EOF) was killed with the group.
    assert!(
        !exists(server),
        "the server (pid {server}) outlived the gateway"
    );
    wait_dead(grandchild, "the grandchild").await;
    assert_eq!(group(server), Vec::<u32>::new());
}

#[tokio::test]
async fn kill_9_of_the_gateway_leaves_no_upstream_process_not_even_a_grandchild() {
    // Arrange: the real binary with the tiny server as a tool upstream (one process for the
    // agent, and one per session) and as a federated server; each has started a grandchild
    // that ignores its stdin (so only its process group's end ends it).
    let tmp = tempfile::tempdir().unwrap();
    let dir = agents_dir(&tmp);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("shared.toml"), tiny_agent("shared", "")).unwrap();
    std::fs::write(
        dir.join("own.toml"),
        tiny_agent("own", "process = \"per_session\""),
    )
    .unwrap();
    std::fs::write(
        dir.join("fed.toml"),
        format!(
            "description = \"x\"\nexpose = [\"servers\"]\n\n[[servers]]\ncommand = {:?}\nargs = [{:?}, \"fed\"]\nprefix = \"t_\"\n",
            node().display().to_string(),
            crate::support::stdio_upstream::tiny().display().to_string()
        ),
    )
    .unwrap();
    let gateway = crate::support::binary::spawn_binary(
        crate::support::binary::serve_command()
            .arg("--agents")
            .arg(&dir)
            .arg("--data")
            .arg(tmp.path().join("data")),
    );
    let mut pids = Vec::new();
    let mut clients = Vec::new();
    for agent in ["shared", "own", "fed"] {
        let c = rmcp_client(&format!("http://{}/agents/{agent}/mcp", gateway.addr)).await;
        let server = pid(&c).await;
        let grandchild: u32 = ok_text(&c, "t_spawn_grandchild", json!({}))
            .await
            .parse()
            .unwrap();
        assert!(alive(server) && alive(grandchild), "{agent}");
        pids.push((agent, server, grandchild));
        clients.push(c);
    }

    // Act: SIGKILL; no Drop, no shutdown runs in the gateway.
    let log = gateway.kill_and_logs();

    // Assert: every server and grandchild ends (each group's watchdog kills the group when
    // the gateway's end of its pipe closes), and each group is empty.
    for (agent, server, grandchild) in pids {
        wait_dead(server, &format!("{agent}'s server")).await;
        wait_dead(grandchild, &format!("{agent}'s grandchild")).await;
        assert_eq!(group(server), Vec::<u32>::new(), "{agent}\n{log}");
    }
    drop(clients);
}

#[tokio::test]
async fn a_session_s_process_that_dies_mid_call_is_restarted_for_that_session() {
    // Arrange
    let (gw, _tmp) = gateway(
        &[(
            "tiny",
            tiny_agent("per-session-restart", "process = \"per_session\""),
        )],
        Vars::new(),
    )
    .await;
    let (a, b) = (client(&gw, "tiny").await, client(&gw, "tiny").await);
    let (first, other) = (pid(&a).await, pid(&b).await);

    // Act: session a's process exits in the middle of a call.
    let error = error_text(&a, "t_die", json!({})).await;

    // Assert: a tool error for that call; the session gets a new process of its own after
    // the backoff; the other session's process is untouched.
    assert!(
        error.contains("stopped during the call") && error.contains("starts it again"),
        "{error}"
    );
    wait_dead(first, "the dead server").await;
    let second = pid_once_restarted(&a, &["is not running (it exited)"]).await;
    assert!(second != first && second != other);
    assert_eq!(pid(&a).await, second, "the session keeps its new process");
    assert_eq!(pid(&b).await, other);

    a.cancel().await.unwrap();
    wait_dead(second, "the ended session's process").await;
    b.cancel().await.unwrap();
    gw.stop().await;
    assert!(!exists(other));
}

#[tokio::test]
async fn a_reload_ends_the_process_of_a_changed_or_removed_entry_and_keeps_an_unchanged_one() {
    // Arrange
    let (gw, tmp) = gateway(&[("tiny", tiny_agent("v1", ""))], Vars::new()).await;
    let file = agents_dir(&tmp).join("tiny.toml");
    let old_session = client(&gw, "tiny").await;
    let first = pid(&old_session).await;

    // Act 1: a change elsewhere in the file.
    let unchanged = tiny_agent("v1", "").replace("Tools of a", "The tools of a");
    std::fs::write(&file, unchanged).unwrap();
    let report = gw.state.reload().await;
    assert_eq!(report.agents.changed, ["tiny"], "{report:?}");

    // Assert 1: the entry is the same, so is its process, for old and new sessions.
    let c = client(&gw, "tiny").await;
    assert_eq!(pid(&c).await, first);
    assert_eq!(pid(&old_session).await, first);

    // Act 2: the entry itself changes.
    std::fs::write(&file, tiny_agent("v2", "")).unwrap();
    gw.state.reload().await;

    // Assert 2: the old process ended (and was reaped) before the reload returned; new
    // sessions get the new one; the old session is told to reconnect.
    assert!(
        !exists(first),
        "the old process (pid {first}) outlived the reload"
    );
    let c2 = client(&gw, "tiny").await;
    assert_eq!(ok_text(&c2, "t_argv", json!({})).await, "v2");
    let second = pid(&c2).await;
    assert_ne!(second, first);
    let error = error_text(&old_session, "t_pid", json!({})).await;
    assert!(
        error.contains("was stopped") && error.contains("open a new MCP session"),
        "{error}"
    );

    // Act 3 + Assert 3: the agent is removed; so is its process.
    std::fs::remove_file(&file).unwrap();
    let report = gw.state.reload().await;
    assert_eq!(report.agents.removed, ["tiny"], "{report:?}");
    assert!(
        !exists(second),
        "the process (pid {second}) outlived its agent"
    );
    assert_eq!(group(second), Vec::<u32>::new());

    for c in [old_session, c, c2] {
        let _ = c.cancel().await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn with_a_process_per_session_each_session_has_its_own_bounded_and_ended_with_it() {
    // Arrange: at most two processes.
    let (gw, _tmp) = gateway(
        &[(
            "tiny",
            tiny_agent("sessions", "process = \"per_session\"\nmax_processes = 2"),
        )],
        Vars::new(),
    )
    .await;

    // Act + Assert: listing starts the session's process; each session has its own.
    let a = client(&gw, "tiny").await;
    let listed = a.list_all_tools().await.unwrap();
    assert!(listed.iter().any(|t| t.name == "t_pid"), "{listed:?}");
    let b = client(&gw, "tiny").await;
    let (pa, pb) = (pid(&a).await, pid(&b).await);
    assert_ne!(pa, pb);
    assert_eq!(pid(&a).await, pa, "a session keeps its process");

    // A third session finds no room, and says so.
    let c = client(&gw, "tiny").await;
    let error = error_text(&c, "t_pid", json!({})).await;
    assert!(error.contains("max_processes"), "{error}");

    // A session that ends takes its process along, which makes room.
    a.cancel().await.unwrap();
    wait_dead(pa, "the ended session's process").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let pc = loop {
        let result = call(&c, "t_pid", json!({})).await;
        if result.is_error != Some(true) {
            break tool_text(&result).parse::<u32>().unwrap();
        }
        assert!(Instant::now() < deadline, "{}", tool_text(&result));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(pc != pa && pc != pb);

    b.cancel().await.unwrap();
    c.cancel().await.unwrap();
    gw.stop().await;
    assert!(!exists(pb) && !exists(pc));
}

#[tokio::test]
async fn a_command_that_cannot_start_is_a_clear_tool_error() {
    let file = agent(Path::new("/nonexistent/mcp-server"), &[], "gone_", "");
    let (gw, _tmp) = gateway(&[("gone", file)], Vars::new()).await;
    let c = client(&gw, "gone").await;

    let error = error_text(&c, "gone_anything", json!({})).await;

    assert!(
        error.contains("\"/nonexistent/mcp-server\" (stdio) is not running")
            && error.contains("cannot start")
            && error.contains("starts it again in"),
        "{error}"
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[test]
fn switchboard_check_names_the_file_and_key_of_a_wrong_command_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = agents_dir(&tmp);
    std::fs::create_dir(&dir).unwrap();
    let base = "description = \"x\"\nexpose = [\"tools\"]\n[[tools]]\ntype = \"mcp\"\n";
    let cases = [
        (
            "both",
            "url = \"http://127.0.0.1:1/mcp\"\ncommand = \"node\"\n",
            "tools[0].command: give either url",
        ),
        (
            "neither",
            "prefix = \"x_\"\n",
            "tools[0].url: missing: give url",
        ),
        (
            "auth",
            "command = \"node\"\n[tools.auth]\ntype = \"client_credentials\"\n",
            "tools[0].auth: [tools.auth] applies only with url",
        ),
        (
            "headers",
            "command = \"node\"\nheaders = { Authorization = \"Bearer s3cret\" }\n",
            "tools[0].headers: applies only with url",
        ),
        (
            "process",
            "command = \"node\"\nprocess = \"per_caller\"\n",
            "tools[0].process: unknown variant `per_caller`",
        ),
        (
            "args with url",
            "url = \"http://127.0.0.1:1/mcp\"\nargs = [\"x\"]\n",
            "tools[0].args: applies only with command",
        ),
    ];
    for (name, entry, _) in &cases {
        std::fs::write(dir.join(format!("{name}.toml")), format!("{base}{entry}")).unwrap();
    }
    let errors = switchboard::agents::AgentRegistry::validate_dir(&dir, &Vars::new())
        .unwrap_err()
        .to_string();
    for (name, _, message) in cases {
        let expected = format!("{name}.toml: {message}");
        assert!(errors.contains(&expected), "{expected}\nnot in:\n{errors}");
    }
    assert!(!errors.contains("s3cret"), "{errors}");
}
