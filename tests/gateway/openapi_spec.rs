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
        ("/admin/policies", "get", &["200", "400", "401", "403"]),
        (
            "/admin/clients/{name}",
            "get",
            &["200", "400", "401", "403", "404"],
        ),
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
            &["200", "400", "401", "403", "503"],
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

/// The `(path, method)` pairs of `openapi/admin.yaml`, read from its layout (paths at two
/// spaces under `paths:`, methods at four).
fn spec_operations(yaml: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut path: Option<String> = None;
    let mut in_paths = false;
    for line in yaml.lines() {
        if !line.starts_with(' ') {
            in_paths = line == "paths:";
            path = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  ").filter(|l| l.starts_with('/')) {
            path = Some(p.trim_end_matches(':').trim_matches('\'').to_owned());
        } else if let (Some(p), Some(m)) = (&path, line.strip_prefix("    ")) {
            let m = m.trim_end_matches(':');
            if ["get", "post", "put", "patch", "delete"].contains(&m) {
                out.push((p.clone(), m.to_owned()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_get_of_the_published_spec_answers_with_an_admin_token() {
    // Arrange: a gateway with an admin token and one live session to look up.
    let token = "walk-the-spec";
    let mut opts = crate::support::helpers::Options {
        // A client to look up at /admin/clients/{name}.
        settings: crate::support::helpers::settings_with_clients(
            "[[clients]]\nname = \"walker\"\ntoken = \"t-walker\"\nagents = [\"*\"]\n",
            &[],
        ),
        ..Default::default()
    };
    opts.settings.admin_token = Some(token.to_owned().into());
    let gw = TestGateway::spawn_with(opts).await;
    let client = crate::support::helpers::rmcp_client_with(
        &gw.url("/agents/servicenow/mcp"),
        Some("t-walker"),
    )
    .await;
    let h = http();
    let sessions: Value = h
        .get(gw.url("/admin/sessions"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = sessions["sessions"][0]["id"].as_str().unwrap().to_owned();
    // One call, so that the audit trail has a tree to look up.
    let call = crate::support::helpers::start_call(
        client.peer(),
        "get_incident",
        serde_json::json!({"number": "INC0012345"}),
    )
    .await;
    crate::support::helpers::call_result(call).await;
    gw.state.audit().unwrap().flush().await;
    let audit: Value = h
        .get(gw.url("/admin/audit"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let root_id = audit["records"][0]["root_id"].as_str().unwrap().to_owned();
    let yaml = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/admin.yaml"),
    )
    .unwrap();
    let operations = spec_operations(&yaml);
    let gets: Vec<&String> = operations
        .iter()
        .filter(|(_, m)| m == "get")
        .map(|(p, _)| p)
        .collect();
    assert!(
        gets.len() >= 9 && gets.iter().any(|p| *p == "/admin/cluster"),
        "the spec's GETs were not all found: {gets:?}"
    );

    // Act + Assert: each answers 2xx with the token, and 401 without it (admin paths).
    for path in gets {
        let name = if path.starts_with("/admin/clients/") {
            "walker"
        } else {
            "servicenow"
        };
        let url = gw.url(
            &path
                .replace("{name}", name)
                .replace("{id}", &session)
                .replace("{root_id}", &root_id),
        );
        let resp = h.get(&url).bearer_auth(token).send().await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        assert!(
            serde_json::from_str::<Value>(&body).is_ok(),
            "GET {path}: not JSON: {body}"
        );
        if path.starts_with("/admin") {
            let anonymous = h.get(&url).send().await.unwrap().status();
            assert_eq!(anonymous, 401, "GET {path} without the token");
        }
    }
    client.cancel().await.unwrap();
    gw.stop().await;
}
