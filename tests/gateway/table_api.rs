//! The incident tools on a ServiceNow instance through its Table API: the real gateway, real
//! MCP clients, and the test's own instance (`fake_servicenow`) on 127.0.0.1:0, which checks
//! paths, query strings, credentials and bodies and can fail on demand.

use std::path::Path;
use std::time::{Duration, Instant};

use poem::http::Method;
use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use serde_json::{Value, json};
use switchboard::config::Vars;

use crate::support::binary::{serve_command, spawn_binary};
use crate::support::fake_servicenow::{FakeAuth, FakeServiceNow, Fault};
use crate::support::helpers::{Options, TestGateway, args, fixture, rmcp_client, tool_text};
use crate::support::scenarios::{self, structured};

const TABLE: &str = "/api/now/table/incident";
const TOKEN: &str = "/oauth_token.do";
const USERNAME: &str = "switchboard.integration";
const PASSWORD: &str = "Pa55-w0rd-of-the-instance";
const CLIENT_ID: &str = "4f1a9c0d2e3b4a5f9e8d7c6b5a493827";
const CLIENT_SECRET: &str = "0auth-s3cret-of-the-instance";

fn basic() -> FakeAuth {
    FakeAuth::Basic {
        username: USERNAME,
        password: PASSWORD,
    }
}

fn oauth() -> FakeAuth {
    FakeAuth::OAuth {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
    }
}

/// The variables of the fixture agent (`agents/table-api`) for `fake` with these
/// credentials, under the names `names` gives (fixture or shipped agent).
fn vars_named(fake: &FakeServiceNow, auth: &FakeAuth, names: [&str; 5]) -> Vars {
    let [url, username, password, client_id, client_secret] = names;
    let mut vars = Vars::new();
    vars.insert(url.into(), fake.url.clone());
    match auth {
        FakeAuth::Basic {
            username: u,
            password: p,
        } => {
            vars.insert(username.into(), (*u).into());
            vars.insert(password.into(), (*p).into());
        }
        FakeAuth::OAuth {
            client_id: id,
            client_secret: secret,
        } => {
            vars.insert(client_id.into(), (*id).into());
            vars.insert(client_secret.into(), (*secret).into());
        }
    }
    vars
}

const FIXTURE_VARS: [&str; 5] = [
    "SN_URL",
    "SN_USERNAME",
    "SN_PASSWORD",
    "SN_CLIENT_ID",
    "SN_CLIENT_SECRET",
];
const SHIPPED_VARS: [&str; 5] = [
    "SERVICENOW_INSTANCE_URL",
    "SERVICENOW_USERNAME",
    "SERVICENOW_PASSWORD",
    "SERVICENOW_CLIENT_ID",
    "SERVICENOW_CLIENT_SECRET",
];

async fn gateway_with(agents_dir: std::path::PathBuf, vars: Vars) -> TestGateway {
    TestGateway::spawn_with(Options {
        agents_dir,
        vars,
        ..Options::default()
    })
    .await
}

/// The fixture's servicenow agent on `fake` with `auth`.
async fn gateway(fake: &FakeServiceNow, auth: &FakeAuth) -> TestGateway {
    gateway_with(
        fixture("agents/table-api"),
        vars_named(fake, auth, FIXTURE_VARS),
    )
    .await
}

type Client = RunningService<RoleClient, ()>;

async fn client(gw: &TestGateway) -> Client {
    rmcp_client(&gw.url("/agents/servicenow/mcp")).await
}

async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    client
        .call_tool(
            CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments.clone())),
        )
        .await
        .unwrap_or_else(|e| panic!("{tool} {arguments}: {e:?}"))
}

/// The text of a failed tool result.
fn failure(result: &CallToolResult) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "expected a tool error: {result:?}"
    );
    tool_text(result)
}

/// What the gateway owes concurrent creates on the Table API. ServiceNow, not the gateway,
/// assigns incident numbers (the fake under its own lock, as an instance does), so distinct
/// numbers alone would prove the fake, not the gateway. The gateway's part: each create is
/// sent exactly once (no retry that duplicates it, none dropped or merged), and each call is
/// answered with the record the instance created for it (no answer crossed with a
/// neighbour's under concurrency).
fn each_create_reached_the_instance_once(fake: &FakeServiceNow, created: &[(String, String)]) {
    let mut posted: Vec<String> = fake
        .received()
        .into_iter()
        .filter(|r| r.method == Method::POST && r.path.starts_with(TABLE))
        .filter_map(|r| r.json()["short_description"].as_str().map(str::to_owned))
        .filter(|s| s.starts_with("load "))
        .collect();
    posted.sort();
    let mut summaries: Vec<String> = created.iter().map(|(s, _)| s.clone()).collect();
    summaries.sort();
    assert_eq!(posted, summaries, "one POST per create, no more, no fewer");
    let records = fake.records();
    for (summary, number) in created {
        let held: Vec<&Value> = records
            .iter()
            .filter(|r| r["short_description"] == summary.as_str())
            .collect();
        assert_eq!(held.len(), 1, "{summary}: {held:?}");
        assert_eq!(held[0]["number"], number.as_str(), "{summary}");
    }
}

// === The same scenarios as on the embedded store, on both kinds of credentials ===

#[tokio::test]
async fn the_shared_scenarios_pass_on_the_table_api_with_basic_auth() {
    let fake = FakeServiceNow::start(basic()).await;
    let gw = gateway(&fake, &basic()).await;

    scenarios::every_tool_over_streamable_http(&gw.url("/agents/servicenow/mcp"), "servicenow")
        .await;
    scenarios::every_tool_over_legacy_sse(&gw.url("/agents/servicenow/sse"), "servicenow").await;
    let created =
        scenarios::concurrent_creates_get_distinct_numbers(&gw.url("/agents/servicenow/sse")).await;
    each_create_reached_the_instance_once(&fake, &created);

    // The fake answers 401 to anything but these credentials; every call went to the table.
    let received = fake.received();
    assert!(received.len() > 50, "{} requests", received.len());
    let first = received[0].authorization.clone().unwrap();
    assert!(first.starts_with("Basic "), "{first}");
    for r in &received {
        assert!(r.path.starts_with(TABLE), "{r:?}");
        assert_eq!(r.authorization.as_deref(), Some(first.as_str()));
    }
    gw.stop().await;
}

#[tokio::test]
async fn the_shared_scenarios_pass_on_the_table_api_with_oauth() {
    let fake = FakeServiceNow::start(oauth()).await;
    let gw = gateway(&fake, &oauth()).await;

    scenarios::every_tool_over_streamable_http(&gw.url("/agents/servicenow/mcp"), "servicenow")
        .await;
    scenarios::every_tool_over_legacy_sse(&gw.url("/agents/servicenow/sse"), "servicenow").await;
    let created =
        scenarios::concurrent_creates_get_distinct_numbers(&gw.url("/agents/servicenow/sse")).await;
    each_create_reached_the_instance_once(&fake, &created);

    // One token for every call, concurrent ones included, and every table request bears it.
    assert_eq!(fake.token_requests(), 1);
    let table: Vec<_> = fake
        .received()
        .into_iter()
        .filter(|r| r.path.starts_with(TABLE))
        .collect();
    assert!(table.len() > 50, "{} requests", table.len());
    assert!(
        table.iter().all(|r| r
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer tok-"))),
        "{table:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn texts_longer_than_servicenow_holds_are_refused_as_on_the_embedded_store() {
    let fake = FakeServiceNow::start(basic()).await;
    let gw = gateway(&fake, &basic()).await;

    scenarios::texts_longer_than_servicenow_holds_are_refused(&gw.url("/agents/servicenow/sse"))
        .await;

    // Refused before anything was sent: the instance saw the one valid create only.
    let table: Vec<_> = fake
        .received()
        .into_iter()
        .filter(|r| r.path.starts_with(TABLE))
        .collect();
    assert_eq!(table.len(), 1, "{table:?}");
    assert_eq!(table[0].method, Method::POST);
    gw.stop().await;
}

// === Requests ===

#[tokio::test]
async fn each_tool_sends_the_request_the_table_api_expects() {
    let fake = FakeServiceNow::start(basic()).await;
    let gw = gateway(&fake, &basic()).await;
    let c = client(&gw).await;

    // create: POST, fields by ServiceNow name, choices as codes, references by name.
    let created = structured(
        &call(
            &c,
            "create_incident",
            json!({
                "short_description": " Disk full on db-7 ",
                "caller": "Abel Tuter",
                "assignment_group": "Database",
                "impact": "High",
                "urgency": 2,
                "work_notes": "Paged the DBA.",
            }),
        )
        .await,
    );
    let received = fake.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let post = &received[0];
    assert_eq!((&post.method, post.path.as_str()), (&Method::POST, TABLE));
    assert_eq!(post.query["sysparm_display_value"], "all");
    assert_eq!(post.query["sysparm_exclude_reference_link"], "true");
    assert_eq!(post.query["sysparm_input_display_value"], "true");
    assert!(
        post.query["sysparm_fields"].contains("sys_updated_on"),
        "{post:?}"
    );
    assert_eq!(
        post.json(),
        json!({
            "short_description": "Disk full on db-7",
            "caller_id": "Abel Tuter",
            "assignment_group": "Database",
            "impact": "1",
            "urgency": "2",
            "work_notes": "Paged the DBA.",
        })
    );
    assert_eq!(created["caller"], "Abel Tuter");
    assert_eq!(created["assignment_group"], "Database");
    assert_eq!(created["priority"], "2 - High");
    assert_eq!(created["state"], "New");
    assert!(
        created["work_notes"]
            .as_str()
            .unwrap()
            .contains("Paged the DBA."),
        "{created}"
    );
    let number = created["number"].as_str().unwrap().to_owned();
    let sys_id = created["sys_id"].as_str().unwrap().to_owned();

    // get: GET with the number as the query.
    fake.clear_received();
    let got = structured(&call(&c, "get_incident", json!({"number": number.to_lowercase()})).await);
    let received = fake.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].method, Method::GET);
    assert_eq!(received[0].path, TABLE);
    assert_eq!(
        received[0].query["sysparm_query"],
        format!("number={number}")
    );
    assert_eq!(received[0].query["sysparm_limit"], "1");
    assert_eq!(got, created);

    // search: filters, then the text over the same fields as the embedded store, newest first.
    fake.clear_received();
    let found = structured(
        &call(
            &c,
            "search_incident",
            json!({"query": "disk", "state": "New", "priority": "High", "limit": 7}),
        )
        .await,
    );
    let received = fake.received();
    assert_eq!(
        received[0].query["sysparm_query"],
        "state=1^priority=2^numberLIKEdisk^ORshort_descriptionLIKEdisk^ORdescriptionLIKEdisk\
         ^ORwork_notesLIKEdisk^ORclose_notesLIKEdisk^ORDERBYDESCopened_at^ORDERBYDESCnumber"
    );
    assert_eq!(received[0].query["sysparm_limit"], "7");
    assert_eq!(found["count"], 1, "{found}");
    assert_eq!(found["incidents"][0]["number"], number.as_str());
    let newest_first = structured(&call(&c, "search_incident", json!({"limit": 3})).await);
    assert_eq!(newest_first["incidents"][0]["number"], number.as_str());
    assert_eq!(newest_first["incidents"][1]["number"], "INC0012346");

    // update: the number's record is read, then PATCHed by sys_id with only what changes.
    fake.clear_received();
    let resolved = structured(
        &call(
            &c,
            "update_incident",
            json!({
                "number": number,
                "state": "Resolved",
                "close_notes": "Purged old logs",
                "work_notes": "Done.",
            }),
        )
        .await,
    );
    let received = fake.received();
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[0].method, Method::GET);
    let patch = &received[1];
    assert_eq!(patch.method, Method::PATCH);
    assert_eq!(patch.path, format!("{TABLE}/{sys_id}"));
    assert_eq!(patch.query["sysparm_input_display_value"], "true");
    assert_eq!(
        patch.json(),
        json!({
            "state": "6",
            "close_notes": "Purged old logs",
            "close_code": "Solved (Permanently)",
            "work_notes": "Done.",
        })
    );
    assert_eq!(resolved["state"], "Resolved");
    assert_eq!(resolved["close_code"], "Solved (Permanently)");
    assert_ne!(resolved["resolved_at"], "");
    let notes = resolved["work_notes"].as_str().unwrap();
    assert!(
        notes.contains("Done.") && notes.contains("Paged the DBA."),
        "{notes}"
    );

    // A rule broken before any request: nothing is sent.
    fake.clear_received();
    let err = c
        .call_tool(
            CallToolRequestParams::new("create_incident")
                .with_arguments(args(json!({"short_description": "  "}))),
        )
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("short_description"), "{err:?}");
    assert!(fake.received().is_empty());
    c.cancel().await.unwrap();
    gw.stop().await;
}

// === OAuth tokens ===

#[tokio::test]
async fn the_oauth_token_is_fetched_with_the_client_credentials_and_reused() {
    let fake = FakeServiceNow::start(oauth()).await;
    let gw = gateway(&fake, &oauth()).await;
    let c = client(&gw).await;

    for _ in 0..3 {
        structured(&call(&c, "get_incident", json!({"number": "INC0012346"})).await);
    }

    assert_eq!(fake.token_requests(), 1);
    let received = fake.received();
    let token = &received[0];
    assert_eq!((&token.method, token.path.as_str()), (&Method::POST, TOKEN));
    assert_eq!(
        token.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert!(token.query.is_empty(), "credentials never go in the URL");
    assert!(
        token.body.contains("grant_type=client_credentials")
            && token.body.contains(&format!("client_id={CLIENT_ID}")),
        "{}",
        token.body
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_token_about_to_expire_is_replaced_before_it_is_used() {
    let fake = FakeServiceNow::start(oauth()).await;
    // Tokens that expire at once: each one is due for replacement by the next call.
    fake.set_token_lifetime(0);
    let gw = gateway(&fake, &oauth()).await;
    let c = client(&gw).await;

    for _ in 0..3 {
        structured(&call(&c, "get_incident", json!({"number": "INC0012346"})).await);
    }

    assert_eq!(fake.token_requests(), 3, "a new token for each call");
    assert_eq!(
        fake.count(Method::GET, TABLE),
        3,
        "no request was refused for an expired token"
    );
    let tokens: std::collections::HashSet<_> = fake
        .received()
        .into_iter()
        .filter(|r| r.path == TABLE)
        .map(|r| r.authorization.unwrap())
        .collect();
    assert_eq!(tokens.len(), 3);
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once_then_refusal_is_an_error() {
    let fake = FakeServiceNow::start(oauth()).await;
    let gw = gateway(&fake, &oauth()).await;
    let c = client(&gw).await;
    structured(&call(&c, "get_incident", json!({"number": "INC0012346"})).await);

    // The instance drops the token: 401, a new token, the same request again.
    fake.revoke_tokens();
    fake.clear_received();
    structured(&call(&c, "get_incident", json!({"number": "INC0012346"})).await);
    let received = fake.received();
    let steps: Vec<_> = received
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        steps,
        [("GET", TABLE), ("POST", TOKEN), ("GET", TABLE)],
        "{received:?}"
    );
    assert_ne!(received[0].authorization, received[2].authorization);

    // The secret is rotated on the instance: after one renewal attempt, a clear error.
    fake.revoke_tokens();
    fake.change_client_secret("rotated-secret");
    fake.clear_received();
    let refused = failure(&call(&c, "search_incident", json!({"query": "vpn"})).await);
    assert_eq!(
        refused,
        "ServiceNow refused the credentials (HTTP 401): check the OAuth client_id and \
         client_secret of the servicenow tool"
    );
    assert!(!refused.contains(CLIENT_SECRET));
    assert_eq!(
        fake.received().len(),
        2,
        "one table request, one token request"
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}

// === Errors ===

#[tokio::test]
async fn refused_credentials_are_a_tool_error_that_never_shows_them() {
    const WRONG: &str = "Wr0ng-pa55word-typed";
    let fake = FakeServiceNow::start(basic()).await;
    let mut vars = vars_named(&fake, &basic(), FIXTURE_VARS);
    vars.insert("SN_PASSWORD".into(), WRONG.into());
    let gw = gateway_with(fixture("agents/table-api"), vars).await;
    let c = client(&gw).await;

    let calls = [
        ("create_incident", json!({"short_description": "x"})),
        ("get_incident", json!({"number": "INC0012346"})),
        (
            "update_incident",
            json!({"number": "INC0012346", "work_notes": "x"}),
        ),
        ("search_incident", json!({})),
    ];
    for (tool, arguments) in calls {
        let text = failure(&call(&c, tool, arguments).await);
        assert_eq!(
            text,
            "ServiceNow refused the credentials (HTTP 401): check the username and password of \
             the servicenow tool",
            "{tool}"
        );
        assert!(!text.contains(WRONG) && !text.contains(USERNAME), "{text}");
    }
    // A refusal is not retried (and the update stopped at its lookup).
    assert_eq!(fake.received().len(), 4);

    // A wrong OAuth secret is refused by the token endpoint, with the same clarity.
    let fake = FakeServiceNow::start(oauth()).await;
    let mut vars = vars_named(&fake, &oauth(), FIXTURE_VARS);
    vars.insert("SN_CLIENT_SECRET".into(), WRONG.into());
    let gw2 = gateway_with(fixture("agents/table-api"), vars).await;
    let c2 = client(&gw2).await;
    let text = failure(&call(&c2, "get_incident", json!({"number": "INC0012346"})).await);
    assert_eq!(
        text,
        "ServiceNow refused the credentials (HTTP 401): check the OAuth client_id and \
         client_secret of the servicenow tool"
    );
    assert_eq!(
        fake.count(Method::GET, TABLE),
        0,
        "no table request without a token"
    );
    c.cancel().await.unwrap();
    c2.cancel().await.unwrap();
    gw.stop().await;
    gw2.stop().await;
}

#[tokio::test]
async fn each_failure_of_the_instance_becomes_a_tool_error_that_says_what_happened() {
    let fake = FakeServiceNow::start(basic()).await;
    let gw = gateway(&fake, &basic()).await;
    let c = client(&gw).await;
    let get = || json!({"number": "INC0012346"});
    // (case, fault injected, tool, arguments, how the error starts)
    type Case = (
        &'static str,
        Option<(Method, Fault)>,
        &'static str,
        Value,
        &'static str,
    );
    let cases: [Case; 8] = [
        (
            "403",
            Some((Method::GET, Fault::Status(403))),
            "get_incident",
            get(),
            "ServiceNow refused the credentials for this operation (HTTP 403 Forbidden): the \
             account behind the username and password lacks the roles or ACLs for the incident \
             table (e.g. itil)",
        ),
        (
            "unknown number",
            None,
            "get_incident",
            json!({"number": "INC0999999"}),
            "incident INC0999999 not found",
        ),
        (
            "unknown number on update",
            None,
            "update_incident",
            json!({"number": "INC0999999", "state": "On Hold"}),
            "incident INC0999999 not found",
        ),
        (
            "404 on the lookup",
            Some((Method::GET, Fault::Status(404))),
            "get_incident",
            get(),
            "incident INC0012346 not found",
        ),
        (
            "404 on the update (deleted meanwhile)",
            Some((Method::PATCH, Fault::Status(404))),
            "update_incident",
            json!({"number": "INC0012346", "state": "On Hold"}),
            "incident INC0012346 not found",
        ),
        (
            "404 on a search",
            Some((Method::GET, Fault::Status(404))),
            "search_incident",
            json!({}),
            "ServiceNow answered 404 Not Found: Injected failure (The test asked for it)",
        ),
        (
            "400 (a data policy)",
            Some((Method::POST, Fault::Status(400))),
            "create_incident",
            json!({"short_description": "x"}),
            "ServiceNow rejected the request (HTTP 400): Injected failure (The test asked for it)",
        ),
        (
            "not JSON",
            Some((Method::GET, Fault::NotJson)),
            "get_incident",
            get(),
            "the ServiceNow instance sent an answer that is not a Table API response: HTTP 200 \
             with 46 bytes of text/html that are not JSON",
        ),
    ];

    for (case, fault, tool, arguments, expected) in cases {
        if let Some((method, fault)) = fault {
            fake.fault(Some(method), fault);
        }
        let text = failure(&call(&c, tool, arguments).await);
        assert!(text.starts_with(expected), "case {case}: {text}");
        assert!(!text.contains(PASSWORD), "case {case}: {text}");
    }
    // The session and the instance are fine afterwards.
    let vpn = structured(&call(&c, "get_incident", get()).await);
    assert_eq!(
        vpn["state"], "In Progress",
        "the failed update changed nothing"
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_once_as_retry_after_asks() {
    let fake = FakeServiceNow::start(basic()).await;
    let gw = gateway(&fake, &basic()).await;
    let c = client(&gw).await;

    // Once: wait, send again, and the create succeeds (a 429 was not processed: no duplicate).
    fake.fault(Some(Method::POST), Fault::RateLimited(Some("1")));
    let started = Instant::now();
    let created = structured(&call(&c, "create_incident", json!({"short_description": "x"})).await);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(fake.count(Method::POST, TABLE), 2);
    let listed =
        structured(&call(&c, "search_incident", json!({"query": "x", "limit": 100})).await);
    let same: Vec<_> = listed["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["short_description"] == "x")
        .collect();
    assert_eq!(same.len(), 1, "{listed}");
    assert_eq!(same[0]["number"], created["number"]);

    // Twice in a row: one retry, then a clear error.
    fake.clear_received();
    fake.fault(Some(Method::GET), Fault::RateLimited(Some("0")));
    fake.fault(Some(Method::GET), Fault::RateLimited(Some("0")));
    let text = failure(&call(&c, "get_incident", json!({"number": "INC0012346"})).await);
    assert_eq!(
        text,
        "ServiceNow is rate limiting this account (HTTP 429), still after waiting 0 s as its \
         Retry-After asked: try again later"
    );
    assert_eq!(fake.count(Method::GET, TABLE), 2);

    // A wait longer than the timeout is not made.
    fake.clear_received();
    fake.fault(Some(Method::GET), Fault::RateLimited(Some("3600")));
    let started = Instant::now();
    let text = failure(&call(&c, "search_incident", json!({})).await);
    assert!(
        text.contains("asks to wait 3600 s, longer than timeout_secs"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(fake.count(Method::GET, TABLE), 1);
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_create_or_update_that_fails_or_times_out_is_never_sent_twice() {
    let fake = FakeServiceNow::start(basic()).await;
    let gw = gateway(&fake, &basic()).await;
    let c = client(&gw).await;
    let create = || json!({"short_description": "Sent once"});
    let update = || json!({"number": "INC0012346", "work_notes": "Noted once"});

    fake.fault(Some(Method::POST), Fault::Status(500));
    let text = failure(&call(&c, "create_incident", create()).await);
    assert!(
        text.starts_with("the ServiceNow instance failed (HTTP 500): Injected failure"),
        "{text}"
    );
    assert_eq!(fake.count(Method::POST, TABLE), 1);

    fake.clear_received();
    fake.fault(Some(Method::POST), Fault::Slow(Duration::from_secs(6)));
    let started = Instant::now();
    let text = failure(&call(&c, "create_incident", create()).await);
    assert_eq!(
        text,
        "the ServiceNow instance did not answer within 2 s (timeout_secs); the change may \
         still have been made: look the incident up before repeating it"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the timeout cut it short"
    );
    assert_eq!(fake.count(Method::POST, TABLE), 1);

    fake.clear_received();
    fake.fault(Some(Method::PATCH), Fault::Status(503));
    let text = failure(&call(&c, "update_incident", update()).await);
    assert!(
        text.starts_with("the ServiceNow instance failed (HTTP 503)"),
        "{text}"
    );
    assert_eq!(fake.count(Method::PATCH, TABLE), 1);

    fake.clear_received();
    fake.fault(Some(Method::PATCH), Fault::Slow(Duration::from_secs(6)));
    let text = failure(&call(&c, "update_incident", update()).await);
    assert!(text.contains("did not answer within 2 s"), "{text}");
    assert_eq!(fake.count(Method::PATCH, TABLE), 1);
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_read_that_fails_or_times_out_is_retried_once() {
    let fake = FakeServiceNow::start(basic()).await;
    let gw = gateway(&fake, &basic()).await;
    let c = client(&gw).await;
    let get = || json!({"number": "INC0012346"});

    fake.fault(Some(Method::GET), Fault::Status(503));
    structured(&call(&c, "get_incident", get()).await);
    assert_eq!(fake.count(Method::GET, TABLE), 2);

    fake.clear_received();
    fake.fault(Some(Method::GET), Fault::Status(500));
    fake.fault(Some(Method::GET), Fault::Status(502));
    let text = failure(&call(&c, "search_incident", json!({"query": "vpn"})).await);
    assert!(
        text.starts_with("the ServiceNow instance failed (HTTP 502)"),
        "{text}"
    );
    assert_eq!(fake.count(Method::GET, TABLE), 2, "one retry, not more");

    fake.clear_received();
    fake.fault(Some(Method::GET), Fault::Slow(Duration::from_secs(6)));
    let found = structured(&call(&c, "search_incident", json!({"query": "vpn"})).await);
    assert_eq!(found["count"], 1);
    assert_eq!(fake.count(Method::GET, TABLE), 2);

    fake.clear_received();
    fake.fault(Some(Method::GET), Fault::Slow(Duration::from_secs(6)));
    fake.fault(Some(Method::GET), Fault::Slow(Duration::from_secs(6)));
    let text = failure(&call(&c, "get_incident", get()).await);
    assert_eq!(
        text,
        "the ServiceNow instance did not answer within 2 s (timeout_secs)"
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}

// === The shipped agent ===

fn shipped_agents() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("agents")
}

#[tokio::test]
async fn the_shipped_live_agent_says_what_to_set_until_its_variables_are_set() {
    let gw = gateway_with(shipped_agents(), Vars::new()).await;
    let live = rmcp_client(&gw.url("/agents/servicenow-live/mcp")).await;
    let embedded = rmcp_client(&gw.url("/agents/servicenow/mcp")).await;

    let text = failure(&call(&live, "get_incident", json!({"number": "INC0012346"})).await);
    let vpn = structured(&call(&embedded, "get_incident", json!({"number": "INC0012346"})).await);

    assert_eq!(
        text,
        "ServiceNow is not configured: set SERVICENOW_INSTANCE_URL (the instance's address, \
         e.g. https://dev12345.service-now.com), and SERVICENOW_USERNAME and \
         SERVICENOW_PASSWORD (basic auth), or SERVICENOW_CLIENT_ID and \
         SERVICENOW_CLIENT_SECRET (OAuth client credentials)"
    );
    assert_eq!(
        vpn["short_description"], "VPN not working",
        "the embedded agent works"
    );
    live.cancel().await.unwrap();
    embedded.cancel().await.unwrap();
    gw.stop().await;

    // Half configured: it names what is still missing.
    let mut vars = Vars::new();
    vars.insert(
        "SERVICENOW_INSTANCE_URL".into(),
        "https://dev1.service-now.com".into(),
    );
    vars.insert("SERVICENOW_USERNAME".into(), "admin".into());
    let gw = gateway_with(shipped_agents(), vars).await;
    let live = rmcp_client(&gw.url("/agents/servicenow-live/mcp")).await;
    let text = failure(&call(&live, "search_incident", json!({})).await);
    assert_eq!(
        text,
        "ServiceNow is not configured: set SERVICENOW_PASSWORD"
    );
    live.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn the_shipped_live_agent_goes_live_with_either_kind_of_credentials() {
    for auth in [basic(), oauth()] {
        let fake = FakeServiceNow::start(auth.clone()).await;
        let gw = gateway_with(shipped_agents(), vars_named(&fake, &auth, SHIPPED_VARS)).await;

        scenarios::every_tool_over_streamable_http(
            &gw.url("/agents/servicenow-live/mcp"),
            "servicenow-live",
        )
        .await;
        scenarios::every_tool_over_legacy_sse(
            &gw.url("/agents/servicenow-live/sse"),
            "servicenow-live",
        )
        .await;

        assert!(fake.count(Method::POST, TABLE) >= 2, "{auth:?}");
        gw.stop().await;
    }
}

// === Logs ===

#[tokio::test]
async fn a_refused_password_never_reaches_the_logs_even_at_trace_level() {
    const WRONG: &str = "Wr0ng-pa55word-in-the-env";
    let fake = FakeServiceNow::start(basic()).await;
    let tmp = tempfile::tempdir().unwrap();
    let gateway = spawn_binary(
        serve_command()
            .arg("--agents")
            .arg(fixture("agents/table-api"))
            .arg("--data")
            .arg(tmp.path().join("data"))
            .env("RUST_LOG", "trace")
            .env("SN_URL", &fake.url)
            .env("SN_USERNAME", USERNAME)
            .env("SN_PASSWORD", WRONG),
    );
    let addr = gateway.addr.clone();

    let c = rmcp_client(&format!("http://{addr}/agents/servicenow/mcp")).await;
    let text = failure(&call(&c, "get_incident", json!({"number": "INC0012346"})).await);
    let _ = c.cancel().await;
    let logs = gateway.kill_and_logs();

    assert!(text.contains("refused the credentials"), "{text}");
    assert!(
        logs.contains("ServiceNow call failed."),
        "the refusal is logged: {logs}"
    );
    // The password, and the basic auth header it is sent in.
    let header = fake.received()[0].authorization.clone().unwrap();
    let encoded = header.strip_prefix("Basic ").unwrap();
    for secret in [WRONG, encoded] {
        assert!(
            !logs.contains(secret),
            "a credential reached the logs: {secret}"
        );
        assert!(!text.contains(secret));
    }
}

#[tokio::test]
async fn writes_record_who_asked_in_the_work_notes_on_the_instance() {
    let fake = FakeServiceNow::start(basic()).await;
    let gw = TestGateway::spawn_with(Options {
        agents_dir: fixture("agents/table-api"),
        vars: vars_named(&fake, &basic(), FIXTURE_VARS),
        settings: crate::support::helpers::settings_with_clients(
            "[[clients]]\nname = \"helpdesk-app\"\ntoken = \"t-help\"\nagents = [\"*\"]\n",
            &[],
        ),
        ..Options::default()
    })
    .await;
    let c = crate::support::helpers::rmcp_client_with(
        &gw.url("/agents/servicenow/mcp"),
        Some("t-help"),
    )
    .await;
    let created = structured(
        &call(
            &c,
            "create_incident",
            json!({"short_description": "Disk full", "work_notes": "Paged the DBA."}),
        )
        .await,
    );
    let number = created["number"].as_str().unwrap().to_owned();
    call(
        &c,
        "update_incident",
        json!({"number": number, "urgency": 1}),
    )
    .await;
    let sent: Vec<Value> = fake
        .received()
        .iter()
        .filter(|r| r.method == Method::POST || r.method == Method::PATCH)
        .map(|r| r.json()["work_notes"].clone())
        .collect();
    assert_eq!(
        sent,
        [
            json!("Paged the DBA.\n\n(via Switchboard for client helpdesk-app)"),
            json!("Updated via Switchboard for client helpdesk-app"),
        ]
    );
    let _ = c.cancel().await;
    gw.stop().await;
}
