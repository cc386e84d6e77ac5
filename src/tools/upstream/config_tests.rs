//! Tests of the `mcp` tool kind's configuration.

use std::collections::BTreeMap;

use super::*;

/// Bound on every wait of these tests, so that a bug fails a test instead of hanging it.
fn config(url: &str) -> UpstreamToolConfig {
    UpstreamToolConfig {
        url: url.to_owned(),
        headers: BTreeMap::from([("x-api-key".to_owned(), "key-123".to_owned())]),
        prefix: "up_".to_owned(),
        allow: None,
        timeout_secs: 10,
    }
}

#[test]
fn validate_accepts_a_good_config() {
    assert_eq!(config("https://mcp.example.com/mcp").validate(), vec![]);
    let mut cfg = config("http://localhost:9000/mcp");
    cfg.prefix = "gh-Tools_2".to_owned();
    assert_eq!(cfg.validate(), vec![]);
}

/// A case of `validate`: its name, the change to a good config, the key it must report.
type Case = (&'static str, fn(&mut UpstreamToolConfig), &'static str);

#[test]
fn validate_rejects_bad_values_by_key_without_leaking_header_values() {
    let cases: &[Case] = &[
        (
            "ftp url",
            |c| c.url = "ftp://example.com/mcp".to_owned(),
            "url",
        ),
        ("relative url", |c| c.url = "/mcp".to_owned(), "url"),
        (
            "not a url",
            |c| c.url = "http://exa mple.com".to_owned(),
            "url",
        ),
        (
            "prefix with a dot",
            |c| c.prefix = "git.hub_".to_owned(),
            "prefix",
        ),
        (
            "prefix with a space",
            |c| c.prefix = "a b".to_owned(),
            "prefix",
        ),
        ("timeout zero", |c| c.timeout_secs = 0, "timeout_secs"),
        (
            "empty allow entry",
            |c| c.allow = Some(vec![" ".to_owned()]),
            "allow[0]",
        ),
        (
            "bad header name",
            |c| {
                c.headers.insert("bad header".to_owned(), "v".to_owned());
            },
            "headers.bad header",
        ),
        (
            "bad header value",
            |c| {
                c.headers
                    .insert("x-token".to_owned(), "secret\nvalue".to_owned());
            },
            "headers.x-token",
        ),
        (
            "reserved header",
            |c| {
                c.headers
                    .insert("Mcp-Session-Id".to_owned(), "s".to_owned());
            },
            "headers.Mcp-Session-Id",
        ),
        (
            "header given twice",
            |c| {
                c.headers
                    .insert("X-Api-Key".to_owned(), "secret".to_owned());
            },
            "headers.x-api-key",
        ),
    ];
    for (case, change, key) in cases {
        let mut cfg = config("http://localhost:9000/mcp");
        change(&mut cfg);
        let errors = cfg.validate();
        assert_eq!(errors.len(), 1, "{case}: {errors:?}");
        assert_eq!(errors[0].0, *key, "{case}");
        assert!(!errors[0].1.contains("secret"), "{case}: {errors:?}");
    }
}

#[test]
fn debug_output_redacts_header_values() {
    let text = format!("{:?}", config("http://localhost:9000/mcp"));
    assert!(text.contains("x-api-key"), "{text}");
    assert!(!text.contains("key-123"), "{text}");
}
