//! Tests of the `mcp` tool kind's configuration.

use std::collections::BTreeMap;

use super::*;

/// Bound on every wait of these tests, so that a bug fails a test instead of hanging it.
fn config(url: &str) -> UpstreamToolConfig {
    UpstreamToolConfig {
        url: Some(url.to_owned()),
        headers: BTreeMap::from([("x-api-key".to_owned(), "key-123".to_owned())]),
        prefix: "up_".to_owned(),
        allow: None,
        timeout_secs: 10,
        ..UpstreamToolConfig::default()
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
            |c| c.url = Some("ftp://example.com/mcp".to_owned()),
            "url",
        ),
        ("relative url", |c| c.url = Some("/mcp".to_owned()), "url"),
        (
            "not a url",
            |c| c.url = Some("http://exa mple.com".to_owned()),
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

/// `config(url)` with `[tools.auth]` read from `auth` (TOML), as an agent file would give it.
fn with_auth(auth: &str) -> UpstreamToolConfig {
    let mut cfg = config("https://upstream.example.com/mcp");
    cfg.headers.clear();
    cfg.auth = toml::from_str(auth).unwrap();
    cfg
}

const EXCHANGE: &str = r#"
type = "token_exchange"
issuer = "https://login.example.com/realms/acme"
client_id = "switchboard"
client_secret = "s3cret-value"
scopes = ["tools", "read"]
resource = "https://upstream.example.com/mcp"
max_sessions = 10
session_idle_secs = 60
"#;

#[test]
fn an_auth_table_is_validated_key_by_key_without_showing_the_secret() {
    assert_eq!(with_auth(EXCHANGE).validate(), vec![]);
    let loopback = "type = \"client_credentials\"\ntoken_url = \"http://127.0.0.1:9/token\"\nclient_id = \"gw\"\nclient_secret = \"s3cret-value\"";
    assert_eq!(with_auth(loopback).validate(), vec![]);
    assert_eq!(with_auth("").validate(), vec![], "type none by default");
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "no credentials, no server",
            "type = \"client_credentials\"",
            &["auth.issuer", "auth.client_id", "auth.client_secret"],
        ),
        (
            "http issuer not on loopback",
            "type = \"client_credentials\"\nissuer = \"http://login.example.com\"\nclient_id = \"gw\"\nclient_secret = \"s3cret-value\"",
            &["auth.issuer"],
        ),
        (
            "both issuer and token_url, an empty secret",
            "type = \"token_exchange\"\nissuer = \"https://a.example.com\"\ntoken_url = \"https://a.example.com/token\"\nclient_id = \"gw\"\nclient_secret = \"\"",
            &["auth.token_url", "auth.client_secret"],
        ),
        (
            "keys of a token kind with none",
            "client_id = \"gw\"\nclient_secret = \"s3cret-value\"\nscopes = [\"a\"]",
            &["auth.client_id", "auth.client_secret", "auth.scopes"],
        ),
        (
            "bad scope, resource, session keys for client credentials",
            "type = \"client_credentials\"\nissuer = \"https://a.example.com\"\nclient_id = \"gw\"\nclient_secret = \"s3cret-value\"\nscopes = [\"a b\"]\nresource = \"not a uri\"\nmax_sessions = 3",
            &["auth.scopes[0]", "auth.resource", "auth.max_sessions"],
        ),
        (
            "zero sessions",
            "type = \"token_exchange\"\nissuer = \"https://a.example.com\"\nclient_id = \"gw\"\nclient_secret = \"s3cret-value\"\nmax_sessions = 0\nsession_idle_secs = 0",
            &["auth.max_sessions", "auth.session_idle_secs"],
        ),
    ];
    for (case, auth, keys) in cases {
        let errors = with_auth(auth).validate();
        let got: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(got, *keys, "{case}: {errors:?}");
        assert!(
            errors.iter().all(|(_, m)| !m.contains("s3cret")),
            "{case}: {errors:?}"
        );
    }
    // A static Authorization header clashes with a token kind, not with none.
    let mut cfg = with_auth(EXCHANGE);
    cfg.headers
        .insert("Authorization".to_owned(), "Bearer s3cret-value".to_owned());
    let errors = cfg.validate();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "headers.Authorization");
    assert!(errors[0].1.contains("token_exchange"), "{errors:?}");
    assert!(!errors[0].1.contains("s3cret"), "{errors:?}");
    cfg.auth = Default::default();
    assert_eq!(cfg.validate(), vec![]);
    // A token goes over https://, or http:// on loopback only.
    let mut cfg = with_auth(EXCHANGE);
    cfg.url = Some("http://upstream.example.com/mcp".to_owned());
    let errors = cfg.validate();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "url");
    assert!(errors[0].1.contains("not loopback"), "{errors:?}");
    cfg.url = Some("http://127.0.0.1:9000/mcp".to_owned());
    assert_eq!(cfg.validate(), vec![]);
}

#[test]
fn debug_output_redacts_the_client_secret() {
    let text = format!("{:?}", with_auth(EXCHANGE));
    assert!(text.contains("token_exchange"), "{text}");
    assert!(
        text.contains("client_secret: Some(\"[redacted]\")"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

/// A `command` upstream as an agent file would give it (a secret in `env`).
fn stdio(command: &str) -> UpstreamToolConfig {
    UpstreamToolConfig {
        command: Some(command.to_owned()),
        args: vec!["server.js".to_owned()],
        env: BTreeMap::from([("API_KEY".to_owned(), "s3cret-env".to_owned())]),
        cwd: Some("/srv/mcp".to_owned()),
        prefix: "fs_".to_owned(),
        ..UpstreamToolConfig::default()
    }
}

/// A case of a `command` upstream: its name, the change, the keys it must report.
type StdioCase = (
    &'static str,
    fn(&mut UpstreamToolConfig),
    &'static [&'static str],
);

#[test]
fn a_command_upstream_is_validated_key_by_key_without_showing_env_values() {
    assert_eq!(stdio("node").validate(), vec![]);
    let mut per_session = stdio("npx");
    per_session.process = ProcessMode::PerSession;
    per_session.max_processes = Some(5);
    assert_eq!(per_session.validate(), vec![]);
    let cases: &[StdioCase] = &[
        (
            "both url and command",
            |c| c.url = Some("http://localhost:9000/mcp".to_owned()),
            &["command"],
        ),
        ("neither url nor command", |c| c.command = None, &["url"]),
        (
            "empty command",
            |c| c.command = Some("  ".to_owned()),
            &["command"],
        ),
        (
            "NUL in an argument",
            |c| c.args.push("a\0b".to_owned()),
            &["args[1]"],
        ),
        (
            "bad variable name",
            |c| {
                c.env.insert("A=B".to_owned(), "v".to_owned());
            },
            &["env.A=B"],
        ),
        (
            "NUL in a secret value",
            |c| {
                c.env.insert("TOKEN".to_owned(), "s3cret\0".to_owned());
            },
            &["env.TOKEN"],
        ),
        ("empty cwd", |c| c.cwd = Some(String::new()), &["cwd"]),
        (
            "headers with a command",
            |c| {
                c.headers
                    .insert("Authorization".to_owned(), "Bearer s3cret".to_owned());
            },
            &["headers"],
        ),
        (
            "[tools.auth] with a command",
            |c| c.auth = toml::from_str("type = \"client_credentials\"").unwrap(),
            &["auth"],
        ),
        (
            "max_processes with one process per agent",
            |c| c.max_processes = Some(3),
            &["max_processes"],
        ),
        (
            "no process at all per session",
            |c| {
                c.process = ProcessMode::PerSession;
                c.max_processes = Some(0);
            },
            &["max_processes"],
        ),
        (
            "several at once",
            |c| {
                c.command = Some(String::new());
                c.timeout_secs = 0;
                c.prefix = "a.b".to_owned();
            },
            &["command", "prefix", "timeout_secs"],
        ),
    ];
    for (case, change, keys) in cases {
        let mut cfg = stdio("node");
        change(&mut cfg);
        let errors = cfg.validate();
        let got: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(got, *keys, "{case}: {errors:?}");
        assert!(
            errors.iter().all(|(_, m)| !m.contains("s3cret")),
            "{case}: {errors:?}"
        );
    }
}

#[test]
fn the_keys_of_a_command_upstream_are_refused_next_to_a_url() {
    let mut cfg = config("http://localhost:9000/mcp");
    cfg.args = vec!["x".to_owned()];
    cfg.env.insert("A".to_owned(), "b".to_owned());
    cfg.cwd = Some("/tmp".to_owned());
    cfg.process = ProcessMode::PerSession;
    cfg.max_processes = Some(2);
    let errors = cfg.validate();
    let got: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(got, ["args", "env", "cwd", "process", "max_processes"]);
    assert!(errors[0].1.contains("only with command"), "{errors:?}");
}

#[test]
fn debug_output_redacts_env_values_and_the_target_names_the_command_only() {
    let cfg = stdio("node");
    let text = format!("{cfg:?}");
    assert!(text.contains("API_KEY"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert_eq!(cfg.target(), "\"node\" (stdio)");
    assert_eq!(
        config("http://localhost:9000/mcp").target(),
        "http://localhost:9000/mcp"
    );
}

#[test]
fn the_same_process_is_the_same_command_args_env_and_listing() {
    let a = stdio("node");
    assert!(a.same_process(&stdio("node")));
    let mut b = stdio("node");
    b.args.push("--verbose".to_owned());
    assert!(!a.same_process(&b));
    let mut b = stdio("node");
    b.env.insert("API_KEY".to_owned(), "other".to_owned());
    assert!(!a.same_process(&b), "a changed secret is a change");
    let mut b = stdio("node");
    b.prefix = "other_".to_owned();
    assert!(!a.same_process(&b));
    let url = config("http://localhost:9000/mcp");
    assert!(!url.same_process(&url.clone()), "only command upstreams");
}
