//! Config errors name the file and the key, all at once, through the library and the CLI.

use switchboard::agents::AgentRegistry;
use switchboard::config::Vars;

use crate::support::helpers::fixture;

fn errors_of(dir: &str) -> Vec<String> {
    AgentRegistry::validate_dir(&fixture(dir), &Vars::new())
        .expect_err("fixture must be invalid")
        .0
        .iter()
        .map(|e| {
            // Paths are absolute here; keep `agents/<scenario>/<file>: ...` for the asserts.
            let s = e.to_string();
            s[s.find("agents/").unwrap()..].to_owned()
        })
        .collect()
}

#[test]
fn each_broken_file_names_its_file_and_key() {
    let cases = [
        (
            "agents/unknown-key",
            "agents/unknown-key/servicenow.toml: tools[0].colour: unknown field `colour`",
        ),
        (
            "agents/missing-env",
            "agents/missing-env/servicenow.toml: model.api_key: ${SWITCHBOARD_TEST_SURELY_UNSET_KEY} is not set",
        ),
        (
            "agents/bad-name",
            "agents/bad-name/Service_Now.toml: invalid agent name \"Service_Now\"",
        ),
        (
            // A bad name does not hide the rest of the file.
            "agents/bad-name",
            "agents/bad-name/Service_Now.toml: expose: [\"tools\"] exposes the agent's inner tools, but it has no [[tools]]",
        ),
        (
            "agents/duplicate",
            "agents/duplicate/servicenow.toml: tools[1]: duplicate tool \"create_incident\": tools[0] already provides it",
        ),
        (
            "agents/bad-store",
            "agents/bad-store/servicenow.toml: tools[0].store: unknown variant `sqlite3`, expected `embedded` or `table_api`",
        ),
        (
            "agents/table-api-broken",
            "agents/table-api-broken/servicenow.toml: tools[0].instance_url: \"ftp://dev12345.service-now.com\" uses the \"ftp\" scheme",
        ),
        (
            "agents/table-api-broken",
            "agents/table-api-broken/servicenow.toml: tools[0].password: required with username",
        ),
        (
            "agents/table-api-broken",
            "agents/table-api-broken/embedded.toml: tools[0].instance_url: only applies to store = \"table_api\"",
        ),
    ];
    for (dir, expected) in cases {
        let errors = errors_of(dir);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "case {dir}: expected an error starting with\n  {expected}\ngot\n  {errors:#?}"
        );
    }
}

#[test]
fn missing_env_reports_every_variable() {
    let errors = errors_of("agents/missing-env");
    assert!(
        errors.iter().any(|e| e
            .contains("model.model: ${SWITCHBOARD_TEST_MODEL} is required: set the model name")),
        "{errors:#?}"
    );
}

#[test]
fn every_file_of_a_directory_is_reported_at_once() {
    let errors = errors_of("agents/several-broken");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("agents/several-broken/a.toml: model: missing [model]")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("agents/several-broken/b.toml: invalid TOML (line 2")),
        "{errors:#?}"
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn check_command_exits_nonzero_and_prints_every_error() {
    let out = crate::support::binary::switchboard()
        .args(["check", "--agents"])
        .arg(fixture("agents/several-broken"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 configuration errors"), "{stderr}");
    assert!(
        stderr.contains("a.toml: model: missing [model]"),
        "{stderr}"
    );
    assert!(stderr.contains("b.toml: invalid TOML"), "{stderr}");
}

#[test]
fn serve_refuses_to_start_on_a_broken_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = crate::support::binary::switchboard()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(tmp.path())
        .arg("--agents")
        .arg(fixture("agents/bad-store"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tools[0].store: unknown variant `sqlite3`"),
        "{stderr}"
    );
    assert!(stderr.contains("Not starting"), "{stderr}");
    // Nothing was created: a malformed config never half-starts.
    assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
}

#[test]
fn broken_gateway_config_is_reported_with_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("switchboard.toml");
    std::fs::write(&cfg, "[server]\nlisten = \"nowhere\"\n").unwrap();
    let out = crate::support::binary::switchboard()
        .args(["check", "--config"])
        .arg(&cfg)
        .arg("--agents")
        .arg(fixture("agents/valid"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("switchboard.toml: server.listen: invalid socket address"),
        "{stderr}"
    );
}

#[test]
fn agent_tools_must_name_existing_agents_without_cycles() {
    // A cycle is reported on every file of it, each from its own agent.
    let errors = errors_of("agents/cycle");
    assert_eq!(
        errors,
        [
            "agents/cycle/a.toml: tools[0].agent: agents call each other in a cycle: a -> b -> a; an agent may not reach itself",
            "agents/cycle/b.toml: tools[0].agent: agents call each other in a cycle: b -> a -> b; an agent may not reach itself",
        ]
    );
    let errors = errors_of("agents/unknown-target");
    assert!(
        errors[0]
            .starts_with("agents/unknown-target/a.toml: tools[0].agent: unknown agent \"nobody\""),
        "{errors:#?}"
    );
}

/// Every error of `agents/many-errors`, each naming its key.
const MANY_ERRORS: [&str; 4] = [
    "agents/many-errors/servicenow.toml: colour: unknown field `colour`",
    "agents/many-errors/servicenow.toml: tools[0].store: unknown variant `sqlite3`, expected `embedded` or `table_api`",
    "agents/many-errors/servicenow.toml: tools[0].timeout_secs: must be at least 1 (seconds)",
    "agents/many-errors/servicenow.toml: tools[1].timeout_secs: invalid type: string \"soon\", expected u64",
];

#[test]
fn every_error_of_one_file_is_reported() {
    // Arrange: one file with an unknown key, an unknown store, a zero timeout and a
    // mistyped timeout in another entry.
    // Act
    let errors = errors_of("agents/many-errors");
    // Assert
    for expected in MANY_ERRORS {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "expected an error starting with\n  {expected}\ngot\n  {errors:#?}"
        );
    }
    // The unknown store does not make the timeout look like a key of the wrong store.
    assert!(
        !errors.iter().any(|e| e.contains("only applies to store")),
        "{errors:#?}"
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
}

#[test]
fn check_command_prints_every_error_of_one_file() {
    let out = crate::support::binary::switchboard()
        .args(["check", "--agents"])
        .arg(fixture("agents/many-errors"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("4 configuration errors"), "{stderr}");
    for expected in MANY_ERRORS {
        let tail = &expected[expected.find("servicenow.toml").unwrap()..];
        assert!(stderr.contains(tail), "missing {tail:?} in\n{stderr}");
    }
}

#[test]
fn an_agent_that_calls_itself_is_a_cycle_not_a_name_clash() {
    let errors = errors_of("agents/self-cycle");
    assert_eq!(
        errors,
        [
            "agents/self-cycle/loop.toml: tools[0].agent: agents call each other in a cycle: loop -> loop; an agent may not reach itself"
        ]
    );
}

#[test]
fn exposing_tools_without_any_is_an_error_naming_file_and_key() {
    let errors = errors_of("agents/no-tools");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("agents/no-tools/bare.toml: expose: [\"tools\"] exposes the agent's inner tools, but it has no [[tools]]"),
        "{errors:#?}"
    );
}

#[test]
fn oauth_settings_are_checked_naming_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("switchboard.toml");
    std::fs::write(
        &cfg,
        "[auth.oauth]\nissuer = \"http://login.example.com\"\naudience = \"https://gw.example.com\"\nalgorithms = [\"none\"]\n[auth.oauth.agent_scopes]\nnobody = [\"x\"]\n",
    )
    .unwrap();
    let out = crate::support::binary::switchboard()
        .args(["check", "--config"])
        .arg(&cfg)
        .arg("--agents")
        .arg(fixture("agents/valid"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in ["auth.oauth.issuer: ", "auth.oauth.algorithms[0]: "] {
        assert!(
            stderr.contains(&format!("switchboard.toml: {key}")),
            "{key}: {stderr}"
        );
    }
    // Unknown agents are found once the file itself is valid.
    std::fs::write(
        &cfg,
        "[auth.oauth]\nissuer = \"http://127.0.0.1:9\"\naudience = \"https://gw.example.com\"\n[auth.oauth.agent_scopes]\nnobody = [\"x\"]\n",
    )
    .unwrap();
    let (passed, stderr) = crate::support::binary::check(&cfg, &fixture("agents/valid"));
    assert!(!passed, "{stderr}");
    assert!(
        stderr.contains("switchboard.toml: auth.oauth.agent_scopes.nobody: unknown agent"),
        "{stderr}"
    );
}

#[test]
fn workflow_steps_must_not_form_a_cycle_through_workflows_or_agent_tools() {
    // Arrange: a -> b -> a (workflows), helper -> loop -> helper (an agent tool and a step).
    let errors = errors_of("agents/workflow-cycle");
    // Assert: each file of each cycle says so, naming the key of its first hop.
    for expected in [
        "agents/workflow-cycle/a.toml: workflow.steps[0]: steps run each other in a cycle: a -> b -> a; a workflow may not reach itself",
        "agents/workflow-cycle/b.toml: workflow.steps[1].agent: steps run each other in a cycle: b -> a -> b; a workflow may not reach itself",
        "agents/workflow-cycle/helper.toml: tools[0].agent: agents call each other in a cycle: helper -> loop -> helper; an agent may not reach itself",
        "agents/workflow-cycle/loop.toml: workflow.steps[1]: steps run each other in a cycle: loop -> helper -> loop; a workflow may not reach itself",
    ] {
        assert!(
            errors.iter().any(|e| e == expected),
            "expected\n  {expected}\ngot\n  {errors:#?}"
        );
    }
    assert_eq!(errors.len(), 4, "{errors:#?}");
}

#[test]
fn a_broken_workflow_names_its_file_and_every_key() {
    let errors = errors_of("agents/workflow-broken");
    let cases = [
        "agents/workflow-broken/unknown.toml: workflow.steps[1]: unknown step \"nobody\": no agent or workflow has that name; agents here: agent, handoff, unknown",
        "agents/workflow-broken/handoff.toml: workflow.steps[1]: \"unknown\" is a workflow: a handoff step is an agent with a [model]",
        "agents/workflow-broken/shape.toml: model: a workflow runs its steps, not a model",
        "agents/workflow-broken/shape.toml: instructions: a workflow has no model to instruct",
        "agents/workflow-broken/shape.toml: workflow.steps[1].input: unknown placeholder `{{inptu}}`",
        "agents/workflow-broken/shape.toml: workflow.steps[2].tool: unknown tool \"search_incident\": this file has no [[tools]]",
        "agents/workflow-broken/shape.toml: workflow.steps[3]: step name \"agent\" is already used by workflow.steps[0]",
        "agents/workflow-broken/shape.toml: workflow.steps[4].input: {{steps.after}} names no step before this one",
        "agents/workflow-broken/shape.toml: workflow.steps[5]: needs `agent` (an agent or workflow to run) or `tool`",
        "agents/workflow-broken/shape.toml: workflow.steps[6].arguments: only for tool steps",
        "agents/workflow-broken/shape.toml: workflow.aggregator: only applies to kind = \"concurrent\", not \"sequential\"",
        "agents/workflow-broken/shape.toml: workflow.max_handoffs: only applies to kind = \"handoff\", not \"sequential\"",
    ];
    for expected in cases {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "expected an error starting with\n  {expected}\ngot\n  {errors:#?}"
        );
    }
    assert_eq!(errors.len(), cases.len(), "{errors:#?}");
}

#[test]
fn check_command_refuses_unknown_workflow_steps_and_cycles_naming_file_and_key() {
    let check = |dir: &str| {
        let out = crate::support::binary::switchboard()
            .args(["check", "--agents"])
            .arg(fixture(dir))
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{dir}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = check("agents/workflow-broken");
    assert!(
        stderr.contains("unknown.toml: workflow.steps[1]: unknown step \"nobody\""),
        "{stderr}"
    );
    let stderr = check("agents/workflow-cycle");
    assert!(
        stderr.contains(
            "a.toml: workflow.steps[0]: steps run each other in a cycle: a -> b -> a; a workflow may not reach itself"
        ),
        "{stderr}"
    );
}
