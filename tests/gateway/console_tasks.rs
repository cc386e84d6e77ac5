//! The console's Tasks view (`/ui#/tasks`) in a real browser against a real gateway: agent
//! runs of a client declaring the MCP tasks extension appear without reloading the page, with
//! their agent, caller, status and latest progress; Cancel (confirmed) stops a running one,
//! whose caller then reads `cancelled` and whose model request is dropped; an ended task has
//! no Cancel button.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Notify;

use crate::support::browser::{Browser, PAGE_DEADLINE};
use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{Options, TestGateway, fixture, settings_with_clients};
use crate::support::tasks::{Raw, task_capabilities};

const CLIENTS: &str = r#"
[[clients]]
name = "helpdesk-app"
token = "t-help"
agents = ["*"]
"#;

fn row(id: &str) -> String {
    format!("[data-testid=\"task\"][data-id=\"{id}\"]")
}

#[tokio::test]
async fn the_tasks_view_lists_tasks_live_and_cancels_a_running_one() {
    let gate = Arc::new(Notify::new());
    let fake = FakeLlm::start(vec![
        Step::Held(gate.clone(), Box::new(Step::Text("quick answer"))),
        Step::Hang,
    ])
    .await;
    let gw = TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/runtime"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        settings: settings_with_clients(CLIENTS, &[]),
        ..Options::default()
    })
    .await;
    let c = Raw::stateless(
        &gw.url("/agents/servicenow/mcp"),
        Some("t-help"),
        task_capabilities(false),
    );
    let browser = Browser::start().await;
    browser.open(&gw.url("/ui#/tasks")).await;
    browser.wait_view("tasks", "tasks view").await;
    browser
        .client
        .execute("window.sameDocument = true; return null;", vec![])
        .await
        .unwrap();

    // A task that ends: listed live, completed, without a Cancel button.
    let done = c.call("servicenow", "quick").await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.wait(&row(&done), "the first task, live").await;
    gate.notify_one();
    c.poll_status(&done, "completed").await;
    browser
        .wait_js(
            &format!(
                "document.querySelector('{} .badge').textContent === 'completed'",
                row(&done).replace('\'', "\\'")
            ),
            PAGE_DEADLINE,
            "the completed status",
        )
        .await;
    let text = browser.text(&row(&done)).await;
    for part in ["servicenow", "client helpdesk-app"] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    // The latest progress: the model's turn, or the run's own last word if it came in first.
    assert!(
        text.contains("servicenow: model turn 1") || text.contains("servicenow: done"),
        "no progress in {text}"
    );
    let hidden = browser
        .client
        .execute(
            &format!(
                "return document.querySelector('{} [data-testid=\"cancel-task\"]').hidden;",
                row(&done).replace('\'', "\\'")
            ),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(hidden, json!(true), "an ended task cannot be cancelled");

    // A running task (of helpdesk, whose model requests wait for a minute): Cancel,
    // confirmed, stops it.
    let helpdesk = Raw::stateless(
        &gw.url("/agents/helpdesk/mcp"),
        Some("t-help"),
        task_capabilities(false),
    );
    let running = helpdesk.call("helpdesk", "long").await["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    fake.wait_requests(2).await;
    browser.wait(&row(&running), "the running task").await;
    browser
        .click(
            &format!("{} [data-testid=\"cancel-task\"]", row(&running)),
            "cancel",
        )
        .await;
    browser
        .click(
            "dialog[data-testid=\"confirm\"][open] [data-testid=\"confirm-yes\"]",
            "confirm",
        )
        .await;
    fake.wait_abandoned().await;
    let cancelled = helpdesk.poll_status(&running, "cancelled").await;
    assert_eq!(cancelled["statusMessage"], "cancelled by an operator");
    browser
        .wait_js(
            &format!(
                "document.querySelector('{} .badge').textContent === 'cancelled'",
                row(&running).replace('\'', "\\'")
            ),
            PAGE_DEADLINE,
            "the cancelled status",
        )
        .await;
    assert_eq!(
        browser
            .client
            .execute("return window.sameDocument === true;", vec![])
            .await
            .unwrap(),
        json!(true),
        "the page was not reloaded"
    );
    assert!(browser.console_errors().await.is_empty());
    browser.screenshot("tasks").await;
    browser.close().await;
    gw.stop().await;
}
