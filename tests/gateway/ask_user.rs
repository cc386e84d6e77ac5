//! `ask_user`: an agent's model asks the calling user a question mid-run, through the user's
//! MCP client (elicitation on a session, an `input_required` round on 2026-07-28), and reads
//! the answer, a refusal, or that the user cannot be asked.

use rmcp::model::{CallToolRequestParams, ElicitationAction, ProtocolVersion};
use serde_json::{Value, json};

use crate::support::asking::User;
use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{Options, TestGateway, tool_text};

const ASKER: &str = r#"
description = "Opens incidents, asking the user what it needs to know."
expose = ["agent", "tools"]

[model]
base_url = "${FAKE_LLM_URL}/v1"
api_key = "test-key"
model = "fake-model"

[[tools]]
type = "servicenow"

[[tools]]
type = "ask_user"
timeout_secs = 5
"#;

/// Runs the asker as `user`; its answer (the model echoes the tool's result) and what the
/// user was asked.
async fn run_as(
    gw: &TestGateway,
    protocol: ProtocolVersion,
    answer: Option<(ElicitationAction, Option<Value>)>,
) -> (String, Vec<(String, Value)>) {
    let user = User::new(protocol, answer);
    let c = user.connect(&gw.url("/agents/asker/mcp"), None).await;
    let result = c
        .call_tool(
            CallToolRequestParams::new("asker").with_arguments(
                json!({"task": "open an incident"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .expect("the run is answered");
    let _ = c.cancel().await;
    let asked = user.asked.lock().unwrap().clone();
    (tool_text(&result), asked)
}

#[tokio::test]
async fn the_model_asks_and_reads_the_answer_a_refusal_or_that_nobody_can_be_asked() {
    let question = || {
        Step::ToolCalls(vec![(
            "ask_user",
            json!({"question": "Which site is affected?", "choices": ["Berlin", "Lyon"]}),
        )])
    };
    let fake = FakeLlm::start(vec![
        question(),
        Step::Echo("got: "),
        question(),
        Step::Echo("got: "),
        question(),
        Step::Echo("got: "),
        question(),
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

    // A session's client, asked by an elicitation request.
    let (answer, asked) = run_as(
        &gw,
        ProtocolVersion::V_2025_11_25,
        Some((ElicitationAction::Accept, Some(json!({"answer": "Lyon"})))),
    )
    .await;
    assert_eq!(answer, "got: The user answered: Lyon");
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].0, "Which site is affected?");
    assert_eq!(
        asked[0].1["properties"]["answer"]["enum"],
        json!(["Berlin", "Lyon"]),
        "{}",
        asked[0].1
    );

    // A 2026-07-28 client, asked in an input_required round.
    let (answer, asked) = run_as(
        &gw,
        ProtocolVersion::V_2026_07_28,
        Some((ElicitationAction::Accept, Some(json!({"answer": "Berlin"})))),
    )
    .await;
    assert_eq!(answer, "got: The user answered: Berlin");
    assert_eq!(asked.len(), 1);

    let (answer, _) = run_as(
        &gw,
        ProtocolVersion::V_2025_11_25,
        Some((ElicitationAction::Decline, None)),
    )
    .await;
    assert_eq!(answer, "got: The user declined to answer.");

    // A client that cannot be asked: the model is told so, and the run goes on.
    let (answer, asked) = run_as(&gw, ProtocolVersion::V_2025_11_25, None).await;
    assert!(
        answer.starts_with("got: The user cannot be asked"),
        "{answer}"
    );
    assert!(asked.is_empty());

    // ask_user is the model's: clients do not see it, nor can they call it.
    let c = crate::support::helpers::rmcp_client(&gw.url("/agents/asker/mcp")).await;
    let tools = c.list_all_tools().await.unwrap();
    assert!(tools.iter().all(|t| t.name != "ask_user"));
    assert!(tools.iter().any(|t| t.name == "search_incident"));
    let err = c
        .call_tool(
            CallToolRequestParams::new("ask_user")
                .with_arguments(json!({"question": "hi"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ask_user"), "{err}");
    let _ = c.cancel().await;

    // Each question is a call in the audit trail.
    gw.state.audit().unwrap().flush().await;
    let (_, page) = gw.get_json("/admin/audit?tool=ask_user").await;
    let records: Vec<&Value> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["depth"] == 1)
        .collect();
    assert_eq!(records.len(), 4, "{page}");
    assert_eq!(
        records[0]["arguments"]["question"],
        "Which site is affected?"
    );
    assert_eq!(records[0]["outcome"], "ok");
    gw.stop().await;
}
