//! Sessions enter the registry when they start and leave when their client goes away.

use std::time::Duration;

use crate::support::helpers::{
    Options, SseClient, TestGateway, http, rmcp_client, streamable_initialize,
};

#[tokio::test]
async fn legacy_session_is_gone_after_the_client_disconnects() {
    let gw = TestGateway::spawn().await;
    let mut c = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    c.initialize().await;
    let info = gw.state.sessions().get(&c.session_id).expect("registered");
    assert_eq!(&*info.agent, "servicenow");
    assert_eq!(info.transport.as_str(), "sse");
    drop(c);
    // Noticed on the next keep-alive write (200 ms in tests).
    gw.wait_sessions("the legacy session to end", |n| n == 0)
        .await;
    gw.stop().await;
}

#[tokio::test]
async fn streamable_session_ends_on_delete_and_on_idle_timeout() {
    let mut opts = Options::default();
    opts.settings.session_idle_timeout = Duration::from_millis(800);
    let gw = TestGateway::spawn_with(opts).await;

    // rmcp's client DELETEs its session when cancelled.
    let client = rmcp_client(&gw.url("/agents/servicenow/mcp")).await;
    gw.wait_sessions("the rmcp session to register", |n| n == 1)
        .await;
    assert_eq!(
        gw.state.sessions().list()[0].transport.as_str(),
        "streamable_http"
    );
    client.cancel().await.unwrap();
    gw.wait_sessions("the deleted session to leave", |n| n == 0)
        .await;

    // A client that just stops talking is ended after the idle timeout.
    let sid = streamable_initialize(&http(), &gw.url("/agents/servicenow/mcp")).await;
    assert!(gw.state.sessions().get(&sid).is_some());
    gw.wait_sessions("the idle session to expire", |n| n == 0)
        .await;
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_sessions() {
    let gw = TestGateway::spawn().await;
    let mut a = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    a.initialize().await;
    let _b = rmcp_client(&gw.url("/agents/helpdesk/mcp")).await;
    gw.wait_sessions("both sessions", |n| n == 2).await;
    let state = gw.state.clone();
    gw.stop().await;
    a.closed().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !state.sessions().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions left after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
