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

#[tokio::test]
async fn every_family_is_there_at_zero_from_the_first_scrape_and_no_redis_without_a_cluster() {
    // Arrange: a fresh gateway, nothing has happened yet.
    let fake = FakeLlm::start(vec![]).await;
    let gw = TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/runtime"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        ..Options::default()
    })
    .await;

    // Act
    let text = http()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // Assert
    let series = parse(&text);
    for name in [
        r#"switchboard_http_requests_total{route="metrics",method="GET",status="200"}"#,
        r#"switchboard_mcp_requests_total{agent="servicenow",method="tools/call"}"#,
        r#"switchboard_tool_calls_total{agent="servicenow",tool="get_incident",outcome="ok"}"#,
        r#"switchboard_tool_calls_total{agent="servicenow",tool="get_incident",outcome="error"}"#,
        r#"switchboard_tool_call_duration_seconds_count{agent="servicenow",tool="get_incident"}"#,
        r#"switchboard_sessions{agent="servicenow",transport="sse"}"#,
        r#"switchboard_sessions{agent="servicenow",transport="streamable_http"}"#,
        r#"switchboard_rate_limited_total{client="anonymous",limit="requests_per_minute"}"#,
        r#"switchboard_llm_requests_total{agent="servicenow",model="fake-model",outcome="ok"}"#,
        r#"switchboard_llm_request_duration_seconds_count{agent="servicenow",model="fake-model"}"#,
        r#"switchboard_llm_tokens_total{agent="servicenow",model="fake-model",kind="prompt"}"#,
        r#"switchboard_reloads_total{outcome="error"}"#,
        r#"switchboard_stateless_requests_total{agent="servicenow",client="anonymous"}"#,
    ] {
        assert_eq!(value(&series, name), 0.0, "{name} in\n{text}");
    }
    assert!(
        !text.contains("switchboard_cluster_"),
        "a gateway without [cluster] exports no cluster families:\n{text}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn metrics_follow_the_admin_rule_unless_made_public() {
    use std::net::{IpAddr, SocketAddr};
    let ip = crate::admin_api::non_loopback_ip();
    let h = http();
    // No admin token: loopback only.
    let gw = TestGateway::spawn_with(Options {
        bind: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0),
        ..Options::default()
    })
    .await;
    let port = gw.addr.port();
    let local = h
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), 200);
    let remote = h
        .get(format!("http://{ip}:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(remote.status(), 403);
    let body: serde_json::Value = remote.json().await.unwrap();
    assert_eq!(body["code"], "forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("[metrics] public"),
        "{body}"
    );
    gw.stop().await;

    // An admin token: needed from everywhere, loopback included.
    let mut opts = Options::default();
    opts.settings.admin_token = Some("scrape-me".to_owned().into());
    let gw = TestGateway::spawn_with(opts).await;
    let none = h.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = h
        .get(gw.url("/metrics"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = h
        .get(gw.url("/metrics"))
        .bearer_auth("scrape-me")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap().ends_with("# EOF\n"));
    gw.stop().await;

    // [metrics] public = true: anyone, from anywhere, without a token.
    let mut opts = Options {
        bind: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0),
        ..Options::default()
    };
    opts.settings.admin_token = Some("scrape-me".to_owned().into());
    opts.settings.metrics_public = true;
    let gw = TestGateway::spawn_with(opts).await;
    let port = gw.addr.port();
    let remote = h
        .get(format!("http://{ip}:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(remote.status(), 200);
    gw.stop().await;
}
