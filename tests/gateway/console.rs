//! The admin console (`/ui`) in a real browser against the real gateway: agents and their
//! URLs, live sessions of both transports appearing and ended from the page, a broken agent
//! file's error, the admin token prompt. Screenshots of each view go to
//! `target/console-screenshots/`.

use std::time::Duration;

use rmcp::model::CallToolRequestParams;
use serde_json::json;

use crate::support::browser::{Browser, PAGE_DEADLINE};
use crate::support::helpers::{
    Options, SseClient, TestGateway, args, copy_valid_agents, http, rmcp_client,
};

fn session_row(id: &str) -> String {
    format!("tr[data-testid=\"session\"][data-session-id=\"{id}\"]")
}

async fn end_from_the_page(browser: &Browser, id: &str) {
    let row = session_row(id);
    browser
        .click(
            &format!("{row} [data-testid=\"end-session\"]"),
            "end button",
        )
        .await;
    browser
        .click(
            "dialog[data-testid=\"confirm\"][open] [data-testid=\"confirm-yes\"]",
            "confirm",
        )
        .await;
    browser.wait_gone(&row, "the ended session's row").await;
}

#[tokio::test]
async fn the_console_shows_agents_and_live_sessions_and_ends_them_in_two_clicks() {
    let gw = TestGateway::spawn().await;
    let browser = Browser::start().await;
    browser.open(&gw.url("/ui#/agents")).await;
    browser.wait_view("agents", "agents view").await;

    // Every agent with both of its full URLs.
    let (_, agents) = gw.get_json("/admin/agents").await;
    let names: Vec<String> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.len() >= 2, "{agents}");
    for name in &names {
        let card = format!("[data-testid=\"agent\"][data-agent=\"{name}\"]");
        browser.wait(&card, "agent card").await;
        for (kind, path) in [("sse", "sse"), ("mcp", "mcp")] {
            let text = browser
                .text(&format!("{card} [data-testid=\"url-{kind}\"]"))
                .await;
            assert_eq!(text.trim(), gw.url(&format!("/agents/{name}/{path}")));
        }
    }
    browser.screenshot("agents").await;

    // With no sessions, the page says how to connect.
    browser.route("#/sessions").await;
    let empty = browser.wait("[data-testid=\"empty\"]", "empty state").await;
    assert!(
        empty.text().await.unwrap().contains("/agents/"),
        "the empty state names a URL to connect to"
    );
    browser.screenshot("sessions-empty").await;

    // A client on each transport, each making a call.
    let streamable = rmcp_client(&gw.url("/agents/servicenow/mcp")).await;
    streamable
        .call_tool(
            CallToolRequestParams::new("search_incident")
                .with_arguments(args(json!({"query": "vpn"}))),
        )
        .await
        .unwrap();
    let mut sse = SseClient::connect(&gw.url("/agents/servicenow/sse")).await;
    sse.initialize().await;
    sse.call_tool(1, "get_incident", json!({"number": "INC0012346"}))
        .await;
    let streamable_id = gw
        .state
        .sessions()
        .list()
        .into_iter()
        .find(|s| s.transport.as_str() == "streamable_http")
        .map(|s| s.id.to_string())
        .expect("the rmcp session is registered");

    // Both appear without touching the page (it refreshes by itself): within one refresh
    // period of the sessions view, read from the page's own settings, plus the time the
    // page may take to show anything on a loaded machine.
    let refresh = sessions_refresh();
    for id in [&streamable_id, &sse.session_id] {
        browser
            .wait_js(
                &format!("document.querySelector({})", json!(session_row(id))),
                refresh + PAGE_DEADLINE,
                "a new session appears in the table",
            )
            .await;
    }
    let count = browser.text("[data-testid=\"session-count\"]").await;
    assert!(count.trim().starts_with('2'), "count: {count:?}");
    browser.screenshot("sessions").await;

    // The detail view shows the session's recent calls.
    browser
        .route(&format!("#/sessions/{}", sse.session_id))
        .await;
    browser.wait_view("session", "session view").await;
    browser
        .wait_js(
            "document.body.innerText.includes('get_incident')",
            Duration::from_secs(5),
            "the session's recent call",
        )
        .await;
    browser.screenshot("session-detail").await;

    // End the Streamable HTTP session from the page: its client's next request gets 404.
    browser.route("#/sessions").await;
    browser
        .wait(&session_row(&streamable_id), "streamable row")
        .await;
    end_from_the_page(&browser, &streamable_id).await;
    assert!(gw.state.sessions().get(&streamable_id).is_none());
    let again = http()
        .post(gw.url("/agents/servicenow/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &streamable_id)
        .body(r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    drop(streamable);

    // End the legacy session: its stream ends and its endpoint gets 404.
    end_from_the_page(&browser, &sse.session_id).await;
    sse.closed().await;
    let post = sse
        .post_raw(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .await;
    assert_eq!(post.status(), 404);
    browser
        .wait("[data-testid=\"empty\"]", "empty state again")
        .await;

    // Clients (open access: the loopback peer) and traffic (the two calls).
    browser.route("#/clients").await;
    browser.wait_view("clients", "clients view").await;
    browser
        .wait(
            "tr[data-testid=\"client\"][data-client=\"127.0.0.1\"]",
            "the loopback peer",
        )
        .await;
    browser.screenshot("clients").await;
    browser.route("#/traffic").await;
    browser
        .wait(
            "svg[data-testid=\"chart\"][data-chart=\"calls\"][data-agent=\"servicenow\"]",
            "calls chart",
        )
        .await;
    browser.screenshot("traffic").await;

    // A phone's width.
    browser.resize(390, 844).await;
    browser.route("#/agents").await;
    browser.wait_view("agents", "agents view").await;
    browser.screenshot("agents-phone").await;

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.close().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_workflows_card_shows_its_kind_and_its_steps_in_order() {
    // The shipped agents: `incident-review` is a sequential workflow of two steps.
    let gw = TestGateway::spawn_with(Options {
        agents_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("agents"),
        ..Options::default()
    })
    .await;
    let browser = Browser::start().await;
    browser.open(&gw.url("/ui#/agents")).await;
    browser.wait_view("agents", "agents view").await;
    let card = "[data-testid=\"agent\"][data-agent=\"incident-review\"]";
    browser
        .wait(
            &format!("{card} [data-testid=\"workflow\"][data-kind=\"sequential\"]"),
            "the workflow row",
        )
        .await;
    // The steps in order, with an arrow between them (each runs on the last one's output).
    let row = format!("{card} [data-testid=\"workflow\"]");
    browser
        .wait_js(
            &format!(
                "[...document.querySelector({}).children].map((e) => e.textContent).join(' ') === {}",
                serde_json::to_string(&row).unwrap(),
                serde_json::to_string("sequential records \u{2192} review").unwrap()
            ),
            PAGE_DEADLINE,
            "the steps in order",
        )
        .await;
    let first = browser
        .wait(
            &format!("{card} [data-testid=\"workflow-step\"][data-step=\"records\"]"),
            "the first step",
        )
        .await;
    assert_eq!(
        first.attr("title").await.unwrap().as_deref(),
        Some("runs agent servicenow")
    );
    // An agent with a model has no workflow row.
    let servicenow = "[data-testid=\"agent\"][data-agent=\"servicenow\"]";
    browser.wait(servicenow, "servicenow's card").await;
    browser
        .wait_gone(
            &format!("{servicenow} [data-testid=\"workflow\"]"),
            "no workflow row on an agent with a model",
        )
        .await;
    assert!(browser.console_errors().await.is_empty());
    browser.screenshot("agents-workflow").await;
    browser.close().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_broken_agent_file_shows_its_error_after_a_reload_from_the_page() {
    let dir = tempfile::tempdir().unwrap();
    copy_valid_agents(dir.path());
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir.path().to_owned(),
        ..Options::default()
    })
    .await;
    let browser = Browser::start().await;
    browser.open(&gw.url("/ui#/agents")).await;
    browser.wait_view("agents", "agents view").await;
    assert!(
        browser
            .client
            .find_all(fantoccini::Locator::Css("[data-testid=\"load-error\"]"))
            .await
            .unwrap()
            .is_empty(),
        "no errors before the file breaks"
    );

    std::fs::write(
        dir.path().join("broken.toml"),
        "description = \"half done\"\nbogus_key = 1\n",
    )
    .unwrap();
    browser
        .click("[data-testid=\"reload\"]", "reload button")
        .await;
    let result = browser
        .wait("[data-testid=\"reload-result\"]", "reload result")
        .await;
    browser
        .wait_js(
            "document.querySelector('[data-testid=\"reload-result\"]').innerText.includes('bogus_key')",
            Duration::from_secs(5),
            "the reload result names the broken key",
        )
        .await;
    drop(result);
    let file_error = browser
        .wait("[data-testid=\"file-error\"]", "the broken file's error")
        .await;
    let text = file_error.text().await.unwrap();
    assert!(
        text.contains("broken.toml") && text.contains("bogus_key"),
        "file error: {text:?}"
    );
    browser.screenshot("agents-load-error").await;
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.close().await;
    gw.stop().await;
}

#[tokio::test]
async fn with_an_admin_token_the_page_asks_for_it_and_refuses_a_wrong_one() {
    let mut opts = Options::default();
    opts.settings.admin_token = Some("console-s3cret".to_owned().into());
    let gw = TestGateway::spawn_with(opts).await;
    let browser = Browser::start().await;
    browser.open(&gw.url("/ui#/agents")).await;
    browser
        .wait(
            "dialog[data-testid=\"token-dialog\"][open]",
            "the token prompt",
        )
        .await;
    browser.screenshot("token-prompt").await;

    let input = browser
        .wait("[data-testid=\"token-input\"]", "token input")
        .await;
    input.send_keys("not-the-token").await.unwrap();
    browser
        .click("[data-testid=\"token-submit\"]", "token submit")
        .await;
    browser
        .wait_js(
            "document.querySelector('[data-testid=\"token-error\"]').innerText.trim().length > 0",
            Duration::from_secs(5),
            "the wrong token is refused",
        )
        .await;
    let refusal = browser.text("[data-testid=\"token-error\"]").await;
    assert!(refusal.to_lowercase().contains("refused"), "{refusal:?}");

    let input = browser
        .wait("[data-testid=\"token-input\"]", "token input")
        .await;
    input.clear().await.unwrap();
    input.send_keys("console-s3cret").await.unwrap();
    browser
        .click("[data-testid=\"token-submit\"]", "token submit")
        .await;
    browser
        .wait_view("agents", "agents view after the right token")
        .await;
    browser
        .wait(
            "[data-testid=\"agent\"][data-agent=\"servicenow\"]",
            "an agent",
        )
        .await;
    // 401s on the way are expected in the log; nothing else.
    let errors: Vec<String> = browser
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !e.contains("401"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.close().await;
    gw.stop().await;
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy_to_get_only() {
    let gw = TestGateway::spawn().await;
    let resp = http().get(gw.url("/ui")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(resp.text().await.unwrap().contains("/ui/app.js"));
    for asset in ["/ui/app.js", "/ui/app.css"] {
        let resp = http().get(gw.url(asset)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{asset}");
    }
    // Only GET (and HEAD) serve it.
    let delete = http().delete(gw.url("/ui")).send().await.unwrap();
    assert_eq!(delete.status(), 405);
    assert_eq!(delete.headers()["allow"], "GET");
    gw.stop().await;
}

#[tokio::test]
async fn the_assets_are_gzipped_for_who_accepts_it_and_plain_for_others() {
    use std::io::Read;
    let gw = TestGateway::spawn().await;
    let assets = [
        ("/ui", include_str!("../../src/console/index.html")),
        ("/ui/app.js", include_str!("../../src/console/app.js")),
        ("/ui/app.css", include_str!("../../src/console/app.css")),
    ];
    let mut wire = 0;
    for (path, source) in assets {
        let resp = http()
            .get(gw.url(path))
            .header("accept-encoding", "br, gzip;q=0.8")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["content-encoding"], "gzip", "{path}");
        assert_eq!(resp.headers()["vary"], "accept-encoding", "{path}");
        let gzipped = resp.bytes().await.unwrap();
        wire += gzipped.len();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gzipped[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, source, "{path} decompresses to the embedded asset");
        // Twice the same bytes (compressed once); plain when gzip is not accepted.
        let again = http()
            .get(gw.url(path))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(again.bytes().await.unwrap(), gzipped, "{path}");
        for refusing in [None, Some("identity"), Some("gzip;q=0")] {
            let mut req = http().get(gw.url(path));
            if let Some(value) = refusing {
                req = req.header("accept-encoding", value);
            }
            let resp = req.send().await.unwrap();
            assert!(
                resp.headers().get("content-encoding").is_none(),
                "{path} {refusing:?}"
            );
            assert_eq!(resp.text().await.unwrap(), source, "{path} {refusing:?}");
        }
    }
    // The README's budget: under 40 KiB over the wire, about a quarter of the plain size.
    let plain: usize = assets.iter().map(|(_, s)| s.len()).sum();
    assert!(wire < 40 * 1024 && wire * 3 < plain, "{wire} of {plain}");
    gw.stop().await;
}

/// The sessions view's refresh period, as `src/console/app.js` sets it
/// (`REFRESH_MS = { ..., sessions: 2000, ... }`).
fn sessions_refresh() -> Duration {
    let js = include_str!("../../src/console/app.js");
    let ms = js
        .lines()
        .find(|l| l.contains("const REFRESH_MS"))
        .and_then(|l| l.split("sessions:").nth(1))
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("app.js sets REFRESH_MS.sessions");
    Duration::from_millis(ms)
}

#[tokio::test]
async fn the_clients_view_shows_the_rules_and_what_a_client_may_call() {
    use crate::support::policies::{CLIENTS, READ_ONLY, gateway};
    let (gw, file, _tmp) = gateway(&format!("{CLIENTS}{READ_ONLY}"), false).await;
    let browser = Browser::start().await;
    browser.open(&gw.url("/ui#/clients")).await;
    browser.wait_view("clients", "clients view").await;
    for key in ["policies[0]", "policies[1]", "policies[2]"] {
        browser
            .wait(
                &format!(
                    "[data-testid=\"policies\"] tr[data-testid=\"policy\"][data-policy=\"{key}\"]"
                ),
                "a rule of the Policies panel",
            )
            .await;
    }
    let panel = browser.text("[data-testid=\"policies\"]").await;
    assert!(
        panel.contains("helpdesk-reads") && panel.contains("*/update_*"),
        "{panel}"
    );
    browser.screenshot("clients-policies").await;

    // A client's detail: the rules about it and the tools it may call.
    browser
        .click(
            "tr[data-testid=\"client\"][data-client=\"reporter\"] a",
            "the client's name",
        )
        .await;
    browser.wait_view("client", "client view").await;
    let tool = |t: &str, allowed: bool| {
        format!(
            "[data-testid=\"client-tool\"][data-agent=\"servicenow\"][data-tool=\"{t}\"][data-allowed=\"{allowed}\"]"
        )
    };
    browser
        .wait(&tool("get_incident", true), "an allowed tool")
        .await;
    browser
        .wait(&tool("update_incident", false), "a denied tool")
        .await;
    let rules = browser
        .text("tr[data-testid=\"policy\"][data-policy=\"policies[2]\"]")
        .await;
    assert!(rules.contains("no-updates"), "{rules}");
    browser.screenshot("client-detail").await;

    // A broken file keeps the rules, and the panel says why.
    std::fs::write(
        &file,
        format!("{CLIENTS}[[policies]]\neffect = \"allow\"\n"),
    )
    .unwrap();
    let (_, r) = gw.post_json("/admin/reload").await;
    assert!(!r["errors"].as_array().unwrap().is_empty(), "{r}");
    browser.route("#/clients").await;
    let errors = browser
        .wait("[data-testid=\"policies-errors\"]", "the file's errors")
        .await;
    let text = errors.text().await.unwrap();
    assert!(text.contains("switchboard.toml: policies[0]"), "{text}");
    browser
        .wait(
            "tr[data-testid=\"policy\"][data-policy=\"policies[2]\"]",
            "the rules in force, still shown",
        )
        .await;
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.close().await;
    gw.stop().await;
}
