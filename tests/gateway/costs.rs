//! Costs and budgets (`[costs]`): every run's tokens and cost in the metrics and the admin
//! API (per day, client and agent) and the console's Clients and Traffic views; a client's budget refuses a run at its start, stops one
//! that crosses it at the next turn, resets at the period's end (injected clock), and holds
//! across two replicas sharing Redis.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::cluster::{RedisServer, Replica, cluster_config};
use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{
    Options, TestGateway, call_result, fixture, http, rmcp_client_with, settings_with_clients,
    start_call, tool_text,
};

const CLIENTS: &str = r#"
[[clients]]
name = "helpdesk-app"
token = "t-help"
agents = ["*"]

[costs]
currency = "EUR"

[costs.models."fake-model"]
input_per_million = 1000.0
output_per_million = 2000.0
"#;

/// The fake's every turn: 11 prompt and 7 completion tokens, 0.011 + 0.014 = 0.025 EUR.
const TURN_COST: f64 = 0.025;

struct Clock(Mutex<SystemTime>);

impl switchboard::costs::Clock for Clock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

fn at(rfc: &str) -> SystemTime {
    time::OffsetDateTime::parse(rfc, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .into()
}

/// The runtime agents on `fake`, with `CLIENTS` and `extra` as switchboard.toml, on `clock`.
async fn gateway(fake: &FakeLlm, extra: &str, clock: Arc<Clock>) -> TestGateway {
    let toml = format!("{CLIENTS}{extra}");
    let mut settings = settings_with_clients(&toml, &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    std::fs::write(&file, &toml).unwrap();
    settings.costs = switchboard::config::load_gateway(&file, true, &Default::default())
        .unwrap()
        .costs;
    TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/runtime"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        settings,
        clock: Some(clock),
        ..Options::default()
    })
    .await
}

/// Runs the servicenow agent as helpdesk-app at `url`: whether it failed, and its text.
async fn run(url: &str) -> (bool, String) {
    let client = rmcp_client_with(url, Some("t-help")).await;
    let result = call_result(
        start_call(
            client.peer(),
            "servicenow",
            json!({"task": "find VPN incidents"}),
        )
        .await,
    )
    .await;
    let _ = client.cancel().await;
    (result.is_error == Some(true), tool_text(&result))
}

/// The text of each cell of the table row matching `css`, once it is there.
async fn cells(browser: &crate::support::browser::Browser, css: &str) -> Vec<String> {
    browser.wait(css, css).await;
    let cells = browser
        .client
        .execute(
            "return [...document.querySelector(arguments[0]).cells].map((c) => c.textContent);",
            vec![json!(css)],
        )
        .await
        .unwrap();
    serde_json::from_value(cells).unwrap()
}

#[tokio::test]
async fn every_runs_tokens_and_cost_are_in_the_metrics_and_the_admin_api() {
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![("search_incident", json!({"query": "VPN"}))]),
        Step::Text("done"),
    ])
    .await;
    let clock = Arc::new(Clock(Mutex::new(at("2026-12-06T12:00:00Z"))));
    let gw = gateway(&fake, "", clock).await;
    let (failed, text) = run(&gw.url("/agents/servicenow/mcp")).await;
    assert!(!failed, "{text}");

    let (status, costs) = gw.get_json("/admin/costs?days=1").await;
    assert_eq!(status, 200, "{costs}");
    assert_eq!(costs["currency"], "EUR");
    let rows = costs["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{costs}");
    let row = &rows[0];
    assert_eq!(
        (
            &row["day"],
            &row["client"],
            &row["agent"],
            &row["prompt_tokens"],
            &row["completion_tokens"]
        ),
        (
            &json!("2026-12-06"),
            &json!("helpdesk-app"),
            &json!("servicenow"),
            &json!(22),
            &json!(14)
        ),
        "{costs}"
    );
    let cost = row["cost"].as_f64().unwrap();
    assert!((cost - 2.0 * TURN_COST).abs() < 1e-9, "{costs}");
    assert_eq!(costs["clients"][0]["name"], "helpdesk-app");
    assert_eq!(costs["agents"][0]["name"], "servicenow");
    assert_eq!(costs["agents"][0]["prompt_tokens"], 22);
    // Out of range: 400.
    let (status, _) = gw.get_json("/admin/costs?days=93").await;
    assert_eq!(status, 400);

    let metrics = http()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "switchboard_client_llm_tokens_total{client=\"helpdesk-app\",agent=\"servicenow\",kind=\"prompt\"} 22"
        ),
        "{metrics}"
    );
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "switchboard_llm_cost_total{client=\"helpdesk-app\",agent=\"servicenow\",model=\"fake-model\"}",
            )
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((value - 2.0 * TURN_COST).abs() < 1e-9, "{line}");

    // The console's Clients and Traffic views show what the admin API says (its default 7
    // days): each one's total, then each day's.
    let (_, costs) = gw.get_json("/admin/costs").await;
    let money = |v: &Value| format!("EUR {:.2}", v.as_f64().unwrap());
    let figures = |x: &Value| {
        [
            x["prompt_tokens"].to_string(),
            x["completion_tokens"].to_string(),
            money(&x["cost"]),
        ]
    };
    let browser = crate::support::browser::Browser::start().await;
    browser.open(&gw.url("/ui#/clients")).await;
    for (panel, key, name) in [
        ("client-spend", "client", "helpdesk-app"),
        ("agent-spend", "agent", "servicenow"),
    ] {
        if key == "agent" {
            browser.route("#/traffic").await;
        }
        let total = &costs[format!("{key}s")][0];
        assert_eq!(total["name"], name, "{costs}");
        let mut expected = vec![name.to_owned(), "all".to_owned()];
        expected.extend(figures(total));
        let css =
            format!("[data-testid=\"{panel}\"] tr[data-testid=\"spend\"][data-name=\"{name}\"]");
        assert_eq!(cells(&browser, &css).await, expected, "{costs}");
        let day = &costs["rows"][0];
        let mut expected = vec![String::new(), "2026-12-06".to_owned()];
        expected.extend(figures(day));
        let css = format!(
            "[data-testid=\"{panel}\"] tr[data-testid=\"spend-day\"][data-name=\"{name}\"][data-day=\"2026-12-06\"]"
        );
        assert_eq!(cells(&browser, &css).await, expected, "{costs}");
        assert_eq!(expected[2..], ["22", "14", "EUR 0.05"]);
    }
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.close().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_budget_refuses_at_the_start_stops_mid_run_and_resets_with_its_day() {
    let fake = FakeLlm::start(vec![
        // Run 1: 18 tokens, 36 tokens, then the budget (30 a day) is spent.
        Step::ToolCalls(vec![("search_incident", json!({"query": "VPN"}))]),
        Step::ToolCalls(vec![("search_incident", json!({"query": "printer"}))]),
        // Run 3, the next day.
        Step::Text("fresh"),
    ])
    .await;
    let clock = Arc::new(Clock(Mutex::new(at("2026-12-06T23:59:00Z"))));
    let gw = gateway(
        &fake,
        "\n[costs.budgets.\"helpdesk-app\"]\ntokens_per_day = 30\ncost_per_month = 100.0\n",
        clock.clone(),
    )
    .await;
    let url = gw.url("/agents/servicenow/mcp");

    let (failed, text) = run(&url).await;
    assert!(failed, "{text}");
    assert!(
        text.contains("stopped before model turn 3")
            && text.contains("the budget of client \"helpdesk-app\" is used up: tokens_per_day = 30, spent 36 tokens")
            && text.contains("it resets at 2026-12-07T00:00:00Z")
            && text.contains("there is no partial answer"),
        "{text}"
    );
    assert_eq!(fake.received().len(), 2);

    let (failed, text) = run(&url).await;
    assert!(failed, "{text}");
    assert!(
        text.starts_with(
            "refused: the budget of client \"helpdesk-app\" is used up: tokens_per_day = 30"
        ) && text.contains("it resets at 2026-12-07T00:00:00Z"),
        "{text}"
    );
    assert_eq!(fake.received().len(), 2, "a refused run asks no model");

    *clock.0.lock().unwrap() = at("2026-12-07T00:00:00Z");
    let (failed, text) = run(&url).await;
    assert_eq!((failed, text.as_str()), (false, "fresh"));
    gw.stop().await;
}

#[tokio::test]
async fn a_budget_holds_across_replicas_sharing_redis() {
    let redis = RedisServer::start();
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![("search_incident", json!({"query": "VPN"}))]),
        Step::Text("done"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = cluster_config(
        dir.path(),
        &redis.url(),
        &format!("{CLIENTS}\n[costs.budgets.\"*\"]\ntokens_per_day = 30\n"),
    );
    let env = [("FAKE_LLM_URL", fake.url.as_str())];
    let agents = fixture("agents/runtime");
    let a = Replica::start_with(&config, &dir.path().join("a"), &agents, &env);
    let b = Replica::start_with(&config, &dir.path().join("b"), &agents, &env);

    let (failed, text) = run(&a.url("/agents/servicenow/mcp")).await;
    assert!(!failed, "{text}");
    // 36 tokens spent on replica a: replica b refuses the next run.
    let (failed, text) = run(&b.url("/agents/servicenow/mcp")).await;
    assert!(failed, "{text}");
    assert!(
        text.starts_with("refused: the budget of client \"helpdesk-app\" is used up: tokens_per_day = 30, spent 36 tokens"),
        "{text}"
    );
    assert_eq!(fake.received().len(), 2);
    let (_, costs): (u16, Value) = a.get_json("/admin/costs").await;
    assert_eq!(costs["rows"][0]["prompt_tokens"], 22, "{costs}");
}
