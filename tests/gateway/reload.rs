//! Hot reload: files added, changed, broken and removed while sessions stay open.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
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
        "description = \"New.\"\nexpose = [\"tools\"]\n",
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

#[tokio::test]
async fn reloads_are_atomic_under_concurrent_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agents");
    copy_valid_agents(&dir);
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.clone(),
        ..Options::default()
    })
    .await;
    let url = gw.url("/agents/servicenow/mcp");
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let c = rmcp_client(&url).await;
                for _ in 0..40 {
                    let r = c
                        .call_tool(
                            rmcp::model::CallToolRequestParams::new("get_incident").with_arguments(
                                crate::helpers::args(json!({"number": "INC0012346"})),
                            ),
                        )
                        .await
                        .unwrap();
                    assert_eq!(r.is_error, Some(false));
                }
                c.cancel().await.unwrap();
            })
        })
        .collect();
    // Meanwhile servicenow itself is changed back and forth, and reloaded each time.
    let original = std::fs::read_to_string(dir.join("servicenow.toml")).unwrap();
    for i in 0..20 {
        let text = if i % 2 == 0 {
            original.replace(
                "Manages ServiceNow incidents",
                "Handles ServiceNow incidents",
            )
        } else {
            original.clone()
        };
        std::fs::write(dir.join("servicenow.toml"), text).unwrap();
        let r: Value = gw.post_json("/admin/reload").await.1;
        assert_eq!(r["changed"], json!(["servicenow"]), "{r}");
        // Every request in between sees a whole agent: it is either version.
        let (status, view) = agent(&gw, "servicenow").await;
        assert_eq!(status, 200);
        assert!(
            view["description"]
                .as_str()
                .unwrap()
                .ends_with("ServiceNow incidents: create, update, search.")
        );
    }
    for c in callers {
        c.await.unwrap();
    }
    gw.stop().await;
}
