//! Hot reload: files added, changed, broken and removed while sessions stay open.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::helpers::{
    Options, SseClient, TestGateway, copy_valid_agents, http, rmcp_client, tool_json,
};

async fn agent(gw: &TestGateway, name: &str) -> (u16, Value) {
    gw.get_json(&format!("/admin/agents/{name}")).await
}

/// Polls `check` until it holds (10 s deadline).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn file_changes_apply_live_without_dropping_other_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agents");
    copy_valid_agents(&dir);
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.clone(),
        watch: true,
        ..Options::default()
    })
    .await;
    // A session of servicenow stays open through everything below.
    let mut sn = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    sn.initialize().await;
    let old_helpdesk = rmcp_client(&gw.url("/agents/helpdesk/mcp")).await;
    assert_eq!(
        old_helpdesk.peer_info().unwrap().instructions.as_deref(),
        Some("Helpdesk tools.")
    );

    // Add a file: the agent appears.
    std::fs::write(
        dir.join("extra.toml"),
        "description = \"Extra tools.\"\nexpose = [\"tools\"]\n[[tools]]\ntype = \"servicenow\"\n",
    )
    .unwrap();
    eventually("extra to appear", || async {
        agent(&gw, "extra").await.0 == 200
    })
    .await;
    let mut extra = SseClient::connect(&gw.url("/agents/extra/sse")).await;
    extra.initialize().await;

    // Change a file: new sessions get the new definition, the open one keeps working.
    std::fs::write(
        dir.join("helpdesk.toml"),
        "description = \"Helpdesk tools, revised.\"\nexpose = [\"tools\"]\n[[tools]]\ntype = \"servicenow\"\n",
    )
    .unwrap();
    eventually("helpdesk to change", || async {
        agent(&gw, "helpdesk").await.1["description"] == "Helpdesk tools, revised."
    })
    .await;
    let new_helpdesk = rmcp_client(&gw.url("/agents/helpdesk/mcp")).await;
    assert_eq!(
        new_helpdesk.peer_info().unwrap().instructions.as_deref(),
        Some("Helpdesk tools, revised.")
    );
    assert_eq!(old_helpdesk.list_all_tools().await.unwrap().len(), 4);

    // Break a file: the previous version keeps serving; the error names file and key.
    std::fs::write(
        dir.join("helpdesk.toml"),
        "description = \"x\"\nexpose = [\"tools\"]\ncolour = 1\n",
    )
    .unwrap();
    eventually("the broken file to be reported", || async {
        !agent(&gw, "helpdesk").await.1["load_errors"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
    let (_, view) = agent(&gw, "helpdesk").await;
    assert_eq!(view["description"], "Helpdesk tools, revised.");
    let error = view["load_errors"][0].as_str().unwrap();
    assert!(
        error.contains("helpdesk.toml: colour: unknown field `colour`"),
        "{error}"
    );
    assert_eq!(new_helpdesk.list_all_tools().await.unwrap().len(), 4);

    // Remove a file: its sessions end and its URLs answer 404.
    std::fs::remove_file(dir.join("extra.toml")).unwrap();
    extra.closed().await;
    eventually("extra to go", || async {
        agent(&gw, "extra").await.0 == 404
    })
    .await;
    let resp = http()
        .get(gw.url("/agents/extra/sse"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Through all of it, servicenow's session answered.
    let got = sn
        .call_tool(1, "get_incident", json!({"number": "INC0012346"}))
        .await;
    assert_eq!(tool_json(&got)["number"], "INC0012346");
    old_helpdesk.cancel().await.unwrap();
    new_helpdesk.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn admin_reload_reports_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agents");
    copy_valid_agents(&dir);
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.clone(),
        ..Options::default()
    })
    .await;
    std::fs::write(
        dir.join("new-one.toml"),
        "description = \"New.\"\nexpose = [\"tools\"]\n[[tools]]\ntype = \"servicenow\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("broken.toml"), "description = \n").unwrap();
    std::fs::remove_file(dir.join("helpdesk.toml")).unwrap();
    let r: Value = gw.post_json("/admin/reload").await.1;
    assert_eq!(r["added"], json!(["new-one"]));
    assert_eq!(r["removed"], json!(["helpdesk"]));
    assert_eq!(r["unchanged"], json!(["servicenow"]));
    assert_eq!(r["changed"], json!([]));
    assert!(
        r["errors"][0]
            .as_str()
            .unwrap()
            .contains("broken.toml: invalid TOML"),
        "{r}"
    );
    // Nothing changed since: a second reload only reports the broken file again.
    let r: Value = gw.post_json("/admin/reload").await.1;
    assert_eq!(r["added"], json!([]));
    assert_eq!(r["unchanged"], json!(["new-one", "servicenow"]));
    assert_eq!(r["errors"].as_array().unwrap().len(), 1);
    gw.stop().await;
}

/// Reloads are atomic under concurrent calls: while `servicenow`'s file is changed back and
/// forth and reloaded, callers keep opening sessions and calling a tool; every session sees a
/// whole version of the agent, no call fails, and calls really overlap reloads (some started
/// before a reload began and finished after it ended; counted, not assumed). One agent run is
/// also held inside the gateway (its LLM request kept waiting by the fake) across every reload,
/// then answered.
#[tokio::test]
async fn reloads_are_atomic_under_concurrent_calls() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use crate::support::fake_llm::{FakeLlm, Step};
    use crate::support::helpers::{args, call_result, start_call, tool_text};

    let gate = Arc::new(tokio::sync::Notify::new());
    let fake = FakeLlm::start(vec![Step::Held(
        gate.clone(),
        Box::new(Step::Text("held through the reloads")),
    )])
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agents");
    copy_valid_agents(&dir);
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.clone(),
        vars: [("OPENAI_BASE_URL".to_owned(), format!("{}/v1", fake.url))].into(),
        ..Options::default()
    })
    .await;
    let url = gw.url("/agents/servicenow/mcp");
    let original = std::fs::read_to_string(dir.join("servicenow.toml")).unwrap();
    const OLD: &str = "Manages ServiceNow incidents: create, update, search.";
    const NEW: &str = "Handles ServiceNow incidents: create, update, search.";
    assert!(original.contains(OLD));

    // An agent run that is inside the gateway (the fake holds its LLM request) before the
    // first reload and stays there until the last one is done.
    let held_client = rmcp_client(&url).await;
    let held = start_call(
        held_client.peer(),
        "servicenow",
        json!({"task": "Say something"}),
    )
    .await;
    fake.wait_requests(1).await;

    // Reloads started and finished, counted by the reloader; callers read them around each
    // call to tell whether a whole reload happened while their call was in flight.
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (url, started, finished, stop, overlaps) = (
                url.clone(),
                started.clone(),
                finished.clone(),
                stop.clone(),
                overlaps.clone(),
            );
            tokio::spawn(async move {
                let mut calls = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    // A new session takes the agent as it is now: one whole version.
                    let c = rmcp_client(&url).await;
                    let seen = c.peer_info().unwrap().instructions.clone().unwrap();
                    assert!(seen == OLD || seen == NEW, "a torn agent: {seen}");
                    for _ in 0..5 {
                        let before = started.load(Ordering::SeqCst);
                        let r = c
                            .call_tool(
                                rmcp::model::CallToolRequestParams::new("get_incident")
                                    .with_arguments(args(json!({"number": "INC0012346"}))),
                            )
                            .await
                            .expect("a call during reloads is answered");
                        assert_eq!(r.is_error, Some(false), "{r:?}");
                        calls += 1;
                        // A reload that started after this call did has finished before it.
                        if finished.load(Ordering::SeqCst) > before {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    c.cancel().await.unwrap();
                }
                calls
            })
        })
        .collect();

    // Meanwhile servicenow itself is changed back and forth and reloaded, at least 20 times
    // and until some call was seen to span a whole reload (10 s deadline).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut reloads = 0;
    loop {
        let text = if reloads % 2 == 0 {
            original.replace(OLD, NEW)
        } else {
            original.clone()
        };
        std::fs::write(dir.join("servicenow.toml"), text).unwrap();
        started.fetch_add(1, Ordering::SeqCst);
        let r = gw.state.reload().await;
        finished.fetch_add(1, Ordering::SeqCst);
        reloads += 1;
        assert_eq!(r.agents.changed, ["servicenow"], "{r:?}");
        assert!(r.errors().next().is_none(), "{r:?}");
        // Every request in between sees a whole agent: it is either version.
        let (status, view) = agent(&gw, "servicenow").await;
        assert_eq!(status, 200);
        let description = view["description"].as_str().unwrap();
        assert!(description == OLD || description == NEW, "{description}");
        if reloads >= 20 && overlaps.load(Ordering::SeqCst) > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no call overlapped any of {reloads} reloads within 10 s: the test proves nothing"
        );
    }
    stop.store(true, Ordering::SeqCst);
    let mut calls = 0;
    for c in callers {
        calls += c.await.expect("no call failed during the reloads");
    }
    let overlapped = overlaps.load(Ordering::SeqCst);
    assert!(
        overlapped > 0 && calls >= overlapped,
        "{overlapped} of {calls}"
    );
    eprintln!("{calls} calls during {reloads} reloads, {overlapped} spanning a whole reload");

    // The held run, which began under the first version, is answered after all of them.
    gate.notify_one();
    let result = call_result(held).await;
    assert_eq!(result.is_error, Some(false), "{result:?}");
    assert_eq!(tool_text(&result), "held through the reloads");
    held_client.cancel().await.unwrap();
    gw.stop().await;
}

const INCIDENT_TOOLS: &str =
    "description = \"{name} tools.\"\nexpose = [\"tools\"]\n[[tools]]\ntype = \"servicenow\"\n";

/// An agent file exposing the incident tools, and `calls` as agent tools.
fn agent_file(name: &str, calls: &[&str]) -> String {
    let mut text = INCIDENT_TOOLS.replace("{name}", name);
    for target in calls {
        text.push_str(&format!(
            "[[tools]]\ntype = \"agent\"\nagent = \"{target}\"\n"
        ));
    }
    text
}

async fn tool_names(gw: &TestGateway, agent: &str) -> Vec<String> {
    let (status, view) = gw.get_json(&format!("/admin/agents/{agent}")).await;
    assert_eq!(status, 200, "{view}");
    let mut names: Vec<String> = view["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

async fn load_errors_of(gw: &TestGateway, file: &str) -> Vec<String> {
    let (status, all) = gw.get_json("/admin/load-errors").await;
    assert_eq!(status, 200, "{all}");
    all.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["file"].as_str().unwrap().ends_with(file))
        .flat_map(|e| e["errors"].as_array().unwrap().clone())
        .map(|e| e.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_reload_that_introduces_a_cycle_keeps_the_previous_version_of_both_sides() {
    // Arrange: alpha and beta, each with the incident tools only.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agents");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("alpha.toml"), agent_file("alpha", &[])).unwrap();
    std::fs::write(dir.join("beta.toml"), agent_file("beta", &[])).unwrap();
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.clone(),
        ..Options::default()
    })
    .await;
    let before = tool_names(&gw, "alpha").await;
    assert_eq!(before.len(), 4, "{before:?}");

    // Act: in one reload, alpha starts calling beta and beta starts calling alpha.
    std::fs::write(dir.join("alpha.toml"), agent_file("alpha", &["beta"])).unwrap();
    std::fs::write(dir.join("beta.toml"), agent_file("beta", &["alpha"])).unwrap();
    let (status, report) = gw.post_json("/admin/reload").await;

    // Assert: neither new version is served, both errors are listed, nothing was applied.
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["changed"], json!([]), "{report}");
    assert_eq!(report["unchanged"], json!(["alpha", "beta"]), "{report}");
    assert_eq!(tool_names(&gw, "alpha").await, before);
    assert_eq!(tool_names(&gw, "beta").await.len(), 4);
    let alpha_errors = load_errors_of(&gw, "alpha.toml").await;
    assert!(
        alpha_errors.iter().any(|e| e.ends_with(
            "alpha.toml: tools[1].agent: agents call each other in a cycle: alpha -> beta -> alpha; an agent may not reach itself"
        )),
        "{alpha_errors:#?}"
    );
    let beta_errors = load_errors_of(&gw, "beta.toml").await;
    assert!(
        beta_errors.iter().any(|e| e.contains(
            "beta.toml: tools[1].agent: agents call each other in a cycle: beta -> alpha -> beta"
        )),
        "{beta_errors:#?}"
    );
    let (_, view) = gw.get_json("/admin/agents/beta").await;
    assert!(
        !view["load_errors"].as_array().unwrap().is_empty(),
        "{view}"
    );
    // The kept versions answer.
    for agent in ["alpha", "beta"] {
        let mut c = SseClient::connect(&gw.url(&format!("/agents/{agent}/sse"))).await;
        c.initialize().await;
        let got = c
            .call_tool(1, "get_incident", json!({"number": "INC0012346"}))
            .await;
        assert_eq!(tool_json(&got)["number"], "INC0012346");
    }

    // Fixing one side applies both: the errors are gone.
    std::fs::write(dir.join("beta.toml"), agent_file("beta", &[])).unwrap();
    let (_, report) = gw.post_json("/admin/reload").await;
    assert_eq!(report["changed"], json!(["alpha"]), "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");
    assert!(tool_names(&gw, "alpha").await.contains(&"beta".to_owned()));
    gw.stop().await;
}

#[tokio::test]
async fn a_reload_refuses_an_agent_calling_itself_as_a_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agents");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("alpha.toml"), agent_file("alpha", &[])).unwrap();
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.clone(),
        ..Options::default()
    })
    .await;
    // Exposed as an agent too, its tool calling itself has the agent tool's name: still a
    // cycle, not a name clash.
    let calls_itself = agent_file("alpha", &["alpha"]).replace(
        "expose = [\"tools\"]\n",
        "expose = [\"agent\", \"tools\"]\n[model]\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\n",
    );
    std::fs::write(dir.join("alpha.toml"), calls_itself).unwrap();
    let (_, report) = gw.post_json("/admin/reload").await;
    assert_eq!(report["changed"], json!([]), "{report}");
    assert_eq!(report["errors"].as_array().unwrap().len(), 1, "{report}");
    assert!(
        report["errors"][0]
            .as_str()
            .unwrap()
            .ends_with("alpha.toml: tools[1].agent: agents call each other in a cycle: alpha -> alpha; an agent may not reach itself"),
        "{report}"
    );
    assert_eq!(tool_names(&gw, "alpha").await.len(), 4);
    gw.stop().await;
}

#[tokio::test]
async fn an_agent_still_used_by_another_keeps_serving_after_its_file_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agents");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("alpha.toml"), agent_file("alpha", &[])).unwrap();
    std::fs::write(dir.join("beta.toml"), agent_file("beta", &["alpha"])).unwrap();
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.clone(),
        ..Options::default()
    })
    .await;
    std::fs::remove_file(dir.join("alpha.toml")).unwrap();
    let (_, report) = gw.post_json("/admin/reload").await;
    assert_eq!(report["removed"], json!([]), "{report}");
    let errors: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("beta.toml: tools[1].agent: unknown agent \"alpha\"")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("alpha.toml: removed, but beta still uses it (tools[1].agent)")),
        "{errors:#?}"
    );
    assert_eq!(agent(&gw, "alpha").await.0, 200);
    // Once beta no longer uses it, alpha goes.
    std::fs::write(dir.join("beta.toml"), agent_file("beta", &[])).unwrap();
    let (_, report) = gw.post_json("/admin/reload").await;
    assert_eq!(report["removed"], json!(["alpha"]), "{report}");
    assert_eq!(report["changed"], json!(["beta"]), "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");
    gw.stop().await;
}

#[tokio::test]
async fn a_reload_keeps_a_workflow_whose_new_version_names_an_unknown_agent() {
    // Arrange: alpha (the incident tools) and flow, a workflow whose one step runs alpha.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agents");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("alpha.toml"), agent_file("alpha", &[])).unwrap();
    let flow = |steps: &str| {
        format!("description = \"Flow.\"\n[workflow]\nkind = \"sequential\"\nsteps = {steps}\n")
    };
    std::fs::write(dir.join("flow.toml"), flow("[\"alpha\"]")).unwrap();
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.clone(),
        ..Options::default()
    })
    .await;
    let (_, view) = agent(&gw, "flow").await;
    assert_eq!(view["workflow"]["kind"], "sequential", "{view}");
    assert_eq!(view["workflow"]["steps"][0]["agent"], "alpha", "{view}");

    // Act: the new version names an agent nobody defines.
    std::fs::write(dir.join("flow.toml"), flow("[\"alpha\", \"ghost\"]")).unwrap();
    let (_, report) = gw.post_json("/admin/reload").await;

    // Assert: not applied, the error names file and key, the previous version serves.
    assert_eq!(report["changed"], json!([]), "{report}");
    let errors = load_errors_of(&gw, "flow.toml").await;
    assert!(
        errors.iter().any(|e| e.ends_with(
            "flow.toml: workflow.steps[1]: unknown step \"ghost\": no agent or workflow has that name; agents here: alpha, flow"
        )),
        "{errors:#?}"
    );
    let (_, view) = agent(&gw, "flow").await;
    assert_eq!(view["workflow"]["steps"].as_array().unwrap().len(), 1);

    // An agent the workflow still uses keeps serving after its file is removed.
    std::fs::write(dir.join("flow.toml"), flow("[\"alpha\"]")).unwrap();
    std::fs::remove_file(dir.join("alpha.toml")).unwrap();
    let (_, report) = gw.post_json("/admin/reload").await;
    assert_eq!(report["removed"], json!([]), "{report}");
    assert!(
        report["errors"].as_array().unwrap().iter().any(|e| e
            .as_str()
            .unwrap()
            .contains("alpha.toml: removed, but flow still uses it (workflow.steps[0])")),
        "{report}"
    );
    assert_eq!(agent(&gw, "alpha").await.0, 200);
    gw.stop().await;
}
