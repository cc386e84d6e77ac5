//! `/metrics`: Prometheus text that parses, with counters that move.

use serde_json::json;

use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{Options, SseClient, TestGateway, fixture, http, rmcp_client};

/// Parses OpenMetrics text into `(series, value)` pairs, failing on any malformed line.
fn parse(text: &str) -> Vec<(String, f64)> {
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    let mut series = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            assert!(
                line.is_empty()
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT ")
                    || line == "# EOF",
                "bad comment line {line:?}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line:?}"));
        let metric = name.split('{').next().unwrap();
        assert!(
            metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line:?}"
        );
        if let Some(labels) = name.strip_prefix(metric) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels: {line:?}"
            );
        }
        series.push((name.to_owned(), value));
    }
    series
}

fn value(series: &[(String, f64)], name: &str) -> f64 {
    series
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no series {name}"))
}

#[tokio::test]
async fn metrics_parse_and_counters_move_after_calls() {
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![("get_incident", json!({"number": "INC0012346"}))]),
        Step::Text("done"),
    ])
    .await;
    let gw = TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/runtime"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        ..Options::default()
    })
    .await;
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;
    c.call_tool(1, "get_incident", json!({"number": "INC0012346"}))
        .await;
    c.call_tool(2, "get_incident", json!({"number": "INC0999999"}))
        .await;
    c.call_tool(3, "servicenow", json!({"task": "look it up"}))
        .await;
    let st = rmcp_client(&gw.url("/agents/servicenow/mcp")).await;
    st.list_all_tools().await.unwrap();
    let _ = http().get(gw.url("/agents/nope/mcp")).send().await.unwrap();

    let resp = http().get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let series = parse(&resp.text().await.unwrap());
    assert_eq!(
        value(
            &series,
            r#"switchboard_tool_calls_total{agent="servicenow",tool="get_incident",outcome="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &series,
            r#"switchboard_tool_calls_total{agent="servicenow",tool="get_incident",outcome="error"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &series,
            r#"switchboard_tool_calls_total{agent="servicenow",tool="servicenow",outcome="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &series,
            r#"switchboard_tool_call_duration_seconds_count{agent="servicenow",tool="get_incident"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &series,
            r#"switchboard_sessions{agent="servicenow",transport="sse"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &series,
            r#"switchboard_sessions{agent="servicenow",transport="streamable_http"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &series,
            r#"switchboard_mcp_requests_total{agent="servicenow",method="tools/call"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &series,
            r#"switchboard_llm_requests_total{agent="servicenow",model="fake-model",outcome="ok"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &series,
            r#"switchboard_llm_tokens_total{agent="servicenow",model="fake-model",kind="prompt"}"#
        ),
        22.0
    );
    assert_eq!(
        value(
            &series,
            r#"switchboard_http_requests_total{route="mcp",method="GET",status="404"}"#
        ),
        1.0
    );
    assert!(
        value(
            &series,
            r#"switchboard_http_requests_total{route="messages",method="POST",status="202"}"#
        ) >= 5.0
    );
    st.cancel().await.unwrap();
    gw.stop().await;
}
