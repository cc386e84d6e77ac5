//! Agent runs as MCP tasks (the `io.modelcontextprotocol/tasks` extension), with raw JSON-RPC
//! over both transports: a declaring client's call of an agent tool answers a task at once;
//! `tasks/get` shows progress, then the result, from any session of the same caller and never
//! to another; `tasks/cancel` drops the run's model request; a question of the run makes the
//! task `input_required` until `tasks/update`; a gateway that stops (or crashes) leaves its
//! tasks `failed`, saying so; clients that do not declare the extension are served as before.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{Options, SseClient, TestGateway, settings_with_clients};
use crate::support::tasks::{Raw, task_capabilities};

const CLIENTS: &str = r#"
[[clients]]
name = "helpdesk-app"
token = "t-help"
agents = ["*"]

[[clients]]
name = "reporter"
token = "t-rep"
agents = ["*"]
"#;

/// The runtime fixture agents (servicenow, helpdesk, ...) on `fake`, `[[clients]]` as above,
/// data in `data` when given.
async fn gateway(fake: &FakeLlm, data: Option<std::path::PathBuf>) -> TestGateway {
    TestGateway::spawn_with(Options {
        agents_dir: crate::support::helpers::fixture("agents/runtime"),
        data_dir: data,
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        settings: settings_with_clients(CLIENTS, &[]),
        ..Options::default()
    })
    .await
}

fn held(gate: &Arc<Notify>, step: Step) -> Step {
    Step::Held(gate.clone(), Box::new(step))
}

#[tokio::test]
async fn an_agent_call_is_a_task_polled_to_its_result_from_any_session_of_its_caller() {
    // Arrange: the model searches, then answers; each turn waits for the test.
    let (turn1, turn2) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let fake = FakeLlm::start(vec![
        held(
            &turn1,
            Step::ToolCalls(vec![("search_incident", json!({"query": "VPN"}))]),
        ),
        held(&turn2, Step::Text("INC0012346 is about the VPN")),
    ])
    .await;
    let gw = gateway(&fake, None).await;
    let url = gw.url("/agents/servicenow/mcp");
    let (c, init) = Raw::session(&url, Some("t-help"), task_capabilities(false)).await;
    assert_eq!(
        init["capabilities"]["extensions"]["io.modelcontextprotocol/tasks"],
        json!({}),
        "the server advertises the extension: {init}"
    );

    // Act: the call answers a task at once, while the model has not answered yet.
    let created = c
        .call("servicenow", "which incident is about the VPN?")
        .await;

    // Assert
    assert_eq!(created["resultType"], "task", "{created}");
    assert_eq!(created["status"], "working", "{created}");
    assert_eq!(created["pollIntervalMs"], 1000, "{created}");
    assert!(created["ttlMs"].as_u64().unwrap() >= 3_600_000, "{created}");
    let id = created["taskId"].as_str().unwrap().to_owned();
    fake.wait_requests(1).await;
    let working = c.get(&id).await;
    assert_eq!(working["result"]["status"], "working", "{working}");
    assert!(working["result"].get("result").is_none(), "{working}");

    // Progress becomes the status message.
    turn1.notify_one();
    let stepped = c
        .poll_until(&id, "calling search_incident", |r| {
            r["statusMessage"]
                .as_str()
                .is_some_and(|m| m.contains("search_incident") || m.contains("model turn 2"))
        })
        .await;
    assert_eq!(stepped["status"], "working", "{stepped}");

    turn2.notify_one();
    let done = c.poll_status(&id, "completed").await;
    assert_eq!(done["resultType"], "complete", "{done}");
    assert_eq!(
        done["result"]["content"][0]["text"], "INC0012346 is about the VPN",
        "{done}"
    );
    assert_eq!(done["result"]["isError"], false, "{done}");

    // The same caller reads it from a new session, and without one (2026-07-28).
    let (again, _) = Raw::session(&url, Some("t-help"), task_capabilities(false)).await;
    let read = again.get(&id).await;
    assert_eq!(read["result"]["status"], "completed", "{read}");
    assert_eq!(
        read["result"]["result"]["content"][0]["text"],
        "INC0012346 is about the VPN"
    );
    let stateless = Raw::stateless(&url, Some("t-help"), task_capabilities(false));
    let read = stateless.get(&id).await;
    assert_eq!(read["result"]["status"], "completed", "{read}");

    // Another caller learns nothing: the same error as for an id that never existed.
    let (other, _) = Raw::session(&url, Some("t-rep"), task_capabilities(false)).await;
    let refused = other.get(&id).await;
    let never = other.get("00000000-0000-4000-8000-000000000000").await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert_eq!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&id, "ID"),
        never["error"]["message"]
            .as_str()
            .unwrap()
            .replace("00000000-0000-4000-8000-000000000000", "ID"),
    );
    let cancel = other.request("tasks/cancel", json!({"taskId": id})).await;
    assert_eq!(cancel["error"]["code"], -32602, "{cancel}");

    // Listed for operators, with its agent, caller and status.
    let (status, listed) = gw.get_json("/admin/tasks").await;
    assert_eq!(status, 200, "{listed}");
    let row = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap_or_else(|| panic!("listed: {listed}"))
        .clone();
    assert_eq!(row["agent"], "servicenow", "{row}");
    assert_eq!(row["principal"], "client helpdesk-app", "{row}");
    assert_eq!(row["status"], "completed", "{row}");
    gw.stop().await;
}

#[tokio::test]
async fn clients_that_do_not_declare_tasks_and_inner_tools_are_served_as_before() {
    let fake = FakeLlm::start(vec![Step::Text("plain answer")]).await;
    let gw = gateway(&fake, None).await;
    let url = gw.url("/agents/servicenow/mcp");

    // No extension: the answer itself.
    let (plain, _) = Raw::session(&url, Some("t-help"), json!({})).await;
    let result = plain.call("servicenow", "hello").await;
    assert_eq!(result["content"][0]["text"], "plain answer", "{result}");
    assert!(result.get("taskId").is_none(), "{result}");
    let refused = plain.get("anything").await;
    assert_eq!(refused["error"]["code"], -32021, "{refused}");

    // An inner tool is quick: never a task, even for a declaring client.
    let (declaring, _) = Raw::session(&url, Some("t-help"), task_capabilities(false)).await;
    let found = declaring
        .request(
            "tools/call",
            json!({"name": "get_incident", "arguments": {"number": "INC0012346"}}),
        )
        .await;
    assert!(found["result"].get("taskId").is_none(), "{found}");
    assert_eq!(found["result"]["isError"], false, "{found}");
    assert_eq!(gw.state.tasks().running(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn cancelling_a_task_stops_its_run_and_drops_its_model_request() {
    // helpdesk: its model requests wait for a minute (servicenow's fixture gives up in 2 s).
    let fake = FakeLlm::start(vec![Step::Hang]).await;
    let gw = gateway(&fake, None).await;
    let url = gw.url("/agents/helpdesk/mcp");
    let c = Raw::stateless(&url, Some("t-help"), task_capabilities(false));
    let created = c.call("helpdesk", "never answered").await;
    let id = created["taskId"].as_str().unwrap().to_owned();
    fake.wait_requests(1).await;

    let ack = c.request("tasks/cancel", json!({"taskId": id})).await;
    assert!(ack.get("error").is_none(), "{ack}");

    fake.wait_abandoned().await;
    let cancelled = c.poll_status(&id, "cancelled").await;
    assert!(cancelled.get("result").is_none(), "{cancelled}");
    assert_eq!(gw.state.tasks().running(), 0);
    // Cancelling an ended task changes nothing.
    let again = c.request("tasks/cancel", json!({"taskId": id})).await;
    assert!(again.get("error").is_none(), "{again}");
    assert_eq!(c.get(&id).await["result"]["status"], "cancelled");
    let metrics = crate::support::helpers::http()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "switchboard_tasks_total{agent=\"helpdesk\",status=\"cancelled\"} 1",
        "switchboard_tasks_running 0",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_operator_cancels_a_running_task_through_the_admin_api() {
    let fake = FakeLlm::start(vec![Step::Hang]).await;
    let gw = gateway(&fake, None).await;
    let c = Raw::stateless(
        &gw.url("/agents/helpdesk/mcp"),
        Some("t-help"),
        task_capabilities(false),
    );
    let id = c.call("helpdesk", "long").await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    fake.wait_requests(1).await;
    let (status, listed) = gw.get_json("/admin/tasks?status=running").await;
    assert_eq!(status, 200, "{listed}");
    let rows = listed["tasks"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["status"], "working");
    assert!(rows[0]["age_secs"].as_u64().is_some(), "{listed}");

    let (status, body) = gw.post_json(&format!("/admin/tasks/{id}/cancel")).await;
    assert_eq!(status, 202, "{body}");
    fake.wait_abandoned().await;
    let cancelled = c.poll_status(&id, "cancelled").await;
    assert_eq!(cancelled["statusMessage"], "cancelled by an operator");
    let (status, body) = gw.post_json(&format!("/admin/tasks/{id}/cancel")).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = gw.post_json("/admin/tasks/nope/cancel").await;
    assert_eq!(status, 404, "{body}");
    gw.stop().await;
}

const ASKER: &str = r#"
description = "Opens incidents, asking the user what it needs to know."
expose = ["agent"]

[model]
base_url = "${FAKE_LLM_URL}/v1"
api_key = "test-key"
model = "fake-model"

[[tools]]
type = "servicenow"

[[tools]]
type = "ask_user"
timeout_secs = 10
"#;

#[tokio::test]
async fn a_task_whose_run_asks_the_user_is_input_required_until_tasks_update() {
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![(
            "ask_user",
            json!({"question": "Which site is affected?", "choices": ["Berlin", "Lyon"]}),
        )]),
        Step::Echo("got: "),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("asker.toml"), ASKER).unwrap();
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.path().to_owned(),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        ..Options::default()
    })
    .await;
    let url = gw.url("/agents/asker/mcp");
    let (c, _) = Raw::session(&url, None, task_capabilities(true)).await;
    let id = c.call("asker", "open an incident").await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();

    let asking = c.poll_status(&id, "input_required").await;
    let question = &asking["inputRequests"]["ask_user"];
    assert_eq!(question["method"], "elicitation/create", "{asking}");
    assert_eq!(
        question["params"]["message"], "Which site is affected?",
        "{asking}"
    );

    // A wrong key leaves it waiting; the right one lets it go on.
    let ack = c
        .request(
            "tasks/update",
            json!({"taskId": id, "inputResponses": {"other": {"action": "accept"}}}),
        )
        .await;
    assert!(ack.get("error").is_none(), "{ack}");
    assert_eq!(c.get(&id).await["result"]["status"], "input_required");
    let ack = c
        .request(
            "tasks/update",
            json!({"taskId": id, "inputResponses": {"ask_user": {"action": "accept", "content": {"answer": "Lyon"}}}}),
        )
        .await;
    assert!(ack.get("error").is_none(), "{ack}");

    let done = c.poll_status(&id, "completed").await;
    assert_eq!(
        done["result"]["content"][0]["text"], "got: The user answered: Lyon",
        "{done}"
    );
    let late = c
        .request(
            "tasks/update",
            json!({"taskId": id, "inputResponses": {"ask_user": {"action": "accept"}}}),
        )
        .await;
    assert_eq!(late["error"]["code"], -32602, "{late}");
    gw.stop().await;
}

#[tokio::test]
async fn tasks_over_the_legacy_sse_transport() {
    let fake = FakeLlm::start(vec![Step::Text("over sse")]).await;
    let gw = gateway(&fake, None).await;
    let mut sse = SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some("t-help")).await;
    let init = sse
        .request(
            1,
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": task_capabilities(false),
                   "clientInfo": {"name": "raw-sse", "version": "1"}}),
        )
        .await;
    assert_eq!(
        init["result"]["capabilities"]["extensions"]["io.modelcontextprotocol/tasks"],
        json!({}),
        "{init}"
    );
    sse.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    let created = sse
        .request(
            2,
            "tools/call",
            json!({"name": "servicenow", "arguments": {"task": "hello"}}),
        )
        .await;
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    let id = created["result"]["taskId"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut n = 3;
    let done = loop {
        let got = sse.request(n, "tasks/get", json!({"taskId": id})).await;
        n += 1;
        if got["result"]["status"] == "completed" {
            break got;
        }
        assert!(tokio::time::Instant::now() < deadline, "{got}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(done["result"]["result"]["content"][0]["text"], "over sse");
    // And from Streamable HTTP, the same caller.
    let c = Raw::stateless(
        &gw.url("/agents/servicenow/mcp"),
        Some("t-help"),
        task_capabilities(false),
    );
    assert_eq!(c.get(&id).await["result"]["status"], "completed");
    gw.stop().await;
}

#[tokio::test]
async fn a_gateway_that_stops_or_crashes_leaves_its_running_tasks_failed_saying_why() {
    let fake = FakeLlm::start(vec![Step::Hang, Step::Hang]).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");

    // Stopped: the task ends failed as the gateway goes.
    let gw = gateway(&fake, Some(data.clone())).await;
    let url = gw.url("/agents/helpdesk/mcp");
    let c = Raw::stateless(&url, Some("t-help"), task_capabilities(false));
    let stopped = c.call("helpdesk", "long").await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    fake.wait_requests(1).await;
    gw.stop().await;
    let gw = gateway(&fake, Some(data.clone())).await;
    let c = Raw::stateless(
        &gw.url("/agents/helpdesk/mcp"),
        Some("t-help"),
        task_capabilities(false),
    );
    let failed = c.get(&stopped).await;
    assert_eq!(failed["result"]["status"], "failed", "{failed}");
    assert_eq!(
        failed["result"]["error"]["message"],
        switchboard::tasks::SHUT_DOWN,
        "{failed}"
    );
    assert_eq!(
        failed["result"]["statusMessage"],
        switchboard::tasks::SHUT_DOWN
    );

    // Crashed: another gateway on the same data finds the task with no run behind it.
    let crashed = c.call("helpdesk", "long too").await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    fake.wait_requests(2).await;
    let successor = gateway(&fake, Some(data.clone())).await;
    let s = Raw::stateless(
        &successor.url("/agents/helpdesk/mcp"),
        Some("t-help"),
        task_capabilities(false),
    );
    let failed = s.get(&crashed).await;
    assert_eq!(failed["result"]["status"], "failed", "{failed}");
    assert_eq!(
        failed["result"]["error"]["message"],
        switchboard::tasks::RESTARTED
    );
    successor.stop().await;
    gw.stop().await;
}

/// Checks that an expired task is gone for its caller too.
#[tokio::test]
async fn a_finished_task_is_kept_for_its_ttl_then_unknown() {
    let fake = FakeLlm::start(vec![Step::Text("short-lived")]).await;
    let mut settings = settings_with_clients(CLIENTS, &[]);
    // Long enough to read the result on a loaded machine, short enough to see it go.
    settings.tasks.ttl = std::time::Duration::from_secs(2);
    let gw = TestGateway::spawn_with(Options {
        agents_dir: crate::support::helpers::fixture("agents/runtime"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        settings,
        ..Options::default()
    })
    .await;
    let c = Raw::stateless(
        &gw.url("/agents/servicenow/mcp"),
        Some("t-help"),
        task_capabilities(false),
    );
    let id = c.call("servicenow", "quick").await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = c.poll_status(&id, "completed").await;
    assert!(done["ttlMs"].as_u64().unwrap() >= 2000, "{done}");
    let gone = c.poll_until(&id, "expired", |r| r.is_null()).await;
    assert!(gone.is_null());
    let answer: Value = c.get(&id).await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    gw.stop().await;
}

/// Cluster mode, with real processes: a task started on replica a is read, and cancelled,
/// through replica b (Redis holds the task; the cancel waits there for a's run).
#[tokio::test]
async fn in_a_cluster_any_replica_answers_for_a_task_and_cancels_it() {
    use crate::cluster::{RedisServer, Replica, cluster_config};
    let gate = Arc::new(Notify::new());
    let fake = FakeLlm::start(vec![held(&gate, Step::Text("answered on a")), Step::Hang]).await;
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = cluster_config(tmp.path(), &redis.url(), "");
    let env = [("FAKE_LLM_URL", fake.url.as_str())];
    let agents = crate::support::helpers::fixture("agents/runtime");
    let a = Replica::start_with(&config, &tmp.path().join("data-a"), &agents, &env);
    let b = Replica::start_with(&config, &tmp.path().join("data-b"), &agents, &env);
    let on_a = Raw::stateless(
        &a.url("/agents/servicenow/mcp"),
        None,
        task_capabilities(false),
    );
    let on_b = Raw::stateless(
        &b.url("/agents/servicenow/mcp"),
        None,
        task_capabilities(false),
    );

    // Created on a, read through b while it runs and once it is done.
    let id = on_a.call("servicenow", "hello").await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    fake.wait_requests(1).await;
    let working = on_b.get(&id).await;
    assert_eq!(working["result"]["status"], "working", "{working}");
    gate.notify_one();
    let done = on_b.poll_status(&id, "completed").await;
    assert_eq!(
        done["result"]["content"][0]["text"], "answered on a",
        "{done}"
    );

    // Cancelled through b: a's run stops and its model request is dropped.
    let hd_a = Raw::stateless(
        &a.url("/agents/helpdesk/mcp"),
        None,
        task_capabilities(false),
    );
    let hd_b = Raw::stateless(
        &b.url("/agents/helpdesk/mcp"),
        None,
        task_capabilities(false),
    );
    let id = hd_a.call("helpdesk", "long").await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    fake.wait_requests(2).await;
    let ack = hd_b.request("tasks/cancel", json!({"taskId": id})).await;
    assert!(ack.get("error").is_none(), "{ack}");
    fake.wait_abandoned().await;
    let cancelled = hd_a.poll_status(&id, "cancelled").await;
    assert_eq!(cancelled["statusMessage"], "cancelled by the client");

    // Either replica's admin API lists both.
    let (status, listed) = b.get_json("/admin/tasks").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 2, "{listed}");
    assert!(listed["tasks"][0]["node"].as_str().is_some(), "{listed}");
    drop(redis);
}

/// Cluster mode, with real processes: a run on replica a asks its user (`ask_user`); the
/// question is read through replica b, answered by `tasks/update` through b (mail in Redis
/// that a's run collects), and the answer reaches a's model. A second run, cancelled through
/// b while it waits for its answer, ends cancelled without another model request.
#[tokio::test]
async fn in_a_cluster_a_task_asking_its_user_is_answered_and_cancelled_through_another_replica() {
    use crate::cluster::{RedisServer, Replica, cluster_config};
    let question = || {
        Step::ToolCalls(vec![(
            "ask_user",
            json!({"question": "Which site is affected?", "choices": ["Berlin", "Lyon"]}),
        )])
    };
    let fake = FakeLlm::start(vec![question(), Step::Echo("got: "), question()]).await;
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let agents = tmp.path().join("agents");
    std::fs::create_dir(&agents).unwrap();
    std::fs::write(agents.join("asker.toml"), ASKER).unwrap();
    let config = cluster_config(tmp.path(), &redis.url(), "");
    let env = [("FAKE_LLM_URL", fake.url.as_str())];
    let a = Replica::start_with(&config, &tmp.path().join("data-a"), &agents, &env);
    let b = Replica::start_with(&config, &tmp.path().join("data-b"), &agents, &env);
    let on_a = Raw::stateless(&a.url("/agents/asker/mcp"), None, task_capabilities(true));
    let on_b = Raw::stateless(&b.url("/agents/asker/mcp"), None, task_capabilities(true));

    // Created on a; b shows its question.
    let id = on_a.call("asker", "open an incident").await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let asking = on_b.poll_status(&id, "input_required").await;
    assert_eq!(
        asking["inputRequests"]["ask_user"]["params"]["message"], "Which site is affected?",
        "{asking}"
    );

    // Answered through b: a wrong key leaves it waiting, the right one reaches a's model.
    let ack = on_b
        .request(
            "tasks/update",
            json!({"taskId": id, "inputResponses": {"other": {"action": "accept"}}}),
        )
        .await;
    assert!(ack.get("error").is_none(), "{ack}");
    let ack = on_b
        .request(
            "tasks/update",
            json!({"taskId": id, "inputResponses": {"ask_user": {"action": "accept", "content": {"answer": "Lyon"}}}}),
        )
        .await;
    assert!(ack.get("error").is_none(), "{ack}");
    let done = on_b.poll_status(&id, "completed").await;
    assert_eq!(
        done["result"]["content"][0]["text"], "got: The user answered: Lyon",
        "{done}"
    );
    assert_eq!(fake.received().len(), 2);
    let late = on_b
        .request(
            "tasks/update",
            json!({"taskId": id, "inputResponses": {"ask_user": {"action": "accept"}}}),
        )
        .await;
    assert_eq!(late["error"]["code"], -32602, "{late}");

    // Cancelled through b while it waits for its user: no further model request.
    let id = on_a.call("asker", "open another").await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    on_b.poll_status(&id, "input_required").await;
    let ack = on_b.request("tasks/cancel", json!({"taskId": id})).await;
    assert!(ack.get("error").is_none(), "{ack}");
    let cancelled = on_a.poll_status(&id, "cancelled").await;
    assert_eq!(cancelled["statusMessage"], "cancelled by the client");
    assert!(cancelled.get("inputRequests").is_none(), "{cancelled}");
    assert_eq!(fake.received().len(), 3);
    drop(redis);
}

/// A workflow is served like an agent: a declaring client gets it as a task, whose progress
/// names its steps and whose result is the last step's answer.
#[tokio::test]
async fn a_workflow_runs_as_a_task_with_its_steps_as_progress() {
    let gate = Arc::new(Notify::new());
    let fake = FakeLlm::start(vec![
        Step::EchoTask("triage: "),
        held(&gate, Step::EchoTask("records: ")),
        Step::EchoTask("writer: "),
    ])
    .await;
    let gw = TestGateway::spawn_with(Options {
        agents_dir: crate::support::helpers::fixture("agents/workflows"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        ..Options::default()
    })
    .await;
    let c = Raw::stateless(
        &gw.url("/agents/review/mcp"),
        None,
        task_capabilities(false),
    );
    let created = c.call("review", "VPN down").await;
    assert_eq!(created["resultType"], "task", "{created}");
    let id = created["taskId"].as_str().unwrap().to_owned();

    // While the second step's model request is held, the status names that step.
    fake.wait_requests(2).await;
    let step = c
        .poll_until(&id, "on its second step", |r| {
            r["statusMessage"]
                .as_str()
                .is_some_and(|m| m.contains("records"))
        })
        .await;
    assert_eq!(step["status"], "working", "{step}");
    gate.notify_one();
    let done = c.poll_status(&id, "completed").await;
    let answer = done["result"]["content"][0]["text"].as_str().unwrap();
    assert!(answer.starts_with("writer: Task: VPN down\n"), "{answer}");
    gw.stop().await;
}
