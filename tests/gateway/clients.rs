//! Clients, tokens and limits over real HTTP: 401/403/404/429 on both transports.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::config::ServerSpec;

use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{
    Options, SseClient, TestGateway, args, fixture, http, rmcp_client_with, settings_with_clients,
    tool_json,
};

/// alice may use servicenow only (token from a variable); bob may use everything (the file
/// holds only the SHA-256 of his token), then `extra` TOML.
fn clients_toml(extra: &str) -> String {
    use sha2::Digest;
    let bob_sha: String = sha2::Sha256::digest(b"bob-token")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        r#"
[[clients]]
name = "alice"
token = "${{ALICE_TOKEN}}"
agents = ["servicenow"]

[[clients]]
name = "bob"
token_sha256 = "{bob_sha}"
agents = ["*"]

{extra}
"#
    )
}

async fn gateway(extra: &str) -> TestGateway {
    let toml = clients_toml(extra);
    TestGateway::spawn_with(Options {
        settings: settings_with_clients(&toml, &[("ALICE_TOKEN", "alice-token")]),
        ..Options::default()
    })
    .await
}

async fn status_and_body(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_mcp_route_needs_a_valid_token_for_an_allowed_agent() {
    let gw = gateway("").await;
    let h = http();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}).to_string();
    let requests = |token: Option<&'static str>, agent: &'static str| {
        let h = h.clone();
        let gw_url = |p: &str| gw.url(p);
        let urls = [
            ("GET", gw_url(&format!("/agents/{agent}/sse"))),
            ("POST", gw_url(&format!("/agents/{agent}/sse"))),
            ("POST", gw_url(&format!("/agents/{agent}/mcp"))),
            ("DELETE", gw_url(&format!("/agents/{agent}/mcp"))),
            (
                "POST",
                gw_url(&format!("/agents/{agent}/messages?session_id=x")),
            ),
        ];
        let init = init.clone();
        async move {
            let mut out = Vec::new();
            for (method, url) in urls {
                let mut req = h
                    .request(method.parse().unwrap(), &url)
                    .header("accept", "application/json, text/event-stream")
                    .header("content-type", "application/json")
                    .body(init.clone());
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                out.push((
                    format!("{method} {url}"),
                    status_and_body(req.send().await.unwrap()).await,
                ));
            }
            out
        }
    };
    for (what, (status, headers, body)) in requests(None, "servicenow").await {
        assert_eq!(status, 401, "no token: {what}");
        assert_eq!(headers["www-authenticate"], "Bearer", "{what}");
        assert_eq!(body["code"], "unauthorized", "{what}");
    }
    for (what, (status, _, body)) in requests(Some("not-a-token"), "servicenow").await {
        assert_eq!(status, 401, "wrong token: {what}");
        assert_eq!(body["message"], "unknown bearer token", "{what}");
    }
    for (what, (status, _, body)) in requests(Some("alice-token"), "helpdesk").await {
        assert_eq!(status, 403, "alice on helpdesk: {what}");
        assert_eq!(body["code"], "agent_not_allowed", "{what}");
        assert!(
            body["message"].as_str().unwrap().contains("\"alice\""),
            "{what}: {body}"
        );
    }

    // The right tokens work: alice (plain token) with rmcp's client, bob (hashed) on legacy SSE.
    let alice = rmcp_client_with(&gw.url("/agents/servicenow/mcp"), Some("alice-token")).await;
    let got = alice
        .call_tool(
            rmcp::model::CallToolRequestParams::new("get_incident")
                .with_arguments(args(json!({"number": "INC0012346"}))),
        )
        .await
        .unwrap();
    assert_eq!(got.is_error, Some(false));
    let mut bob = SseClient::connect_with(&gw.url("/agents/helpdesk/sse"), Some("bob-token")).await;
    bob.initialize().await;

    // Sessions show their client, never a token.
    let page: Value = gw.get_json("/admin/sessions").await.1;
    let mut clients: Vec<&str> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["client"].as_str().unwrap())
        .collect();
    clients.sort();
    assert_eq!(clients, ["alice", "bob"]);
    assert!(!page.to_string().contains("alice-token") && !page.to_string().contains("bob-token"));
    alice.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_session_is_bound_to_the_client_that_opened_it() {
    let gw = gateway("").await;
    let h = http();
    // Legacy: bob cannot post into alice's session.
    let mut a =
        SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some("alice-token")).await;
    a.initialize().await;
    let resp = a
        .post_as(
            Some("bob-token"),
            json!({"jsonrpc":"2.0","id":5,"method":"tools/list"}).to_string(),
        )
        .await;
    assert_eq!(resp.status(), 404);
    // Streamable: bob cannot use (or delete) alice's session id.
    let mcp = gw.url("/agents/servicenow/mcp");
    let resp = h
        .post(&mcp)
        .bearer_auth("alice-token")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"a","version":"1"}}}).to_string())
        .send()
        .await
        .unwrap();
    let sid = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    drop(resp);
    let list = json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string();
    let as_bob = h
        .post(&mcp)
        .bearer_auth("bob-token")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", &sid)
        .body(list.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(as_bob.status(), 404);
    let delete = h
        .delete(&mcp)
        .bearer_auth("bob-token")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 404);
    // ... while alice still can.
    let as_alice = h
        .post(&mcp)
        .bearer_auth("alice-token")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", &sid)
        .body(list)
        .send()
        .await
        .unwrap();
    assert_eq!(as_alice.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn the_seeds_mcp_secret_token_defines_a_client_allowed_everywhere() {
    let gw = TestGateway::spawn_with(Options {
        settings: settings_with_clients("", &[("MCP_SECRET_TOKEN", "seed-secret")]),
        ..Options::default()
    })
    .await;
    let resp = http()
        .get(gw.url("/agents/servicenow/sse"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let mut c = SseClient::connect_with(&gw.url("/agents/helpdesk/sse"), Some("seed-secret")).await;
    c.initialize().await;
    let page: Value = gw.get_json("/admin/sessions").await.1;
    assert_eq!(page["sessions"][0]["client"], "default");
    gw.stop().await;
}

#[tokio::test]
async fn a_client_over_its_request_rate_gets_429_and_recovers_while_others_are_unaffected() {
    // 30 per minute: a token every 2 s, so the burst cannot refill while the test runs.
    let gw = gateway("[limits]\nrequests_per_minute = 30\nburst = 3\n").await;
    let mut a =
        SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some("alice-token")).await;
    a.initialize().await; // POSTs 1 and 2
    a.call_tool(1, "get_incident", json!({"number": "INC0012346"}))
        .await; // POST 3
    let resp = a
        .post_raw(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}).to_string())
        .await;
    let (status, headers, body) = status_and_body(resp).await;
    assert_eq!(status, 429, "{body}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    // A JSON-RPC error naming the limit, the client and the key to change.
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], -32000, "{body}");
    assert_eq!(error["data"]["code"], "rate_limited");
    assert_eq!(error["data"]["limit"], "requests_per_minute");
    assert_eq!(error["data"]["client"], "alice");
    assert_eq!(
        error["data"]["config_key"],
        "clients[0].requests_per_minute"
    );
    assert_eq!(error["data"]["retry_after_secs"], retry_after);
    let message = error["message"].as_str().unwrap();
    for part in [
        "client \"alice\" is over its requests_per_minute limit (30 per minute, bursts of 3)",
        "raise clients[0].requests_per_minute (or clients[0].burst) in switchboard.toml",
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    // The refused request is answered on the stream too, where a legacy client waits.
    let answer = a.next_message().await;
    assert_eq!(answer["id"], 2, "{answer}");
    assert_eq!(answer["error"], *error);

    // Bob has his own budget.
    let mut b = SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some("bob-token")).await;
    b.initialize().await;
    assert_eq!(
        tool_json(
            &b.call_tool(1, "get_incident", json!({"number": "INC0012346"}))
                .await
        )["number"],
        "INC0012346"
    );

    // After the wait the same session works again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let r = a
        .call_tool(3, "get_incident", json!({"number": "INC0012346"}))
        .await;
    assert_eq!(tool_json(&r)["number"], "INC0012346");

    // The admin API shows who was limited.
    let clients: Value = gw.get_json("/admin/clients").await.1;
    assert_eq!(clients["open"], false);
    let alice = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "alice")
        .unwrap();
    assert_eq!(alice["usage"]["rate_limited"], 1, "{alice}");
    // ... and that it is happening now (the console's "rate-limited now").
    assert_eq!(alice["usage"]["rate_limited_last_minute"], 1, "{alice}");
    assert!(
        alice["usage"]["requests_last_minute"].as_u64().unwrap() >= 3,
        "{alice}"
    );
    assert!(
        alice["usage"]["last_rate_limited_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{alice}"
    );
    assert_eq!(alice["usage"]["sessions"], 1, "{alice}");
    assert_eq!(alice["limits"]["burst"], 3);
    assert_eq!(alice["agents"], json!(["servicenow"]));
    assert!(!clients.to_string().contains("alice-token"));
    gw.stop().await;
}

#[tokio::test]
async fn streamable_requests_over_the_rate_get_429_too() {
    let gw = gateway("[limits]\nrequests_per_minute = 1\nburst = 2\n").await;
    let h = http();
    let mcp = gw.url("/agents/servicenow/mcp");
    let post = |body: String| {
        h.post(&mcp)
            .bearer_auth("alice-token")
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"a","version":"1"}}}).to_string();
    assert_eq!(post(init.clone()).await.unwrap().status(), 200);
    assert_eq!(post(init.clone()).await.unwrap().status(), 200);
    let third = post(init).await.unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    gw.stop().await;
}

#[tokio::test]
async fn max_sessions_is_enforced_and_released_when_sessions_end() {
    let gw = gateway("[limits]\nmax_sessions = 2\n").await;
    let a1 = SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some("alice-token")).await;
    let _a2 = rmcp_client_with(&gw.url("/agents/servicenow/mcp"), Some("alice-token")).await;
    let third = http()
        .get(gw.url("/agents/servicenow/sse"))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap();
    let (status, _, body) = status_and_body(third).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["data"]["limit"], "max_sessions", "{body}");
    assert_eq!(
        body["error"]["data"]["config_key"],
        "clients[0].max_sessions"
    );
    // Bob is not affected by alice's cap.
    let _b = SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some("bob-token")).await;
    // Alice leaves one session: her slot comes back.
    drop(a1);
    gw.wait_sessions("alice's legacy session to end", |n| n == 2)
        .await;
    let _a3 = SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some("alice-token")).await;
    gw.stop().await;
}

#[tokio::test]
async fn agent_runs_have_their_own_limit_on_both_transports() {
    let fake = FakeLlm::start(vec![Step::Text("one"), Step::Text("two")]).await;
    let toml = clients_toml("[limits]\nagent_runs_per_minute = 1\n");
    let gw = TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/runtime"),
        vars: [("FAKE_LLM_URL".to_owned(), fake.url.clone())].into(),
        settings: settings_with_clients(&toml, &[("ALICE_TOKEN", "alice-token")]),
        ..Options::default()
    })
    .await;
    let mut a =
        SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some("alice-token")).await;
    a.initialize().await;
    let r = a.call_tool(1, "servicenow", json!({"task": "hi"})).await;
    assert_eq!(r["result"]["content"][0]["text"], "one");
    // The second run within the minute: 429 on the legacy POST ...
    let resp = a
        .post_raw(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"servicenow","arguments":{"task":"again"}}}).to_string())
        .await;
    let (status, _, body) = status_and_body(resp).await;
    assert_eq!(status, 429);
    assert_eq!(
        body["error"]["data"]["limit"], "agent_runs_per_minute",
        "{body}"
    );
    let answer = a.next_message().await;
    assert_eq!(answer["id"], 2, "{answer}");
    assert_eq!(answer["error"], body["error"]);
    // ... and on Streamable HTTP; plain tool calls still pass.
    let c = rmcp_client_with(&gw.url("/agents/servicenow/mcp"), Some("alice-token")).await;
    let err = c
        .call_tool(
            rmcp::model::CallToolRequestParams::new("servicenow")
                .with_arguments(args(json!({"task": "x"}))),
        )
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("429"), "{err:?}");
    let ok = c
        .call_tool(
            rmcp::model::CallToolRequestParams::new("get_incident")
                .with_arguments(args(json!({"number": "INC0012346"}))),
        )
        .await
        .unwrap();
    assert_eq!(ok.is_error, Some(false));
    // Bob runs the agent regardless.
    let b = rmcp_client_with(&gw.url("/agents/servicenow/mcp"), Some("bob-token")).await;
    let r = b
        .call_tool(
            rmcp::model::CallToolRequestParams::new("servicenow")
                .with_arguments(args(json!({"task": "x"}))),
        )
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(false));
    gw.stop().await;
}

#[tokio::test]
async fn oversized_urls_and_headers_are_refused() {
    let gw = TestGateway::spawn().await;
    let long = format!(
        "/agents/servicenow/messages?session_id={}",
        "x".repeat(9000)
    );
    let resp = http().post(gw.url(&long)).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 414);
    let resp = http()
        .get(gw.url("/agents/servicenow/sse"))
        .header("x-junk", "y".repeat(40_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    gw.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limits() {
    // Open access (no clients): limits per client IP, 2 requests at once.
    let mut settings = settings_with_clients("[limits]\nrequests_per_minute = 1\nburst = 2\n", &[]);
    settings.trusted_proxies =
        vec![switchboard::config::proxies::Network::parse("127.0.0.0/8").unwrap()];
    let gw = TestGateway::spawn_with(Options {
        settings,
        ..Options::default()
    })
    .await;
    let h = http();
    let mcp = gw.url("/agents/servicenow/mcp");
    let list = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"a","version":"1"}}}).to_string();
    let post = |forwarded_for: &'static str| {
        h.post(&mcp)
            .header("x-forwarded-for", forwarded_for)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-06-18")
            .body(list.clone())
            .send()
    };
    for client in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(post(client).await.unwrap().status(), 200, "{client}");
        assert_eq!(post(client).await.unwrap().status(), 200, "{client}");
        assert_eq!(post(client).await.unwrap().status(), 429, "{client}");
    }
    // The admin API sees them apart.
    let (_, clients) = gw.get_json("/admin/clients").await;
    let peers: Vec<&str> = clients["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ip"].as_str().unwrap())
        .collect();
    assert_eq!(peers, ["198.51.100.1", "198.51.100.2"], "{clients}");
    gw.stop().await;
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let gw = TestGateway::spawn_with(Options {
        settings: settings_with_clients("[limits]\nrequests_per_minute = 1\nburst = 2\n", &[]),
        ..Options::default()
    })
    .await;
    let h = http();
    let mcp = gw.url("/agents/servicenow/mcp");
    let list = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"a","version":"1"}}}).to_string();
    let mut statuses = Vec::new();
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        let response = h
            .post(&mcp)
            .header("x-forwarded-for", client)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-06-18")
            .body(list.clone())
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
    gw.stop().await;
}

/// `n` `tools/list` POSTs on Streamable HTTP session `id` at `url`, as fast as they go: the
/// statuses, and the body of the first 429 (if any).
async fn burst_of_lists(url: &str, id: &str, n: usize) -> (Vec<u16>, Option<(String, Value)>) {
    let h = http();
    let mut statuses = Vec::with_capacity(n);
    let mut refused = None;
    for i in 0..n {
        let resp = crate::support::helpers::streamable_post(
            &h,
            url,
            Some(id),
            json!({"jsonrpc":"2.0","id":i + 10,"method":"tools/list"}).to_string(),
        )
        .await;
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 && refused.is_none() {
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
            refused = Some((content_type, resp.json().await.unwrap()));
        } else {
            let _ = resp.bytes().await.unwrap();
        }
    }
    (statuses, refused)
}

#[tokio::test]
async fn one_developer_on_loopback_is_not_rate_limited_with_the_default_limits() {
    // Arrange: open access, no [limits]: what `cargo run` with no config file serves.
    let gw = TestGateway::spawn_with(Options {
        settings: settings_with_clients("", &[]),
        ..Options::default()
    })
    .await;
    assert_eq!(
        gw.state.settings().limits.burst.get(),
        60,
        "the defaults apply"
    );
    let url = gw.url("/agents/servicenow/mcp");
    let id = crate::support::helpers::streamable_initialize(&http(), &url).await;

    // Act: ~150 requests within a second or so, more than the default burst of 60.
    let (statuses, refused) = burst_of_lists(&url, &id, 150).await;

    // Assert
    assert!(
        refused.is_none() && statuses.iter().all(|s| *s == 200),
        "{refused:?} {statuses:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn limits_set_in_the_file_hold_on_loopback_too_with_a_json_rpc_429() {
    // Arrange: open access with [limits] of its own: the operator asked for them.
    let gw = TestGateway::spawn_with(Options {
        settings: settings_with_clients("[limits]\nrequests_per_minute = 60\nburst = 5\n", &[]),
        ..Options::default()
    })
    .await;
    let url = gw.url("/agents/servicenow/mcp");
    let id = crate::support::helpers::streamable_initialize(&http(), &url).await;

    // Act
    let (statuses, refused) = burst_of_lists(&url, &id, 10).await;

    // Assert: a JSON-RPC error an SDK can show, naming the limit, the address and the key.
    assert!(statuses.contains(&429), "{statuses:?}");
    let (content_type, body) = refused.unwrap();
    assert_eq!(content_type, "application/json");
    assert_eq!(body["jsonrpc"], "2.0");
    assert!(body["id"].is_null(), "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], -32000);
    assert_eq!(error["data"]["client"], "127.0.0.1", "{body}");
    assert_eq!(error["data"]["config_key"], "limits.requests_per_minute");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("127.0.0.1 (open access: limits apply per address) is over its requests_per_minute limit (60 per minute, bursts of 5); retry in 1 s, or raise limits.requests_per_minute (or limits.burst) in switchboard.toml"),
        "{message}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn with_the_default_limits_peers_beyond_loopback_are_still_limited() {
    use std::net::{IpAddr, SocketAddr};
    let ip = crate::admin_api::non_loopback_ip();
    let gw = TestGateway::spawn_with(Options {
        settings: ServerSpec {
            allowed_hosts: Vec::new(),
            ..settings_with_clients("", &[])
        },
        bind: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0),
        ..Options::default()
    })
    .await;
    let url = format!("http://{ip}:{}/agents/servicenow/mcp", gw.addr.port());
    let id = crate::support::helpers::streamable_initialize(&http(), &url).await;
    // The default burst is 60 (initialize and its notification took 2).
    let (statuses, refused) = burst_of_lists(&url, &id, 70).await;
    assert!(statuses.contains(&429), "{statuses:?}");
    let (_, body) = refused.unwrap();
    assert_eq!(body["error"]["data"]["client"], ip.to_string(), "{body}");
    gw.stop().await;
}
