//! Tests of the `servicenow` tool kind's configuration: the Table API store's settings.

use secrecy::ExposeSecret;
use std::time::Duration;

use super::*;

// === The table_api store's configuration ===

fn config(text: &str) -> ServiceNowToolConfig {
    toml::from_str(text).unwrap()
}

fn errors(text: &str) -> Vec<(String, String)> {
    config(text).validate()
}

fn hint(config: &ServiceNowToolConfig) -> String {
    match config.spec().unwrap() {
        StoreSpec::TableApi(Err(hint)) => hint,
        other => panic!("expected a store that is not configured, got {other:?}"),
    }
}

#[test]
fn table_api_with_basic_auth_or_oauth_is_a_store_spec() {
    let basic = config(
        r#"store = "table_api"
           instance_url = " https://dev12345.service-now.com/ "
           username = "admin"
           password = "hunter2"
           timeout_secs = 5"#,
    );
    let oauth = config(
        r#"store = "table_api"
           instance_url = "http://127.0.0.1:9/proxy/sn"
           client_id = "abc"
           client_secret = "s3cret""#,
    );

    let Ok(StoreSpec::TableApi(Ok(basic))) = basic.spec() else {
        panic!("basic auth must be a complete spec");
    };
    let Ok(StoreSpec::TableApi(Ok(oauth))) = oauth.spec() else {
        panic!("OAuth must be a complete spec");
    };

    assert_eq!(basic.instance_url, "https://dev12345.service-now.com");
    assert_eq!(basic.timeout, Duration::from_secs(5));
    assert!(
        matches!(&basic.credentials, Credentials::Basic { username, password }
            if username == "admin" && password.expose_secret() == "hunter2")
    );
    assert_eq!(oauth.instance_url, "http://127.0.0.1:9/proxy/sn");
    assert_eq!(oauth.timeout, table_api::DEFAULT_TIMEOUT);
    assert!(
        matches!(&oauth.credentials, Credentials::OAuth { client_id, .. } if client_id == "abc")
    );
}

#[test]
fn table_api_mistakes_are_config_errors_naming_the_key() {
    let cases = [
        (
            r#"store = "table_api"
               username = "u"
               password = "p""#,
            "instance_url",
            "required for store = \"table_api\"",
        ),
        (
            r#"store = "table_api"
               instance_url = "https://x.service-now.com""#,
            "username",
            "needs credentials: username and password (basic auth), or client_id and client_secret",
        ),
        (
            r#"store = "table_api"
               instance_url = "https://x.service-now.com"
               username = "u""#,
            "password",
            "required with username",
        ),
        (
            r#"store = "table_api"
               instance_url = "https://x.service-now.com"
               client_secret = "s""#,
            "client_id",
            "required with client_secret",
        ),
        (
            r#"store = "table_api"
               instance_url = "https://x.service-now.com"
               username = "u"
               password = "p"
               client_id = "c"
               client_secret = "s""#,
            "client_id",
            "not both",
        ),
        (
            r#"store = "table_api"
               instance_url = "ftp://x.service-now.com"
               username = "u"
               password = "p""#,
            "instance_url",
            "uses the \"ftp\" scheme",
        ),
        (
            r#"store = "table_api"
               instance_url = "x.service-now.com"
               username = "u"
               password = "p""#,
            "instance_url",
            "is not a valid URL",
        ),
        (
            r#"store = "table_api"
               instance_url = "https://x.service-now.com/?a=1"
               username = "u"
               password = "p""#,
            "instance_url",
            "has a query or a fragment",
        ),
        (
            r#"store = "table_api"
               instance_url = "https://x.service-now.com"
               username = "u"
               password = "p"
               timeout_secs = 0"#,
            "timeout_secs",
            "must be at least 1",
        ),
        (
            r#"store = "embedded"
               instance_url = "https://x.service-now.com"
               password = """#,
            "instance_url",
            "only applies to store = \"table_api\"",
        ),
    ];
    for (text, key, expected) in cases {
        let errors = errors(text);
        assert!(
            errors.iter().any(|(k, m)| k == key && m.contains(expected)),
            "case {text}: expected {key}: {expected}, got {errors:?}"
        );
    }
    let embedded = errors(
        r#"store = "embedded"
           instance_url = "https://x.service-now.com"
           password = """#,
    );
    assert_eq!(embedded.len(), 2, "every stray key is named: {embedded:?}");
}

#[test]
fn an_instance_url_with_credentials_is_refused_without_echoing_them() {
    let errors = errors(
        r#"store = "table_api"
           instance_url = "https://admin:hunter2@x.service-now.com"
           username = "u"
           password = "p""#,
    );

    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "instance_url");
    assert!(
        errors[0].1.contains("must not carry credentials"),
        "{errors:?}"
    );
    assert!(!errors[0].1.contains("hunter2"), "{errors:?}");
}

#[test]
fn empty_values_leave_the_store_unconfigured_naming_the_variables() {
    let mut all_unset = config(
        r#"store = "table_api"
           instance_url = ""
           username = ""
           password = ""
           client_id = ""
           client_secret = """#,
    );
    let variables = [
        ("instance_url", "SERVICENOW_INSTANCE_URL"),
        ("username", "SERVICENOW_USERNAME"),
        ("password", "SERVICENOW_PASSWORD"),
        ("client_id", "SERVICENOW_CLIENT_ID"),
        ("client_secret", "SERVICENOW_CLIENT_SECRET"),
    ];
    all_unset.variables = variables
        .iter()
        .map(|(key, var)| (key.to_string(), vec![var.to_string()]))
        .collect();
    let mut password_unset = all_unset.clone();
    password_unset.instance_url = Some("https://x.service-now.com".into());
    password_unset.username = Some("admin".into());
    let mut literal = password_unset.clone();
    literal.variables.clear();

    assert!(
        all_unset.validate().is_empty(),
        "an unset variable is not a config error"
    );
    assert_eq!(
        hint(&all_unset),
        "set SERVICENOW_INSTANCE_URL (the instance's address, e.g. \
         https://dev12345.service-now.com), and SERVICENOW_USERNAME and SERVICENOW_PASSWORD \
         (basic auth), or SERVICENOW_CLIENT_ID and SERVICENOW_CLIENT_SECRET (OAuth client \
         credentials)"
    );
    assert_eq!(hint(&password_unset), "set SERVICENOW_PASSWORD");
    assert_eq!(hint(&literal), "set password of the servicenow tool");
}

#[test]
fn config_debug_output_hides_secrets() {
    let config = config(
        r#"store = "table_api"
           instance_url = "https://x.service-now.com"
           client_id = "abc"
           client_secret = "s3cret-value""#,
    );

    let debug = format!("{config:?} {:?}", config.spec());

    assert!(!debug.contains("s3cret-value"), "{debug}");
    assert!(debug.contains("abc"), "{debug}");
}
