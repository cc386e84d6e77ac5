//! The published spec is the one the code serves, and the checked-in copy is current.

use serde_json::Value;

use crate::support::helpers::{TestGateway, http};

#[test]
fn checked_in_spec_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/admin.yaml");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = switchboard::admin::spec::yaml();
    assert!(
        checked_in == generated,
        "openapi/admin.yaml is stale: regenerate it with\n  cargo run -- openapi > openapi/admin.yaml"
    );
}

#[tokio::test]
async fn spec_and_docs_are_served_and_document_every_status() {
    let gw = TestGateway::spawn().await;
    let h = http();
    let spec: Value = gw.get_json("/openapi.json").await.1;
    assert_eq!(spec["info"]["title"], "Switchboard admin API");
    for (path, method, statuses) in [
        ("/admin/agents", "get", &["200", "400", "401", "403"][..]),
        (
            "/admin/agents/{name}",
            "get",
            &["200", "400", "401", "403", "404"],
        ),
        ("/admin/sessions", "get", &["200", "400", "401", "403"]),
        (
            "/admin/sessions/{id}",
            "get",
            &["200", "400", "401", "403", "404"],
        ),
        (
            "/admin/sessions/{id}",
            "delete",
            &["204", "400", "401", "403", "404", "503"],
        ),
        (
            "/admin/cluster",
            "get",
            &["200", "400", "401", "403", "404", "503"],
        ),
        ("/healthz", "get", &["200", "503"]),
        ("/readyz", "get", &["200", "503"]),
    ] {
        let responses = spec["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} missing"));
        let mut got: Vec<&str> = responses.keys().map(String::as_str).collect();
        got.sort();
        assert_eq!(got, statuses, "{method} {path}");
    }
    let docs = h.get(gw.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    let yaml = h
        .get(gw.url("/openapi.yaml"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(yaml, switchboard::admin::spec::yaml());
    gw.stop().await;
}
