//! The console's Audit view (`/ui#/audit`, `/ui#/audit/<root_id>`) in a real browser against
//! the real gateway and a scripted model: the records newest first with their outcomes told
//! apart, filters typed or linked through the URL, older pages by cursor, and one client's call
//! as its tree (agent → delegated agent → its tools, one of them upstream) with durations,
//! rules, run facts and redacted arguments. Values that look like HTML stay text.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::browser::{Browser, PAGE_DEADLINE};
use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{
    Options, TestGateway, fixture, rmcp_client_with, settings_with_clients, start_call, tool_text,
};

const CLIENTS: &str = r#"
[[clients]]
name = "helpdesk-app"
token = "t-help"
agents = ["*"]

[[policies]]
name = "desk"
effect = "allow"
clients = ["helpdesk-app"]
tools = ["helpdesk/*", "servicenow/*"]

[[policies]]
name = "no-updates"
effect = "deny"
clients = ["helpdesk-app"]
tools = ["*/update_incident"]
"#;

/// An argument that would be an element (and run its handler) if the page parsed it as HTML.
const HOSTILE: &str = r#"<img src=x onerror="document.body.dataset.pwned=1">"#;

/// `servicenow` on the model, with the incident tools and `up_get_incident` from an upstream
/// MCP server (another gateway).
const SERVICENOW: &str = r#"
description = "Manages ServiceNow incidents."
instructions = "You are a ServiceNow assistant."
expose = ["agent", "tools"]

[model]
base_url = "${FAKE_LLM_URL}/v1"
api_key = "test-key"
model = "fake-model"
max_turns = 8

[[tools]]
type = "servicenow"

[[tools]]
type = "mcp"
url = "${UPSTREAM_URL}"
prefix = "up_"
allow = ["get_incident"]
timeout_secs = 5
"#;

struct Setup {
    gw: TestGateway,
    upstream: TestGateway,
    _agents: tempfile::TempDir,
}

/// `helpdesk` (its one tool runs `servicenow`) and `servicenow` on `fake`, behind `CLIENTS`,
/// with `[audit] redact = ["query"]`.
async fn gateway(fake: &FakeLlm) -> Setup {
    let upstream = TestGateway::spawn().await;
    let agents = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("agents/runtime/helpdesk.toml"),
        agents.path().join("helpdesk.toml"),
    )
    .unwrap();
    std::fs::write(agents.path().join("servicenow.toml"), SERVICENOW).unwrap();

    let mut settings = settings_with_clients(CLIENTS, &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    std::fs::write(&file, CLIENTS).unwrap();
    settings.policies = switchboard::config::load_gateway(&file, true, &Default::default())
        .unwrap()
        .policies;
    settings.audit.redact = vec![switchboard::config::audit::RedactRule::parse("query").unwrap()];
    let gw = TestGateway::spawn_with(Options {
        agents_dir: agents.path().to_owned(),
        vars: [
            ("FAKE_LLM_URL".to_owned(), fake.url.clone()),
            (
                "UPSTREAM_URL".to_owned(),
                upstream.url("/agents/servicenow/mcp"),
            ),
        ]
        .into(),
        settings,
        ..Options::default()
    })
    .await;
    Setup {
        gw,
        upstream,
        _agents: agents,
    }
}

/// Calls `tool` of `agent` with `arguments` as helpdesk-app; the result's text.
async fn call(gw: &TestGateway, agent: &str, tool: &str, arguments: Value) -> String {
    let client = rmcp_client_with(&gw.url(&format!("/agents/{agent}/mcp")), Some("t-help")).await;
    let handle = start_call(client.peer(), tool, arguments).await;
    let text = match handle.await_response().await {
        Ok(rmcp::model::ServerResult::CallToolResult(r)) => tool_text(&r),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("error: {e}"),
    };
    let _ = client.cancel().await;
    text
}

/// `GET path` on the admin API once every queued record is written.
async fn admin(gw: &TestGateway, path: &str) -> Value {
    gw.state.audit().expect("the trail is on").flush().await;
    let (status, body) = gw.get_json(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn ids(page: &Value) -> Vec<String> {
    page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

const ROWS: &str = "tr[data-testid=\"audit-record\"]";

/// The ids of the rows shown, top to bottom.
async fn row_ids(browser: &Browser) -> Vec<String> {
    let v = browser
        .client
        .execute(
            &format!(
                "return Array.from(document.querySelectorAll('{ROWS}')).map(r => r.dataset.id);"
            ),
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

async fn wait_rows(browser: &Browser, n: usize, what: &str) {
    browser
        .wait_js(
            &format!("document.querySelectorAll('{ROWS}').length === {n}"),
            PAGE_DEADLINE,
            what,
        )
        .await;
}

async fn js(browser: &Browser, script: &str) -> Value {
    browser.client.execute(script, vec![]).await.unwrap()
}

/// The text of a tree node without its children's.
async fn node_text(browser: &Browser, id: &Value) -> String {
    let script = format!(
        "const n = document.querySelector('[data-testid=\"call-node\"][data-id=\"{}\"]'); \
         return Array.from(n.children).filter(c => c.tagName !== 'OL').map(c => c.textContent).join(' | ');",
        id.as_str().unwrap()
    );
    js(browser, &script).await.as_str().unwrap().to_owned()
}

/// Nothing the page shows was parsed as HTML: no element came from the hostile value, and its
/// handler never ran (the page's CSP would stop the handler anyway, so the element is the
/// telling part).
async fn assert_no_injected_markup(browser: &Browser) {
    let injected = js(
        browser,
        "return [document.querySelectorAll('#view img').length, document.body.dataset.pwned || null];",
    )
    .await;
    assert_eq!(injected, json!([0, null]), "HTML from the data was parsed");
}

#[tokio::test]
async fn the_audit_view_lists_calls_newest_first_filters_them_in_the_url_and_pages_older() {
    // Arrange: one refusal, two answered calls, one tool error whose number looks like HTML.
    let fake = FakeLlm::start(vec![]).await;
    let Setup { gw, upstream, .. } = gateway(&fake).await;
    let refused = call(
        &gw,
        "servicenow",
        "update_incident",
        json!({"number": "INC0012346", "urgency": 1}),
    )
    .await;
    assert!(refused.contains("not allowed"), "{refused}");
    for number in ["INC0012346", "INC0012346", HOSTILE] {
        call(&gw, "servicenow", "get_incident", json!({"number": number})).await;
    }
    let all = admin(&gw, "/admin/audit").await;
    assert_eq!(ids(&all).len(), 4, "{all}");

    // Act: the list.
    let browser = Browser::start().await;
    browser.open(&gw.url("/ui#/audit")).await;
    browser.wait_view("audit", "audit view").await;
    wait_rows(&browser, 4, "every record").await;

    // Assert: newest first, as the API pages them, each with its outcome, agent, tool, client.
    assert_eq!(row_ids(&browser).await, ids(&all));
    let nav = browser
        .text("[data-testid=\"nav-audit\"][aria-current=\"page\"]")
        .await;
    assert_eq!(nav.trim(), "Audit");
    for r in all["records"].as_array().unwrap() {
        let row = format!("{ROWS}[data-id=\"{}\"]", r["id"].as_str().unwrap());
        let outcome = browser
            .wait(
                &format!("{row} [data-testid=\"outcome\"]"),
                "the row's outcome",
            )
            .await;
        assert_eq!(
            outcome.attr("data-outcome").await.unwrap().as_deref(),
            r["outcome"].as_str(),
            "{r}"
        );
        let text = browser.text(&row).await;
        for field in ["agent", "tool", "client"] {
            assert!(text.contains(r[field].as_str().unwrap()), "{field}: {text}");
        }
    }
    // The three outcomes are told apart by colour, not only by their word.
    let colours = js(
        &browser,
        &format!(
            "return ['ok', 'error', 'refused'].map(o => getComputedStyle(document.querySelector('{ROWS}[data-outcome=\"' + o + '\"] [data-testid=\"outcome\"]')).backgroundColor);"
        ),
    )
    .await;
    let colours: Vec<String> = serde_json::from_value(colours).unwrap();
    assert!(
        colours[0] != colours[1] && colours[1] != colours[2] && colours[0] != colours[2],
        "outcome colours: {colours:?}"
    );
    // The hostile number shows as the text it is.
    let error_row = format!("{ROWS}[data-outcome=\"error\"]");
    let api_error = all["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["outcome"] == "error")
        .and_then(|r| r["error"].as_str())
        .unwrap()
        .to_owned();
    assert!(api_error.contains('<'), "{api_error}");
    let shown = js(
        &browser,
        &format!("return document.querySelector('{error_row} .err-cell').textContent;"),
    )
    .await;
    assert_eq!(shown, json!(api_error));
    assert_no_injected_markup(&browser).await;
    browser.screenshot("audit").await;

    // A filter typed into the form narrows the list and goes into the URL.
    let tool = browser
        .wait("[data-testid=\"filter-tool\"]", "tool filter")
        .await;
    tool.send_keys("get_incident").await.unwrap();
    browser
        .click("[data-testid=\"filter-apply\"]", "apply button")
        .await;
    wait_rows(&browser, 3, "the get_incident calls").await;
    let hash = js(&browser, "return location.hash;").await;
    assert_eq!(hash, json!("#/audit?tool=get_incident"));
    let tools = js(
        &browser,
        &format!(
            "return Array.from(document.querySelectorAll('{ROWS}')).map(r => r.dataset.tool);"
        ),
    )
    .await;
    assert_eq!(
        tools,
        json!(["get_incident", "get_incident", "get_incident"])
    );
    // The outcome select applies at once, on top of the tool.
    browser
        .wait("[data-testid=\"filter-outcome\"]", "outcome filter")
        .await
        .select_by_value("error")
        .await
        .unwrap();
    wait_rows(&browser, 1, "the one failed get_incident").await;
    let hash = js(&browser, "return location.hash;").await;
    assert_eq!(hash, json!("#/audit?tool=get_incident&outcome=error"));

    // A linked view: the URL alone sets the filters, and the form shows them.
    browser.route("#/audit?outcome=refused").await;
    wait_rows(&browser, 1, "the refusal").await;
    browser
        .wait(
            &format!("{ROWS}[data-outcome=\"refused\"][data-tool=\"update_incident\"]"),
            "the refused update",
        )
        .await;
    let form = js(
        &browser,
        "return [document.querySelector('[data-testid=\"filter-outcome\"]').value, document.querySelector('[data-testid=\"filter-tool\"]').value];",
    )
    .await;
    assert_eq!(form, json!(["refused", ""]));

    // The time range reaches the API: nothing began after a time an hour from now, all of it
    // after one an hour ago.
    let hour = time::Duration::hours(1);
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let now = time::OffsetDateTime::now_utc();
    browser
        .route(&format!("#/audit?from={}", rfc3339(now + hour)))
        .await;
    let empty = browser
        .wait("[data-testid=\"empty\"]", "no records in the future")
        .await;
    assert!(
        empty.text().await.unwrap().contains("No records match"),
        "the empty state says the filters match nothing"
    );
    assert_eq!(row_ids(&browser).await, Vec::<String>::new());
    browser
        .route(&format!(
            "#/audit?from={}&to={}",
            rfc3339(now - hour),
            rfc3339(now + hour)
        ))
        .await;
    wait_rows(&browser, 4, "every record within the last hour").await;
    let from = js(
        &browser,
        "return document.querySelector('[data-testid=\"filter-from\"]').value;",
    )
    .await;
    assert!(
        from.as_str().is_some_and(|v| v.len() >= 16),
        "the form shows the range: {from}"
    );

    // Paging: two at a time, then the older one; no record twice, the API's order.
    browser.route("#/audit?tool=get_incident&limit=2").await;
    wait_rows(&browser, 2, "the first page").await;
    let first = row_ids(&browser).await;
    browser
        .click("[data-testid=\"audit-older\"]", "older button")
        .await;
    wait_rows(&browser, 3, "the first page and the older one").await;
    let every = admin(&gw, "/admin/audit?tool=get_incident").await;
    assert_eq!(row_ids(&browser).await, ids(&every));
    assert_eq!(first, ids(&every)[..2]);
    browser
        .wait_js(
            "document.querySelector('[data-testid=\"audit-older\"]').hidden",
            PAGE_DEADLINE,
            "no older page after the last",
        )
        .await;

    // A row opens its call's tree.
    let root = ids(&every)[0].clone();
    browser
        .click(
            &format!("{ROWS}[data-id=\"{root}\"] [data-testid=\"open-call\"]"),
            "the row's tool",
        )
        .await;
    browser.wait_view("call", "call view").await;
    browser
        .wait(
            &format!("[data-testid=\"call-node\"][data-id=\"{root}\"]"),
            "the call",
        )
        .await;

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.close().await;
    gw.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn a_call_tree_nests_the_delegated_agent_its_tools_and_the_upstream_call_with_durations() {
    // Arrange: helpdesk → servicenow (an agent) → search, an upstream get, a failing get.
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![(
            "servicenow",
            json!({"task": "find the VPN incident"}),
        )]),
        Step::ToolCalls(vec![("search_incident", json!({"query": "vpn"}))]),
        Step::ToolCalls(vec![("up_get_incident", json!({"number": "INC0012346"}))]),
        Step::ToolCalls(vec![("get_incident", json!({"number": HOSTILE}))]),
        Step::Echo("servicenow: "),
        Step::Echo("helpdesk: "),
    ])
    .await;
    let Setup { gw, upstream, .. } = gateway(&fake).await;
    let answer = call(&gw, "helpdesk", "helpdesk", json!({"task": "VPN is down"})).await;
    assert!(answer.starts_with("helpdesk: servicenow: "), "{answer}");
    let page = admin(&gw, "/admin/audit?agent=helpdesk&tool=helpdesk").await;
    let root_id = ids(&page)[0].clone();
    let tree = admin(&gw, &format!("/admin/audit/{root_id}")).await;
    let records = tree["records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 5, "{tree}");

    // Act
    let browser = Browser::start().await;
    browser
        .open(&gw.url(&format!("/ui#/audit/{root_id}")))
        .await;
    browser.wait_view("call", "call view").await;
    browser
        .wait_js(
            "document.querySelectorAll('[data-testid=\"call-node\"]').length === 5",
            PAGE_DEADLINE,
            "every record of the call",
        )
        .await;

    // Assert: in document order, each node with the node it sits in, its tool, agent,
    // duration (as recorded and as shown) and its bar against the call's.
    let nodes = js(
        &browser,
        r#"return Array.from(document.querySelectorAll('[data-testid="call-node"]')).map(n => {
            const up = n.parentElement.closest('[data-testid="call-node"]');
            const bar = n.querySelector(':scope > .tnode-row [data-testid="duration-bar"] .span-bar').getBoundingClientRect();
            const track = n.querySelector(':scope > .tnode-row [data-testid="duration-bar"]').getBoundingClientRect();
            return {
                id: n.dataset.id,
                parent: up ? up.dataset.id : null,
                tool: n.querySelector(':scope > .tnode-row [data-testid="node-tool"]').textContent,
                agent: n.querySelector(':scope > .tnode-row [data-testid="node-agent"]').textContent,
                outcome: n.dataset.outcome,
                ms: Number(n.dataset.durationMs),
                shown: n.querySelector(':scope > .tnode-row [data-testid="duration"]').textContent,
                left: bar.left - track.left, right: bar.right - track.left, track: track.width, trackLeft: track.left,
            };
        });"#,
    )
    .await;
    let nodes = nodes.as_array().unwrap();
    let tools: Vec<&str> = nodes.iter().map(|n| n["tool"].as_str().unwrap()).collect();
    assert_eq!(
        tools,
        [
            "helpdesk",
            "servicenow",
            "search_incident",
            "up_get_incident",
            "get_incident"
        ],
        "the order of the calls"
    );
    let by_id = |id: &Value| records.iter().find(|r| &r["id"] == id).unwrap();
    for n in nodes {
        let r = by_id(&n["id"]);
        assert_eq!(n["parent"], r["parent_id"], "nesting of {n}");
        assert_eq!(n["agent"], r["agent"], "{n}");
        assert_eq!(n["outcome"], r["outcome"], "{n}");
        assert_eq!(n["ms"].as_f64(), r["duration_ms"].as_f64(), "{n}");
        let shown = n["shown"].as_str().unwrap();
        assert!(
            shown.ends_with(" ms") || shown.ends_with(" s"),
            "a duration is shown: {n}"
        );
    }
    let (root, delegated) = (&nodes[0], &nodes[1]);
    assert_eq!(root["parent"], Value::Null);
    assert_eq!(root["agent"], "helpdesk");
    assert_eq!(delegated["agent"], "helpdesk");
    for n in &nodes[2..] {
        assert_eq!(n["parent"], delegated["id"], "servicenow's own calls: {n}");
        assert_eq!(n["agent"], "servicenow", "{n}");
    }
    // The root's bar spans the track; every other bar lies within it, children within their
    // parent's, one after another in time.
    let f = |n: &Value, k: &str| n[k].as_f64().unwrap();
    // One scale for all: the tracks line up at every depth.
    for n in nodes {
        assert!(
            (f(n, "trackLeft") - f(root, "trackLeft")).abs() <= 1.0
                && (f(n, "track") - f(root, "track")).abs() <= 1.0,
            "{n}'s track is not aligned with {root}'s"
        );
    }
    assert!(
        f(root, "left") <= 1.0 && f(root, "right") >= f(root, "track") - 1.0,
        "{root}"
    );
    for n in &nodes[2..] {
        assert!(
            f(n, "left") >= f(delegated, "left") - 1.0
                && f(n, "right") <= f(delegated, "right") + 1.0,
            "{n} within {delegated}"
        );
    }
    assert!(
        f(&nodes[2], "left") <= f(&nodes[3], "left")
            && f(&nodes[3], "left") <= f(&nodes[4], "left")
    );

    // Decision and rule, run facts, the error, redacted arguments.
    for n in nodes {
        let text = node_text(&browser, &n["id"]).await;
        assert!(text.contains("policies[0]"), "the allowing rule: {text}");
    }
    let root_text = node_text(&browser, &root["id"]).await;
    assert!(
        root_text.contains("fake-model") && root_text.contains("2 turns"),
        "{root_text}"
    );
    let delegated_text = node_text(&browser, &delegated["id"]).await;
    assert!(
        delegated_text.contains("fake-model") && delegated_text.contains("4 turns"),
        "{delegated_text}"
    );
    let failed = &nodes[4];
    assert_eq!(failed["outcome"], "error");
    let api_error = by_id(&failed["id"])["error"].as_str().unwrap().to_owned();
    let failed_css = format!(
        "[data-testid=\"call-node\"][data-id=\"{}\"]",
        failed["id"].as_str().unwrap()
    );
    let shown_error = browser
        .text(&format!("{failed_css} [data-testid=\"node-error\"]"))
        .await;
    assert_eq!(shown_error, api_error);
    assert!(shown_error.contains('<'), "{shown_error}");
    // Arguments open on demand, as text.
    browser
        .click(&format!("{failed_css} details.args summary"), "arguments")
        .await;
    let args = browser
        .text(&format!("{failed_css} [data-testid=\"node-arguments\"]"))
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"number": HOSTILE})
    );
    let search_css = format!(
        "[data-testid=\"call-node\"][data-id=\"{}\"]",
        nodes[2]["id"].as_str().unwrap()
    );
    browser
        .click(&format!("{search_css} details.args summary"), "arguments")
        .await;
    let args = browser
        .text(&format!("{search_css} [data-testid=\"node-arguments\"]"))
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"query": "[redacted]"})
    );
    assert_no_injected_markup(&browser).await;
    js(&browser, "window.scrollTo(0, 0); return null;").await;
    browser.screenshot("audit-call").await;

    // The call's records in the list: the link filters by its root id.
    browser
        .click("[data-testid=\"call-records\"]", "its records")
        .await;
    browser.wait_view("audit", "audit view").await;
    wait_rows(&browser, 5, "the call's records").await;
    let hash = js(&browser, "return location.hash;").await;
    assert_eq!(hash, json!(format!("#/audit?root_id={root_id}")));

    // A phone's width.
    browser.resize(390, 844).await;
    browser.route(&format!("#/audit/{root_id}")).await;
    browser.wait_view("call", "call view").await;
    browser
        .wait_js(
            "document.querySelectorAll('[data-testid=\"call-node\"]').length === 5",
            Duration::from_secs(5),
            "the tree on a phone",
        )
        .await;
    browser.screenshot("audit-call-phone").await;

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.close().await;
    gw.stop().await;
    upstream.stop().await;
}
