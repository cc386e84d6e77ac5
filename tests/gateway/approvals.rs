//! Human approval of tool calls (`[[approvals]]` in an agent file), on a real gateway: by an
//! operator through `GET /admin/approvals` and `POST /admin/approvals/{id}` (approve, deny,
//! timeout, the caller cancelling or leaving while it waits, progress while it waits), inside
//! an agent run too; and by the calling user through their MCP client's elicitation (accept,
//! decline, dismiss, a client that cannot be asked). Every decision is in the call's audit
//! record.

use std::time::Duration;

use rmcp::model::{ElicitationAction, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

use crate::support::asking::{User, agents_with_rules, decide_at, pending};
use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{
    Options, Recorder, TestGateway, call_result, http, settings_with_clients, start_call, tool_text,
};

const CLIENTS: &str = r#"
[[clients]]
name = "helpdesk-app"
token = "t-help"
agents = ["*"]
"#;

const OPERATOR_RULES: &str = r#"
[[approvals]]
tools = ["update_incident"]
by = "operator"
when = { state = "Resolved" }
message = "Resolving closes the ticket for the customer."

[[approvals]]
tools = ["create_*"]
by = "operator"
when = { urgency = ["1", "High"] }
timeout_secs = 1
"#;

const CLIENT_RULES: &str = r#"
[[approvals]]
tools = ["update_incident"]
by = "client"
"#;

/// The runtime fixture agents on `fake`, the servicenow agent with `rules` appended.
async fn gateway(fake: &FakeLlm, rules: &str) -> (TestGateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    agents_with_rules(dir.path(), rules);
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.path().to_owned(),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        settings: {
            let mut settings = settings_with_clients(CLIENTS, &[]);
            settings.audit.redact =
                vec![switchboard::config::audit::RedactRule::parse("work_notes").unwrap()];
            settings
        },
        ..Options::default()
    })
    .await;
    (gw, dir)
}

/// A client of `agent` as helpdesk-app, keeping its progress notifications.
async fn client(gw: &TestGateway, agent: &str) -> RunningService<RoleClient, Recorder> {
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    http();
    let config =
        StreamableHttpClientTransportConfig::with_uri(gw.url(&format!("/agents/{agent}/mcp")))
            .auth_header("t-help");
    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
    Recorder::default().serve(transport).await.unwrap()
}

/// `POST /admin/approvals/{id}` with `body`: status and JSON.
async fn decide(gw: &TestGateway, id: &str, body: Value) -> (u16, Value) {
    decide_at(gw.url(&format!("/admin/approvals/{id}")), body).await
}

/// The audit records of `tool`, newest first.
/// The fake LLM's turns of a helpdesk run that has `servicenow` resolve `number` with the
/// `update_incident` arguments `update`: the helpdesk's call, servicenow's, then both answers.
fn resolving(number: &str, update: Value) -> Vec<Step> {
    vec![
        Step::ToolCalls(vec![(
            "servicenow",
            json!({"task": format!("resolve {number}")}),
        )]),
        Step::ToolCalls(vec![("update_incident", update)]),
        Step::Echo("servicenow: "),
        Step::Echo("helpdesk: "),
    ]
}

async fn records_of(gw: &TestGateway, tool: &str) -> Vec<Value> {
    gw.state.audit().expect("the trail is on").flush().await;
    let (status, page) = gw.get_json(&format!("/admin/audit?tool={tool}")).await;
    assert_eq!(status, 200, "{page}");
    page["records"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_operator_approves_or_denies_a_call_and_the_decision_is_audited() {
    let fake = FakeLlm::start(vec![]).await;
    let (gw, _dir) = gateway(&fake, OPERATOR_RULES).await;
    let c = client(&gw, "servicenow").await;

    // Not covered (the condition does not hold): runs at once.
    let handle = start_call(
        &c,
        "update_incident",
        json!({"number": "INC0012345", "state": "In Progress"}),
    )
    .await;
    let result = call_result(handle).await;
    assert_ne!(result.is_error, Some(true), "{}", tool_text(&result));
    assert!(pending(&gw, 0).await.is_empty());

    // Covered: waits until an operator approves, with progress meanwhile.
    let handle = start_call(
        &c,
        "update_incident",
        json!({"number": "INC0012345", "state": "resolved", "close_notes": "fixed", "work_notes": "called Bob at home"}),
    )
    .await;
    let token = handle.progress_token.clone();
    let waiting = pending(&gw, 1).await;
    let p = &waiting[0];
    assert_eq!(p["agent"], "servicenow");
    assert_eq!(p["tool"], "update_incident");
    assert_eq!(p["rule"], "approvals[0]");
    assert_eq!(p["conditions"], "state = \"Resolved\"");
    assert_eq!(
        p["message"],
        "Resolving closes the ticket for the customer."
    );
    assert_eq!(p["client"], "helpdesk-app");
    assert_eq!(p["caller"], "client helpdesk-app");
    // Arguments are shown redacted as in the trail ([audit] redact).
    assert_eq!(p["arguments"]["work_notes"], "[redacted]");
    assert_eq!(p["arguments"]["close_notes"], "fixed");
    assert!(p["expires_ms"].as_i64().unwrap() > p["requested_ms"].as_i64().unwrap());
    let id = p["id"].as_str().unwrap().to_owned();
    // The caller is told it waits.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let progress = c.service().progress.lock().unwrap().clone();
        if let Some(p) = progress.iter().find(|p| p.progress_token == token) {
            let message = p.message.clone().unwrap_or_default();
            assert!(
                message.contains("waits for an operator's approval"),
                "{message}"
            );
            assert!(message.contains(&id), "{message}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress while waiting"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Bad decisions are refused, and leave the call waiting.
    let (status, body) = decide(&gw, &id, json!({"decision": "maybe"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = decide(&gw, "no-such-id", json!({"decision": "approve"})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "approval_not_found");
    assert_eq!(pending(&gw, 1).await.len(), 1);

    let (status, body) = decide(
        &gw,
        &id,
        json!({"decision": "approve", "reason": "customer confirmed", "operator": "olivia"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "approved");
    assert_eq!(body["decided_by"], "olivia");
    let result = call_result(handle).await;
    assert_ne!(result.is_error, Some(true), "{}", tool_text(&result));
    assert!(
        tool_text(&result).contains("Resolved"),
        "{}",
        tool_text(&result)
    );
    // Deciding twice: the call is no longer waiting.
    let (status, _) = decide(&gw, &id, json!({"decision": "deny"})).await;
    assert_eq!(status, 404);

    // Denied: a tool error saying so and why; the tool did not run.
    let handle = start_call(
        &c,
        "update_incident",
        json!({"number": "INC0012346", "state": "Resolved", "close_notes": "fixed"}),
    )
    .await;
    let id2 = pending(&gw, 1).await[0]["id"].as_str().unwrap().to_owned();
    let (status, body) = decide(
        &gw,
        &id2,
        json!({"decision": "deny", "reason": "not confirmed with the customer"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["decided_by"].as_str().unwrap().starts_with("admin@"),
        "{body}"
    );
    let result = call_result(handle).await;
    assert_eq!(result.is_error, Some(true));
    let text = tool_text(&result);
    assert!(text.contains("denied"), "{text}");
    assert!(text.contains("not confirmed with the customer"), "{text}");
    // Both decisions are in the calls' audit records.
    let records = records_of(&gw, "update_incident").await;
    assert_eq!(records.len(), 3, "{records:?}");
    let (denied, approved, plain) = (&records[0], &records[1], &records[2]);
    assert_eq!(plain["approval"], Value::Null);
    assert_eq!(approved["outcome"], "ok");
    assert_eq!(approved["decision"], "allow");
    assert_eq!(approved["approval"]["id"], id);
    assert_eq!(approved["approval"]["decision"], "approved");
    assert_eq!(approved["approval"]["by"], "operator");
    assert_eq!(approved["approval"]["decided_by"], "olivia");
    assert_eq!(approved["approval"]["reason"], "customer confirmed");
    assert_eq!(approved["approval"]["rule"], "approvals[0]");
    assert_eq!(denied["outcome"], "refused");
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["approval"]["decision"], "denied");
    assert_eq!(
        denied["approval"]["reason"],
        "not confirmed with the customer"
    );
    assert!(denied["error"].as_str().unwrap().contains("denied"));

    let metrics = http()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"switchboard_approvals_total{by="operator",decision="approved"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_approvals_pending 0"),
        "{metrics}"
    );
    let _ = c.cancel().await;
    gw.stop().await;
}

#[tokio::test]
async fn no_decision_in_time_denies_and_cancelling_or_leaving_withdraws() {
    let fake = FakeLlm::start(vec![]).await;
    let (gw, _dir) = gateway(&fake, OPERATOR_RULES).await;
    let c = client(&gw, "servicenow").await;

    // timeout_secs = 1 for a High-urgency create.
    let started = std::time::Instant::now();
    let handle = start_call(
        &c,
        "create_incident",
        json!({"short_description": "Mail down", "urgency": "1"}),
    )
    .await;
    let result = call_result(handle).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(result.is_error, Some(true));
    let text = tool_text(&result);
    assert!(
        text.contains("no operator approved it within 1 s"),
        "{text}"
    );
    assert!(pending(&gw, 0).await.is_empty());

    // The caller cancels while it waits: the request is withdrawn.
    let handle = start_call(
        &c,
        "update_incident",
        json!({"number": "INC0012345", "state": "Resolved"}),
    )
    .await;
    let id = pending(&gw, 1).await[0]["id"].as_str().unwrap().to_owned();
    handle.cancel(Some("changed my mind".into())).await.unwrap();
    pending(&gw, 0).await;
    let (status, _) = decide(&gw, &id, json!({"decision": "approve"})).await;
    assert_eq!(status, 404, "a withdrawn request cannot be approved");

    // The session ends while it waits: withdrawn too.
    let c2 = client(&gw, "servicenow").await;
    let _handle = start_call(
        c2.peer(),
        "update_incident",
        json!({"number": "INC0012346", "state": "Resolved"}),
    )
    .await;
    pending(&gw, 1).await;
    let _ = c2.cancel().await;
    pending(&gw, 0).await;

    let records = records_of(&gw, "create_incident").await;
    assert_eq!(records[0]["outcome"], "refused");
    assert_eq!(records[0]["approval"]["decision"], "timeout");
    let updates = records_of(&gw, "update_incident").await;
    assert!(!updates.is_empty(), "the cancelled call is recorded");
    assert_eq!(updates.last().unwrap()["outcome"], "cancelled");
    assert_eq!(updates.last().unwrap()["approval"]["decision"], "withdrawn");
    let _ = c.cancel().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_call_an_agent_run_makes_waits_for_the_operator_inside_the_run() {
    let mut steps = resolving(
        "INC0012345",
        json!({"number": "INC0012345", "state": "Resolved", "close_notes": "done"}),
    );
    steps.extend(resolving(
        "INC0012346",
        json!({"number": "INC0012346", "state": "Resolved"}),
    ));
    let fake = FakeLlm::start(steps).await;
    let (gw, _dir) = gateway(&fake, OPERATOR_RULES).await;
    let c = client(&gw, "helpdesk").await;

    let handle = start_call(&c, "helpdesk", json!({"task": "resolve the VPN ticket"})).await;
    let p = pending(&gw, 1).await.remove(0);
    assert_eq!(p["agent"], "servicenow");
    assert_eq!(p["tool"], "update_incident");
    let root_id = p["root_id"].as_str().unwrap().to_owned();
    let (status, _) = decide(
        &gw,
        p["id"].as_str().unwrap(),
        json!({"decision": "approve"}),
    )
    .await;
    assert_eq!(status, 200);
    let answer = tool_text(&call_result(handle).await);
    assert!(answer.contains("Resolved"), "{answer}");

    // Denied: the model reads the denial and its reason, and says so.
    let handle = start_call(&c, "helpdesk", json!({"task": "resolve the other one"})).await;
    let p = pending(&gw, 1).await.remove(0);
    decide(
        &gw,
        p["id"].as_str().unwrap(),
        json!({"decision": "deny", "reason": "wrong ticket"}),
    )
    .await;
    let answer = tool_text(&call_result(handle).await);
    assert!(answer.contains("denied by an operator"), "{answer}");
    assert!(answer.contains("wrong ticket"), "{answer}");

    // The approved run is one tree, the approval on the update's record.
    gw.state.audit().unwrap().flush().await;
    let (_, tree) = gw.get_json(&format!("/admin/audit/{root_id}")).await;
    let records = tree["records"].as_array().unwrap();
    let update = records
        .iter()
        .find(|r| r["tool"] == "update_incident")
        .unwrap();
    assert_eq!(update["approval"]["decision"], "approved", "{tree}");
    assert_eq!(update["depth"], 2);
    let _ = c.cancel().await;
    gw.stop().await;
}

/// How a user answers an approval request: the action, and the reason written in the form.
type Answer = Option<(ElicitationAction, Option<&'static str>)>;

/// A user at `protocol` answering `answer` (the reason as the form's `reason` field).
fn approver(protocol: ProtocolVersion, answer: Answer) -> User {
    User::new(
        protocol,
        answer.map(|(action, reason)| (action, reason.map(|r| json!({"reason": r})))),
    )
}

/// Calls update_incident (state Resolved) as a client answering `answer`: the result, and
/// what the client was asked.
async fn call_as(gw: &TestGateway, answer: Answer) -> (rmcp::model::CallToolResult, Vec<String>) {
    call_at(gw, ProtocolVersion::V_2025_11_25, answer).await
}

/// As [`call_as`], at `protocol`: a 2026-07-28 client is asked in `input_required` rounds,
/// which rmcp's `call_tool` drives through the same handler.
async fn call_at(
    gw: &TestGateway,
    protocol: ProtocolVersion,
    answer: Answer,
) -> (rmcp::model::CallToolResult, Vec<String>) {
    let stateless = protocol >= ProtocolVersion::V_2026_07_28;
    let user = approver(protocol, answer);
    let c = user
        .connect(&gw.url("/agents/servicenow/mcp"), Some("t-help"))
        .await;
    let arguments = json!({"number": "INC0012345", "state": "Resolved", "close_notes": "fixed"});
    let result = if stateless {
        c.call_tool(
            rmcp::model::CallToolRequestParams::new("update_incident")
                .with_arguments(arguments.as_object().unwrap().clone()),
        )
        .await
        .expect("the call is answered")
    } else {
        call_result(start_call(c.peer(), "update_incident", arguments).await).await
    };
    let _ = c.cancel().await;
    (result, user.messages())
}

#[tokio::test]
async fn the_calling_user_approves_through_elicitation() {
    let fake = FakeLlm::start(vec![]).await;
    let (gw, _dir) = gateway(&fake, CLIENT_RULES).await;

    let (result, asked) = call_as(&gw, Some((ElicitationAction::Accept, None))).await;
    assert_ne!(result.is_error, Some(true), "{}", tool_text(&result));
    assert_eq!(asked.len(), 1);
    for shown in [
        "servicenow",
        "update_incident",
        "INC0012345",
        "Resolved",
        "helpdesk-app",
    ] {
        assert!(asked[0].contains(shown), "{shown} not in {}", asked[0]);
    }

    let (result, _) = call_as(&gw, Some((ElicitationAction::Decline, Some("not yet")))).await;
    assert_eq!(result.is_error, Some(true));
    let text = tool_text(&result);
    assert!(text.contains("denied by the user: not yet"), "{text}");

    let (result, _) = call_as(&gw, Some((ElicitationAction::Cancel, None))).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        tool_text(&result).contains("dismissed"),
        "{}",
        tool_text(&result)
    );

    let (result, asked) = call_as(&gw, None).await;
    assert!(asked.is_empty());
    assert_eq!(result.is_error, Some(true));
    let text = tool_text(&result);
    assert!(
        text.contains("requires approval by the calling user"),
        "{text}"
    );
    assert!(text.contains("elicitation"), "{text}");

    let records = records_of(&gw, "update_incident").await;
    let decisions: Vec<&str> = records
        .iter()
        .rev()
        .map(|r| r["approval"]["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["approved", "denied", "denied", "unavailable"]);
    assert_eq!(records[3]["approval"]["by"], "client");
    assert_eq!(records[3]["approval"]["decided_by"], "client helpdesk-app");
    assert_eq!(records[2]["approval"]["reason"], "not yet");
    assert_eq!(records[3]["outcome"], "ok");
    assert_eq!(records[0]["outcome"], "refused");
    gw.stop().await;
}

#[tokio::test]
async fn a_2026_07_28_client_approves_in_an_input_required_round() {
    let fake = FakeLlm::start(vec![]).await;
    let (gw, _dir) = gateway(&fake, CLIENT_RULES).await;
    let latest = ProtocolVersion::V_2026_07_28;

    let (result, asked) =
        call_at(&gw, latest.clone(), Some((ElicitationAction::Accept, None))).await;
    assert_ne!(result.is_error, Some(true), "{}", tool_text(&result));
    assert_eq!(asked.len(), 1);
    assert!(asked[0].contains("update_incident"), "{}", asked[0]);

    let (result, _) = call_at(
        &gw,
        latest.clone(),
        Some((ElicitationAction::Decline, Some("wait for the customer"))),
    )
    .await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        tool_text(&result).contains("denied by the user: wait for the customer"),
        "{}",
        tool_text(&result)
    );

    let (result, asked) = call_at(&gw, latest, None).await;
    assert!(asked.is_empty());
    assert_eq!(result.is_error, Some(true));
    assert!(
        tool_text(&result).contains("cannot be asked"),
        "{}",
        tool_text(&result)
    );

    // The wire: the first answer is input_required with the question and a state; a state
    // that is not one this gateway gave (or given to another caller) is refused clearly.
    let c = approver(
        ProtocolVersion::V_2026_07_28,
        Some((ElicitationAction::Accept, None)),
    )
    .connect(&gw.url("/agents/servicenow/mcp"), Some("t-help"))
    .await;
    let params = rmcp::model::CallToolRequestParams::new("update_incident").with_arguments(
        json!({"number": "INC0012346", "state": "Resolved", "close_notes": "fixed"})
            .as_object()
            .unwrap()
            .clone(),
    );
    let first = c.call_tool_once(params.clone()).await.unwrap();
    let rmcp::model::CallToolResponse::InputRequired(input) = first else {
        panic!("expected input_required: {first:?}");
    };
    let wire = serde_json::to_value(&input).unwrap();
    assert_eq!(wire["resultType"], "input_required", "{wire}");
    assert_eq!(
        wire["inputRequests"]["approval"]["method"], "elicitation/create",
        "{wire}"
    );
    assert_eq!(
        wire["inputRequests"]["approval"]["params"]["mode"], "form",
        "{wire}"
    );
    let state = input.request_state.clone().unwrap();
    let mut forged = params.clone();
    forged.request_state = Some("not-a-state".into());
    forged.input_responses = Some([("approval".to_owned(), json!({"action": "accept"}))].into());
    let err = c.call_tool_once(forged).await.unwrap_err().to_string();
    assert!(err.contains("requestState"), "{err}");
    // Without the answer: refused, and the call still waits for it.
    let mut empty = params.clone();
    empty.request_state = Some(state.clone());
    let err = c.call_tool_once(empty).await.unwrap_err().to_string();
    assert!(err.contains("approval"), "{err}");
    let mut retry = params;
    retry.request_state = Some(state);
    retry.input_responses = Some(
        [(
            "approval".to_owned(),
            json!({"action": "decline", "content": {"reason": "no"}}),
        )]
        .into(),
    );
    let done = c.call_tool_once(retry).await.unwrap();
    let rmcp::model::CallToolResponse::Complete(result) = done else {
        panic!("expected the result: {done:?}");
    };
    assert_eq!(result.is_error, Some(true));
    assert!(tool_text(&result).contains("denied by the user: no"));
    let _ = c.cancel().await;

    let records = records_of(&gw, "update_incident").await;
    let decisions: Vec<&str> = records
        .iter()
        .rev()
        .map(|r| r["approval"]["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["approved", "denied", "unavailable", "denied"]);
    assert_eq!(records[3]["transport"], "streamable_http");
    gw.stop().await;
}

#[tokio::test]
async fn a_run_deep_inside_a_2026_07_28_call_asks_its_user_and_goes_on() {
    let fake = FakeLlm::start(resolving(
        "INC0012345",
        json!({"number": "INC0012345", "state": "Resolved", "close_notes": "done"}),
    ))
    .await;
    let (gw, _dir) = gateway(&fake, CLIENT_RULES).await;
    let user = approver(
        ProtocolVersion::V_2026_07_28,
        Some((ElicitationAction::Accept, Some("go ahead"))),
    );
    let c = user
        .connect(&gw.url("/agents/helpdesk/mcp"), Some("t-help"))
        .await;
    // rmcp's call_tool drives the rounds: input_required, then the retry with the answer.
    let result = c
        .call_tool(
            rmcp::model::CallToolRequestParams::new("helpdesk").with_arguments(
                json!({"task": "close the VPN ticket"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .expect("the call is answered");
    let answer = tool_text(&result);
    assert!(answer.starts_with("helpdesk: servicenow: "), "{answer}");
    assert!(answer.contains("Resolved"), "{answer}");
    assert_eq!(user.messages().len(), 1);
    let records = records_of(&gw, "update_incident").await;
    assert_eq!(records[0]["approval"]["decision"], "approved");
    assert_eq!(records[0]["approval"]["reason"], "go ahead");
    assert_eq!(records[0]["depth"], 2);
    let _ = c.cancel().await;
    gw.stop().await;
}

#[tokio::test]
async fn the_seeds_three_questions_through_the_shipped_helpdesk_make_three_trees_and_the_update_waits()
 {
    // The shipped agents, with the approval the servicenow file suggests uncommented.
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("agents");
    for f in ["servicenow.toml", "helpdesk.toml"] {
        let text = std::fs::read_to_string(shipped.join(f)).unwrap();
        let text = text.replace("# [[approvals]]", "[[approvals]]");
        let text = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if ["tools = ", "by = ", "when = ", "message = "]
                        .iter()
                        .any(|k| rest.starts_with(k)) =>
                {
                    rest.to_owned()
                }
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    assert!(
        std::fs::read_to_string(dir.path().join("servicenow.toml"))
            .unwrap()
            .contains("\n[[approvals]]\ntools = [\"update_incident\"]"),
        "agents/servicenow.toml suggests an approval for update_incident"
    );
    let question = |tool: &'static str, args: Value| {
        vec![
            Step::ToolCalls(vec![("servicenow", json!({"task": "do it"}))]),
            Step::ToolCalls(vec![(tool, args)]),
            Step::Echo("servicenow: "),
            Step::Echo("helpdesk: "),
        ]
    };
    let mut steps = question(
        "create_incident",
        json!({"short_description": "Login failure affecting all users", "urgency": "High"}),
    );
    steps.extend(question("search_incident", json!({"query": "VPN"})));
    steps.extend(question(
        "update_incident",
        json!({"number": "INC0012346", "state": "Resolved", "close_notes": "VPN config fixed"}),
    ));
    let fake = FakeLlm::start(steps).await;
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.path().to_owned(),
        vars: [
            ("OPENAI_BASE_URL".to_owned(), format!("{}/v1", fake.url)),
            ("OPENAI_API_KEY".to_owned(), "test-key".to_owned()),
        ]
        .into(),
        settings: settings_with_clients(CLIENTS, &[]),
        ..Options::default()
    })
    .await;
    let c = client(&gw, "helpdesk").await;
    let questions = [
        "Create a high urgency incident for a login failure affecting all users.",
        "Search for any VPN related incidents.",
        "Update incident INC0012346 to Resolved with note 'VPN config fixed'.",
    ];
    let mut answers = Vec::new();
    for (i, q) in questions.iter().enumerate() {
        let handle = start_call(&c, "helpdesk", json!({"task": q})).await;
        if i == 2 {
            // The update waits until an operator approves it.
            let p = pending(&gw, 1).await.remove(0);
            assert_eq!(
                (p["agent"].as_str(), p["tool"].as_str()),
                (Some("servicenow"), Some("update_incident"))
            );
            let (status, _) = decide(
                &gw,
                p["id"].as_str().unwrap(),
                json!({"decision": "approve"}),
            )
            .await;
            assert_eq!(status, 200);
        } else {
            assert!(pending(&gw, 0).await.is_empty());
        }
        let result = call_result(handle).await;
        assert_ne!(result.is_error, Some(true), "{}", tool_text(&result));
        answers.push(tool_text(&result));
    }
    assert!(answers[0].contains("Login failure"), "{}", answers[0]);
    assert!(answers[1].contains("INC0012346"), "{}", answers[1]);
    assert!(answers[2].contains("VPN config fixed"), "{}", answers[2]);

    // One tree per question: the client's call, the delegated run, the incident tool.
    let roots = records_of(&gw, "helpdesk").await;
    let roots: Vec<&Value> = roots.iter().filter(|r| r["depth"] == 0).collect();
    assert_eq!(roots.len(), 3);
    let mut tools_seen = Vec::new();
    for root in roots.iter().rev() {
        let (_, tree) = gw
            .get_json(&format!("/admin/audit/{}", root["id"].as_str().unwrap()))
            .await;
        let records = tree["records"].as_array().unwrap();
        assert_eq!(records.len(), 3, "{tree}");
        let tools: Vec<&str> = records
            .iter()
            .map(|r| r["tool"].as_str().unwrap())
            .collect();
        assert_eq!(&tools[..2], ["helpdesk", "servicenow"], "{tree}");
        assert!(
            records
                .iter()
                .all(|r| r["outcome"] == "ok" && r["client"] == "helpdesk-app")
        );
        tools_seen.push(tools[2].to_owned());
        if tools[2] == "update_incident" {
            assert_eq!(records[2]["approval"]["decision"], "approved");
        } else {
            assert_eq!(records[2]["approval"], Value::Null);
        }
    }
    assert_eq!(
        tools_seen,
        ["create_incident", "search_incident", "update_incident"]
    );
    let _ = c.cancel().await;
    gw.stop().await;
}

/// A run served as an MCP task whose inner call needs the user's approval: the task is
/// `input_required` with the approval form in `inputRequests` until `tasks/update` answers it,
/// then goes on with the call approved (and audited so).
#[tokio::test]
async fn a_task_waits_input_required_for_the_users_approval_of_a_call_deep_in_its_run() {
    use crate::support::tasks::{Raw, task_capabilities};
    let fake = FakeLlm::start(resolving(
        "INC0012345",
        json!({"number": "INC0012345", "state": "Resolved", "close_notes": "done"}),
    ))
    .await;
    let (gw, _dir) = gateway(&fake, CLIENT_RULES).await;
    let c = Raw::stateless(
        &gw.url("/agents/helpdesk/mcp"),
        Some("t-help"),
        task_capabilities(true),
    );
    let id = c.call("helpdesk", "close the VPN ticket").await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();

    let asking = c.poll_status(&id, "input_required").await;
    let form = &asking["inputRequests"]["approval"];
    assert_eq!(form["method"], "elicitation/create", "{asking}");
    assert!(
        form["params"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("update_incident")),
        "{asking}"
    );
    assert_eq!(fake.received().len(), 2, "the run waits for the answer");

    let ack = c
        .request(
            "tasks/update",
            json!({"taskId": id, "inputResponses": {"approval": {"action": "accept", "content": {"reason": "go ahead"}}}}),
        )
        .await;
    assert!(ack.get("error").is_none(), "{ack}");
    let done = c.poll_status(&id, "completed").await;
    let answer = done["result"]["content"][0]["text"].as_str().unwrap();
    assert!(answer.starts_with("helpdesk: servicenow: "), "{answer}");
    assert!(answer.contains("Resolved"), "{answer}");
    let records = records_of(&gw, "update_incident").await;
    assert_eq!(records[0]["approval"]["decision"], "approved");
    assert_eq!(records[0]["approval"]["reason"], "go ahead");
    assert_eq!(records[0]["outcome"], "ok");
    gw.stop().await;
}
