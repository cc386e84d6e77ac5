//! `[tools.auth]` toward upstream MCP servers, against the real authorization server
//! (oidc-provider, with the RFC 8693 token exchange grant) and an in-test rmcp upstream that
//! records every `Authorization` header: the gateway's own token by client credentials
//! (cached, renewed after a 401), a token exchanged for each caller (never the caller's own),
//! the clear tool errors for a caller without an OAuth token and for a refused exchange, an
//! agent run passing its caller on, and `switchboard check` on a bad table.

use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use serde_json::{Value, json};
use switchboard::config::ServerSpec;

use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{Options, TestGateway, args, rmcp_client_with, tool_text};
use crate::support::oidc::Oidc;
use crate::support::upstream_mcp::{RecordingUpstream, claims};

/// The gateway's `[auth.oauth]` (the test provider) and one static client.
const SETTINGS: &str = r#"
[auth.oauth]
issuer = "{issuer}"
audience = "{gateway}"
clock_skew_secs = 5
required_scopes = ["mcp:tools"]

[[clients]]
name = "ops-script"
token = "static-secret-token"
agents = ["*"]
"#;

/// An agent exposing the tools of the upstream at `url`, authenticated by `auth` (the body
/// of `[tools.auth]`, `{issuer}` filled in), their names prefixed with `prefix`.
fn upstream_agent(url: &str, prefix: &str, auth: &str) -> String {
    format!(
        "description = \"Tools of an upstream MCP server.\"\nexpose = [\"tools\"]\n\n[[tools]]\ntype = \"mcp\"\nurl = \"{url}\"\nprefix = \"{prefix}\"\ntimeout_secs = 10\n\n[tools.auth]\n{auth}\n"
    )
}

const CLIENT_CREDENTIALS: &str = "type = \"client_credentials\"\nissuer = \"{issuer}\"\nclient_id = \"upstream-gateway\"\nclient_secret = \"upstream-secret\"\nscopes = [\"mcp:tools\"]";
const TOKEN_EXCHANGE: &str = "type = \"token_exchange\"\nissuer = \"{issuer}\"\nclient_id = \"upstream-gateway\"\nclient_secret = \"upstream-secret\"\nscopes = [\"mcp:tools\"]";

/// A gateway with [`SETTINGS`] and the agents `(name, file)`, `{issuer}` and `{fake_llm}`
/// filled in. The temp dir of the agents lives as long as the gateway is used.
async fn gateway(
    oidc: &Oidc,
    agents: &[(&str, String)],
    fake_llm: Option<&FakeLlm>,
) -> (TestGateway, tempfile::TempDir) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        SETTINGS
            .replace("{issuer}", &oidc.issuer)
            .replace("{gateway}", &base),
    )
    .unwrap();
    let loaded = switchboard::config::load_gateway(&config, true, &Default::default())
        .unwrap_or_else(|e| panic!("test config must load: {e}"));
    let agents_dir = dir.path().join("agents");
    std::fs::create_dir(&agents_dir).unwrap();
    for (name, file) in agents {
        let mut file = file.replace("{issuer}", &oidc.issuer);
        if let Some(fake) = fake_llm {
            file = file.replace("{fake_llm}", &fake.url);
        }
        std::fs::write(agents_dir.join(format!("{name}.toml")), file).unwrap();
    }
    let settings = ServerSpec {
        oauth: loaded.oauth,
        clients: loaded.clients,
        ..Options::default().settings
    };
    let gw = TestGateway::spawn_with(Options {
        agents_dir,
        settings,
        listener: Some(listener),
        ..Options::default()
    })
    .await;
    (gw, dir)
}

/// An access token of `client` for the gateway.
async fn caller_token(oidc: &Oidc, gw: &TestGateway, client: &str, secret: &str) -> String {
    oidc.client_credentials(client, secret, &gw.url(""), "mcp:tools")
        .await
}

async fn client(gw: &TestGateway, agent: &str, token: &str) -> RunningService<RoleClient, ()> {
    rmcp_client_with(&gw.url(&format!("/agents/{agent}/mcp")), Some(token)).await
}

async fn call(c: &RunningService<RoleClient, ()>, tool: &str) -> CallToolResult {
    c.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args(json!({}))))
        .await
        .unwrap()
}

/// What `whoami` answered: the claims of the token the upstream got.
fn whoami(result: &CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "{result:?}");
    serde_json::from_str(&tool_text(result)).unwrap()
}

/// No header the upstream got carries any of `tokens`.
fn never_forwarded(upstream: &RecordingUpstream, tokens: &[&str]) {
    let seen = upstream.authorizations();
    assert!(!seen.is_empty());
    for header in seen.iter().flatten() {
        for token in tokens {
            assert!(
                !header.contains(token),
                "a caller's token reached the upstream"
            );
        }
    }
}

#[tokio::test]
async fn client_credentials_give_the_upstream_the_gateways_own_token_cached_and_renewed_after_a_401()
 {
    let oidc = Oidc::start();
    let upstream = RecordingUpstream::start().await;
    let (gw, _dir) = gateway(
        &oidc,
        &[(
            "cc",
            upstream_agent(&upstream.url, "cc_", CLIENT_CREDENTIALS),
        )],
        None,
    )
    .await;
    let alice = caller_token(&oidc, &gw, "mcp-client", "mcp-secret").await;
    let c = client(&gw, "cc", &alice).await;
    let first = whoami(&call(&c, "cc_whoami").await);
    let second = whoami(&call(&c, "cc_whoami").await);
    // The upstream saw the gateway's client, for the upstream: a token of the provider's.
    assert_eq!(first["client_id"], "upstream-gateway", "{first}");
    assert_eq!(first["aud"], upstream.url.as_str(), "{first}");
    assert_eq!(first, second);
    // Every request carried it, and one token served them all (the startup connection's
    // included): cached, not asked for per request.
    assert!(upstream.authorizations().iter().all(Option::is_some));
    let tokens = upstream.distinct_bearers();
    assert_eq!(tokens.len(), 1, "one token for every request");
    let own = tokens[0].clone();
    assert_eq!(claims(&own).unwrap()["client_id"], "upstream-gateway");
    never_forwarded(&upstream, &[&alice]);
    // The upstream stops accepting it: the gateway drops it, gets a new one, calls once more.
    let sent = upstream.bearers().len();
    upstream.refuse(&own);
    let after = call(&c, "cc_whoami").await;
    assert_eq!(whoami(&after)["client_id"], "upstream-gateway");
    let tokens = upstream.distinct_bearers();
    assert_eq!(tokens.len(), 2, "a new token after the 401");
    let bearers = upstream.bearers();
    assert_eq!(bearers[sent], own, "the call met the 401 first");
    let renewed = bearers.last().unwrap();
    assert_ne!(renewed, &own);
    assert_eq!(renewed, &tokens[1]);
    never_forwarded(&upstream, &[&alice]);
    c.cancel().await.unwrap();
    gw.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn token_exchange_gives_the_upstream_a_token_for_each_caller_never_the_callers_own() {
    let oidc = Oidc::start();
    let upstream = RecordingUpstream::start().await;
    let wrong_secret = TOKEN_EXCHANGE.replace("upstream-secret", "wrong-secret");
    let (gw, _dir) = gateway(
        &oidc,
        &[
            ("te", upstream_agent(&upstream.url, "te_", TOKEN_EXCHANGE)),
            ("bad", upstream_agent(&upstream.url, "bad_", &wrong_secret)),
        ],
        None,
    )
    .await;
    assert_eq!(
        upstream.initializes(),
        0,
        "no caller yet: nothing to exchange"
    );
    let alice = caller_token(&oidc, &gw, "mcp-client", "mcp-secret").await;
    let bob = caller_token(&oidc, &gw, "narrow-client", "narrow-secret").await;
    let a = client(&gw, "te", &alice).await;
    let listed = a.list_all_tools().await.unwrap();
    assert!(
        listed.iter().any(|t| t.name == "te_whoami"),
        "listed for the caller: {listed:?}"
    );
    // Each caller's requests carry a token exchanged for it: its subject, acted by the
    // gateway, for the upstream.
    let as_alice = whoami(&call(&a, "te_whoami").await);
    assert_eq!(as_alice["sub"], "mcp-client", "{as_alice}");
    assert_eq!(as_alice["act"]["sub"], "upstream-gateway", "{as_alice}");
    assert_eq!(as_alice["aud"], upstream.url.as_str(), "{as_alice}");
    let b = client(&gw, "te", &bob).await;
    let as_bob = whoami(&call(&b, "te_whoami").await);
    assert_eq!(as_bob["sub"], "narrow-client", "{as_bob}");
    assert_eq!(whoami(&call(&a, "te_whoami").await), as_alice);
    let tokens = upstream.distinct_bearers();
    assert_eq!(tokens.len(), 2, "one exchanged token per caller");
    assert!(upstream.authorizations().iter().all(Option::is_some));
    assert_eq!(claims(&tokens[0]).unwrap()["sub"], "mcp-client");
    assert_eq!(claims(&tokens[1]).unwrap()["sub"], "narrow-client");
    assert!(!tokens.contains(&alice) && !tokens.contains(&bob));
    never_forwarded(&upstream, &[&alice, &bob]);
    // Cached per caller: alice's second call exchanged nothing; a session per caller.
    assert_eq!(oidc.exchange_requests().await, 2);
    assert_eq!(upstream.initializes(), 2, "one upstream session per caller");
    // The upstream refuses alice's token: a new exchange, the call succeeds.
    upstream.refuse(&tokens[0]);
    assert_eq!(whoami(&call(&a, "te_whoami").await)["sub"], "mcp-client");
    let renewed = upstream.bearers().last().unwrap().clone();
    assert!(!tokens.contains(&renewed), "a new token after the 401");
    assert_eq!(oidc.exchange_requests().await, 3);
    assert_eq!(upstream.initializes(), 2, "the session outlived its token");
    // A static client has no token to exchange: a clear tool error, nothing sent upstream.
    let before = upstream.authorizations().len();
    let ops = client(&gw, "te", "static-secret-token").await;
    let refused = call(&ops, "te_whoami").await;
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    let text = tool_text(&refused);
    assert!(
        text.contains("this tool acts for the caller and needs an OAuth-identified caller"),
        "{text}"
    );
    assert!(text.contains("\"ops-script\""), "{text}");
    assert_eq!(upstream.authorizations().len(), before);
    // An exchange the authorization server refuses: its error, never a token or the secret.
    let a_bad = client(&gw, "bad", &alice).await;
    let failed = call(&a_bad, "bad_whoami").await;
    assert_eq!(failed.is_error, Some(true), "{failed:?}");
    let text = tool_text(&failed);
    assert!(
        text.contains("token exchange for upstream MCP server")
            && text.contains("invalid_client (client authentication failed)"),
        "{text}"
    );
    assert!(
        !text.contains(&alice) && !text.contains("wrong-secret"),
        "{text}"
    );
    assert_eq!(upstream.authorizations().len(), before);
    for c in [a, b, ops, a_bad] {
        c.cancel().await.unwrap();
    }
    gw.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn an_agent_run_passes_its_caller_on_to_a_token_exchange_upstream() {
    let oidc = Oidc::start();
    let upstream = RecordingUpstream::start().await;
    let fake = FakeLlm::start(vec![
        Step::ToolCalls(vec![("te_whoami", json!({}))]),
        Step::Echo("upstream says: "),
    ])
    .await;
    let assistant = format!(
        "description = \"Asks an upstream who it is talking to.\"\nexpose = [\"agent\"]\n\n[model]\nbase_url = \"{{fake_llm}}/v1\"\napi_key = \"test-key\"\nmodel = \"fake-model\"\nmax_turns = 3\n\n[[tools]]\ntype = \"mcp\"\nurl = \"{}\"\nprefix = \"te_\"\n\n[tools.auth]\n{TOKEN_EXCHANGE}\n",
        upstream.url
    );
    let (gw, _dir) = gateway(&oidc, &[("assistant", assistant)], Some(&fake)).await;
    let alice = caller_token(&oidc, &gw, "mcp-client", "mcp-secret").await;
    let c = client(&gw, "assistant", &alice).await;
    let answer = c
        .call_tool(
            CallToolRequestParams::new("assistant")
                .with_arguments(args(json!({"task": "who are you talking to?"}))),
        )
        .await
        .unwrap();
    assert_ne!(answer.is_error, Some(true), "{answer:?}");
    let text = tool_text(&answer);
    let said: Value = serde_json::from_str(text.strip_prefix("upstream says: ").unwrap()).unwrap();
    assert_eq!(said["sub"], "mcp-client", "{text}");
    // The model was offered the upstream's tool, listed for this caller.
    let offered = &fake.received()[0].body["tools"];
    assert!(offered.to_string().contains("te_whoami"), "{offered}");
    never_forwarded(&upstream, &[&alice]);
    c.cancel().await.unwrap();
    gw.stop().await;
    upstream.stop().await;
}

#[test]
fn check_names_the_file_and_key_of_a_bad_auth_table_and_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, "").unwrap();
    let agents = dir.path().join("agents");
    std::fs::create_dir(&agents).unwrap();
    let url = "https://upstream.example.com/mcp";
    std::fs::write(
        agents.join("one.toml"),
        upstream_agent(
            url,
            "a_",
            "type = \"token_exchange\"\nissuer = \"http://login.example.com\"\nclient_secret = \"s3cret-value\"\nscopes = [\"two words\"]",
        ),
    )
    .unwrap();
    std::fs::write(
        agents.join("two.toml"),
        upstream_agent(url, "b_", "type = \"password\""),
    )
    .unwrap();
    let (passed, stderr) = crate::support::binary::check(&config, &agents);
    assert!(!passed, "{stderr}");
    for expected in [
        "one.toml: tools[0].auth.issuer: \"http://login.example.com\" uses http:// on a host that is not loopback",
        "one.toml: tools[0].auth.client_id: missing or empty",
        "one.toml: tools[0].auth.scopes[0]: \"two words\" is not a scope",
        "two.toml: tools[0].auth.type: unknown variant `password`, expected one of `none`, `client_credentials`, `token_exchange`",
    ] {
        assert!(stderr.contains(expected), "{expected}\nnot in:\n{stderr}");
    }
    assert!(!stderr.contains("s3cret-value"), "{stderr}");
}
