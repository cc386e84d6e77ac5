//! Tests of config parsing, interpolation and validation.

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn default_server_settings_are_valid() {
    let s = ServerSpec::from_config(ServerConfig::default(), Path::new("x")).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.sse_keep_alive, Duration::from_secs(15));
}

#[test]
fn gateway_file_is_interpolated_and_validated() {
    let text = "[server]\nlisten = \"${LISTEN:-0.0.0.0:9000}\"\nsse_keep_alive_secs = 0\n";
    let err = ServerSpec::from_config(
        parse_file::<GatewayConfig>(Path::new("sb.toml"), text, &vars(&[]))
            .unwrap()
            .server,
        Path::new("sb.toml"),
    )
    .unwrap_err();
    assert_eq!(
        err.0[0].to_string(),
        "sb.toml: server.sse_keep_alive_secs: must be at least 1"
    );
    let ok: GatewayConfig =
        parse_file(Path::new("sb.toml"), text, &vars(&[("LISTEN", "[::1]:81")])).unwrap();
    assert_eq!(ok.server.listen.to_string(), "[::1]:81");
}

#[test]
fn trusted_proxies_are_parsed_and_bad_ones_named() {
    let text = "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"nope\"]\n";
    let config = parse_file::<GatewayConfig>(Path::new("sb.toml"), text, &vars(&[])).unwrap();
    let err = ServerSpec::from_config(config.server, Path::new("sb.toml")).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert!(
        err.0[0]
            .to_string()
            .starts_with("sb.toml: server.trusted_proxies[1]: \"nope\" is not an IP address"),
        "{}",
        err.0[0]
    );
    let text = "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n";
    let config = parse_file::<GatewayConfig>(Path::new("sb.toml"), text, &vars(&[])).unwrap();
    let ok = ServerSpec::from_config(config.server, Path::new("sb.toml")).unwrap();
    assert_eq!(ok.trusted_proxies.len(), 2);
}

#[test]
fn every_mismatch_of_a_file_is_reported() {
    // Arrange: a bad value, an unknown key, a bad value in a nested table, and a bad
    // required value (whose "missing" consequence must not be reported).
    let text = "[server]\nlisten = \"nowhere\"\nlisten_on = 1\nmax_body_bytes = \"big\"\n\
                [admin]\ncolour = 2\n[cluster]\nredis_url = 5\n";
    // Act
    let err = parse_file::<GatewayConfig>(Path::new("sb.toml"), text, &vars(&[])).unwrap_err();
    // Assert
    let got: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    for expected in [
        "sb.toml: server.listen: invalid socket address",
        "sb.toml: server.listen_on: unknown field `listen_on`",
        "sb.toml: server.max_body_bytes: invalid type: string \"big\"",
        "sb.toml: admin.colour: unknown field `colour`",
        "sb.toml: cluster.redis_url: invalid type: integer `5`",
    ] {
        assert!(
            got.iter().any(|e| e.starts_with(expected)),
            "missing {expected:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), 5, "{got:#?}");
}

#[test]
fn a_missing_required_key_is_reported_and_the_rest_still_read() {
    let text = "[cluster]\nheartbeat_ms = \"x\"\n[server]\nlisten_on = 1\n";
    let err = parse_file::<GatewayConfig>(Path::new("sb.toml"), text, &vars(&[])).unwrap_err();
    let got: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    assert!(
        got.iter()
            .any(|e| e.starts_with("sb.toml: cluster: missing field `redis_url`")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|e| e.starts_with("sb.toml: cluster.heartbeat_ms: invalid type")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|e| e.starts_with("sb.toml: server.listen_on: unknown field")),
        "{got:#?}"
    );
    assert_eq!(got.len(), 3, "{got:#?}");
}

#[test]
fn interpolation_errors_do_not_hide_other_mismatches() {
    let text = "[server]\nlisten = \"${NOPE}\"\nmax_body_bytes = \"big\"\n";
    let err = parse_file::<GatewayConfig>(Path::new("sb.toml"), text, &vars(&[])).unwrap_err();
    let got: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    assert!(
        got.iter()
            .any(|e| e.starts_with("sb.toml: server.listen: ${NOPE} is not set")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|e| e.starts_with("sb.toml: server.max_body_bytes: invalid type")),
        "{got:#?}"
    );
    assert_eq!(got.len(), 2, "{got:#?}");
}

#[test]
fn an_error_inside_an_array_names_its_index() {
    let text = "[server]\nallowed_hosts = [\"a\", 2]\nlisten_on = 1\n";
    let err = parse_file::<GatewayConfig>(Path::new("sb.toml"), text, &vars(&[])).unwrap_err();
    let got: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    assert!(
        got.iter()
            .any(|e| e.starts_with("sb.toml: server.allowed_hosts[1]: invalid type")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|e| e.starts_with("sb.toml: server.listen_on: unknown field")),
        "{got:#?}"
    );
}

#[test]
fn unknown_keys_and_syntax_errors_name_where() {
    let err = parse_file::<GatewayConfig>(
        Path::new("sb.toml"),
        "[server]\nlisten_on = 1\n",
        &vars(&[]),
    )
    .unwrap_err();
    let msg = err.0[0].to_string();
    assert!(
        msg.starts_with("sb.toml: server.listen_on: unknown field `listen_on`"),
        "{msg}"
    );

    let err = parse_file::<GatewayConfig>(Path::new("sb.toml"), "a = \n", &vars(&[])).unwrap_err();
    assert!(
        err.0[0].to_string().contains("invalid TOML (line 1"),
        "{err}"
    );
}

#[test]
fn metrics_are_private_by_default_and_public_when_said() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    let missing = load_gateway(&file, false, &vars(&[])).unwrap();
    assert!(!missing.metrics_public);
    std::fs::write(&file, "[metrics]\npublic = true\n").unwrap();
    assert!(
        load_gateway(&file, true, &vars(&[]))
            .unwrap()
            .metrics_public
    );
    std::fs::write(&file, "[metrics]\nopen = true\n").unwrap();
    let err = load_gateway(&file, true, &vars(&[])).unwrap_err();
    assert!(
        err.0[0]
            .to_string()
            .contains("metrics.open: unknown field `open`"),
        "{}",
        err.0[0]
    );
}

#[test]
fn tasks_settings_default_and_their_errors_name_file_and_key() {
    let ok = gateway_from_text(Path::new("sb.toml"), "", &vars(&[])).unwrap();
    assert_eq!(ok.tasks.ttl, Duration::from_secs(3600));
    assert_eq!(ok.tasks.poll_interval, Duration::from_secs(1));
    let set = gateway_from_text(
        Path::new("sb.toml"),
        "[tasks]\nttl_secs = 60\npoll_interval_ms = 250\n",
        &vars(&[]),
    )
    .unwrap();
    assert_eq!(set.tasks.ttl, Duration::from_secs(60));
    assert_eq!(set.tasks.poll_interval, Duration::from_millis(250));
    let err = gateway_from_text(
        Path::new("sb.toml"),
        "[tasks]\nttl_secs = 0\npoll_interval_ms = 0\n",
        &vars(&[]),
    )
    .unwrap_err();
    let messages: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "sb.toml: tasks.ttl_secs: must be at least 1 (seconds a finished task's result is kept)",
            "sb.toml: tasks.poll_interval_ms: must be between 1 and 60000",
        ]
    );
}
