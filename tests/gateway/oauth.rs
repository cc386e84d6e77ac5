//! `[auth.oauth]`: the gateway as an OAuth resource server, against a real authorization
//! server (oidc-provider, `support::oidc`): discovery from a 401, client-credentials tokens
//! with a resource indicator on both transports, every way a token can be wrong, a rotated
//! key, the scope step-up challenge, and static clients alongside.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{Value, json};
use switchboard::config::ServerSpec;

use crate::support::helpers::{
    Options, SseClient, TestGateway, args, http, rmcp_client_with, streamable_initialize,
};
use crate::support::oidc::Oidc;

/// A gateway on a port known in advance, whose `[auth.oauth]` (and anything else) is `toml`
/// with `{issuer}` and `{gateway}` filled in.
pub(crate) async fn gateway(oidc: &Oidc, toml: &str) -> TestGateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let toml = toml
        .replace("{issuer}", &oidc.issuer)
        .replace("{gateway}", &base);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    std::fs::write(&file, toml).unwrap();
    let loaded = switchboard::config::load_gateway(&file, true, &Default::default())
        .unwrap_or_else(|e| panic!("test config must load: {e}"));
    let settings = ServerSpec {
        oauth: loaded.oauth,
        clients: loaded.clients,
        ..Options::default().settings
    };
    TestGateway::spawn_with(Options {
        settings,
        listener: Some(listener),
        ..Options::default()
    })
    .await
}

const OAUTH: &str = r#"
[auth.oauth]
issuer = "{issuer}"
audience = "{gateway}"
clock_skew_secs = 5
required_scopes = ["mcp:tools"]
"#;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

/// An initialize POST to `path` with `token`: status, `WWW-Authenticate`, JSON body.
pub(crate) async fn initialize(
    gw: &TestGateway,
    path: &str,
    token: Option<&str>,
) -> (u16, String, Value) {
    let mut req = http()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INIT);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    answer(req.send().await.unwrap()).await
}

/// A legacy SSE GET of `path` with `token` (refusals only: a 200 is a stream).
async fn open_sse(gw: &TestGateway, path: &str, token: Option<&str>) -> (u16, String, Value) {
    let mut req = http()
        .get(gw.url(path))
        .header("accept", "text/event-stream");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    answer(req.send().await.unwrap()).await
}

async fn answer(resp: reqwest::Response) -> (u16, String, Value) {
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = if status == 200 {
        Value::Null
    } else {
        resp.json().await.unwrap_or(Value::Null)
    };
    (status, challenge, body)
}

/// The value of `param` in a `WWW-Authenticate: Bearer a="b", ...` header.
pub(crate) fn param(challenge: &str, param: &str) -> Option<String> {
    let at = challenge.find(&format!("{param}=\""))? + param.len() + 2;
    let rest = &challenge[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_client_discovers_the_issuer_from_a_401_and_calls_with_its_token() {
    let oidc = Oidc::start();
    let gw = gateway(&oidc, OAUTH).await;
    // 1. No token: 401 saying where the metadata is and which scope to ask for.
    let (status, challenge, body) = initialize(&gw, "/agents/servicenow/mcp", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "unauthorized", "{body}");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert_eq!(
        param(&challenge, "error"),
        None,
        "no error code without a token: {challenge}"
    );
    let metadata_url = param(&challenge, "resource_metadata").unwrap();
    assert_eq!(
        metadata_url,
        gw.url("/.well-known/oauth-protected-resource/agents/servicenow/mcp")
    );
    assert_eq!(param(&challenge, "scope").as_deref(), Some("mcp:tools"));
    // 2. The metadata names the resource and its authorization server.
    let metadata: Value = http()
        .get(&metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["resource"],
        gw.url("/agents/servicenow/mcp"),
        "{metadata}"
    );
    assert_eq!(
        metadata["authorization_servers"],
        json!([oidc.issuer]),
        "{metadata}"
    );
    assert_eq!(
        metadata["scopes_supported"],
        json!(["mcp:tools"]),
        "{metadata}"
    );
    assert_eq!(
        metadata["bearer_methods_supported"],
        json!(["header"]),
        "{metadata}"
    );
    // The gateway's own, and the legacy URL's.
    let (status, root) = gw.get_json("/.well-known/oauth-protected-resource").await;
    assert_eq!(
        (status, root["resource"].as_str()),
        (200, Some(gw.url("").as_str()))
    );
    let (status, sse) = gw
        .get_json("/.well-known/oauth-protected-resource/agents/servicenow/sse")
        .await;
    assert_eq!(
        (status, sse["resource"].as_str()),
        (200, Some(gw.url("/agents/servicenow/sse").as_str()))
    );
    let (status, _) = gw
        .get_json("/.well-known/oauth-protected-resource/agents/nope/mcp")
        .await;
    assert_eq!(status, 404);
    // 3. The issuer's metadata (OpenID discovery) names the token endpoint; a token for the
    // resource (RFC 8707) by the client credentials grant opens a real MCP session.
    let issuer = metadata["authorization_servers"][0].as_str().unwrap();
    let discovery: Value = http()
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], issuer);
    let resource = metadata["resource"].as_str().unwrap();
    let token = oidc
        .client_credentials("mcp-client", "mcp-secret", resource, "mcp:tools")
        .await;
    let client = rmcp_client_with(&gw.url("/agents/servicenow/mcp"), Some(&token)).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(
        tools.iter().any(|t| t.name == "search_incident"),
        "{tools:?}"
    );
    let found = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("search_incident")
                .with_arguments(args(json!({"query": "VPN"}))),
        )
        .await
        .unwrap();
    assert_ne!(found.is_error, Some(true), "{found:?}");
    // The token went no further than the edge: not into the admin API's view of sessions.
    let (_, sessions) = gw.get_json("/admin/sessions").await;
    assert!(
        sessions.to_string().contains("mcp-client"),
        "the principal is the session's client: {sessions}"
    );
    assert!(!sessions.to_string().contains(&token));
    client.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_resource_token_works_on_both_transports_and_the_legacy_get_asks_for_one() {
    let oidc = Oidc::start();
    let gw = gateway(&oidc, OAUTH).await;
    // The legacy stream without a token: the challenge points at the /sse resource.
    let (status, challenge, _) = open_sse(&gw, "/agents/servicenow/sse", None).await;
    assert_eq!(status, 401);
    assert_eq!(
        param(&challenge, "resource_metadata").unwrap(),
        gw.url("/.well-known/oauth-protected-resource/agents/servicenow/sse")
    );
    // One token for the agent's Streamable HTTP URL serves its legacy URL too (one agent,
    // one resource), and a token for the gateway's audience serves every agent.
    let for_mcp = oidc
        .client_credentials(
            "mcp-client",
            "mcp-secret",
            &gw.url("/agents/servicenow/mcp"),
            "mcp:tools",
        )
        .await;
    let for_gateway = oidc
        .client_credentials("mcp-client", "mcp-secret", &gw.url(""), "mcp:tools")
        .await;
    for token in [&for_mcp, &for_gateway] {
        let client = rmcp_client_with(&gw.url("/agents/servicenow/mcp"), Some(token)).await;
        assert_eq!(client.list_all_tools().await.unwrap().len(), 5);
        client.cancel().await.unwrap();
        let mut sse = SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some(token)).await;
        sse.initialize().await;
        let list = sse.request(2, "tools/list", json!({})).await;
        assert_eq!(
            list["result"]["tools"].as_array().map(Vec::len),
            Some(5),
            "{list}"
        );
    }
    // A token for another agent's URL is not one for this agent.
    let for_helpdesk = oidc
        .client_credentials(
            "mcp-client",
            "mcp-secret",
            &gw.url("/agents/helpdesk/mcp"),
            "mcp:tools",
        )
        .await;
    let (status, challenge, body) =
        initialize(&gw, "/agents/servicenow/mcp", Some(&for_helpdesk)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(param(&challenge, "error").as_deref(), Some("invalid_token"));
    assert!(
        body["message"].as_str().unwrap().contains("(aud)"),
        "{body}"
    );
    let (status, _, _) = initialize(&gw, "/agents/helpdesk/mcp", Some(&for_helpdesk)).await;
    assert_eq!(status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn expired_early_foreign_misaddressed_forged_and_unsigned_tokens_get_401() {
    let oidc = Oidc::start();
    let gw = gateway(&oidc, OAUTH).await;
    let aud = gw.url("/agents/servicenow/mcp");
    let good = json!({"sub": "alice", "aud": aud, "scope": "mcp:tools"});
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    // The control: the same minting, untouched, is accepted.
    let token = oidc.mint(good.clone(), "current", None).await;
    assert_eq!(
        initialize(&gw, "/agents/servicenow/mcp", Some(&token))
            .await
            .0,
        200
    );
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    let cases = [
        (
            "expired",
            oidc.mint(with(json!({"exp": now() - 60})), "current", None)
                .await,
            "expired",
        ),
        (
            "not yet valid",
            oidc.mint(with(json!({"nbf": now() + 600})), "current", None)
                .await,
            "not valid yet",
        ),
        (
            "wrong issuer",
            oidc.mint(
                with(json!({"iss": "http://127.0.0.1:9/other"})),
                "current",
                None,
            )
            .await,
            "not issued by",
        ),
        (
            "wrong audience",
            oidc.mint(
                with(json!({"aud": "https://elsewhere.example.com"})),
                "current",
                None,
            )
            .await,
            "(aud)",
        ),
        (
            "bad signature",
            oidc.mint(good.clone(), "stranger", Some("key-1")).await,
            "signature",
        ),
        ("alg none", unsigned, "unsigned"),
        ("not a JWT", "opaque-or-garbage".to_owned(), "neither"),
    ];
    for (what, token, says) in &cases {
        for path in ["/agents/servicenow/mcp", "/agents/servicenow/sse"] {
            let (status, challenge, body) = if path.ends_with("/sse") {
                open_sse(&gw, path, Some(token)).await
            } else {
                initialize(&gw, path, Some(token)).await
            };
            assert_eq!(status, 401, "{what} at {path}: {body}");
            assert_eq!(body["code"], "invalid_token", "{what}: {body}");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains(says), "{what}: {message}");
            assert!(
                !body.to_string().contains(token.as_str()),
                "{what}: the token is echoed"
            );
            assert_eq!(
                param(&challenge, "error").as_deref(),
                Some("invalid_token"),
                "{what}"
            );
            assert!(
                param(&challenge, "resource_metadata").is_some(),
                "{what}: {challenge}"
            );
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_unknown_key_ids_do_not_hammer_the_issuer() {
    let oidc = Oidc::start();
    let gw = gateway(&oidc, OAUTH).await;
    let resource = gw.url("/agents/servicenow/mcp");
    let first = oidc
        .client_credentials("mcp-client", "mcp-secret", &resource, "mcp:tools")
        .await;
    assert_eq!(
        initialize(&gw, "/agents/servicenow/mcp", Some(&first))
            .await
            .0,
        200
    );
    assert_eq!(
        initialize(&gw, "/agents/servicenow/mcp", Some(&first))
            .await
            .0,
        200
    );
    assert_eq!(oidc.jwks_requests().await, 1, "the key set is cached");
    let kid = oidc.rotate().await;
    let rotated = oidc
        .client_credentials("mcp-client", "mcp-secret", &resource, "mcp:tools")
        .await;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(rotated.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        header["kid"],
        kid.as_str(),
        "the provider signs with the new key"
    );
    assert_eq!(
        initialize(&gw, "/agents/servicenow/mcp", Some(&rotated))
            .await
            .0,
        200
    );
    assert_eq!(
        initialize(&gw, "/agents/servicenow/mcp", Some(&first))
            .await
            .0,
        200
    );
    assert_eq!(
        oidc.jwks_requests().await,
        2,
        "one refetch for the new key id"
    );
    // Made-up key ids within the cooldown: refused, and the issuer is not asked again.
    for i in 0..5 {
        let forged = oidc
            .mint(
                json!({"sub": "mallory", "aud": resource}),
                "stranger",
                Some(&format!("forged-{i}")),
            )
            .await;
        let (status, _, body) = initialize(&gw, "/agents/servicenow/mcp", Some(&forged)).await;
        assert_eq!(status, 401, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("key id"),
            "{body}"
        );
    }
    assert_eq!(
        oidc.jwks_requests().await,
        2,
        "unknown key ids are bounded by the cooldown"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_token_without_the_agents_scope_gets_the_403_step_up_challenge() {
    let oidc = Oidc::start();
    let toml = format!("{OAUTH}\n[auth.oauth.agent_scopes]\nservicenow = [\"incidents\"]\n");
    let gw = gateway(&oidc, &toml).await;
    let resource = gw.url("/agents/servicenow/mcp");
    let narrow = oidc
        .client_credentials("narrow-client", "narrow-secret", &resource, "mcp:tools")
        .await;
    for (path, sse) in [
        ("/agents/servicenow/mcp", false),
        ("/agents/servicenow/sse", true),
    ] {
        let (status, challenge, body) = if sse {
            open_sse(&gw, path, Some(&narrow)).await
        } else {
            initialize(&gw, path, Some(&narrow)).await
        };
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["code"], "insufficient_scope", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("incidents"),
            "{body}"
        );
        assert_eq!(
            param(&challenge, "error").as_deref(),
            Some("insufficient_scope")
        );
        assert_eq!(
            param(&challenge, "scope").as_deref(),
            Some("mcp:tools incidents")
        );
        assert!(
            param(&challenge, "resource_metadata")
                .unwrap()
                .ends_with(path)
        );
    }
    // The same client may use an agent that needs only mcp:tools; with both scopes, a client
    // may use this one.
    assert_eq!(
        initialize(&gw, "/agents/helpdesk/mcp", Some(&narrow))
            .await
            .0,
        401,
        "its aud is servicenow's"
    );
    let full = oidc
        .client_credentials("mcp-client", "mcp-secret", &resource, "mcp:tools incidents")
        .await;
    assert_eq!(
        initialize(&gw, "/agents/servicenow/mcp", Some(&full))
            .await
            .0,
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn static_clients_work_alongside_and_sessions_stay_with_their_principal() {
    let oidc = Oidc::start();
    let toml = format!(
        "{OAUTH}\n[[clients]]\nname = \"ops-script\"\ntoken = \"static-secret-token\"\nagents = [\"servicenow\"]\n"
    );
    let gw = gateway(&oidc, &toml).await;
    let resource = gw.url("/agents/servicenow/mcp");
    // A configured client's token is that client, never looked at as a JWT.
    let client = rmcp_client_with(&resource, Some("static-secret-token")).await;
    assert_eq!(client.list_all_tools().await.unwrap().len(), 5);
    client.cancel().await.unwrap();
    // A session opened by one principal is not another's.
    let alice = oidc
        .mint(
            json!({"sub": "alice", "aud": resource, "scope": "mcp:tools"}),
            "current",
            None,
        )
        .await;
    let bob = oidc
        .mint(
            json!({"sub": "bob", "aud": resource, "scope": "mcp:tools"}),
            "current",
            None,
        )
        .await;
    let h = reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {alice}").parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let session = streamable_initialize(&h, &resource).await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let post = |token: &str| {
        http()
            .post(&resource)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .body(list.clone())
            .send()
    };
    assert_eq!(post(&alice).await.unwrap().status(), 200);
    assert_eq!(
        post(&bob).await.unwrap().status(),
        404,
        "bob cannot use alice's session"
    );
    // Another token of alice's continues her session (a refreshed token).
    let alice_again = oidc
        .mint(
            json!({"sub": "alice", "aud": gw.url(""), "scope": "mcp:tools other"}),
            "current",
            None,
        )
        .await;
    assert_eq!(post(&alice_again).await.unwrap().status(), 200);
    gw.stop().await;
}

const INTROSPECTING: &str = r#"
[auth.oauth]
issuer = "{issuer}"
audience = "{gateway}"
clock_skew_secs = 5
required_scopes = ["mcp:tools"]
introspection_client_id = "gateway"
introspection_client_secret = "gateway-secret"
"#;

#[tokio::test]
async fn opaque_tokens_are_introspected_once_and_inactive_ones_get_401() {
    let oidc = Oidc::start();
    let gw = gateway(&oidc, INTROSPECTING).await;
    let resource = gw.url("/agents/servicenow/mcp");
    oidc.make_opaque(&resource).await;
    let token = oidc
        .client_credentials("mcp-client", "mcp-secret", &resource, "mcp:tools")
        .await;
    assert!(
        !token.contains('.'),
        "the provider issues an opaque token, not a JWT: {} chars",
        token.len()
    );
    // A real MCP session on Streamable HTTP, then the legacy transport with the same token.
    let client = rmcp_client_with(&resource, Some(&token)).await;
    assert_eq!(client.list_all_tools().await.unwrap().len(), 5);
    client.cancel().await.unwrap();
    let mut sse = SseClient::connect_with(&gw.url("/agents/servicenow/sse"), Some(&token)).await;
    sse.initialize().await;
    let list = sse.request(2, "tools/list", json!({})).await;
    assert_eq!(
        list["result"]["tools"].as_array().map(Vec::len),
        Some(5),
        "{list}"
    );
    // Many requests over both transports, one introspection: the answer is cached.
    assert_eq!(oidc.introspection_requests().await, 1, "introspected once");
    assert_eq!(
        initialize(&gw, "/agents/servicenow/mcp", Some(&token))
            .await
            .0,
        200
    );
    assert_eq!(oidc.introspection_requests().await, 1, "cached");
    // The sessions show the principal (the client, which is the subject of a client
    // credentials token), never the token.
    let (_, sessions) = gw.get_json("/admin/sessions").await;
    assert!(sessions.to_string().contains("mcp-client"), "{sessions}");
    assert!(!sessions.to_string().contains(&token));
    // The audience is checked on every request, cached or not.
    let (status, _, body) = initialize(&gw, "/agents/helpdesk/mcp", Some(&token)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("(aud)"),
        "{body}"
    );

    // A revoked token, never seen before: inactive at the authorization server, 401.
    let revoked = oidc
        .client_credentials("mcp-client", "mcp-secret", &resource, "mcp:tools")
        .await;
    oidc.revoke("mcp-client", "mcp-secret", &revoked).await;
    for path in ["/agents/servicenow/mcp", "/agents/servicenow/sse"] {
        let (status, challenge, body) = if path.ends_with("/sse") {
            open_sse(&gw, path, Some(&revoked)).await
        } else {
            initialize(&gw, path, Some(&revoked)).await
        };
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["code"], "invalid_token", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("not active"),
            "{body}"
        );
        assert!(!body.to_string().contains(&revoked));
        assert_eq!(param(&challenge, "error").as_deref(), Some("invalid_token"));
    }
    // The refusal is remembered: the second transport's request asked nothing.
    assert_eq!(oidc.introspection_requests().await, 2);
    // JWTs for other resources are still verified locally, not introspected.
    let jwt = oidc
        .client_credentials("mcp-client", "mcp-secret", &gw.url(""), "mcp:tools")
        .await;
    assert_eq!(jwt.split('.').count(), 3);
    assert_eq!(
        initialize(&gw, "/agents/servicenow/mcp", Some(&jwt))
            .await
            .0,
        200
    );
    assert_eq!(oidc.introspection_requests().await, 2, "not introspected");
    gw.stop().await;
}

#[tokio::test]
async fn wrong_introspection_credentials_make_opaque_tokens_unavailable_not_valid() {
    let oidc = Oidc::start();
    let toml = INTROSPECTING.replace("gateway-secret", "not-the-secret");
    let gw = gateway(&oidc, &toml).await;
    let resource = gw.url("/agents/servicenow/mcp");
    oidc.make_opaque(&resource).await;
    let token = oidc
        .client_credentials("mcp-client", "mcp-secret", &resource, "mcp:tools")
        .await;
    let (status, _, body) = initialize(&gw, "/agents/servicenow/mcp", Some(&token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "authorization_server_unavailable", "{body}");
    assert!(!body.to_string().contains("not-the-secret"), "{body}");
    assert!(!body.to_string().contains(&token), "{body}");
    gw.stop().await;
}
