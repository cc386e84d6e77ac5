//! Unit tests for the Table API store's pure parts: queries, bodies, record parsing, error
//! bodies, `Retry-After`, token lifetimes, and the store's answers before any request (rules
//! and missing configuration). Requests to an instance are tested against an in-test Table
//! API server in `tests/gateway/table_api.rs`.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::connection::*;
use super::records::*;
use super::*;
use crate::incidents::model::{Level, Priority, State};

fn record(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// A record as the Table API sends it with `sysparm_display_value=all`.
fn vpn_record() -> Map<String, Value> {
    let pair = |display: &str, value: &str| json!({"display_value": display, "value": value});
    record(json!({
        "number": pair("INC0012346", "INC0012346"),
        "sys_id": pair("46d44a5fa9fe198101f2d8cd2bd3ea9e", "46d44a5fa9fe198101f2d8cd2bd3ea9e"),
        "short_description": pair("VPN not working", "VPN not working"),
        "description": pair("Users cannot connect.", "Users cannot connect."),
        "caller_id": pair("Joe Employee", "681ccaf9c0a8016400b98a06818d57c7"),
        "category": pair("Network", "network"),
        "impact": pair("2 - Medium", "2"),
        "urgency": pair("2 - Medium", "2"),
        "priority": pair("3 - Moderate", "3"),
        "state": pair("In Progress", "2"),
        "assignment_group": pair("Network", "287ebd7da9fe198100f92cc8d1d2154e"),
        "assigned_to": pair("", ""),
        "work_notes": pair("2026-01-05 08:00:00 - System Administrator (Work notes)\nChecking RADIUS.\n\n", ""),
        "close_code": pair("", ""),
        "close_notes": pair("", ""),
        "opened_at": pair("01/05/2026 01:00:00 AM", "2026-01-05 07:00:00"),
        "sys_updated_on": pair("01/05/2026 02:00:00 AM", "2026-01-05 08:00:00"),
        "resolved_at": pair("", ""),
    }))
}

#[test]
fn a_display_value_all_record_reads_codes_names_and_utc_times() {
    let incident = incident_from_record(&vpn_record()).unwrap();

    assert_eq!(incident.number.as_str(), "INC0012346");
    assert_eq!(incident.sys_id, "46d44a5fa9fe198101f2d8cd2bd3ea9e");
    assert_eq!(incident.state, State::InProgress);
    assert_eq!(incident.impact, Level::Medium);
    assert_eq!(incident.priority, Priority::Moderate);
    assert_eq!(incident.caller.as_deref(), Some("Joe Employee"), "the name");
    assert_eq!(incident.category.as_deref(), Some("network"), "the value");
    assert_eq!(incident.assignment_group.as_deref(), Some("Network"));
    assert_eq!(
        incident.assigned_to, None,
        "blank is empty, as on the embedded store"
    );
    assert_eq!(
        incident.work_notes.as_deref(),
        Some("2026-01-05 08:00:00 - System Administrator (Work notes)\nChecking RADIUS.")
    );
    assert_eq!(format_ts(incident.opened_at), "2026-01-05 07:00:00");
    assert_eq!(format_ts(incident.updated_at), "2026-01-05 08:00:00");
    assert_eq!(incident.resolved_at, None);
    // The JSON the tools return has the embedded store's shape.
    let json = serde_json::to_value(&incident).unwrap();
    assert_eq!(json["state"], "In Progress");
    assert_eq!(json["urgency"], "2 - Medium");
    assert_eq!(json["assigned_to"], "");
}

fn format_ts(at: time::OffsetDateTime) -> String {
    super::super::model::format_timestamp(at)
}

#[test]
fn a_record_of_plain_values_is_read_too() {
    let record = record(json!({
        "number": "INC0010001", "sys_id": "a".repeat(32), "short_description": "x",
        "impact": "1", "urgency": 1, "state": "6", "opened_at": "2026-01-01 00:00:00",
        "resolved_at": "2026-01-02 00:00:00",
    }));

    let incident = incident_from_record(&record).unwrap();

    assert_eq!(incident.state, State::Resolved);
    assert_eq!(incident.urgency, Level::High);
    assert_eq!(
        incident.priority,
        Priority::Critical,
        "derived when the instance does not send it"
    );
    assert_eq!(incident.updated_at, incident.opened_at);
    assert!(incident.resolved_at.is_some());
}

#[test]
fn records_that_do_not_fit_name_the_field() {
    let cases = [
        (
            "state",
            json!({"display_value": "Weird", "value": "42"}),
            "state \"42\"",
        ),
        ("number", json!("CHG0000001"), "invalid incident number"),
        ("opened_at", json!("yesterday"), "opened_at \"yesterday\""),
        ("impact", json!(null), "impact \"\""),
        ("sys_id", json!("../sys_user/1"), "has no valid sys_id"),
    ];
    for (field, value, expected) in cases {
        let mut record = vpn_record();
        record.insert(field.to_owned(), value);

        let err = incident_from_record(&record).unwrap_err().to_string();

        assert!(err.contains(expected), "case {field}: {err}");
        assert!(
            err.contains("not a Table API response"),
            "case {field}: {err}"
        );
    }
}

#[test]
fn search_query_has_filters_then_one_text_group_then_the_order() {
    let query = SearchQuery {
        text: Some("  vpn  ".into()),
        state: Some(State::InProgress),
        priority: Some(Priority::Moderate),
        limit: 5,
    };

    assert_eq!(
        search_query(&query),
        "state=2^priority=3^numberLIKEvpn^ORshort_descriptionLIKEvpn^ORdescriptionLIKEvpn\
         ^ORwork_notesLIKEvpn^ORclose_notesLIKEvpn^ORDERBYDESCopened_at^ORDERBYDESCnumber"
    );
    assert_eq!(
        search_query(&SearchQuery {
            text: Some("   ".into()),
            ..SearchQuery::default()
        }),
        ORDER,
        "blank text matches everything"
    );
}

#[test]
fn a_caret_inside_a_value_is_escaped() {
    assert_eq!(escape("a^b^^c"), "a^^b^^^^c");
    let query = search_query(&SearchQuery {
        text: Some("x^ORstate=1".into()),
        ..SearchQuery::default()
    });
    assert!(
        query.starts_with("numberLIKEx^^ORstate=1^ORshort_descriptionLIKEx^^ORstate=1"),
        "{query}"
    );
}

#[test]
fn create_body_sends_the_given_fields_and_default_levels() {
    let new = NewIncident {
        short_description: "  Printer on fire ".into(),
        caller: Some("Abel Tuter".into()),
        description: Some("   ".into()),
        urgency: Some(Level::High),
        ..NewIncident::default()
    }
    .cleaned()
    .unwrap();

    let body = create_body(&new);

    assert_eq!(
        Value::Object(body),
        json!({
            "short_description": "Printer on fire",
            "caller_id": "Abel Tuter",
            "impact": "3",
            "urgency": "1",
        })
    );
}

fn incident() -> Incident {
    incident_from_record(&vpn_record()).unwrap()
}

#[test]
fn update_body_sends_only_the_patch_with_the_rules_applied() {
    let current = incident();
    let patch = IncidentPatch {
        state: Some(State::Resolved),
        close_notes: Some(" Restarted RADIUS ".into()),
        description: Some("".into()),
        urgency: Some(Level::High),
        work_notes: Some(" Fixed. ".into()),
        ..IncidentPatch::default()
    };
    let next = current.patched(patch.clone(), now()).unwrap();

    let body = update_body(&current, &next, patch);

    assert_eq!(
        Value::Object(body),
        json!({
            "state": "6",
            "close_notes": "Restarted RADIUS",
            "close_code": "Solved (Permanently)",
            "description": "",
            "urgency": "1",
            "work_notes": "Fixed.",
        })
    );
}

#[test]
fn error_bodies_give_the_instances_words() {
    let servicenow = br#"{"error":{"message":"No Record found","detail":"Record doesn't exist or ACL restricts the record retrieval"},"status":"failure"}"#;
    let oauth = br#"{"error_description":"access_denied","error":"server_error"}"#;

    assert_eq!(
        error_message(servicenow),
        "No Record found (Record doesn't exist or ACL restricts the record retrieval)"
    );
    assert_eq!(error_message(oauth), "access_denied");
    assert_eq!(error_message(b"<html>login</html>"), "");
    let long = json!({"error": {"message": "x".repeat(1000)}}).to_string();
    assert_eq!(error_message(long.as_bytes()).len(), MAX_QUOTED + 3);
}

#[test]
fn invalid_json_is_reported_without_the_body() {
    let answer = Answer {
        status: reqwest::StatusCode::OK,
        retry_after: None,
        location: None,
        content_type: "text/html".into(),
        body: bytes::Bytes::from_static(b"<html>hunter2</html>"),
    };

    let err = parse_json(&answer).unwrap_err().to_string();

    assert!(err.contains("not a Table API response"), "{err}");
    assert!(err.contains("HTTP 200 with 20 bytes of text/html"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn results_must_have_the_table_api_shape() {
    assert!(result_list(json!({"result": []})).unwrap().is_empty());
    assert_eq!(result_object(json!({"result": {"a": 1}})).unwrap().len(), 1);
    let cases = [
        result_list(json!({"records": []})).unwrap_err(),
        result_list(json!({"result": {}})).unwrap_err(),
        result_list(json!({"result": [1]})).unwrap_err(),
        result_object(json!({"result": []})).unwrap_err(),
        result_object(json!([])).unwrap_err(),
    ];
    for err in cases {
        assert!(matches!(err, Error::BadResponse { .. }), "{err}");
    }
}

#[test]
fn retry_after_is_whole_seconds_with_a_one_second_fallback() {
    assert_eq!(retry_after(Some("3")), Duration::from_secs(3));
    assert_eq!(retry_after(Some(" 0 ")), Duration::ZERO);
    assert_eq!(
        retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
        DEFAULT_RETRY_AFTER
    );
    assert_eq!(retry_after(None), DEFAULT_RETRY_AFTER);
}

#[test]
fn tokens_are_replaced_a_minute_before_expiry_or_half_way() {
    let issued = Instant::now();
    let secs = |n| Duration::from_secs(n);

    assert_eq!(refresh_at(issued, secs(1800)), issued + secs(1740));
    assert_eq!(refresh_at(issued, secs(100)), issued + secs(50));
    assert_eq!(
        refresh_at(issued, secs(0)),
        issued,
        "used once, then replaced"
    );
}

#[test]
fn token_answers_are_checked() {
    let (token, lifetime) = token_from_answer(
        &json!({"access_token": "abc", "expires_in": 1799, "token_type": "Bearer", "scope": ""}),
    )
    .unwrap();
    assert_eq!(token.expose_secret(), "abc");
    assert_eq!(lifetime, Duration::from_secs(1799));
    let (_, lifetime) =
        token_from_answer(&json!({"access_token": "abc", "expires_in": "60"})).unwrap();
    assert_eq!(lifetime, Duration::from_secs(60));
    let (_, lifetime) = token_from_answer(&json!({"access_token": "abc"})).unwrap();
    assert_eq!(lifetime, DEFAULT_TOKEN_LIFETIME);
    for bad in [
        json!({"expires_in": 10}),
        json!({"access_token": "", "expires_in": 10}),
        json!({"access_token": "abc", "token_type": "mac"}),
        json!({"access_token": "abc", "expires_in": -1}),
    ] {
        assert!(
            matches!(token_from_answer(&bad), Err(Error::BadResponse { .. })),
            "{bad}"
        );
    }
}

#[test]
fn paths_for_logs_have_no_host_and_no_query() {
    assert_eq!(
        path_of("https://x.service-now.com/api/now/table/incident?sysparm_query=a"),
        "/api/now/table/incident"
    );
    assert_eq!(
        path_of("http://127.0.0.1:9/oauth_token.do"),
        "/oauth_token.do"
    );
    assert_eq!(path_of("http://127.0.0.1:9"), "/");
}

#[test]
fn messages_say_what_to_do() {
    let cases = [
        (
            Error::CredentialsRefused {
                status: 401,
                credentials: CredentialKind::Basic,
            },
            "ServiceNow refused the credentials (HTTP 401): check the username and password",
        ),
        (
            Error::CredentialsRefused {
                status: 403,
                credentials: CredentialKind::OAuth,
            },
            "ServiceNow refused the credentials for this operation (HTTP 403 Forbidden)",
        ),
        (
            Error::RateLimited {
                retry_after: 2,
                waited: true,
            },
            "still after waiting 2 s",
        ),
        (
            Error::RateLimited {
                retry_after: 120,
                waited: false,
            },
            "asks to wait 120 s, longer than timeout_secs",
        ),
        (
            Error::Timeout {
                secs: 30,
                write: true,
            },
            "did not answer within 30 s (timeout_secs); the change may still have been made",
        ),
        (
            Error::Server {
                status: 503,
                message: String::new(),
            },
            "the ServiceNow instance failed (HTTP 503)",
        ),
    ];
    for (err, expected) in cases {
        let text = err.to_string();
        assert!(
            text.starts_with(expected) || text.contains(expected),
            "{text}"
        );
    }
}

fn basic_settings(url: &str) -> TableApiSpec {
    TableApiSpec {
        instance_url: url.to_owned(),
        credentials: Credentials::Basic {
            username: "admin".into(),
            password: SecretString::from("hunter2"),
        },
        timeout: DEFAULT_TIMEOUT,
    }
}

#[test]
fn a_store_on_an_https_instance_builds_without_network_and_hides_secrets() {
    crate::net::install_crypto_provider();

    let store = TableApiStore::new(basic_settings("https://dev12345.service-now.com")).unwrap();

    assert_eq!(
        store.instance_url(),
        Some("https://dev12345.service-now.com")
    );
    let debug = format!("{store:?} {:?}", basic_settings("https://x"));
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[tokio::test]
async fn an_unconfigured_store_checks_the_rules_first_then_says_what_to_set() {
    let store = TableApiStore::not_configured("set SERVICENOW_INSTANCE_URL");

    let bad_number = store.get("12346").await.unwrap_err();
    let blank = store.create(NewIncident::default()).await.unwrap_err();
    let nothing = store
        .update("INC0012346", IncidentPatch::default())
        .await
        .unwrap_err();
    let search = store.search(SearchQuery::default()).await.unwrap_err();

    assert!(
        matches!(bad_number, super::super::Error::Invalid(_)),
        "{bad_number}"
    );
    assert!(matches!(blank, super::super::Error::Invalid(_)), "{blank}");
    assert!(
        matches!(nothing, super::super::Error::Invalid(_)),
        "{nothing}"
    );
    assert_eq!(
        search.to_string(),
        "ServiceNow is not configured: set SERVICENOW_INSTANCE_URL"
    );
    assert_eq!(store.instance_url(), None);
}

#[tokio::test]
async fn an_instance_that_refuses_connections_is_unreachable_not_a_panic() {
    crate::net::install_crypto_provider();
    // A port nothing listens on: bind one, note it, close it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let store = TableApiStore::new(basic_settings(&url)).unwrap();

    let err = store.get("INC0012346").await.unwrap_err().to_string();

    assert_eq!(
        err,
        format!("cannot reach the ServiceNow instance {url}: connection refused")
    );
}
