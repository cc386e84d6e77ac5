//! Workflows (`[workflow]` in an agent file): each kind end to end against the scripted fake
//! LLM, with the exact order and input of every step; concurrency proven with held requests;
//! cancellation reaching every step and its model request; the handoff bound; policies and
//! the audit trail at every step. Load-time checks are in `config_errors` and `reload`.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::support::fake_llm::{FakeLlm, Received, Step};
use crate::support::helpers::{
    Options, Recorder, SseClient, TestGateway, args, call_result, fixture, start_call, tool_text,
};

async fn gateway(fake: &FakeLlm) -> TestGateway {
    TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/workflows"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        ..Options::default()
    })
    .await
}

async fn client(gw: &TestGateway, agent: &str) -> RunningService<RoleClient, Recorder> {
    crate::support::helpers::http();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(
        gw.url(&format!("/agents/{agent}/mcp")),
    );
    Recorder::default().serve(transport).await.unwrap()
}

async fn ask(c: &RunningService<RoleClient, Recorder>, agent: &str, task: &str) -> CallToolResult {
    c.call_tool(
        CallToolRequestParams::new(agent.to_owned()).with_arguments(args(json!({"task": task}))),
    )
    .await
    .unwrap()
}

/// Who a request was for (the agent's instructions) and its task (the last user message).
fn who_and_task(r: &Received) -> (String, String) {
    let messages = r.body["messages"].as_array().unwrap();
    let system = messages[0]["content"].as_str().unwrap().to_owned();
    let task = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap()
        .to_owned();
    (system, task)
}

/// The names of the tools a request offered the model.
fn offered(r: &Received) -> Vec<String> {
    let mut names: Vec<String> = r.body["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The progress messages `c` got, once one of them is `last` (5 s deadline: notifications
/// may trail the answer by a hair).
async fn progress_until(c: &RunningService<RoleClient, Recorder>, last: &str) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got: Vec<String> = c
            .service()
            .progress
            .lock()
            .unwrap()
            .iter()
            .filter_map(|p| p.message.clone())
            .collect();
        if got.iter().any(|m| m == last) || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The audit records of the last call of `workflow` by a client: its own record first, then
/// the records under it, oldest first. Waits (10 s) until that call's record is written.
async fn audit_tree(gw: &TestGateway, workflow: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let root = loop {
        gw.state.audit().expect("the trail is on").flush().await;
        let (status, page) = gw
            .get_json(&format!("/admin/audit?agent={workflow}&tool={workflow}"))
            .await;
        assert_eq!(status, 200, "{page}");
        let root = page["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["depth"] == 0)
            .cloned();
        if let Some(root) = root {
            break root;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no audit record of a call of {workflow}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let (status, tree) = gw
        .get_json(&format!("/admin/audit/{}", root["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200, "{tree}");
    tree["records"].as_array().unwrap().clone()
}

/// `(agent, tool, depth, outcome)` of each record.
fn summary(records: &[Value]) -> Vec<(String, String, u64, String)> {
    records
        .iter()
        .map(|r| {
            (
                r["agent"].as_str().unwrap().to_owned(),
                r["tool"].as_str().unwrap().to_owned(),
                r["depth"].as_u64().unwrap(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn row(agent: &str, tool: &str, depth: u64, outcome: &str) -> (String, String, u64, String) {
    (agent.into(), tool.into(), depth, outcome.into())
}

#[tokio::test]
async fn a_workflow_is_one_tool_over_both_transports() {
    let fake = FakeLlm::start(vec![
        Step::EchoTask("triage: "),
        Step::EchoTask("records: "),
        Step::EchoTask("writer: "),
    ])
    .await;
    let gw = gateway(&fake).await;

    // Streamable HTTP: one tool, named after the file, `{task}` in.
    let c = client(&gw, "review").await;
    let tools = c.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 1, "{tools:?}");
    assert_eq!(tools[0].name, "review");
    assert_eq!(
        tools[0].description.as_deref(),
        Some("Reviews a request in three steps.")
    );
    assert_eq!(
        Value::Object((*tools[0].input_schema).clone()),
        json!({"type":"object","properties":{"task":{"type":"string","description":"Task for review"}},"required":["task"],"additionalProperties":false})
    );
    c.cancel().await.unwrap();

    // Legacy SSE: the call runs the workflow.
    let mut s = SseClient::connect(&gw.url("/agents/review/sse")).await;
    s.initialize().await;
    let r = s.call_tool(1, "review", json!({"task": "VPN down"})).await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    let answer = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(answer.starts_with("writer: Task: VPN down\n"), "{answer}");
    // Arguments other than `task` are refused as for any agent.
    let bad = s.call_tool(2, "review", json!({"question": "x"})).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    drop(s);
    gw.stop().await;
}

#[tokio::test]
async fn a_sequential_workflow_runs_its_steps_in_order_each_on_the_last_ones_output() {
    // Arrange: triage answers, records searches and reports, writer writes.
    let fake = FakeLlm::start(vec![
        Step::Text("VPN outage, high urgency"),
        Step::ToolCalls(vec![("search_incident", json!({"query": "VPN"}))]),
        Step::Echo("found: "),
        Step::EchoTask("review: "),
    ])
    .await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "review").await;

    // Act
    let handle = start_call(&c, "review", json!({"task": "Is the VPN down?"})).await;
    let result = call_result(handle).await;

    // Assert: the answer is the last step's output.
    assert_eq!(result.is_error, Some(false), "{result:?}");
    let answer = tool_text(&result);
    assert!(
        answer.starts_with(
            "review: Task: Is the VPN down?\nTriage: VPN outage, high urgency\nRecords: found: "
        ),
        "{answer}"
    );
    assert!(answer.contains("INC0012346"), "{answer}");
    // Each step got exactly its input, in order.
    let received = fake.received();
    assert_eq!(received.len(), 4);
    assert_eq!(
        who_and_task(&received[0]),
        ("You are triage.".into(), "Is the VPN down?".into())
    );
    assert_eq!(
        who_and_task(&received[1]),
        (
            "You are records.".into(),
            "Find records for: VPN outage, high urgency".into()
        )
    );
    let (who, task) = who_and_task(&received[3]);
    assert_eq!(who, "You are writer.");
    assert_eq!(task, answer.strip_prefix("review: ").unwrap());
    // Progress names each step, then the steps' own turns.
    let steps: Vec<String> = progress_until(&c, "review: done")
        .await
        .into_iter()
        .filter(|m| m.starts_with("review: "))
        .collect();
    assert_eq!(
        steps,
        [
            "review: step 1/3 triage",
            "review: step 2/3 records",
            "review: step 3/3 writer",
            "review: done"
        ]
    );
    // One audit record per step, under the workflow's; the steps' own calls under theirs.
    let tree = audit_tree(&gw, "review").await;
    assert_eq!(
        summary(&tree),
        [
            row("review", "review", 0, "ok"),
            row("review", "triage", 1, "ok"),
            row("review", "records", 1, "ok"),
            row("records", "search_incident", 2, "ok"),
            row("review", "writer", 1, "ok"),
        ]
    );
    assert_eq!(tree[1]["arguments"], json!({"task": "Is the VPN down?"}));
    assert_eq!(tree[1]["parent_id"], tree[0]["id"]);
    assert_eq!(tree[3]["parent_id"], tree[2]["id"]);
    assert_eq!(tree[2]["turns"], 2, "the step's run is on its record");
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_concurrent_workflow_runs_its_steps_at_once_and_merges_them_in_step_order() {
    // Arrange: both steps' model requests are held until the test lets them go.
    let (first, second) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let fake = FakeLlm::start(vec![
        Step::Held(first.clone(), Box::new(Step::EchoTask("done: "))),
        Step::Held(second.clone(), Box::new(Step::EchoTask("done: "))),
        Step::EchoTask("merged: "),
    ])
    .await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "fanout").await;

    // Act
    let handle = start_call(&c, "fanout", json!({"task": "VPN"})).await;
    // Both requests are in the fake at once, neither answered: the steps run in parallel (a
    // second request would never come while the first is held, one step after the other).
    fake.wait_requests(2).await;
    let mut tasks: Vec<(String, String)> = fake.received().iter().map(who_and_task).collect();
    tasks.sort();
    assert_eq!(
        tasks,
        [
            ("You are records.".to_owned(), "VPN".to_owned()),
            ("You are triage.".to_owned(), "as triage: VPN".to_owned()),
        ]
    );
    // Answer the one that came second first: the merge still follows the step order.
    second.notify_one();
    first.notify_one();
    let result = call_result(handle).await;

    // Assert: the aggregator got the task and the results, in step order, and answered.
    let merged = "## triage\n\ndone: as triage: VPN\n\n## records\n\ndone: VPN";
    assert_eq!(tool_text(&result), format!("merged: VPN\n\n{merged}"));
    let received = fake.received();
    assert_eq!(received.len(), 3);
    assert_eq!(
        who_and_task(&received[2]),
        ("You are writer.".into(), format!("VPN\n\n{merged}"))
    );
    let mut tree = summary(&audit_tree(&gw, "fanout").await);
    tree[1..3].sort();
    assert_eq!(
        tree,
        [
            row("fanout", "fanout", 0, "ok"),
            row("fanout", "records", 1, "ok"),
            row("fanout", "triage", 1, "ok"),
            row("fanout", "writer", 1, "ok"),
        ]
    );

    // Without an aggregator, the merge is the answer.
    fake.push([Step::EchoTask("done: "), Step::EchoTask("done: ")]);
    let p = client(&gw, "fanout-plain").await;
    let plain = ask(&p, "fanout-plain", "VPN").await;
    assert_eq!(tool_text(&plain), merged);
    p.cancel().await.unwrap();
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_handoff_passes_the_conversation_and_stops_offering_handoffs_at_max_handoffs() {
    // Arrange: triage hands to records, records to writer (the second and last handoff
    // allowed), writer tries to hand back anyway, then answers.
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![(
            "handoff_to_records",
            json!({"task": "Look up the VPN incidents"}),
        )]),
        Step::ToolCalls(vec![(
            "handoff_to_writer",
            json!({"task": "Tell the user INC0012346 is in progress"}),
        )]),
        Step::ToolCalls(vec![("handoff_to_triage", json!({"task": "again"}))]),
        Step::Text("INC0012346 is being worked on."),
    ])
    .await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "desk").await;

    // Act
    let handle = start_call(&c, "desk", json!({"task": "My VPN is down"})).await;
    let result = call_result(handle).await;

    // Assert
    assert_eq!(tool_text(&result), "INC0012346 is being worked on.");
    let received = fake.received();
    assert_eq!(received.len(), 4);
    // triage may hand to records only (its `handoffs`); records to either other step.
    assert_eq!(
        who_and_task(&received[0]),
        ("You are triage.".into(), "My VPN is down".into())
    );
    assert_eq!(offered(&received[0]), ["handoff_to_records"]);
    let after_one =
        "My VPN is down\n\n[triage handed the conversation to records: Look up the VPN incidents]";
    assert_eq!(
        who_and_task(&received[1]),
        ("You are records.".into(), after_one.into())
    );
    assert_eq!(
        offered(&received[1]),
        [
            "create_incident",
            "get_incident",
            "handoff_to_triage",
            "handoff_to_writer",
            "search_incident",
            "update_incident"
        ]
    );
    // After max_handoffs = 2, writer is offered no handoff; naming one is an unknown tool.
    let after_two = format!(
        "{after_one}\n\n[records handed the conversation to writer: Tell the user INC0012346 is in progress]"
    );
    assert_eq!(
        who_and_task(&received[2]),
        ("You are writer.".into(), after_two)
    );
    assert!(
        offered(&received[2]).is_empty(),
        "{:?}",
        offered(&received[2])
    );
    let tool_message = received[3].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        tool_message.starts_with("error: there is no tool named \"handoff_to_triage\""),
        "{tool_message}"
    );
    let steps: Vec<String> = progress_until(&c, "desk: done")
        .await
        .into_iter()
        .filter(|m| m.starts_with("desk: "))
        .collect();
    assert_eq!(
        steps,
        [
            "desk: triage has the conversation",
            "desk: handoff 1/2: triage to records",
            "desk: records has the conversation",
            "desk: handoff 2/2: records to writer",
            "desk: writer has the conversation",
            "desk: done"
        ]
    );
    // One record per agent that had the conversation; writer's attempt is its own call.
    assert_eq!(
        summary(&audit_tree(&gw, "desk").await),
        [
            row("desk", "desk", 0, "ok"),
            row("desk", "triage", 1, "ok"),
            row("desk", "records", 1, "ok"),
            row("desk", "writer", 1, "ok"),
            row("writer", "handoff_to_triage", 2, "error"),
        ]
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn cancelling_a_concurrent_workflow_cancels_every_step_and_its_model_request() {
    let fake = FakeLlm::start(vec![Step::Hang, Step::Hang]).await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "fanout-plain").await;
    let handle = start_call(&c, "fanout-plain", json!({"task": "slow"})).await;
    fake.wait_requests(2).await;

    c.peer()
        .notify_cancelled(rmcp::model::CancelledNotificationParam::new(
            Some(handle.id.clone()),
            Some("user gave up".into()),
        ))
        .await
        .unwrap();

    // Both model requests are abandoned, and every record says cancelled.
    fake.wait_abandoned().await;
    fake.wait_abandoned().await;
    let mut tree = summary(&audit_tree(&gw, "fanout-plain").await);
    tree[1..].sort();
    assert_eq!(
        tree,
        [
            row("fanout-plain", "fanout-plain", 0, "cancelled"),
            row("fanout-plain", "records", 1, "cancelled"),
            row("fanout-plain", "triage", 1, "cancelled"),
        ]
    );
    // The session lives on.
    fake.push([Step::EchoTask("done: "), Step::EchoTask("done: ")]);
    assert_eq!(
        tool_text(&ask(&c, "fanout-plain", "again").await),
        "## triage\n\ndone: as triage: again\n\n## records\n\ndone: again"
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn cancelling_a_sequential_workflow_stops_the_running_step_and_starts_no_other() {
    let fake = FakeLlm::start(vec![Step::Hang]).await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "review").await;
    let handle = start_call(&c, "review", json!({"task": "slow"})).await;
    fake.wait_requests(1).await;

    c.peer()
        .notify_cancelled(rmcp::model::CancelledNotificationParam::new(
            Some(handle.id.clone()),
            None,
        ))
        .await
        .unwrap();

    fake.wait_abandoned().await;
    // The workflow's record is written when it has ended: by then only its first step ran.
    assert_eq!(
        summary(&audit_tree(&gw, "review").await),
        [
            row("review", "review", 0, "cancelled"),
            row("review", "triage", 1, "cancelled"),
        ]
    );
    assert_eq!(fake.received().len(), 1);
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_failed_step_fails_the_workflow_naming_it_unless_it_may_continue() {
    let fake = FakeLlm::start(vec![Step::Status(401, None)]).await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "review").await;

    // Fails: the error names the step; no later step runs.
    let failed = ask(&c, "review", "go").await;
    assert_eq!(failed.is_error, Some(true));
    let message = tool_text(&failed);
    assert!(
        message.starts_with("step \"triage\" (agent triage) failed: ")
            && message.contains("refused the credentials (401)"),
        "{message}"
    );
    assert_eq!(fake.received().len(), 1);
    assert_eq!(
        summary(&audit_tree(&gw, "review").await),
        [
            row("review", "review", 0, "error"),
            row("review", "triage", 1, "error"),
        ]
    );

    // Continues (`on_error = "continue"`): the next step is given a note saying why.
    fake.push([Step::Status(401, None), Step::EchoTask("writer got: ")]);
    let t = client(&gw, "tolerant").await;
    let went_on = tool_text(&ask(&t, "tolerant", "go").await);
    t.cancel().await.unwrap();
    assert!(
        went_on.starts_with("writer got: [step \"triage\" failed: ") && went_on.contains("(401)"),
        "{went_on}"
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_tool_step_calls_the_workflows_own_tool_with_its_templated_arguments() {
    let fake = FakeLlm::start(vec![Step::EchoTask("summary of ")]).await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "lookup").await;
    let answer = tool_text(&ask(&c, "lookup", "INC0012346").await);
    assert!(answer.starts_with("summary of Summarise: {"), "{answer}");
    assert!(answer.contains("VPN not working"), "{answer}");
    let tree = audit_tree(&gw, "lookup").await;
    assert_eq!(
        summary(&tree),
        [
            row("lookup", "lookup", 0, "ok"),
            row("lookup", "get_incident", 1, "ok"),
            row("lookup", "writer", 1, "ok"),
        ]
    );
    assert_eq!(tree[1]["arguments"], json!({"number": "INC0012346"}));
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_workflow_can_be_a_step_of_another() {
    let fake = FakeLlm::start(vec![
        Step::EchoTask("done: "),
        Step::EchoTask("done: "),
        Step::EchoTask("writer: "),
    ])
    .await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "outer").await;
    let answer = tool_text(&ask(&c, "outer", "VPN").await);
    assert_eq!(
        answer,
        "writer: ## triage\n\ndone: as triage: VPN\n\n## records\n\ndone: VPN"
    );
    let mut tree = summary(&audit_tree(&gw, "outer").await);
    tree[2..4].sort();
    assert_eq!(
        tree,
        [
            row("outer", "outer", 0, "ok"),
            row("outer", "fanout-plain", 1, "ok"),
            row("fanout-plain", "records", 2, "ok"),
            row("fanout-plain", "triage", 2, "ok"),
            row("outer", "writer", 1, "ok"),
        ]
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn policies_apply_to_every_step_of_a_workflow() {
    // Arrange: the client may run `review`, but not its `writer` step.
    let fake = FakeLlm::start(vec![
        Step::Text("triaged"),
        Step::Text("records"),
        Step::Text("never asked"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    std::fs::write(
        &file,
        r#"
[[clients]]
name = "app"
token = "t-app"
agents = ["*"]

[[policies]]
effect = "allow"
clients = ["app"]
tools = ["*/*"]

[[policies]]
name = "no-writer-in-reviews"
effect = "deny"
clients = ["app"]
tools = ["review/writer"]
"#,
    )
    .unwrap();
    let loaded = switchboard::config::load_gateway(&file, true, &Default::default()).unwrap();
    let gw = TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/workflows"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        settings: switchboard::config::ServerSpec {
            clients: loaded.clients,
            policies: loaded.policies,
            ..Options::default().settings
        },
        ..Options::default()
    })
    .await;
    let c = crate::support::helpers::rmcp_client_with(&gw.url("/agents/review/mcp"), Some("t-app"))
        .await;

    // Act
    let result = c
        .call_tool(CallToolRequestParams::new("review").with_arguments(args(json!({"task": "go"}))))
        .await
        .unwrap();

    // Assert: the refused step fails the workflow, named; its record says refused, by rule.
    assert_eq!(result.is_error, Some(true));
    let message = tool_text(&result);
    assert!(
        message.starts_with("step \"writer\" (agent writer) failed: ")
            && message.contains("no-writer-in-reviews"),
        "{message}"
    );
    assert_eq!(fake.received().len(), 2, "writer's model was never asked");
    let tree = audit_tree(&gw, "review").await;
    assert_eq!(
        summary(&tree),
        [
            row("review", "review", 0, "error"),
            row("review", "triage", 1, "ok"),
            row("review", "records", 1, "ok"),
            row("review", "writer", 1, "refused"),
        ]
    );
    assert_eq!(tree[3]["rule"], "policies[1]");
    assert_eq!(tree[3]["client"], "app");
    let _ = c.cancel().await;
    gw.stop().await;
}

#[tokio::test]
async fn the_shipped_incident_review_gathers_records_then_writes_the_review() {
    let fake = FakeLlm::start(vec![
        // servicenow, the "records" step: searches, then reports.
        Step::ToolCalls(vec![("get_incident", json!({"number": "INC0012346"}))]),
        Step::Echo("Records: "),
        // helpdesk, the "review" step: writes from what it was given.
        Step::Text("Review: VPN outage, INC0012346 in progress; follow up with networking."),
    ])
    .await;
    let gw = TestGateway::spawn_with(Options {
        agents_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("agents"),
        vars: [
            ("OPENAI_BASE_URL".to_owned(), format!("{}/v1", fake.url)),
            ("OPENAI_API_KEY".to_owned(), "test-key".to_owned()),
        ]
        .into(),
        ..Options::default()
    })
    .await;
    let c = client(&gw, "incident-review").await;
    let answer = tool_text(&ask(&c, "incident-review", "Review INC0012346").await);
    assert_eq!(
        answer,
        "Review: VPN outage, INC0012346 in progress; follow up with networking."
    );
    let received = fake.received();
    assert_eq!(received.len(), 3);
    let (_, records_task) = who_and_task(&received[0]);
    assert!(
        records_task.ends_with("Review request: Review INC0012346"),
        "{records_task}"
    );
    let (_, review_task) = who_and_task(&received[2]);
    assert!(
        review_task.contains("Review request: Review INC0012346\n\nRecords:\nRecords: {"),
        "{review_task}"
    );
    assert!(review_task.contains("VPN not working"), "{review_task}");
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn the_workflows_approvals_hold_a_step_until_an_operator_decides() {
    let fake = FakeLlm::start(vec![Step::Text("triaged"), Step::EchoTask("written: ")]).await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "gated").await;
    let handle = start_call(&c, "gated", json!({"task": "go"})).await;

    // The writer step waits; its model has not been asked.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let waiting = loop {
        let (_, body) = gw.get_json("/admin/approvals").await;
        let list = body["approvals"].as_array().unwrap().clone();
        if let Some(first) = list.first() {
            break first.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing waits: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (waiting["agent"].as_str(), waiting["tool"].as_str()),
        (Some("gated"), Some("writer"))
    );
    assert_eq!(waiting["arguments"], json!({"task": "triaged"}));
    assert_eq!(fake.received().len(), 1);
    let resp = crate::support::helpers::http()
        .post(gw.url(&format!(
            "/admin/approvals/{}",
            waiting["id"].as_str().unwrap()
        )))
        .json(&json!({"decision": "approve", "operator": "olivia"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Approved: the step runs, and its record says who approved it.
    assert_eq!(tool_text(&call_result(handle).await), "written: triaged");
    let tree = audit_tree(&gw, "gated").await;
    assert_eq!(tree[2]["tool"], "writer");
    assert_eq!(tree[2]["approval"]["decision"], "approved");
    assert_eq!(tree[2]["approval"]["decided_by"], "olivia");
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_workflow_past_its_timeout_cancels_its_steps_and_says_which_key_to_raise() {
    let fake = FakeLlm::start(vec![Step::Hang]).await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "slow").await;
    let result = ask(&c, "slow", "go").await;
    assert_eq!(result.is_error, Some(true));
    assert_eq!(
        tool_text(&result),
        "the workflow did not finish within 1 s (timeout_secs in [workflow])"
    );
    fake.wait_abandoned().await;
    assert_eq!(
        summary(&audit_tree(&gw, "slow").await),
        [
            row("slow", "slow", 0, "timeout"),
            row("slow", "triage", 1, "cancelled"),
        ]
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}
