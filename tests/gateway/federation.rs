//! Federated servers (`[[servers]]` with `expose = ["servers"]`): the official reference
//! server (server-everything) as a stdio upstream and as a Streamable HTTP upstream, and an
//! in-test rmcp upstream, behind an agent, driven with the rmcp client. Every answer is
//! compared with the reference server's own answer to a direct client (the same person
//! behind both): tools, content of every kind, prompts, resources, templates, completions,
//! progress, logging, sampling, elicitation, resource updates and list_changed. Then what
//! the client cannot do, cancellation, an upstream that dies or hangs, and the gateway's
//! own rules (policies, metrics, sessions, audit) on federated calls. The same round trips
//! run over Streamable HTTP, the legacy HTTP+SSE transport and `switchboard stdio`.

// Sampling and logging are deprecated by SEP-2577 but are what these upstreams speak.
#![allow(deprecated)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use rmcp::model::{
    ArgumentInfo, CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest,
    CompleteRequestParams, GetPromptRequestParams, LoggingLevel, ReadResourceRequestParams,
    Reference, ServerResult, SetLevelRequestParams, SubscribeRequestParams,
};
use rmcp::service::PeerRequestOptions;
use serde_json::{Value, json};

use crate::support::federation::{
    EverythingHttp, PATIENCE, Person, PersonClient, TestUpstream, connect, connect_directly,
    every_kind, wait_until,
};
use crate::support::helpers::{
    Options, TestGateway, args, response_messages, streamable_initialize, streamable_post,
};
use crate::support::stdio_upstream::{everything, node, tiny};

/// A gateway serving agent `every` (`expose = ["servers"]`) with the `[[servers]]` text
/// `servers`, and `extra` agents; the folder kept as long as the gateway is used.
async fn gateway(servers: &str) -> (TestGateway, tempfile::TempDir) {
    gateway_with(servers, Options::default()).await
}

async fn gateway_with(servers: &str, options: Options) -> (TestGateway, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agents");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("every.toml"),
        format!("description = \"The reference server, federated.\"\nexpose = [\"servers\"]\n\n{servers}"),
    )
    .unwrap();
    let gw = TestGateway::spawn_with(Options {
        agents_dir: dir,
        ..options
    })
    .await;
    (gw, tmp)
}

/// A `[[servers]]` entry starting server-everything over stdio.
fn stdio_everything(prefix: &str, extra: &str) -> String {
    format!(
        "[[servers]]\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\nprefix = \"{prefix}\"\ntimeout_secs = 30\n{extra}\n",
        node().display().to_string(),
        everything().display().to_string(),
    )
}

/// A `[[servers]]` entry for an upstream at `url`.
fn url_server(url: &str, prefix: &str, extra: &str) -> String {
    format!("[[servers]]\nurl = \"{url}\"\nprefix = \"{prefix}\"\ntimeout_secs = 30\n{extra}\n")
}

async fn call(c: &PersonClient, tool: &str, arguments: Value) -> CallToolResult {
    c.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// `value` as JSON text with the reference server's clock readings ("created at 9:59:47
/// PM") taken out: its dynamic resources say when they were made.
fn timeless(value: &impl serde::Serialize) -> String {
    // A blob's base64 hides the clock reading: compare its decoded text.
    fn unblob(value: &mut serde_json::Value) {
        use base64::Engine as _;
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if key == "blob"
                        && let Some(text) = v
                            .as_str()
                            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    {
                        *v = serde_json::Value::String(String::from_utf8_lossy(&text).into());
                    } else {
                        unblob(v);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(unblob),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(value).unwrap();
    unblob(&mut value);
    let text = serde_json::to_string(&value).unwrap();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("created at ") {
        let (head, tail) = rest.split_at(at + "created at ".len());
        out.push_str(head);
        out.push('T');
        let end = tail.find(['"', '\\']).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Compares, feature by feature, what the client of the gateway gets with what the direct
/// client gets.
async fn same_as_directly(gateway: &PersonClient, direct: &PersonClient, prefix: &str) {
    // Tools: the same definitions, prefixed, in the same order.
    let mut expected = direct.list_all_tools().await.unwrap();
    for tool in &mut expected {
        tool.name = format!("{prefix}{}", tool.name).into();
    }
    let listed = gateway.list_all_tools().await.unwrap();
    assert_eq!(listed, expected);
    for name in ["trigger-elicitation-request", "trigger-sampling-request"] {
        assert!(
            listed.iter().any(|t| t.name == format!("{prefix}{name}")),
            "the upstream offers {name} to a client that can answer it"
        );
    }

    // Content of every kind the reference server makes: exactly as it made it.
    for (tool, arguments) in [
        ("echo", json!({"message": "hi"})),
        ("get-sum", json!({"a": 2, "b": 40})),
        ("get-tiny-image", json!({})),
        (
            "get-annotated-message",
            json!({"messageType": "success", "includeImage": true}),
        ),
        (
            "get-resource-reference",
            json!({"resourceType": "Text", "resourceId": 3}),
        ),
        (
            "get-resource-reference",
            json!({"resourceType": "Blob", "resourceId": 4}),
        ),
        ("get-resource-links", json!({"count": 4})),
        ("get-structured-content", json!({"location": "Chicago"})),
    ] {
        let through = call(gateway, &format!("{prefix}{tool}"), arguments.clone()).await;
        let directly = call(direct, tool, arguments).await;
        if tool == "get-resource-reference" && through != directly {
            // A blob's base64 hides the clock reading; its text has it.
            assert_eq!(through.content.len(), directly.content.len(), "{tool}");
            assert_eq!(timeless(&through), timeless(&directly), "{tool}");
        } else {
            assert_eq!(through, directly, "{tool}");
        }
    }
    let image = call(gateway, &format!("{prefix}get-tiny-image"), json!({})).await;
    assert!(
        image.content.iter().any(|c| c.as_image().is_some()),
        "{image:?}"
    );

    // Sampling and elicitation: the upstream's requests reach this client, its answers go
    // back, and the tool's result is what the direct client got for the same answers.
    let sampled = call(
        gateway,
        &format!("{prefix}trigger-sampling-request"),
        json!({"prompt": "Say hi", "maxTokens": 20}),
    )
    .await;
    let sampled_directly = call(
        direct,
        "trigger-sampling-request",
        json!({"prompt": "Say hi", "maxTokens": 20}),
    )
    .await;
    assert_eq!(sampled, sampled_directly);
    assert!(
        format!("{sampled:?}").contains("sampled answer to"),
        "{sampled:?}"
    );
    let elicited = call(
        gateway,
        &format!("{prefix}trigger-elicitation-request"),
        json!({}),
    )
    .await;
    let elicited_directly = call(direct, "trigger-elicitation-request", json!({})).await;
    assert_eq!(elicited, elicited_directly);
    assert!(
        format!("{elicited:?}").contains("Ada Lovelace"),
        "{elicited:?}"
    );

    // Prompts: listed prefixed; each got exactly.
    let mut expected = direct.list_all_prompts().await.unwrap();
    for prompt in &mut expected {
        prompt.name = format!("{prefix}{}", prompt.name);
    }
    assert_eq!(gateway.list_all_prompts().await.unwrap(), expected);
    for (name, arguments) in [
        ("simple-prompt", json!({})),
        ("args-prompt", json!({"city": "Paris", "state": "Texas"})),
        (
            "resource-prompt",
            json!({"resourceType": "Text", "resourceId": "2"}),
        ),
    ] {
        let params =
            |n: String| GetPromptRequestParams::new(n).with_arguments(args(arguments.clone()));
        let through = gateway
            .get_prompt(params(format!("{prefix}{name}")))
            .await
            .unwrap();
        let directly = direct.get_prompt(params(name.to_owned())).await.unwrap();
        assert_eq!(timeless(&through), timeless(&directly), "{name}");
    }

    // Completions of a prompt's argument.
    let complete = |name: String| {
        CompleteRequestParams::new(
            Reference::for_prompt(name),
            ArgumentInfo::new("department", "E"),
        )
    };
    let through = gateway
        .complete(complete(format!("{prefix}completable-prompt")))
        .await
        .unwrap();
    let directly = direct
        .complete(complete("completable-prompt".to_owned()))
        .await
        .unwrap();
    assert_eq!(through, directly);
    assert!(!through.completion.values.is_empty(), "{through:?}");

    // Resources and templates: listed unchanged; read exactly.
    let resources = gateway.list_all_resources().await.unwrap();
    assert_eq!(resources, direct.list_all_resources().await.unwrap());
    assert_eq!(
        gateway.list_all_resource_templates().await.unwrap(),
        direct.list_all_resource_templates().await.unwrap()
    );
    let first = &resources
        .first()
        .expect("the reference server lists resources")
        .uri;
    let read = |uri: &str| ReadResourceRequestParams::new(uri.to_owned());
    assert_eq!(
        gateway.read_resource(read(first)).await.unwrap(),
        direct.read_resource(read(first)).await.unwrap()
    );
    for uri in [
        "demo://resource/dynamic/text/5",
        "demo://resource/dynamic/blob/6",
    ] {
        let through = gateway.read_resource(read(uri)).await.unwrap();
        let directly = direct.read_resource(read(uri)).await.unwrap();
        assert_eq!(through.contents.len(), directly.contents.len(), "{uri}");
        if uri.contains("text") {
            assert_eq!(timeless(&through), timeless(&directly), "{uri}");
        }
    }
}

/// Progress of a long operation reaches the client under its own token, every step.
async fn progress_arrives(gateway: &PersonClient, person: &Person, prefix: &str) {
    let params = CallToolRequestParams::new(format!("{prefix}trigger-long-running-operation"))
        .with_arguments(args(json!({"duration": 0.3, "steps": 3})));
    let handle = gateway
        .send_request_with_option(
            ClientRequest::CallToolRequest(CallToolRequest::new(params)),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    match handle.await_response().await.unwrap() {
        ServerResult::CallToolResult(r) => assert_ne!(r.is_error, Some(true), "{r:?}"),
        other => panic!("not a tool result: {other:?}"),
    }
    person
        .wait_for("three progress notifications", |seen| {
            seen.progress
                .lock()
                .unwrap()
                .iter()
                .filter(|p| p.progress_token == token)
                .count()
                >= 3
        })
        .await;
    let steps: Vec<(f64, Option<f64>)> = person
        .seen
        .progress
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.progress_token == token)
        .map(|p| (p.progress, p.total))
        .collect();
    assert_eq!(
        steps,
        [(1.0, Some(3.0)), (2.0, Some(3.0)), (3.0, Some(3.0))]
    );
}

/// Log messages and resource updates of the upstream reach the client.
async fn notifications_arrive(gateway: &PersonClient, person: &Person, prefix: &str) {
    gateway
        .set_level(SetLevelRequestParams::new(LoggingLevel::Debug))
        .await
        .unwrap();
    call(
        gateway,
        &format!("{prefix}toggle-simulated-logging"),
        json!({}),
    )
    .await;
    person
        .wait_for("a log message", |seen| {
            !seen.logs.lock().unwrap().is_empty()
        })
        .await;
    let log = person.seen.logs.lock().unwrap()[0].clone();
    assert!(
        log.data.as_str().is_some_and(|d| d.contains("message")),
        "{log:?}"
    );
    call(
        gateway,
        &format!("{prefix}toggle-simulated-logging"),
        json!({}),
    )
    .await;

    let uri = "demo://resource/dynamic/text/1";
    #[allow(deprecated)]
    gateway
        .subscribe(SubscribeRequestParams::new(uri.to_owned()))
        .await
        .unwrap();
    call(
        gateway,
        &format!("{prefix}toggle-subscriber-updates"),
        json!({}),
    )
    .await;
    person
        .wait_for("a resource update", |seen| {
            seen.updated.lock().unwrap().iter().any(|u| u == uri)
        })
        .await;
    call(
        gateway,
        &format!("{prefix}toggle-subscriber-updates"),
        json!({}),
    )
    .await;
}

#[tokio::test]
async fn the_reference_server_over_stdio_answers_through_the_gateway_as_it_does_directly() {
    let (gw, _tmp) = gateway(&stdio_everything("ev_", "")).await;
    let person = Person::able();
    let through = connect(&gw.url("/agents/every/mcp"), &person).await;
    let direct = connect_directly(&Person::able()).await;

    same_as_directly(&through, &direct, "ev_").await;
    progress_arrives(&through, &person, "ev_").await;
    notifications_arrive(&through, &person, "ev_").await;

    // The upstream registered its client-dependent tools after the handshake and said so:
    // the list_changed reached the client.
    assert!(person.seen.tools_changed.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn the_reference_server_over_streamable_http_answers_through_the_gateway_as_it_does_directly()
{
    let upstream = EverythingHttp::start().await;
    let (gw, _tmp) = gateway(&url_server(&upstream.url, "", "")).await;
    let person = Person::able();
    let through = connect(&gw.url("/agents/every/mcp"), &person).await;
    let direct = connect_directly(&Person::able()).await;

    same_as_directly(&through, &direct, "").await;
    progress_arrives(&through, &person, "").await;
    notifications_arrive(&through, &person, "").await;
}

/// A burst of progress, one notification right after another, reaches the client in the order
/// the upstream sent it, every one. rmcp hands each notification the gateway receives to a task
/// of its own, so on a runtime with several workers (as the binary runs) they can be handled
/// in any order; the client's own order is read off the wire, where nothing reorders it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_upstream_progress_reaches_the_client_in_the_order_it_was_sent() {
    const BURST: u32 = 50;
    let (gw, _tmp) = gateway(&stdio_everything("ev_", "")).await;
    let url = gw.url("/agents/every/mcp");
    let http = reqwest::Client::new();
    let session = streamable_initialize(&http, &url).await;

    for round in 0..3 {
        let call = json!({"jsonrpc": "2.0", "id": 10 + round, "method": "tools/call", "params": {
            "name": "ev_trigger-long-running-operation",
            "arguments": {"duration": 0, "steps": BURST},
            "_meta": {"progressToken": format!("burst-{round}")},
        }});
        let messages =
            response_messages(streamable_post(&http, &url, Some(&session), call.to_string()).await)
                .await;
        let progress: Vec<f64> = messages
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .map(|m| {
                assert_eq!(
                    m["params"]["progressToken"],
                    format!("burst-{round}"),
                    "{m}"
                );
                m["params"]["progress"].as_f64().unwrap()
            })
            .collect();
        let expected: Vec<f64> = (1..=BURST).map(f64::from).collect();
        assert_eq!(
            progress, expected,
            "round {round}: progress in the order it was sent"
        );
        let answer = messages.last().unwrap();
        assert_eq!(answer["id"], 10 + round, "the answer comes last: {answer}");
        assert_ne!(answer["result"]["isError"], true, "{answer}");
    }
}

/// A folder with `agents/every.toml` (server-everything over stdio, prefixed `ev_`) and
/// `agents/side.toml` (the in-test upstream at `side`, prefixed `t_`), both `expose =
/// ["servers"]`, and room for `data/`.
fn agents_folder(side: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agents");
    std::fs::create_dir(&dir).unwrap();
    for (name, servers) in [
        ("every", stdio_everything("ev_", "")),
        ("side", url_server(side, "t_", "")),
    ] {
        std::fs::write(
            dir.join(format!("{name}.toml")),
            format!("description = \"Federated.\"\nexpose = [\"servers\"]\n\n{servers}"),
        )
        .unwrap();
    }
    tmp
}

/// `person`'s client of `switchboard stdio <agent>` on `folder` ([`agents_folder`]),
/// started as MCP hosts start local servers (rmcp's child-process transport).
async fn connect_stdio(folder: &tempfile::TempDir, agent: &str, person: &Person) -> PersonClient {
    use rmcp::ServiceExt as _;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .arg("stdio")
        .arg(agent)
        .arg("--agents")
        .arg(folder.path().join("agents"))
        .arg("--data")
        .arg(folder.path().join("data"))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    let (transport, _stderr) = rmcp::transport::TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    person
        .clone()
        .serve(transport)
        .await
        .expect("switchboard stdio answers the handshake")
}

/// `person`'s client over the legacy HTTP+SSE transport at `url` (`…/sse`).
async fn connect_sse(url: &str, person: &Person) -> PersonClient {
    use rmcp::ServiceExt as _;
    let transport = crate::support::sse_transport::connect(url).await;
    person
        .clone()
        .serve(transport)
        .await
        .expect("the SSE client connects")
}

/// A client's `notifications/cancelled` for a call in flight reaches `upstream`, and the
/// session goes on.
async fn cancellation_reaches(c: &PersonClient, upstream: &TestUpstream, prefix: &str) {
    let before = upstream.seen.cancelled.load(Ordering::SeqCst);
    let waiting = upstream.seen.waiting.load(Ordering::SeqCst);
    let handle = c
        .send_request_with_option(
            ClientRequest::CallToolRequest(CallToolRequest::new(CallToolRequestParams::new(
                format!("{prefix}wait"),
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    wait_until("the call runs upstream", || {
        upstream.seen.waiting.load(Ordering::SeqCst) > waiting
    })
    .await;
    handle.cancel(Some("changed my mind".into())).await.unwrap();
    upstream.wait_cancelled(before + 1).await;
    assert_eq!(
        call(c, &format!("{prefix}kinds"), json!({})).await,
        every_kind()
    );
}

#[tokio::test]
async fn over_switchboard_stdio_the_reference_server_answers_as_it_does_directly() {
    // Arrange: `switchboard stdio every` federating server-everything (a stdio upstream of
    // a stdio server); `switchboard stdio side` federating the in-test upstream.
    let upstream = TestUpstream::start().await;
    let folder = agents_folder(&upstream.url);
    let person = Person::able();
    let through = connect_stdio(&folder, "every", &person).await;
    let direct = connect_directly(&Person::able()).await;

    // Act + Assert: tools, content, sampling and elicitation answered by this client,
    // prompts, completions, resources; progress, logs, resource updates, list_changed;
    // all as over HTTP.
    same_as_directly(&through, &direct, "ev_").await;
    progress_arrives(&through, &person, "ev_").await;
    notifications_arrive(&through, &person, "ev_").await;
    assert!(person.seen.tools_changed.load(Ordering::SeqCst) >= 1);
    assert!(person.seen.samplings.load(Ordering::SeqCst) >= 1);
    assert!(!person.seen.elicitations.lock().unwrap().is_empty());

    // Cancellation reaches the upstream; content of every kind passes unchanged.
    let side = connect_stdio(&folder, "side", &Person::able()).await;
    cancellation_reaches(&side, &upstream, "t_").await;

    through.cancel().await.unwrap();
    side.cancel().await.unwrap();
}

#[tokio::test]
async fn over_legacy_sse_the_reference_server_answers_as_it_does_directly() {
    // Arrange: the same agents behind `/agents/<name>/sse`.
    let upstream = TestUpstream::start().await;
    let folder = agents_folder(&upstream.url);
    let gw = TestGateway::spawn_with(Options {
        agents_dir: folder.path().join("agents"),
        ..Options::default()
    })
    .await;
    let person = Person::able();
    let through = connect_sse(&gw.url("/agents/every/sse"), &person).await;
    let direct = connect_directly(&Person::able()).await;

    // Act + Assert
    same_as_directly(&through, &direct, "ev_").await;
    progress_arrives(&through, &person, "ev_").await;
    notifications_arrive(&through, &person, "ev_").await;
    assert!(person.seen.samplings.load(Ordering::SeqCst) >= 1);
    assert!(!person.seen.elicitations.lock().unwrap().is_empty());

    let side = connect_sse(&gw.url("/agents/side/sse"), &Person::able()).await;
    cancellation_reaches(&side, &upstream, "t_").await;
    let asked = call(&side, "t_ask", json!({})).await;
    assert!(format!("{asked:?}").contains("Ada Lovelace"), "{asked:?}");

    through.cancel().await.unwrap();
    side.cancel().await.unwrap();
}

#[tokio::test]
async fn content_of_every_kind_passes_unchanged_and_filters_and_prefixes_apply() {
    let upstream = TestUpstream::start().await;
    let servers = format!(
        "{}{}",
        url_server(&upstream.url, "a_", "deny = [\"secret\"]"),
        url_server(&upstream.url, "b_", "allow = [\"kinds\", \"w*\"]")
    );
    let (gw, _tmp) = gateway(&servers).await;
    let person = Person::able();
    let c = connect(&gw.url("/agents/every/mcp"), &person).await;

    let names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "a_kinds", "a_ask", "a_sample", "a_wait", "a_change", "b_kinds", "b_wait"
        ],
        "[[servers]] order, each upstream's own order, filtered"
    );
    assert_eq!(call(&c, "a_kinds", json!({})).await, every_kind());
    assert_eq!(call(&c, "b_kinds", json!({})).await, every_kind());
    let refused = c
        .call_tool(CallToolRequestParams::new("a_secret"))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("a_secret"), "{refused}");

    // A list_changed of the upstream reaches the client.
    let before = person.seen.tools_changed.load(Ordering::SeqCst);
    call(&c, "a_change", json!({})).await;
    person
        .wait_for("a tools/list_changed", |seen| {
            seen.tools_changed.load(Ordering::SeqCst) > before
        })
        .await;

    // The relayed requests of an upstream that asks anyway: answered by this client.
    let asked = call(&c, "a_ask", json!({})).await;
    assert!(format!("{asked:?}").contains("Ada Lovelace"), "{asked:?}");
}

#[tokio::test]
async fn a_client_that_cannot_answer_is_never_asked_and_the_upstream_gets_the_protocol_error() {
    // Arrange: both upstreams; this client declares neither elicitation nor sampling.
    let upstream = TestUpstream::start().await;
    let servers = format!(
        "{}{}",
        stdio_everything("ev_", ""),
        url_server(&upstream.url, "t_", "")
    );
    let (gw, _tmp) = gateway(&servers).await;
    let person = Person::plain();
    let c = connect(&gw.url("/agents/every/mcp"), &person).await;

    // The reference server offers its asking tools only to clients that can answer.
    let names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"ev_echo".to_owned()), "{names:?}");
    for asking in [
        "ev_trigger-elicitation-request",
        "ev_trigger-sampling-request",
    ] {
        assert!(!names.iter().any(|n| n == asking), "{asking} in {names:?}");
    }

    // One that asks anyway gets -32601 at once, not a hang.
    for (tool, method) in [
        ("t_ask", "elicitation/create"),
        ("t_sample", "sampling/createMessage"),
    ] {
        let answer = tokio::time::timeout(PATIENCE, call(&c, tool, json!({})))
            .await
            .expect("answered, not hung");
        let text = format!("{answer:?}");
        assert!(
            text.contains("error -32601") && text.contains(method),
            "{text}"
        );
    }
    assert!(person.seen.elicitations.lock().unwrap().is_empty());
    assert_eq!(person.seen.samplings.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_cancelled_call_is_cancelled_upstream() {
    let upstream = TestUpstream::start().await;
    let (gw, _tmp) = gateway(&url_server(&upstream.url, "", "")).await;
    let person = Person::able();
    let c = connect(&gw.url("/agents/every/mcp"), &person).await;
    c.list_all_tools().await.unwrap();

    let handle = c
        .send_request_with_option(
            ClientRequest::CallToolRequest(CallToolRequest::new(CallToolRequestParams::new(
                "wait",
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    // The call is in flight upstream once the gateway lists it as running.
    wait_until("the call runs", || {
        gw.state.sessions().in_flight_total() > 0
    })
    .await;
    handle.cancel(Some("changed my mind".into())).await.unwrap();
    upstream.wait_cancelled(1).await;

    // The session goes on.
    assert_eq!(call(&c, "kinds", json!({})).await, every_kind());
}

#[tokio::test]
async fn an_upstream_that_dies_mid_call_fails_the_call_and_the_next_call_works() {
    let tiny = format!(
        "[[servers]]\ncommand = {:?}\nargs = [{:?}, \"fed\"]\nprefix = \"t_\"\ntimeout_secs = 2\n",
        node().display().to_string(),
        tiny().display().to_string()
    );
    let (gw, _tmp) = gateway(&tiny).await;
    let c = connect(&gw.url("/agents/every/mcp"), &Person::plain()).await;

    let first_pid = call(&c, "t_pid", json!({})).await;
    let died = call(&c, "t_die", json!({})).await;
    assert_eq!(died.is_error, Some(true), "{died:?}");
    let text = crate::support::helpers::tool_text(&died);
    assert!(text.contains("failed during the request"), "{text}");
    let second_pid = call(&c, "t_pid", json!({})).await;
    assert_ne!(first_pid, second_pid, "a new process answers");
    assert_eq!(
        crate::support::helpers::tool_text(&call(&c, "t_echo", json!({"text": "back"})).await),
        "back"
    );

    // A hung upstream: the call ends at timeout_secs, the upstream is told, the session
    // and the process go on.
    let started = std::time::Instant::now();
    let hung = call(&c, "t_hang", json!({})).await;
    assert_eq!(hung.is_error, Some(true), "{hung:?}");
    assert!(
        crate::support::helpers::tool_text(&hung).contains("did not answer within 2 s"),
        "{hung:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let cancelled = crate::support::helpers::tool_text(&call(&c, "t_cancelled", json!({})).await);
    assert_eq!(cancelled, "1", "the upstream got notifications/cancelled");
    assert_eq!(call(&c, "t_pid", json!({})).await, second_pid);

    // The session's connections end with it: one process per session, gone after it.
    let federation = gw
        .state
        .agents()
        .get("every")
        .unwrap()
        .agent
        .federation()
        .unwrap()
        .clone();
    assert_eq!(federation.session_count(), 1);
    c.cancel().await.unwrap();
    wait_until("the session's connections end", || {
        federation.session_count() == 0
    })
    .await;
}

/// A `[[servers]]` entry for the tiny in-test server over stdio, with `extra` keys.
fn tiny_server(extra: &str) -> String {
    format!(
        "[[servers]]\ncommand = {:?}\nargs = [{:?}, \"fed\"]\nprefix = \"t_\"\ntimeout_secs = 10\n{extra}\n",
        node().display().to_string(),
        tiny().display().to_string()
    )
}

/// The pid of the process answering `c`'s session (`t_pid`).
async fn tiny_pid(c: &PersonClient) -> u32 {
    let result = call(c, "t_pid", json!({})).await;
    let text = crate::support::helpers::tool_text(&result);
    text.parse().unwrap_or_else(|_| panic!("a pid: {result:?}"))
}

#[tokio::test]
async fn max_processes_refuses_the_session_beyond_it_by_name_and_an_ended_session_frees_its_slot() {
    // Arrange: at most one process of the server.
    let (gw, _tmp) = gateway(&tiny_server("max_processes = 1")).await;
    let url = gw.url("/agents/every/mcp");
    let a = connect(&url, &Person::plain()).await;
    let first = tiny_pid(&a).await;

    // Act: a second session asks for the server.
    let b = connect(&url, &Person::plain()).await;
    let refused = call(&b, "t_pid", json!({})).await;

    // Assert: refused with the key named; the first session and its process go on.
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    let text = crate::support::helpers::tool_text(&refused);
    assert!(
        text.contains("already runs 1 processes") && text.contains("max_processes"),
        "{text}"
    );
    let listed = b.list_all_tools().await.unwrap();
    assert!(
        listed.iter().all(|t| !t.name.starts_with("t_")),
        "{listed:?}"
    );
    assert_eq!(
        tiny_pid(&a).await,
        first,
        "the first session keeps its process"
    );

    // The first session ends: its process goes, and the second session gets one.
    a.cancel().await.unwrap();
    crate::support::stdio_upstream::wait_dead(first, "the ended session's process").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let second = loop {
        let result = call(&b, "t_pid", json!({})).await;
        if result.is_error != Some(true) {
            break crate::support::helpers::tool_text(&result)
                .parse::<u32>()
                .unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            crate::support::helpers::tool_text(&result)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(second, first);
    b.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_process_unused_for_session_idle_secs_is_ended_and_the_next_request_starts_another() {
    let (gw, _tmp) = gateway(&tiny_server("session_idle_secs = 1")).await;
    let c = connect(&gw.url("/agents/every/mcp"), &Person::plain()).await;
    let first = tiny_pid(&c).await;

    // The session stays open; its process ends once unused for a second.
    crate::support::stdio_upstream::wait_dead(first, "the idle session's process").await;

    let second = tiny_pid(&c).await;
    assert_ne!(second, first, "a new process answers");
    assert_eq!(
        crate::support::helpers::tool_text(&call(&c, "t_echo", json!({"text": "back"})).await),
        "back"
    );
    c.cancel().await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn a_command_that_cannot_start_is_tried_again_with_backoff_not_on_every_request() {
    // Arrange: a "server" that counts its starts in a file and exits at once.
    let tmp = tempfile::tempdir().unwrap();
    let starts = tmp.path().join("starts");
    let script = format!("echo started >> '{}'; exit 3", starts.display());
    let server = format!(
        "[[servers]]\ncommand = \"/bin/sh\"\nargs = [\"-c\", {script:?}]\nprefix = \"x_\"\ntimeout_secs = 10\n"
    );
    let (gw, _tmp) = gateway(&server).await;
    let c = connect(&gw.url("/agents/every/mcp"), &Person::plain()).await;
    let count = || {
        std::fs::read_to_string(&starts)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };

    // Act: twenty requests in a row.
    let began = std::time::Instant::now();
    let mut errors = Vec::new();
    for _ in 0..20 {
        let result = call(&c, "x_anything", json!({})).await;
        assert_eq!(result.is_error, Some(true), "{result:?}");
        errors.push(crate::support::helpers::tool_text(&result));
    }
    let elapsed = began.elapsed().as_secs_f64();

    // Assert: starts only as the backoff allows (0.5 s, then 1, 2, 4 ... between them),
    // and every request got an error saying what is wrong.
    let allowed = 1
        + (1..10)
            .filter(|k| 0.5 * (2f64.powi(*k) - 1.0) <= elapsed)
            .count();
    let spawned = count();
    assert!(
        (1..=allowed).contains(&spawned),
        "{spawned} starts in {elapsed:.2} s (at most {allowed}) for 20 requests"
    );
    assert!(
        errors[0].contains("is not reachable") && errors[0].contains("handshake"),
        "{}",
        errors[0]
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("could not be started") && e.contains("tries again in")),
        "{errors:?}"
    );

    // After the wait, it is tried again.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while count() <= spawned {
        assert!(tokio::time::Instant::now() < deadline, "never tried again");
        let _ = call(&c, "x_anything", json!({})).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.cancel().await.unwrap();
    gw.stop().await;
}

/// A client of the gateway at `url` sending `token` as its bearer.
async fn connect_as(url: &str, token: &str, person: &Person) -> PersonClient {
    use rmcp::ServiceExt as _;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    switchboard::net::install_crypto_provider();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token),
    );
    person.clone().serve(transport).await.unwrap()
}

#[tokio::test]
async fn policies_metrics_sessions_and_audit_cover_federated_calls() {
    // Arrange: a client that [[policies]] let call only `every/t_kinds` and `every/t_ask`.
    let upstream = TestUpstream::start().await;
    let rules = r#"
[[clients]]
name = "desk"
token = "t-desk"
agents = ["*"]

[[policies]]
name = "desk-kinds"
effect = "allow"
clients = ["desk"]
tools = ["every/t_kinds", "every/t_ask"]
"#;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("switchboard.toml");
    std::fs::write(&file, rules).unwrap();
    let loaded = switchboard::config::load_gateway(&file, true, &Default::default()).unwrap();
    let mut options = Options::default();
    options.settings.clients = loaded.clients;
    options.settings.policies = loaded.policies;
    options.settings.source = loaded.source;
    let (gw, _tmp) = gateway_with(&url_server(&upstream.url, "t_", ""), options).await;
    let c = connect_as(&gw.url("/agents/every/mcp"), "t-desk", &Person::able()).await;

    // Act + Assert: tools/list shows what the caller may call; the others are refused
    // before they reach the upstream.
    let names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["t_kinds", "t_ask"]);
    assert_eq!(call(&c, "t_kinds", json!({})).await, every_kind());
    let refused = c
        .call_tool(CallToolRequestParams::new("t_wait"))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("-32602"), "{refused}");
    assert_eq!(upstream.seen.cancelled.load(Ordering::SeqCst), 0);

    // The admin API lists the federated servers and their tools (as the session listed
    // them), and what this client may call of them.
    let (status, agent) = gw.get_json("/admin/agents/every").await;
    assert_eq!(status, 200, "{agent}");
    assert_eq!(
        agent["federation"]["servers"][0]["upstream"],
        upstream.url.as_str(),
        "{agent}"
    );
    assert_eq!(agent["federation"]["servers"][0]["prefix"], "t_", "{agent}");
    let federated: Vec<&str> = agent["federation"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        federated,
        [
            "t_kinds", "t_ask", "t_sample", "t_wait", "t_change", "t_secret"
        ],
        "every federated tool, before [[policies]]"
    );
    let (status, desk) = gw.get_json("/admin/clients/desk").await;
    assert_eq!(status, 200, "{desk}");
    let every = desk["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == "every")
        .unwrap();
    assert_eq!(every["allowed"], json!(["t_kinds", "t_ask"]), "{every}");
    assert!(
        every["denied"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["tool"] == "t_wait"),
        "{every}"
    );

    // The session's recent calls, the metrics and the audit trail have them.
    let id = gw.state.sessions().list()[0].id.to_string();
    let (status, session) = gw.get_json(&format!("/admin/sessions/{id}")).await;
    assert_eq!(status, 200, "{session}");
    let calls: Vec<(String, String)> = session["recent_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["tool"].as_str().unwrap().to_owned(),
                c["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        calls.contains(&("t_kinds".to_owned(), "ok".to_owned())),
        "{calls:?}"
    );
    let metrics = crate::support::helpers::http()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"switchboard_tool_calls_total{agent="every",tool="t_kinds",outcome="ok"} 1"#
        ),
        "{metrics}"
    );
    gw.state.audit().expect("the trail is on").flush().await;
    let (status, page) = gw.get_json("/admin/audit?agent=every").await;
    assert_eq!(status, 200, "{page}");
    let records: Vec<(String, String)> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["tool"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        records.contains(&("t_kinds".to_owned(), "ok".to_owned())),
        "{records:?}"
    );
    assert!(
        records.contains(&("t_wait".to_owned(), "refused".to_owned())),
        "{records:?}"
    );
}

#[test]
fn switchboard_check_names_the_file_and_key_of_a_bad_server() {
    let tmp = tempfile::tempdir().unwrap();
    let agents = tmp.path().join("agents");
    std::fs::create_dir(&agents).unwrap();
    std::fs::write(
        agents.join("fed.toml"),
        "description = \"x\"\nexpose = [\"servers\"]\n\n[[servers]]\nurl = \"http://127.0.0.1:1/mcp\"\ncommand = \"node\"\n\n[[servers]]\ncommand = \"node\"\nproces = \"per_session\"\ndeny = [\"\"]\n",
    )
    .unwrap();
    std::fs::write(
        agents.join("bounds.toml"),
        "description = \"x\"\nexpose = [\"servers\"]\n\n[[servers]]\ncommand = \"node\"\nmax_processes = 0\nsession_idle_secs = 0\n\n[[servers]]\nurl = \"http://127.0.0.1:1/mcp\"\nmax_processes = 3\nsession_idle_secs = 60\n",
    )
    .unwrap();
    std::fs::write(
        agents.join("hidden.toml"),
        "description = \"x\"\nexpose = [\"tools\"]\n[[tools]]\ntype = \"servicenow\"\n\n[[servers]]\nurl = \"http://127.0.0.1:1/mcp\"\n",
    )
    .unwrap();
    let out = crate::support::binary::switchboard()
        .arg("check")
        .arg("--agents")
        .arg(&agents)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{text}");
    for expected in [
        "fed.toml: servers[0].command: give either url",
        "fed.toml: servers[1].proces: unknown field",
        "fed.toml: servers[1].deny[0]: a denied name must not be empty",
        "bounds.toml: servers[0].max_processes: must be at least 1",
        "bounds.toml: servers[0].session_idle_secs: must be at least 1",
        "bounds.toml: servers[1].max_processes: applies only with command",
        "bounds.toml: servers[1].session_idle_secs: applies only with command",
        "hidden.toml: servers: [[servers]] are federated only with \"servers\" in expose",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
}
