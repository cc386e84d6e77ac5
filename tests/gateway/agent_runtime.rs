//! The agent tool: a real LLM tool-calling loop against a scripted OpenAI-compatible fake.

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{
    Options, Recorder, SseClient, TestGateway, args, call_result, fixture, start_call, tool_text,
};

async fn gateway(fake: &FakeLlm) -> TestGateway {
    gateway_with(fake, &[]).await
}

async fn gateway_with(fake: &FakeLlm, extra: &[(&str, String)]) -> TestGateway {
    let mut vars: switchboard::config::Vars =
        [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into();
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/runtime"),
        vars,
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

#[tokio::test]
async fn agent_tool_is_listed_with_mafs_exact_schema() {
    let fake = FakeLlm::start(vec![]).await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "servicenow").await;
    let tools = c.list_all_tools().await.unwrap();
    let agent_tool = tools.iter().find(|t| t.name == "servicenow").unwrap();
    assert_eq!(
        agent_tool.description.as_deref(),
        Some("Manages ServiceNow incidents: create, update, search.")
    );
    assert_eq!(
        Value::Object((*agent_tool.input_schema).clone()),
        json!({"type":"object","properties":{"task":{"type":"string","description":"Task for servicenow"}},"required":["task"],"additionalProperties":false})
    );
    // expose = ["agent"]: only the agent tool.
    let h = client(&gw, "helpdesk").await;
    let names: Vec<_> = h
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["helpdesk"]);
    c.cancel().await.unwrap();
    h.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn the_seeds_three_questions_work_end_to_end() {
    let fake = FakeLlm::start(vec![
        // Q1: create a high-urgency incident for a login failure.
        Step::ToolCalls(vec![(
            "create_incident",
            json!({"short_description": "Login failure affecting all users", "urgency": "High", "impact": "High"}),
        )]),
        Step::Echo("Created: "),
        // Q2: search VPN.
        Step::ToolCalls(vec![("search_incident", json!({"query": "VPN"}))]),
        Step::Echo("Found: "),
        // Q3: resolve INC0012346 with a note.
        Step::ToolCalls(vec![(
            "update_incident",
            json!({"number": "INC0012346", "state": "Resolved", "close_notes": "VPN config fixed"}),
        )]),
        Step::Text("Incident INC0012346 updated to Resolved. Notes: VPN config fixed."),
    ])
    .await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "servicenow").await;

    let a1 = ask(
        &c,
        "servicenow",
        "Create a high urgency incident for a login failure affecting all users.",
    )
    .await;
    assert_eq!(a1.is_error, Some(false), "{a1:?}");
    let a1 = tool_text(&a1);
    assert!(
        a1.starts_with("Created: ") && a1.contains("\"priority\":\"1 - Critical\""),
        "{a1}"
    );

    let a2 = tool_text(&ask(&c, "servicenow", "Search for any VPN related incidents.").await);
    assert!(
        a2.contains("INC0012346") && a2.contains("VPN not working"),
        "{a2}"
    );

    let a3 = ask(
        &c,
        "servicenow",
        "Update incident INC0012346 to Resolved with note 'VPN config fixed'.",
    )
    .await;
    assert_eq!(
        tool_text(&a3),
        "Incident INC0012346 updated to Resolved. Notes: VPN config fixed."
    );

    // The store really changed.
    let got = c
        .call_tool(
            CallToolRequestParams::new("get_incident")
                .with_arguments(args(json!({"number": "INC0012346"}))),
        )
        .await
        .unwrap();
    let got = got.structured_content.unwrap();
    assert_eq!(got["state"], "Resolved");
    assert_eq!(got["close_notes"], "VPN config fixed");

    // What the model saw: instructions, the task, the agent's inner tools (not itself), and
    // the tool results fed back with their call ids.
    let received = fake.received();
    assert_eq!(received.len(), 6);
    let first = &received[0];
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(first.authorization.as_deref(), Some("Bearer test-key"));
    assert_eq!(first.body["model"], "fake-model");
    assert_eq!(first.body["messages"][0]["role"], "system");
    assert_eq!(
        first.body["messages"][0]["content"],
        "You are a ServiceNow assistant. Use your tools to manage incidents."
    );
    assert_eq!(first.body["messages"][1]["role"], "user");
    let mut tool_names: Vec<_> = first.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    tool_names.sort();
    assert_eq!(
        tool_names,
        [
            "create_incident",
            "get_incident",
            "search_incident",
            "update_incident"
        ]
    );
    // Tokens are accounted to the session (6 completions of 11 + 7 tokens).
    let session = gw.state.sessions().list().into_iter().next().unwrap();
    assert_eq!((session.prompt_tokens, session.completion_tokens), (66, 42));
    let second = &received[1].body["messages"];
    assert_eq!(second[2]["role"], "assistant");
    assert_eq!(second[2]["tool_calls"][0]["id"], "call_0_create_incident");
    assert_eq!(second[3]["role"], "tool");
    assert_eq!(second[3]["tool_call_id"], "call_0_create_incident");
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn parallel_tool_calls_all_run_and_a_failing_tool_goes_back_to_the_model() {
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![
            ("get_incident", json!({"number": "INC0012346"})),
            ("get_incident", json!({"number": "INC0999999"})),
            ("no_such_tool", json!({})),
        ]),
        Step::Text("Checked."),
    ])
    .await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "servicenow").await;
    let answer = ask(&c, "servicenow", "Compare two incidents").await;
    assert_eq!(tool_text(&answer), "Checked.");
    let messages = fake.received()[1].body["messages"]
        .as_array()
        .unwrap()
        .clone();
    let tool_msgs: Vec<&Value> = messages.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_msgs.len(), 3);
    assert!(
        tool_msgs[0]["content"]
            .as_str()
            .unwrap()
            .contains("VPN not working")
    );
    assert_eq!(
        tool_msgs[1]["content"],
        "error: incident INC0999999 not found"
    );
    assert!(
        tool_msgs[2]["content"]
            .as_str()
            .unwrap()
            .starts_with("error: there is no tool named \"no_such_tool\"")
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn azure_requests_use_the_deployment_url_and_api_key_header() {
    let fake = FakeLlm::start(vec![Step::Text("Hello from Azure.")]).await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "azure").await;
    assert_eq!(
        tool_text(&ask(&c, "azure", "hi").await),
        "Hello from Azure."
    );
    let r = &fake.received()[0];
    assert_eq!(r.path, "/openai/deployments/gpt-4o-deploy/chat/completions");
    assert_eq!(r.query, "api-version=2024-10-21");
    assert_eq!(r.api_key.as_deref(), Some("azure-secret"));
    assert_eq!(r.authorization, None);
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn progress_notifications_reach_an_rmcp_client() {
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![("search_incident", json!({"query": "VPN"}))]),
        Step::Text("Done."),
    ])
    .await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "servicenow").await;
    let handle = start_call(&c, "servicenow", json!({"task": "find VPN"})).await;
    let token = handle.progress_token.clone();
    let result = call_result(handle).await;
    assert_eq!(tool_text(&result), "Done.");
    // Notifications may trail the response by a hair: poll with a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let messages = loop {
        let got: Vec<_> = c.service().progress.lock().unwrap().clone();
        if got.len() >= 4 || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(messages.iter().all(|p| p.progress_token == token));
    let steps: Vec<_> = messages
        .iter()
        .map(|p| p.message.clone().unwrap())
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
    let values: Vec<f64> = messages.iter().map(|p| p.progress).collect();
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "progress must increase: {values:?}"
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn cancelling_the_call_abandons_the_llm_request_and_the_session_lives_on() {
    let fake = FakeLlm::start(vec![Step::Hang, Step::Text("Still here.")]).await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "servicenow").await;
    let handle = start_call(&c, "servicenow", json!({"task": "slow"})).await;
    fake.wait_requests(1).await;
    c.peer()
        .notify_cancelled(rmcp::model::CancelledNotificationParam::new(
            Some(handle.id.clone()),
            Some("user gave up".into()),
        ))
        .await
        .unwrap();
    fake.wait_abandoned().await;
    // The session still answers.
    assert_eq!(
        tool_text(&ask(&c, "servicenow", "again").await),
        "Still here."
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn ending_the_session_cancels_its_run() {
    let fake = FakeLlm::start(vec![Step::Hang]).await;
    let gw = gateway(&fake).await;
    let mut s = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    s.initialize().await;
    s.post(json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"servicenow","arguments":{"task":"slow"}}}))
        .await;
    fake.wait_requests(1).await;
    drop(s); // the client goes away: the session ends, so does its run
    fake.wait_abandoned().await;
    gw.wait_sessions("the session to end", |n| n == 0).await;
    gw.stop().await;
}

#[tokio::test]
async fn helpdesk_delegates_to_servicenow() {
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![("servicenow", json!({"task": "Find VPN incidents"}))]), // helpdesk
        Step::ToolCalls(vec![("search_incident", json!({"query": "VPN"}))]),          // servicenow
        Step::Echo("servicenow says: "),                                              // servicenow
        Step::Echo("helpdesk relays: "),                                              // helpdesk
    ])
    .await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "helpdesk").await;
    let answer = tool_text(&ask(&c, "helpdesk", "Is the VPN broken?").await);
    assert!(
        answer.starts_with("helpdesk relays: servicenow says: "),
        "{answer}"
    );
    assert!(answer.contains("INC0012346"), "{answer}");
    let received = fake.received();
    assert_eq!(received.len(), 4);
    // The nested run's tokens count for the helpdesk session too.
    let session = gw.state.sessions().list().into_iter().next().unwrap();
    assert_eq!((session.prompt_tokens, session.completion_tokens), (44, 28));
    // The nested run got the task the helpdesk model wrote, with servicenow's instructions.
    assert_eq!(
        received[1].body["messages"][0]["content"],
        "You are a ServiceNow assistant. Use your tools to manage incidents."
    );
    assert_eq!(
        received[1].body["messages"][1]["content"],
        "Find VPN incidents"
    );
    let helpdesk_tools: Vec<_> = received[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].clone())
        .collect();
    assert_eq!(helpdesk_tools, [json!("servicenow")]);
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn an_upstream_mcp_server_serves_as_tools() {
    // The upstream is another gateway: a real rmcp server, started in this test.
    let upstream = TestGateway::spawn().await;
    let fake = FakeLlm::start(vec![]).await;
    let gw = gateway_with(
        &fake,
        &[("UPSTREAM_URL", upstream.url("/agents/servicenow/mcp"))],
    )
    .await;
    let c = client(&gw, "frontdesk").await;
    let mut names: Vec<_> = c
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["sn_get_incident", "sn_search_incident"]);
    let got = c
        .call_tool(
            CallToolRequestParams::new("sn_get_incident")
                .with_arguments(args(json!({"number": "INC0012346"}))),
        )
        .await
        .unwrap();
    assert_eq!(got.is_error, Some(false), "{got:?}");
    let body = got
        .structured_content
        .clone()
        .unwrap_or_else(|| serde_json::from_str(&tool_text(&got)).unwrap());
    assert_eq!(body["short_description"], "VPN not working");
    // The upstream goes away: a clear tool error, and the session still answers.
    upstream.stop().await;
    let down = c
        .call_tool(
            CallToolRequestParams::new("sn_get_incident")
                .with_arguments(args(json!({"number": "INC0012346"}))),
        )
        .await
        .unwrap();
    assert_eq!(down.is_error, Some(true));
    assert!(!c.list_all_tools().await.unwrap().is_empty());
    c.cancel().await.unwrap();
    gw.stop().await;
}

/// Each failure is an `isError` result whose message says what to fix; the session answers
/// the next call.
#[tokio::test]
async fn every_failure_is_a_clear_tool_error_and_the_session_keeps_working() {
    let fake = FakeLlm::start(vec![]).await;
    let gw = gateway(&fake).await;
    let mut s = SseClient::connect(&gw.url("/agents/short/sse")).await;
    s.initialize().await;
    let mut id = 10;
    let mut check = async |steps: Vec<Step>, expected: &str| {
        fake.push(steps);
        id += 1;
        let r = s.call_tool(id, "short", json!({"task": "go"})).await;
        assert_eq!(r["result"]["isError"], true, "{expected}: {r}");
        let msg = r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
        assert_eq!(
            fake.remaining(),
            0,
            "{expected}: every scripted answer was asked for"
        );
        // The session still answers.
        fake.push([Step::Text("ok")]);
        id += 1;
        let ok = s.call_tool(id, "short", json!({"task": "again"})).await;
        assert_eq!(ok["result"]["content"][0]["text"], "ok", "{ok}");
    };
    check(vec![Step::Status(429, Some("0")); 4], "rate limiting (429)").await;
    check(
        vec![Step::Status(500, None); 4],
        "failed (500) after retries",
    )
    .await;
    check(
        vec![Step::Status(401, None)],
        "refused the credentials (401)",
    )
    .await;
    check(
        vec![Step::Status(404, None)],
        "does not know model \"fake-model\"",
    )
    .await;
    check(vec![Step::Malformed], "not a chat completion").await;
    check(
        vec![Step::Slow(
            Duration::from_secs(3),
            Box::new(Step::Text("late")),
        )],
        "did not answer within 1 s",
    )
    .await;
    let lookup = || Step::ToolCalls(vec![("get_incident", json!({"number": "INC0012346"}))]);
    check(vec![lookup(), lookup(), lookup()], "max_turns = 3").await;
    // A 429 answered once is retried (Retry-After honoured) and the run succeeds.
    fake.push([Step::Status(429, Some("0")), Step::Text("after a retry")]);
    let r = s.call_tool(99, "short", json!({"task": "go"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "after a retry", "{r}");
    // Bad arguments to the agent tool are a JSON-RPC error.
    let bad = s.call_tool(100, "short", json!({"question": "go"})).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    drop(s);
    gw.stop().await;
}

/// The run timeout ends a run whose model has not answered, whatever turn it is on. The
/// margins come from the agent's settings (`patient.toml`: run 2 s, each request 10 s,
/// `max_turns = 3`), not from a race: two turns answer at once, the third is held until the
/// run gives up, so neither `max_turns` nor the request timeout can end it first, on any load
/// short of two instant turns taking 2 s.
#[tokio::test]
async fn the_run_timeout_ends_a_run_on_any_turn() {
    let lookup = || Step::ToolCalls(vec![("get_incident", json!({"number": "INC0012346"}))]);
    let fake = FakeLlm::start(vec![lookup(), lookup(), Step::Hang]).await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "patient").await;
    let started = std::time::Instant::now();
    let r = ask(&c, "patient", "go").await;
    let took = started.elapsed();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    assert_eq!(
        tool_text(&r),
        "the run did not finish within 2 s (run_timeout_secs in [model])"
    );
    assert_eq!(fake.received().len(), 3, "the third turn was under way");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    fake.wait_abandoned().await;
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_missing_key_for_the_hosted_api_says_what_to_set() {
    let fake = FakeLlm::start(vec![]).await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "nokey").await;
    let r = ask(&c, "nokey", "hello").await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(tool_text(&r), "model not configured: set OPENAI_API_KEY");
    assert!(fake.received().is_empty());
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn deleting_the_streamable_session_cancels_its_run() {
    let fake = FakeLlm::start(vec![Step::Hang]).await;
    let gw = gateway(&fake).await;
    let c = client(&gw, "servicenow").await;
    let _pending = start_call(&c, "servicenow", json!({"task": "slow"})).await;
    fake.wait_requests(1).await;
    c.cancel().await.unwrap(); // rmcp's client DELETEs its session
    fake.wait_abandoned().await;
    gw.wait_sessions("the deleted session to leave", |n| n == 0)
        .await;
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_cancels_running_agent_calls() {
    let fake = FakeLlm::start(vec![Step::Hang]).await;
    let gw = gateway(&fake).await;
    let mut s = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    s.initialize().await;
    s.post(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"servicenow","arguments":{"task":"slow"}}}))
        .await;
    fake.wait_requests(1).await;
    gw.stop().await;
    fake.wait_abandoned().await;
    s.closed().await;
}

#[tokio::test]
async fn shutdown_lets_calls_in_flight_finish_within_the_grace_period() {
    let fake = FakeLlm::start(vec![Step::Slow(
        Duration::from_millis(700),
        Box::new(Step::Text("finished in time")),
    )])
    .await;
    let gw = gateway(&fake).await;
    let mut s = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    s.initialize().await;
    s.post(json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"servicenow","arguments":{"task":"slow"}}}))
        .await;
    fake.wait_requests(1).await;
    let url = gw.url("/readyz");
    let stopping = tokio::spawn(gw.stop()); // grace: 2 s in tests
    // Readiness fails at once; the call still finishes and its answer arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match crate::support::helpers::http().get(&url).send().await {
            Ok(r) if r.status() == 503 => break,
            Err(_) => break, // already closed for new connections
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = s.next_message().await;
    assert_eq!(answer["id"], 4);
    assert_eq!(
        answer["result"]["content"][0]["text"], "finished in time",
        "{answer}"
    );
    s.closed().await;
    stopping.await.unwrap();
}

#[tokio::test]
async fn calls_still_running_after_the_grace_period_get_a_clear_error() {
    let fake = FakeLlm::start(vec![Step::Hang]).await;
    let gw = TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/runtime"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        settings: switchboard::config::ServerSpec {
            shutdown_grace: Duration::from_millis(500),
            ..Options::default().settings
        },
        ..Options::default()
    })
    .await;
    let mut s = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    s.initialize().await;
    s.post(json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"servicenow","arguments":{"task":"forever"}}}))
        .await;
    fake.wait_requests(1).await;
    let stopping = tokio::spawn(gw.stop());
    let answer = s.next_message().await;
    assert_eq!(answer["id"], 8);
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{answer}"
    );
    fake.wait_abandoned().await;
    s.closed().await;
    stopping.await.unwrap();
}

#[tokio::test]
async fn ending_a_streamable_session_with_its_call_stream_open_cancels_the_run() {
    use crate::support::helpers::{http, streamable_initialize, streamable_post};
    let fake = FakeLlm::start(vec![Step::Hang, Step::Hang]).await;
    let gw = gateway(&fake).await;
    let http = http();
    let url = gw.url("/agents/servicenow/mcp");
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"servicenow","arguments":{"task":"slow"}}}).to_string();

    // The client's DELETE, while the call's response stream is still open.
    let sid = streamable_initialize(&http, &url).await;
    let stream = streamable_post(&http, &url, Some(&sid), call.clone()).await;
    assert_eq!(stream.status(), 200);
    fake.wait_requests(1).await;
    let resp = http
        .delete(&url)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    abandoned_at_once(&fake).await;
    drop(stream);

    // The admin's kill, the same way.
    let sid = streamable_initialize(&http, &url).await;
    let stream = streamable_post(&http, &url, Some(&sid), call).await;
    assert_eq!(stream.status(), 200);
    fake.wait_requests(2).await;
    let resp = http
        .delete(gw.url(&format!("/admin/sessions/{sid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    abandoned_at_once(&fake).await;
    drop(stream);
    gw.wait_sessions("both sessions to end", |n| n == 0).await;
    gw.stop().await;
}

/// The hanging LLM request is dropped promptly (rmcp alone lets a closed session's calls run
/// on for seconds while it drains).
async fn abandoned_at_once(fake: &FakeLlm) {
    tokio::time::timeout(Duration::from_secs(2), fake.wait_abandoned())
        .await
        .expect("the run must be cancelled when its session ends, not seconds later");
}
