//! The admin API over real HTTP: sessions of both transports, filters, paging, ending
//! sessions, and the admin token rules.

use std::net::{IpAddr, SocketAddr};

use serde_json::{Value, json};
use switchboard::config::ServerSpec;

use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{
    Options, SseClient, TestGateway, fixture, http, rmcp_client, streamable_initialize,
    streamable_post,
};

async fn delete(gw: &TestGateway, path: &str) -> u16 {
    http()
        .delete(gw.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn sessions_of_both_transports_are_listed_with_who_and_what() {
    let gw = TestGateway::spawn().await;
    let mut legacy = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    legacy.initialize().await;
    legacy
        .call_tool(1, "get_incident", json!({"number": "INC0012346"}))
        .await;
    let client = rmcp_client(&gw.url("/agents/helpdesk/mcp")).await;
    client.list_all_tools().await.unwrap();

    let (status, page) = gw.get_json("/admin/sessions").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 2, "{page}");
    let sessions = page["sessions"].as_array().unwrap();
    let sse = sessions.iter().find(|s| s["transport"] == "sse").unwrap();
    assert_eq!(sse["id"], legacy.session_id.as_str());
    assert_eq!(sse["agent"], "servicenow");
    assert_eq!(sse["client_ip"], "127.0.0.1");
    assert_eq!(sse["mcp_client_name"], "sse-test");
    assert_eq!(sse["mcp_client_version"], "1");
    assert_eq!(sse["protocol_version"], "2024-11-05");
    assert_eq!(sse["requests"], 2, "initialize + tools/call: {sse}");
    assert_eq!(sse["calls_in_flight"], 0);
    assert!(sse["created_at"].as_str().unwrap().ends_with('Z'), "{sse}");
    let st = sessions
        .iter()
        .find(|s| s["transport"] == "streamable_http")
        .unwrap();
    assert_eq!(st["agent"], "helpdesk");
    assert_eq!(st["client_ip"], "127.0.0.1");
    assert_eq!(st["mcp_client_name"], "rmcp");
    assert!(
        st["protocol_version"].as_str().unwrap().starts_with("20"),
        "{st}"
    );
    assert!(st["requests"].as_u64().unwrap() >= 2, "{st}");

    // One session by id; the agents with their live counts.
    let (status, one) = gw
        .get_json(&format!("/admin/sessions/{}", legacy.session_id))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["agent"], "servicenow");
    let (_, agents) = gw.get_json("/admin/agents").await;
    let sn = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "servicenow")
        .unwrap();
    assert_eq!(
        sn["sessions"],
        json!({"sse": 1, "streamable_http": 0, "total": 1})
    );
    assert_eq!(sn["urls"]["mcp"], "/agents/servicenow/mcp");
    assert_eq!(sn["tools"].as_array().unwrap().len(), 4);
    let (status, helpdesk) = gw.get_json("/admin/agents/helpdesk").await;
    assert_eq!(status, 200);
    assert_eq!(helpdesk["sessions"]["streamable_http"], 1);
    assert_eq!(helpdesk["expose_agent"], false);
    let (status, missing) = gw.get_json("/admin/agents/nope").await;
    assert_eq!(status, 404);
    assert_eq!(missing["code"], "unknown_agent");

    // The client leaves: both sessions leave the list.
    drop(legacy);
    client.cancel().await.unwrap();
    gw.wait_sessions("both sessions to end", |n| n == 0).await;
    let (_, page) = gw.get_json("/admin/sessions").await;
    assert_eq!(page["total"], 0);
    gw.stop().await;
}

#[tokio::test]
async fn sessions_are_filtered_and_paged() {
    let gw = TestGateway::spawn().await;
    let _a = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    let _b = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    let _c = streamable_initialize(&http(), &gw.url("/agents/helpdesk/mcp")).await;
    gw.wait_sessions("three sessions", |n| n == 3).await;

    let cases = [
        ("/admin/sessions", 3, 3),
        ("/admin/sessions?agent=helpdesk", 1, 1),
        ("/admin/sessions?agent=servicenow&transport=sse", 2, 2),
        ("/admin/sessions?transport=streamable_http", 1, 1),
        ("/admin/sessions?client=nobody", 0, 0),
        ("/admin/sessions?limit=1&offset=1", 3, 1),
        ("/admin/sessions?offset=5", 3, 0),
    ];
    for (path, total, on_page) in cases {
        let (status, page) = gw.get_json(path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert_eq!(page["total"], total, "{path}: {page}");
        assert_eq!(
            page["sessions"].as_array().unwrap().len(),
            on_page,
            "{path}: {page}"
        );
    }
    // Pages do not overlap.
    let (_, p0) = gw.get_json("/admin/sessions?limit=1&offset=0").await;
    let (_, p1) = gw.get_json("/admin/sessions?limit=1&offset=1").await;
    assert_ne!(p0["sessions"][0]["id"], p1["sessions"][0]["id"]);

    for bad in [
        "/admin/sessions?transport=pigeon",
        "/admin/sessions?limit=0",
        "/admin/sessions?limit=5000",
        "/admin/sessions?limit=abc",
        "/admin/sessions?offset=-1",
    ] {
        let (status, body) = gw.get_json(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "bad_request", "{bad}: {body}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    gw.stop().await;
}

#[tokio::test]
async fn ending_a_legacy_session_closes_its_stream_and_its_posts_get_404() {
    let gw = TestGateway::spawn().await;
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;
    let path = format!("/admin/sessions/{}", c.session_id);
    assert_eq!(delete(&gw, &path).await, 204);
    c.closed().await;
    let resp = c
        .post_raw(json!({"jsonrpc":"2.0","id":5,"method":"tools/list"}).to_string())
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(gw.get_json(&path).await.0, 404);
    assert_eq!(delete(&gw, &path).await, 404);
    assert_eq!(gw.state.sessions().len(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn ending_a_streamable_session_makes_its_id_unknown() {
    let gw = TestGateway::spawn().await;
    let h = http();
    let mcp = gw.url("/agents/servicenow/mcp");
    let sid = streamable_initialize(&h, &mcp).await;
    assert_eq!(delete(&gw, &format!("/admin/sessions/{sid}")).await, 204);
    let resp = streamable_post(
        &h,
        &mcp,
        Some(&sid),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string(),
    )
    .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(gw.state.sessions().len(), 0);
    assert_eq!(delete(&gw, "/admin/sessions/no-such-session").await, 404);
    gw.stop().await;
}

#[tokio::test]
async fn an_admin_sees_a_call_in_flight_and_ending_the_session_cancels_it() {
    let fake = FakeLlm::start(vec![Step::Hang]).await;
    let gw = TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/runtime"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        ..Options::default()
    })
    .await;
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;
    c.post(json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"servicenow","arguments":{"task":"slow"}}}))
        .await;
    fake.wait_requests(1).await;
    let path = format!("/admin/sessions/{}", c.session_id);
    let (_, s) = gw.get_json(&path).await;
    assert_eq!(s["calls_in_flight"], 1, "{s}");
    assert_eq!(delete(&gw, &path).await, 204);
    fake.wait_abandoned().await;
    c.closed().await;
    gw.stop().await;
}

#[tokio::test]
async fn with_a_token_every_admin_operation_needs_it_and_probes_stay_open() {
    let gw = TestGateway::spawn_with(Options {
        settings: ServerSpec {
            admin_token: Some("adm1n-s3cret".to_owned().into()),
            ..Options::default().settings
        },
        ..Options::default()
    })
    .await;
    let h = http();
    for path in [
        "/admin/agents",
        "/admin/agents/servicenow",
        "/admin/sessions",
        "/admin/sessions/x",
    ] {
        let resp = h.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
        let resp = h
            .get(gw.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    let resp = h.delete(gw.url("/admin/sessions/x")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = h
        .get(gw.url("/admin/agents"))
        .bearer_auth("adm1n-s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        h.get(gw.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(h.get(gw.url("/readyz")).send().await.unwrap().status(), 200);
    gw.stop().await;
}

/// A non-loopback address of this machine (the admin API's loopback-only rule needs one).
pub(crate) fn non_loopback_ip() -> IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // Connecting a UDP socket sends nothing: it only asks the routing table for a source.
    socket
        .connect("198.51.100.1:9")
        .expect("this test needs a non-loopback IPv4 interface (a default route)");
    let ip = socket.local_addr().unwrap().ip();
    assert!(
        !ip.is_loopback() && !ip.is_unspecified(),
        "no non-loopback address: {ip}"
    );
    ip
}

#[tokio::test]
async fn without_a_token_only_loopback_peers_reach_the_admin_api() {
    let ip = non_loopback_ip();
    let gw = TestGateway::spawn_with(Options {
        bind: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0),
        ..Options::default()
    })
    .await;
    let port = gw.addr.port();
    let h = http();
    let local = h
        .get(format!("http://127.0.0.1:{port}/admin/agents"))
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), 200);
    let remote = h
        .get(format!("http://{ip}:{port}/admin/agents"))
        .send()
        .await
        .unwrap();
    assert_eq!(remote.status(), 403);
    let body: Value = remote.json().await.unwrap();
    assert_eq!(body["code"], "forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("SWITCHBOARD_ADMIN_TOKEN")
    );
    // The console follows the same rule, the page and its assets alike.
    for path in ["/ui", "/ui/app.js"] {
        let local = h
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(local.status(), 200, "{path} from loopback");
        let remote = h
            .get(format!("http://{ip}:{port}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(remote.status(), 403, "{path} from {ip}");
    }
    // Probes stay open to everyone.
    let probe = h
        .get(format!("http://{ip}:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn malformed_admin_requests_get_json_errors_never_500() {
    let gw = TestGateway::spawn().await;
    let h = http();
    for (method, path, status) in [
        ("POST", "/admin/agents", 405),
        ("PUT", "/admin/sessions/abc", 405),
        ("GET", "/admin/nothing-here", 404),
        ("GET", "/admin/sessions/%FF%FE", 400),
        ("GET", "/admin/agents/..%2F..%2Fetc", 404),
        ("DELETE", "/admin/sessions/", 404),
    ] {
        let resp = h
            .request(method.parse().unwrap(), gw.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        if status == 405 {
            let allow = resp.headers()["allow"].to_str().unwrap().to_owned();
            assert!(
                allow == "GET" || allow == "GET, DELETE",
                "{method} {path}: Allow {allow}"
            );
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(body["code"].is_string(), "{method} {path}: {body}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn recent_traffic_and_a_sessions_recent_calls_are_in_the_admin_api() {
    use rmcp::model::CallToolRequestParams;
    let gw = TestGateway::spawn().await;
    let (status, before) = gw.get_json("/admin/traffic").await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["bucket_secs"], 10);
    let servicenow = |v: &Value| {
        v["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent"] == "servicenow")
            .cloned()
            .unwrap_or_else(|| panic!("servicenow in {v}"))
    };
    let quiet = servicenow(&before);
    assert_eq!(quiet["points"].as_array().unwrap().len(), 90);
    assert_eq!(quiet["last_minute"]["calls"], 0);
    assert!(quiet["last_minute"].get("p50_ms").is_none(), "{quiet}");

    let client = crate::support::helpers::rmcp_client(&gw.url("/agents/servicenow/mcp")).await;
    for q in ["vpn", "email"] {
        client
            .call_tool(
                CallToolRequestParams::new("search_incident")
                    .with_arguments(crate::support::helpers::args(json!({"query": q}))),
            )
            .await
            .unwrap();
    }
    let failed = client
        .call_tool(CallToolRequestParams::new("get_incident").with_arguments(
            crate::support::helpers::args(json!({"number": "INC9999999"})),
        ))
        .await
        .unwrap();
    assert_eq!(failed.is_error, Some(true));

    let busy = servicenow(&gw.get_json("/admin/traffic").await.1);
    let minute = &busy["last_minute"];
    assert_eq!(minute["calls"], 3, "{busy}");
    assert_eq!(minute["errors"], 1, "{busy}");
    assert!(minute["p50_ms"].as_f64().unwrap() > 0.0, "{busy}");
    assert!(minute["p99_ms"].as_f64().unwrap() >= minute["p50_ms"].as_f64().unwrap());
    let in_points: u64 = busy["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(in_points, 3);

    // The session's own recent calls, oldest first; the list leaves them out.
    let id = gw.state.sessions().list()[0].id.to_string();
    let (status, one) = gw.get_json(&format!("/admin/sessions/{id}")).await;
    assert_eq!(status, 200);
    let calls = one["recent_calls"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c["tool"].as_str().unwrap(), c["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("search_incident", "ok"),
            ("search_incident", "ok"),
            ("get_incident", "error")
        ]
    );
    assert!(calls[0]["duration_ms"].as_f64().unwrap() > 0.0);
    let (_, page) = gw.get_json("/admin/sessions").await;
    assert!(page["sessions"][0].get("recent_calls").is_none(), "{page}");
    client.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn load_errors_list_broken_new_files_and_broken_changes() {
    let dir = tempfile::tempdir().unwrap();
    crate::support::helpers::copy_valid_agents(dir.path());
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.path().to_owned(),
        ..Options::default()
    })
    .await;
    assert_eq!(gw.get_json("/admin/load-errors").await.1, json!([]));
    std::fs::write(dir.path().join("fresh.toml"), "description = 1\n").unwrap();
    let helpdesk = dir.path().join("helpdesk.toml");
    let text = std::fs::read_to_string(&helpdesk).unwrap();
    std::fs::write(&helpdesk, format!("{text}\nsurprise = true\n")).unwrap();
    let (status, _) = gw.post_json("/admin/reload").await;
    assert_eq!(status, 200);
    let (status, errors) = gw.get_json("/admin/load-errors").await;
    assert_eq!(status, 200);
    let files = errors.as_array().unwrap();
    assert_eq!(files.len(), 2, "{errors}");
    let find = |name: &str| {
        files
            .iter()
            .find(|f| f["file"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} in {errors}"))
    };
    assert_eq!(find("fresh.toml")["serving_previous_version"], false);
    assert!(
        find("fresh.toml")["errors"][0]
            .as_str()
            .unwrap()
            .contains("description")
    );
    assert_eq!(find("helpdesk.toml")["serving_previous_version"], true);
    assert!(
        find("helpdesk.toml")["errors"][0]
            .as_str()
            .unwrap()
            .contains("surprise")
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_single_gateway_lists_itself_as_the_only_node() {
    let gw = TestGateway::spawn().await;
    let (status, body) = gw.get_json("/admin/cluster").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mode"], "single", "{body}");
    assert!(body.get("redis").is_none_or(Value::is_null), "{body}");
    let nodes = body["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{body}");
    assert_eq!(nodes[0]["this"], true);
    assert_eq!(nodes[0]["id"], body["node"]);
    assert_eq!(nodes[0]["url"], format!("http://{}", gw.addr), "{body}");
    assert_eq!(nodes[0]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(nodes[0]["sessions"], 0);
    gw.stop().await;
}
