//! Tests of `[auth.oauth]` validation.
#![allow(clippy::unwrap_used)]

use super::*;

fn config(issuer: &str, audience: &str) -> OAuthConfig {
    toml::from_str(&format!("issuer = {issuer:?}\naudience = {audience:?}")).unwrap()
}

fn messages(c: OAuthConfig) -> Vec<String> {
    validate(Path::new("switchboard.toml"), c)
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn http_issuers_only_on_loopback() {
    for ok in [
        "https://login.example.com/realms/acme",
        "http://127.0.0.1:8081",
        "http://localhost:1",
        "http://[::1]:9",
    ] {
        assert!(
            messages(config(ok, "https://gw.example.com")).is_empty(),
            "{ok}"
        );
    }
    let m = messages(config("http://login.example.com", "https://gw.example.com"));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("switchboard.toml: auth.oauth.issuer: "),
        "{m:?}"
    );
    assert!(m[0].contains("loopback"), "{m:?}");
}

#[test]
fn a_non_url_audience_needs_a_public_url_and_bad_values_are_named() {
    let m = messages(config("https://idp.example.com", "api://switchboard"));
    assert!(
        m.iter()
            .any(|m| m.contains("auth.oauth.public_url: is needed")),
        "{m:?}"
    );
    let mut c = config("https://idp.example.com", "https://gw.example.com");
    c.algorithms = Some(vec![
        "none".into(),
        "HS256".into(),
        "XX1".into(),
        "ES256".into(),
    ]);
    c.required_scopes = vec!["a b".into()];
    c.agent_scopes.insert("Bad Name".into(), vec!["x".into()]);
    let m = messages(c);
    for k in [
        "algorithms[0]",
        "algorithms[1]",
        "algorithms[2]",
        "required_scopes[0]",
        "agent_scopes.Bad Name",
    ] {
        assert!(
            m.iter().any(|m| m.contains(&format!("auth.oauth.{k}"))),
            "{k}: {m:?}"
        );
    }
    assert_eq!(m.len(), 5, "{m:?}");
}

#[test]
fn scopes_needed_per_agent_and_advertised() {
    let mut c = config("https://idp.example.com", "https://gw.example.com/");
    c.required_scopes = vec!["mcp".into()];
    c.agent_scopes
        .insert("servicenow".into(), vec!["incidents".into(), "mcp".into()]);
    let spec = validate(Path::new("s.toml"), c).unwrap();
    assert_eq!(spec.scopes_for("servicenow"), ["mcp", "incidents"]);
    assert_eq!(spec.scopes_for("other"), ["mcp"]);
    assert_eq!(spec.scopes_supported, ["mcp", "incidents"]);
    assert_eq!(spec.public_url, "https://gw.example.com");
    assert_eq!(spec.clock_skew, Duration::from_secs(60));
}

#[test]
fn introspection_needs_both_credentials_and_hides_the_secret() {
    let with = |extra: &str| -> OAuthConfig {
        toml::from_str(&format!(
            "issuer = \"https://idp.example.com\"\naudience = \"https://gw.example.com\"\n{extra}"
        ))
        .unwrap()
    };
    let m = messages(with("introspection_client_id = \"gw\""));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("switchboard.toml: auth.oauth.introspection_client_secret: "),
        "{m:?}"
    );
    let m = messages(with(
        "introspection_client_secret = \"s3cret-value\"\nintrospect_jwts = true",
    ));
    assert!(
        m.iter()
            .any(|m| m.contains("auth.oauth.introspection_client_id:")),
        "{m:?}"
    );
    let m = messages(with("introspect_jwts = true\nintrospection_cache_size = 5"));
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(m[0].contains("auth.oauth.introspect_jwts"), "{m:?}");
    assert!(
        m[1].contains("auth.oauth.introspection_cache_size"),
        "{m:?}"
    );
    let spec = validate(
        Path::new("s.toml"),
        with("introspection_client_id = \"gw\"\nintrospection_client_secret = \"s3cret-value\""),
    )
    .unwrap();
    let i = spec.introspection.as_ref().unwrap();
    assert_eq!(
        (i.client_id.as_str(), i.cache_size, i.all_tokens),
        ("gw", 10_000, false)
    );
    assert!(!format!("{spec:?}").contains("s3cret-value"), "{spec:?}");
}

#[test]
fn several_issuers_are_each_checked_and_named_by_index() {
    let c: OAuthConfig = toml::from_str(
        "issuer = [\"https://a.example.com\", \"http://127.0.0.1:9\"]\naudience = \"https://gw.example.com\"",
    )
    .unwrap();
    let spec = validate(Path::new("s.toml"), c).unwrap();
    assert_eq!(
        spec.issuers,
        ["https://a.example.com", "http://127.0.0.1:9"]
    );
    assert_eq!(spec.jwt_cache_size, 10_000);
    let c: OAuthConfig = toml::from_str(
        "issuer = [\"https://a.example.com\", \"http://b.example.com\", \"https://a.example.com/\"]\naudience = \"https://gw.example.com\"",
    )
    .unwrap();
    let m = messages(c);
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(
        m[0].starts_with("switchboard.toml: auth.oauth.issuer[1]: ") && m[0].contains("loopback"),
        "{m:?}"
    );
    assert!(
        m[1].starts_with("switchboard.toml: auth.oauth.issuer[2]: ") && m[1].contains("twice"),
        "{m:?}"
    );
    let c: OAuthConfig =
        toml::from_str("issuer = []\naudience = \"https://gw.example.com\"").unwrap();
    assert_eq!(
        messages(c),
        ["switchboard.toml: auth.oauth.issuer: must name at least one issuer"]
    );
    let wrong = toml::from_str::<OAuthConfig>("issuer = 5\naudience = \"https://gw\"")
        .unwrap_err()
        .to_string();
    assert!(wrong.contains("a string or an array of strings"), "{wrong}");
}

#[test]
fn claim_names_take_candidates_and_rates_are_checked() {
    let c: OAuthConfig = toml::from_str(
        "issuer = \"https://idp.example.com\"\naudience = \"https://gw.example.com\"\njwt_cache_size = 0\n\
         [claims]\nsubject = [\"oid\", \"sub\"]\nclient_id = [\"azp\", \"appid\"]\nscopes = [\"scp\", \"roles\"]\ngroups = []",
    )
    .unwrap();
    let m = messages(c.clone());
    assert_eq!(
        m,
        ["switchboard.toml: auth.oauth.claims.groups: must name at least one claim"]
    );
    let mut ok = c;
    ok.claims.groups = OneOrMany(vec!["groups".into()]);
    let spec = validate(Path::new("s.toml"), ok).unwrap();
    assert_eq!(spec.claims.subject.0, ["oid", "sub"]);
    assert_eq!(spec.jwt_cache_size, 0);
    assert_eq!(ClaimsConfig::default().client_id.0, ["client_id", "azp"]);
    let with = |extra: &str| -> OAuthConfig {
        toml::from_str(&format!(
            "issuer = \"https://idp.example.com\"\naudience = \"https://gw.example.com\"\n{extra}"
        ))
        .unwrap()
    };
    let m = messages(with(
        "introspection_client_id = \"gw\"\nintrospection_client_secret = \"s\"\nintrospection_requests_per_second = 0",
    ));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("switchboard.toml: auth.oauth.introspection_requests_per_second: "),
        "{m:?}"
    );
    let m = messages(with("introspection_requests_per_second = 5"));
    assert!(
        m[0].contains(
            "auth.oauth.introspection_requests_per_second: needs introspection_client_id"
        ),
        "{m:?}"
    );
    let spec = validate(
        Path::new("s.toml"),
        with("introspection_client_id = \"gw\"\nintrospection_client_secret = \"s\""),
    )
    .unwrap();
    assert_eq!(spec.introspection.unwrap().requests_per_second.get(), 100);
}
