//! One principal through every hop: the caller's identity travels from the edge into agent
//! runs and into agents called by agents, `[[policies]]` are checked at each hop (a tool the
//! caller may not call is neither offered to the model nor run when the model names it), and
//! incident writes record who asked. Real gateway, real tokens from oidc-provider, a scripted
//! model.

use serde_json::{Value, json};
use switchboard::config::ServerSpec;

use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{
    Options, TestGateway, call_result, fixture, rmcp_client_with, start_call, tool_text,
};
use crate::support::oidc::Oidc;

/// `helpdesk` (model; its one tool runs the `servicenow` agent) and `servicenow` (model and
/// the incident tools), both on `fake`, behind `[auth.oauth]` with `rules`.
async fn gateway(oidc: &Oidc, fake: &FakeLlm, rules: &str) -> TestGateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let toml = format!(
        "[auth.oauth]\nissuer = \"{}\"\naudience = \"{base}\"\n{rules}",
        oidc.issuer
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    std::fs::write(&file, toml).unwrap();
    let loaded = switchboard::config::load_gateway(&file, true, &Default::default())
        .unwrap_or_else(|e| panic!("test config must load: {e}"));
    TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/runtime"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        settings: ServerSpec {
            oauth: loaded.oauth,
            policies: loaded.policies,
            ..Options::default().settings
        },
        listener: Some(listener),
        ..Options::default()
    })
    .await
}

const RULES: &str = r#"
[[policies]]
effect = "allow"
subjects = ["alice", "bob", "carol"]
tools = ["helpdesk/*"]

[[policies]]
name = "incident-agent"
effect = "allow"
subjects = ["alice", "bob"]
tools = ["servicenow/servicenow", "servicenow/search_incident", "servicenow/get_incident"]

[[policies]]
name = "writers"
effect = "allow"
subjects = ["alice"]
tools = ["servicenow/create_incident"]
"#;

/// Asks agent `agent` `task` as the holder of `token`; the answer's text.
async fn ask(gw: &TestGateway, token: &str, agent: &str, task: &str) -> String {
    let client = rmcp_client_with(&gw.url(&format!("/agents/{agent}/mcp")), Some(token)).await;
    let handle = start_call(client.peer(), agent, json!({"task": task})).await;
    let answer = tool_text(&call_result(handle).await);
    let _ = client.cancel().await;
    answer
}

/// The tool names a model request offered.
fn offered(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| {
                    t["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The helpdesk delegates to servicenow, whose model creates an incident: each step's answer
/// echoes the tool result it got, so the caller reads what happened at the innermost hop.
fn delegation_script() -> Vec<Step> {
    vec![
        Step::ToolCalls(vec![("servicenow", json!({"task": "open an incident"}))]),
        Step::ToolCalls(vec![(
            "create_incident",
            json!({"short_description": "Printer on fire"}),
        )]),
        Step::Echo("servicenow: "),
        Step::Echo("helpdesk: "),
    ]
}

#[tokio::test]
async fn a_delegated_agent_acts_for_its_caller_and_is_refused_what_the_caller_may_not_do() {
    let oidc = Oidc::start();
    let fake = FakeLlm::start(delegation_script()).await;
    let gw = gateway(&oidc, &fake, RULES).await;
    let aud = gw.url("/agents/helpdesk/mcp");
    let bob = oidc
        .mint(json!({"sub": "bob", "aud": aud}), "current", None)
        .await;

    // Bob may use the helpdesk and the incident agent, but not create incidents.
    let answer = ask(&gw, &bob, "helpdesk", "my printer is on fire").await;
    let received = fake.received();
    assert_eq!(received.len(), 4, "{received:?}");
    // Each model is offered only what Bob may call: the helpdesk its agent tool, the
    // incident agent its tools without create_incident.
    assert_eq!(offered(&received[0].body), ["servicenow"]);
    let inner = offered(&received[1].body);
    assert!(
        inner.contains(&"search_incident".to_owned())
            && !inner.contains(&"create_incident".to_owned()),
        "{inner:?}"
    );
    // The model named it anyway: refused at that hop, naming the caller, and nothing written.
    assert!(
        answer.contains(
            "error: tool \"create_incident\" of agent \"servicenow\" is not allowed for subject \"bob\""
        ),
        "{answer}"
    );
    let store = gw.url("/agents/servicenow/mcp");
    let alice = oidc
        .mint(json!({"sub": "alice", "aud": store}), "current", None)
        .await;
    let found = search(&gw, &alice, "Printer on fire").await;
    assert_eq!(found["count"], 0, "{found}");
    gw.stop().await;
}

#[tokio::test]
async fn an_agent_may_not_run_another_its_caller_may_not_call() {
    let oidc = Oidc::start();
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![("servicenow", json!({"task": "open an incident"}))]),
        Step::Echo("helpdesk: "),
    ])
    .await;
    let gw = gateway(&oidc, &fake, RULES).await;
    let aud = gw.url("/agents/helpdesk/mcp");
    // Carol may use the helpdesk (helpdesk/* covers its tool named servicenow), but not the
    // incident agent itself: the delegation is refused at the second hop.
    let carol = oidc
        .mint(json!({"sub": "carol", "aud": aud}), "current", None)
        .await;
    let answer = ask(&gw, &carol, "helpdesk", "open an incident").await;
    assert!(
        answer.contains(
            "tool \"servicenow\" of agent \"servicenow\" is not allowed for subject \"carol\""
        ),
        "{answer}"
    );
    assert_eq!(
        fake.received().len(),
        2,
        "the incident agent's model was never asked"
    );
    gw.stop().await;
}

#[tokio::test]
async fn incidents_written_through_an_agent_run_record_the_callers_subject() {
    let oidc = Oidc::start();
    let fake = FakeLlm::start(delegation_script()).await;
    let gw = gateway(&oidc, &fake, RULES).await;
    let aud = gw.url("/agents/helpdesk/mcp");
    let alice = oidc
        .mint(json!({"sub": "alice", "aud": aud}), "current", None)
        .await;
    let answer = ask(&gw, &alice, "helpdesk", "my printer is on fire").await;
    assert!(answer.contains("Printer on fire"), "{answer}");
    let store = gw.url("/agents/servicenow/mcp");
    let alice = oidc
        .mint(json!({"sub": "alice", "aud": store}), "current", None)
        .await;
    let found = search(&gw, &alice, "Printer on fire").await;
    assert_eq!(found["count"], 1, "{found}");
    let notes = found["incidents"][0]["work_notes"].as_str().unwrap();
    assert!(
        notes.contains("Opened via Switchboard for alice"),
        "{notes}"
    );
    gw.stop().await;
}

/// `search_incident` for `query` as the holder of `token`, directly on the incident agent.
async fn search(gw: &TestGateway, token: &str, query: &str) -> Value {
    let client = rmcp_client_with(&gw.url("/agents/servicenow/mcp"), Some(token)).await;
    let handle = start_call(client.peer(), "search_incident", json!({"query": query})).await;
    let result = call_result(handle).await;
    let _ = client.cancel().await;
    let text = tool_text(&result);
    result
        .structured_content
        .unwrap_or_else(|| panic!("no structured content: {text}"))
}
