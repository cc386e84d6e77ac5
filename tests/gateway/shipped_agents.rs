//! The agents we ship validate, with no environment at all, through `check`'s own logic.

use switchboard::agents::AgentRegistry;
use switchboard::config::Vars;
use switchboard::tools::ToolConfig;
use switchboard::tools::servicenow::StoreSpec;

#[test]
fn shipped_agents_are_valid_without_any_environment() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("agents");
    let specs = AgentRegistry::validate_dir(&dir, &Vars::new()).unwrap_or_else(|e| panic!("{e}"));
    let sn = specs
        .iter()
        .find(|s| s.name.as_str() == "servicenow")
        .expect("servicenow agent ships");
    assert!(sn.expose_tools && sn.expose_agent);
    assert_eq!(sn.model.as_ref().unwrap().model, "gpt-4o-mini");

    // The live ServiceNow agent loads too, waiting for its variables.
    let live = specs
        .iter()
        .find(|s| s.name.as_str() == "servicenow-live")
        .expect("servicenow-live agent ships");
    let ToolConfig::Servicenow(tool) = &live.tools[0] else {
        panic!("servicenow-live's first tool is the incident tools");
    };
    match tool.spec() {
        Ok(StoreSpec::TableApi(Err(hint))) => {
            assert!(hint.starts_with("set SERVICENOW_INSTANCE_URL"), "{hint}")
        }
        other => panic!("expected an unconfigured Table API store, got {other:?}"),
    }

    // The incident review is a workflow over the shipped agents: records first, then the review.
    let review = specs
        .iter()
        .find(|s| s.name.as_str() == "incident-review")
        .expect("incident-review workflow ships");
    assert!(review.model.is_none() && review.expose_agent);
    let workflow = review
        .workflow
        .as_ref()
        .expect("incident-review is a workflow");
    let steps: Vec<(&str, &str)> = workflow
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.tool_name()))
        .collect();
    assert_eq!(steps, [("records", "servicenow"), ("review", "helpdesk")]);
}

#[test]
fn check_command_accepts_the_shipped_agents() {
    let out = crate::support::binary::switchboard()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("check")
        .env_remove("OPENAI_MODEL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("servicenow"), "{stdout}");
    assert!(stdout.contains("incident-review"), "{stdout}");
}
