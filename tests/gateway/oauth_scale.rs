//! `[auth.oauth]` beyond one issuer and one token at a time, against real authorization
//! servers (oidc-provider, `support::oidc`): several issuers chosen by `iss`, verified tokens
//! remembered only while their key is published, and the bound on introspection requests.

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};
use switchboard::oauth::{OAuth, TokenError};

use crate::oauth::{gateway, initialize, param};
use crate::support::helpers::{http, rmcp_client_with};
use crate::support::oidc::Oidc;

/// An `OAuth` as the gateway builds it from `toml` (an `[auth.oauth]` table's body).
fn resource_server(toml: &str) -> OAuth {
    let config: switchboard::config::oauth::OAuthConfig = toml::from_str(toml).unwrap();
    OAuth::new(switchboard::config::oauth::validate(Path::new("switchboard.toml"), config).unwrap())
}

#[tokio::test]
async fn a_verified_token_is_remembered_until_its_key_is_withdrawn() {
    // Arrange
    let oidc = Oidc::start();
    let gateway = "https://gateway.example.com";
    let oauth = resource_server(&format!(
        // No refetch cooldown: each new kid below is fetched at once.
        "issuer = {:?}\naudience = {gateway:?}\njwt_cache_size = 10\njwks_refetch_cooldown_secs = 0",
        oidc.issuer
    ));
    let resources = [gateway.to_owned()];
    let token = oidc
        .client_credentials("mcp-client", "mcp-secret", gateway, "mcp:tools")
        .await;

    // Act: first sight, then again.
    let first = oauth.verify(&token, &resources).await.unwrap();
    let again = oauth.verify(&token, &resources).await.unwrap();

    // Assert
    assert_eq!(first, again);
    assert_eq!(first.subject, "mcp-client");
    assert_eq!(oauth.remembered_tokens(), 1);
    // A remembered token is still checked for the resource asked for.
    match oauth
        .verify(&token, &["https://elsewhere.example.com".to_owned()])
        .await
    {
        Err(TokenError::Invalid(m)) => assert!(m.contains("(aud)"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A new key, the old one still published: the remembered token stays good.
    oidc.rotate().await;
    let rotated = oidc
        .client_credentials("mcp-client", "mcp-secret", gateway, "mcp:tools")
        .await;
    oauth.verify(&rotated, &resources).await.unwrap();
    assert_eq!(oidc.jwks_requests().await, 2, "the new kid was fetched");
    oauth.verify(&token, &resources).await.unwrap();
    assert_eq!(oauth.remembered_tokens(), 2);
    // The old key withdrawn: once the key set is fetched again (here for a token naming an
    // unknown kid), the token it signed is refused, remembered or not.
    oidc.retire_old_keys().await;
    oidc.rotate().await;
    let newest = oidc
        .client_credentials("mcp-client", "mcp-secret", gateway, "mcp:tools")
        .await;
    oauth.verify(&newest, &resources).await.unwrap();
    assert_eq!(oidc.jwks_requests().await, 3);
    match oauth.verify(&token, &resources).await {
        Err(TokenError::Invalid(m)) => assert!(m.contains("key id"), "{m}"),
        other => panic!("a token of a withdrawn key passed: {other:?}"),
    }
    // With jwt_cache_size = 0 nothing is remembered, and tokens still pass.
    let off = resource_server(&format!(
        "issuer = {:?}\naudience = {gateway:?}\njwt_cache_size = 0",
        oidc.issuer
    ));
    off.verify(&newest, &resources).await.unwrap();
    off.verify(&newest, &resources).await.unwrap();
    assert_eq!(off.remembered_tokens(), 0);
}

#[tokio::test]
async fn tokens_of_two_issuers_each_verify_with_their_own_issuers_keys() {
    // Arrange: two authorization servers, each with its own key "key-1".
    let a = Oidc::start();
    let b = Oidc::start();
    let toml = format!(
        "[auth.oauth]\nissuer = [\"{{issuer}}\", {:?}]\naudience = \"{{gateway}}\"\nrequired_scopes = [\"mcp:tools\"]\n",
        b.issuer
    );
    let gw = gateway(&a, &toml).await;
    let resource = gw.url("/agents/servicenow/mcp");

    // Assert: the metadata names both.
    let (status, metadata) = gw
        .get_json("/.well-known/oauth-protected-resource/agents/servicenow/mcp")
        .await;
    assert_eq!(status, 200, "{metadata}");
    assert_eq!(
        metadata["authorization_servers"],
        json!([a.issuer, b.issuer]),
        "{metadata}"
    );
    // A token of each opens a real MCP session.
    for oidc in [&a, &b] {
        let token = oidc
            .client_credentials("mcp-client", "mcp-secret", &resource, "mcp:tools")
            .await;
        let client = rmcp_client_with(&resource, Some(&token)).await;
        assert_eq!(
            client.list_all_tools().await.unwrap().len(),
            5,
            "{}",
            oidc.issuer
        );
        client.cancel().await.unwrap();
    }
    assert_eq!(a.jwks_requests().await, 1, "a's keys fetched once");
    assert_eq!(b.jwks_requests().await, 1, "b's keys fetched once");
    // b signing a token that claims to be a's: a's key-1 does not verify it.
    let claims =
        |iss: &str| json!({"iss": iss, "sub": "mallory", "aud": resource, "scope": "mcp:tools"});
    let forged = b.mint(claims(&a.issuer), "current", Some("key-1")).await;
    let (status, challenge, body) = initialize(&gw, "/agents/servicenow/mcp", Some(&forged)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(param(&challenge, "error").as_deref(), Some("invalid_token"));
    assert!(
        body["message"].as_str().unwrap().contains("signature"),
        "{body}"
    );
    // The same claims under b's own name pass; a third issuer's name is refused.
    let honest = b.mint(claims(&b.issuer), "current", None).await;
    assert_eq!(
        initialize(&gw, "/agents/servicenow/mcp", Some(&honest))
            .await
            .0,
        200
    );
    let foreign = b
        .mint(claims("http://127.0.0.1:9/other"), "current", None)
        .await;
    let (status, _, body) = initialize(&gw, "/agents/servicenow/mcp", Some(&foreign)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not issued by any of"),
        "{body}"
    );
    gw.stop().await;
}

const INTROSPECTING_SLOWLY: &str = r#"
[auth.oauth]
issuer = "{issuer}"
audience = "{gateway}"
required_scopes = ["mcp:tools"]
introspection_client_id = "gateway"
introspection_client_secret = "gateway-secret"
introspection_requests_per_second = 1
"#;

/// The value of the metric line `name` in `/metrics`.
async fn metric(gw: &crate::support::helpers::TestGateway, name: &str) -> f64 {
    let text = http()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

#[tokio::test]
async fn a_flood_of_made_up_opaque_tokens_is_bounded_and_gets_503_with_retry_after() {
    // Arrange
    let oidc = Oidc::start();
    let gw = gateway(&oidc, INTROSPECTING_SLOWLY).await;
    let path = "/agents/servicenow/mcp";
    assert_eq!(
        metric(&gw, "switchboard_introspection_rate_limited_total").await,
        0.0
    );

    // Act: one made-up token, asked about; then the same again.
    let (status, _, body) = initialize(&gw, path, Some("made-up-0")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not active"),
        "{body}"
    );
    assert_eq!(oidc.introspection_requests().await, 1);
    let (status, _, body) = initialize(&gw, path, Some("made-up-0")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        oidc.introspection_requests().await,
        1,
        "a refusal is remembered: not asked again"
    );
    // Then a flood of other made-up tokens at once: beyond one per second, none is asked.
    let started = Instant::now();
    let answers = futures::future::join_all((1..=8).map(|i| {
        http()
            .post(gw.url(path))
            .bearer_auth(format!("made-up-{i}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
            .send()
    }))
    .await;
    let took = started.elapsed().as_secs() + 1;

    // Assert
    let mut busy = 0;
    let mut refused = 0;
    for answer in answers {
        let answer = answer.unwrap();
        match answer.status().as_u16() {
            503 => {
                busy += 1;
                let retry: u64 = answer.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=2).contains(&retry), "Retry-After: {retry}");
                let body: Value = answer.json().await.unwrap();
                assert_eq!(body["code"], "introspection_rate_limited", "{body}");
                assert!(
                    body["message"]
                        .as_str()
                        .unwrap()
                        .contains("introspection_requests_per_second"),
                    "{body}"
                );
            }
            401 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(busy >= 1, "8 tokens at once, 1 per second: some wait");
    let asked = oidc.introspection_requests().await;
    assert_eq!(asked, 1 + refused, "only the 401s were asked about");
    assert!(asked <= 1 + took, "{asked} requests in {took} s");
    assert_eq!(
        metric(&gw, "switchboard_introspection_rate_limited_total").await,
        f64::from(busy)
    );
    gw.stop().await;
}
