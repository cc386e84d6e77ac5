//! The console's Approvals view (`/ui#/approvals`) in a real browser against a real gateway
//! whose servicenow agent makes resolving an incident wait for an operator: a call that waits
//! appears without reloading the page, with who it is for, the rule and its conditions, the
//! rule's message and the redacted arguments; Approve (with a reason, as the operator named on
//! the page) lets the MCP call complete, Deny gives the caller a tool error with the reason; a
//! call that stopped waiting meanwhile is said to be no longer waiting; the nav's count of
//! waiting calls follows on every view.

use std::time::Duration;

use rmcp::model::CallToolResult;
use rmcp::service::{RequestHandle, RoleClient, RunningService};
use serde_json::{Value, json};

use crate::support::asking::{agents_with_rules, pending};
use crate::support::browser::{Browser, PAGE_DEADLINE};
use crate::support::fake_llm::FakeLlm;
use crate::support::helpers::{
    Options, TestGateway, call_result, rmcp_client_with, settings_with_clients, start_call,
    tool_text,
};

const CLIENTS: &str = r#"
[[clients]]
name = "helpdesk-app"
token = "t-help"
agents = ["*"]
"#;

const RULE: &str = r#"
[[approvals]]
tools = ["update_incident"]
by = "operator"
when = { state = "Resolved" }
message = "Resolving closes the ticket for the customer."
"#;

const MESSAGE: &str = "Resolving closes the ticket for the customer.";

const CARDS: &str = "[data-testid=\"approval\"]";

/// The runtime fixture agents, servicenow with [`RULE`] appended, `work_notes` redacted.
async fn gateway(fake: &FakeLlm) -> (TestGateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    agents_with_rules(dir.path(), RULE);
    let mut settings = settings_with_clients(CLIENTS, &[]);
    settings.audit.redact =
        vec![switchboard::config::audit::RedactRule::parse("work_notes").unwrap()];
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.path().to_owned(),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        settings,
        ..Options::default()
    })
    .await;
    (gw, dir)
}

/// Starts `update_incident` resolving `number` as helpdesk-app: a call that waits.
async fn resolve(
    client: &RunningService<RoleClient, ()>,
    number: &str,
) -> RequestHandle<RoleClient> {
    start_call(
        client.peer(),
        "update_incident",
        json!({"number": number, "state": "Resolved", "close_notes": "fixed", "work_notes": "called Bob at home"}),
    )
    .await
}

/// The call's answer, within 10 s.
async fn answer(handle: RequestHandle<RoleClient>) -> CallToolResult {
    tokio::time::timeout(Duration::from_secs(10), call_result(handle))
        .await
        .expect("the call is answered within 10 s of the decision")
}

async fn js(browser: &Browser, script: &str) -> Value {
    browser.client.execute(script, vec![]).await.unwrap()
}

/// Waits until the nav's count says `n` (hidden for none).
async fn wait_count(browser: &Browser, n: usize, what: &str) {
    let expr = format!(
        "(() => {{ const b = document.querySelector('[data-testid=\"approvals-count\"]'); \
         return (b.hidden ? 0 : Number(b.textContent)) === {n}; }})()"
    );
    browser.wait_js(&expr, PAGE_DEADLINE, what).await;
}

/// The ids of the cards shown, top to bottom.
async fn card_ids(browser: &Browser) -> Vec<String> {
    let v = js(
        browser,
        &format!("return Array.from(document.querySelectorAll('{CARDS}')).map(c => c.dataset.id);"),
    )
    .await;
    serde_json::from_value(v).unwrap()
}

fn card(id: &str) -> String {
    format!("{CARDS}[data-id=\"{id}\"]")
}

/// Types `text` into the empty input matching `css`.
async fn type_into(browser: &Browser, css: &str, text: &str) {
    let input = browser.wait(css, css).await;
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

/// The floating notice's text, once it says something containing `part`.
async fn wait_notice(browser: &Browser, part: &str) -> String {
    let expr = format!(
        "!document.getElementById('notice').hidden && document.getElementById('notice').textContent.includes({})",
        json!(part)
    );
    browser.wait_js(&expr, PAGE_DEADLINE, "the notice").await;
    browser.text("#notice").await
}

#[tokio::test]
async fn the_approvals_view_shows_waiting_calls_live_and_approves_or_denies_them() {
    let fake = FakeLlm::start(vec![]).await;
    let (gw, _dir) = gateway(&fake).await;
    let client = rmcp_client_with(&gw.url("/agents/servicenow/mcp"), Some("t-help")).await;
    let browser = Browser::start().await;
    browser.open(&gw.url("/ui#/approvals")).await;
    browser.wait_view("approvals", "approvals view").await;
    let nav = browser
        .text("[data-testid=\"nav-approvals\"][aria-current=\"page\"]")
        .await;
    assert_eq!(nav.trim(), "Approvals");
    browser
        .wait_js(
            "!document.querySelector('[data-testid=\"empty\"]').hidden",
            PAGE_DEADLINE,
            "the empty state",
        )
        .await;
    wait_count(&browser, 0, "no count while nothing waits").await;
    // Marks this page: a reload would lose it.
    js(&browser, "window.sameDocument = true; return null;").await;

    // A call that waits appears by itself, with its details.
    let first = resolve(&client, "INC0012345").await;
    let waiting = pending(&gw, 1).await;
    let p = &waiting[0];
    let id = p["id"].as_str().unwrap().to_owned();
    let row = card(&id);
    browser.wait(&row, "the waiting call, live").await;
    wait_count(&browser, 1, "one call waits").await;
    assert_eq!(
        js(&browser, "return window.sameDocument === true;").await,
        json!(true),
        "the page was not reloaded"
    );
    let text = browser.text(&row).await;
    for part in [
        "update_incident",
        "servicenow",
        "client helpdesk-app",
        "approvals[0]",
        "state = \"Resolved\"",
        MESSAGE,
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    let args = browser.text(&format!("{row} pre")).await;
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"number": "INC0012345", "state": "Resolved", "close_notes": "fixed", "work_notes": "[redacted]"}),
        "the arguments, redacted as in the trail"
    );
    assert!(!text.contains("called Bob"), "{text}");
    // How long it has waited, and the countdown to the timeout (300 s by default).
    let times = js(
        &browser,
        &format!(
            "return Array.from(document.querySelectorAll('{row} header strong')).map(s => s.textContent);"
        ),
    )
    .await;
    let times: Vec<String> = serde_json::from_value(times).unwrap();
    assert!(times[0].ends_with(" s"), "waited: {times:?}");
    assert!(
        times[1].starts_with("4 min") || times[1] == "5 min",
        "expires: {times:?}"
    );
    // Its audit tree.
    let root_id = p["root_id"].as_str().expect("the trail is on").to_owned();
    let href = browser
        .wait(&format!("{row} a[href^=\"#/audit/\"]"), "the audit link")
        .await
        .attr("href")
        .await
        .unwrap();
    assert_eq!(href.as_deref(), Some(format!("#/audit/{root_id}").as_str()));

    // Approve, with a reason, as the operator named on the page.
    type_into(&browser, "[data-testid=\"operator\"]", "olivia").await;
    type_into(
        &browser,
        &format!("{row} [data-testid=\"reason\"]"),
        "customer confirmed",
    )
    .await;
    browser
        .click(&format!("{row} [data-testid=\"approve\"]"), "approve")
        .await;
    let result = answer(first).await;
    assert_ne!(result.is_error, Some(true), "{}", tool_text(&result));
    assert!(
        tool_text(&result).contains("Resolved"),
        "{}",
        tool_text(&result)
    );
    browser.wait_gone(&row, "the approved call's card").await;
    let said = wait_notice(&browser, "approved").await;
    assert!(
        said.contains("approved by olivia") && said.contains("customer confirmed"),
        "{said}"
    );
    wait_count(&browser, 0, "nothing waits after the approval").await;
    assert_eq!(
        js(
            &browser,
            "return localStorage.getItem('switchboard.operator');"
        )
        .await,
        json!("olivia"),
        "the operator's name is remembered"
    );
    gw.state.audit().expect("the trail is on").flush().await;
    let (status, tree) = gw.get_json(&format!("/admin/audit/{root_id}")).await;
    assert_eq!(status, 200, "{tree}");
    let approval = &tree["records"][0]["approval"];
    assert_eq!(approval["decided_by"], "olivia", "{tree}");
    assert_eq!(approval["reason"], "customer confirmed", "{tree}");

    // On another view the count follows two calls that wait.
    browser.route("#/agents").await;
    browser.wait_view("agents", "agents view").await;
    let second = resolve(&client, "INC0012346").await;
    wait_count(&browser, 1, "one call waits, seen from the agents view").await;
    let third = resolve(&client, "INC0012347").await;
    wait_count(&browser, 2, "two calls wait, seen from the agents view").await;
    let waiting = pending(&gw, 2).await;
    let ids: Vec<String> = waiting
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    browser
        .click("[data-testid=\"nav-approvals\"]", "the nav's Approvals")
        .await;
    browser.wait_view("approvals", "approvals view").await;
    browser
        .wait_js(
            &format!("document.querySelectorAll('{CARDS}').length === 2"),
            PAGE_DEADLINE,
            "both waiting calls",
        )
        .await;
    assert_eq!(card_ids(&browser).await, ids, "oldest first, as the API");
    let operator = js(
        &browser,
        "return document.querySelector('[data-testid=\"operator\"]').value;",
    )
    .await;
    assert_eq!(operator, json!("olivia"), "the remembered operator");
    js(&browser, "window.scrollTo(0, 0); return null;").await;
    browser.screenshot("approvals").await;

    // Deny the older one with a reason: the caller gets a tool error saying so.
    let row = card(&ids[0]);
    type_into(
        &browser,
        &format!("{row} [data-testid=\"reason\"]"),
        "not confirmed with the customer",
    )
    .await;
    browser
        .click(&format!("{row} [data-testid=\"deny\"]"), "deny")
        .await;
    let result = answer(second).await;
    assert_eq!(result.is_error, Some(true), "{}", tool_text(&result));
    let text = tool_text(&result);
    assert!(text.contains("denied") && text.contains("olivia"), "{text}");
    assert!(text.contains("not confirmed with the customer"), "{text}");
    browser.wait_gone(&row, "the denied call's card").await;
    let said = wait_notice(&browser, "denied").await;
    assert!(said.contains("denied by olivia"), "{said}");
    wait_count(&browser, 1, "one call still waits").await;
    assert_eq!(card_ids(&browser).await, ids[1..]);

    // A call that stops waiting before the decision reaches it (here: its caller cancels it
    // while the page still shows the list from before) is said to be no longer waiting.
    let stale = json!({"approvals": pending(&gw, 1).await}).to_string();
    js(
        &browser,
        &format!(
            "window.staleApprovals = {stale};
             const real = window.fetch;
             window.fetch = (path, opts) => window.staleApprovals && path === '/admin/approvals'
               ? Promise.resolve(new Response(JSON.stringify(window.staleApprovals), {{ headers: {{ 'content-type': 'application/json' }} }}))
               : real(path, opts);
             return null;"
        ),
    )
    .await;
    third.cancel(Some("changed my mind".into())).await.unwrap();
    pending(&gw, 0).await;
    let row = card(&ids[1]);
    browser
        .click(&format!("{row} [data-testid=\"approve\"]"), "approve")
        .await;
    let said = wait_notice(&browser, "no longer waiting").await;
    assert!(said.contains("decided, timed out or withdrawn"), "{said}");
    browser.wait_gone(&row, "the withdrawn call's card").await;
    js(&browser, "window.staleApprovals = null; return null;").await;
    wait_count(&browser, 0, "nothing waits").await;
    browser
        .wait_js(
            "!document.querySelector('[data-testid=\"empty\"]').hidden",
            PAGE_DEADLINE,
            "the empty state again",
        )
        .await;

    // Only the refused decision's 404 is in the page's log.
    let errors: Vec<String> = browser
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !(e.contains("/admin/approvals/") && e.contains("404")))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.close().await;
    let _ = client.cancel().await;
    gw.stop().await;
}
