//! `[auth.oauth]` over a cluster: two gateway replicas (the built binary) on a real Redis,
//! with tokens of a real authorization server (oidc-provider, `support::oidc`). A token
//! works on every replica, a session opened on one continues on the other for the same
//! subject only, and each replica fetches and caches the issuer's keys itself.

use serde_json::json;

use crate::cluster::{RedisServer, Replica, cluster_config};
use crate::support::helpers::{rmcp_client_with, streamable_initialize, streamable_post};
use crate::support::oidc::Oidc;

/// The audience every replica shares (the cluster's public URL, behind a balancer).
const AUDIENCE: &str = "https://gateway.example.com";

/// A client sending `token` on every request.
fn bearer_client(token: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_issuers_token_works_on_every_replica_and_its_session_follows_its_subject() {
    // Arrange
    let oidc = Oidc::start();
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = cluster_config(
        tmp.path(),
        &redis.url(),
        &format!(
            "[auth.oauth]\nissuer = {:?}\naudience = {AUDIENCE:?}\nrequired_scopes = [\"mcp:tools\"]\n",
            oidc.issuer
        ),
    );
    let a = Replica::start(&config, &tmp.path().join("data-a"));
    let b = Replica::start(&config, &tmp.path().join("data-b"));
    let token = oidc
        .client_credentials("mcp-client", "mcp-secret", AUDIENCE, "mcp:tools")
        .await;

    // Act + Assert: the token opens a real MCP session on each replica.
    for replica in [&a, &b] {
        let url = replica.url("/agents/servicenow/mcp");
        let client = rmcp_client_with(&url, Some(&token)).await;
        assert_eq!(client.list_all_tools().await.unwrap().len(), 5, "{url}");
        client.cancel().await.unwrap();
        // Without a token: the challenge names the shared audience's metadata.
        let resp = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains(&format!(
                "{}/.well-known/oauth-protected-resource/agents/servicenow/mcp",
                AUDIENCE
            )),
            "{challenge}"
        );
    }
    // Each replica fetched the key set once, for itself, and cached it.
    assert_eq!(oidc.jwks_requests().await, 2);

    // A session opened on a continues on b for the same subject (another token of it)...
    let session =
        streamable_initialize(&bearer_client(&token), &a.url("/agents/servicenow/mcp")).await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let again = oidc
        .client_credentials("mcp-client", "mcp-secret", AUDIENCE, "mcp:tools")
        .await;
    let on_b = streamable_post(
        &bearer_client(&again),
        &b.url("/agents/servicenow/mcp"),
        Some(&session),
        list.clone(),
    )
    .await;
    assert_eq!(on_b.status(), 200);
    assert!(
        on_b.text().await.unwrap().contains("search_incident"),
        "b served the session's tools/list"
    );
    // ...and is no other subject's, on either replica.
    let mallory = oidc
        .mint(
            json!({"sub": "mallory", "aud": AUDIENCE, "scope": "mcp:tools"}),
            "current",
            None,
        )
        .await;
    for replica in [&a, &b] {
        let resp = streamable_post(
            &bearer_client(&mallory),
            &replica.url("/agents/servicenow/mcp"),
            Some(&session),
            list.clone(),
        )
        .await;
        assert_eq!(resp.status(), 404, "{}", replica.url(""));
    }
    // A forged token is refused by both, and costs the issuer nothing more.
    let forged = oidc
        .mint(
            json!({"sub": "mallory", "aud": AUDIENCE}),
            "stranger",
            Some("key-1"),
        )
        .await;
    for replica in [&a, &b] {
        let resp = streamable_post(
            &bearer_client(&forged),
            &replica.url("/agents/servicenow/mcp"),
            Some(&session),
            list.clone(),
        )
        .await;
        assert_eq!(resp.status(), 401);
    }
    assert_eq!(oidc.jwks_requests().await, 2);
}
