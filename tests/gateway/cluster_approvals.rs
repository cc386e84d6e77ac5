//! Approvals in cluster mode, with real processes: two gateway replicas (the built binary)
//! on one real `redis-server`. A call waits on the replica that runs it; the other replica's
//! admin API lists it with that replica's node id and decides it (approve, deny), the
//! decision handed to the replica where it waits. A replica that does not answer leaves
//! the list (named in `unreachable_nodes`) without failing it, and a decision that cannot
//! reach the call's replica is a clear error, never a silent loss.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::service::RunningService;
use rmcp::{RoleClient, model::CallToolResult};
use serde_json::{Value, json};

use crate::cluster::{RedisServer, Replica, cluster_config, eventually};
use crate::support::asking::{agents_with_rules, decide_at};
use crate::support::fake_llm::FakeLlm;
use crate::support::helpers::{Recorder, call_result, http, start_call, tool_text};

/// How long a test waits for something that should happen.
const DEADLINE: Duration = Duration::from_secs(20);

/// The rule of the issue: resolving an incident waits for an operator.
const OPERATOR_RULE: &str = r#"
[[approvals]]
tools = ["update_incident"]
by = "operator"
when = { state = "Resolved" }
"#;

/// Redis, two replicas on it serving the runtime fixture agents with [`OPERATOR_RULE`].
struct Pair {
    redis: RedisServer,
    _fake: FakeLlm,
    _tmp: tempfile::TempDir,
    a: Replica,
    b: Replica,
    /// Replica a's node id.
    a_node: String,
}

impl Pair {
    async fn start() -> Self {
        let fake = FakeLlm::start(vec![]).await;
        let redis = RedisServer::start();
        let tmp = tempfile::tempdir().unwrap();
        let agents = tmp.path().join("agents");
        std::fs::create_dir(&agents).unwrap();
        agents_with_rules(&agents, OPERATOR_RULE);
        let config = cluster_config(tmp.path(), &redis.url(), "");
        let env = [("FAKE_LLM_URL", fake.url.as_str())];
        let a = Replica::start_with(&config, &tmp.path().join("data-a"), &agents, &env);
        let b = Replica::start_with(&config, &tmp.path().join("data-b"), &agents, &env);
        let (status, cluster) = a.get_json("/admin/cluster").await;
        assert_eq!(status, 200, "{cluster}");
        let a_node = cluster["node"].as_str().unwrap().to_owned();
        eventually("b sees a in the cluster", || async {
            let (_, body) = b.get_json("/admin/cluster").await;
            body["nodes"]
                .as_array()
                .is_some_and(|nodes| nodes.iter().any(|n| n["id"] == a_node.as_str()))
        })
        .await;
        Self {
            redis,
            _fake: fake,
            _tmp: tmp,
            a,
            b,
            a_node,
        }
    }
}

/// An MCP client of the servicenow agent on `replica`, keeping its progress notifications.
async fn client(replica: &Replica) -> RunningService<RoleClient, Recorder> {
    http();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(
        replica.url("/agents/servicenow/mcp"),
    );
    Recorder::default().serve(transport).await.unwrap()
}

/// `replica`'s `GET /admin/approvals{query}`, polled until it lists `n` calls: the body.
async fn listed(replica: &Replica, query: &str, n: usize) -> Value {
    let path = format!("/admin/approvals{query}");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = replica.get_json(&path).await;
        assert_eq!(status, 200, "{body}");
        if body["approvals"].as_array().unwrap().len() == n {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path}: expected {n} pending calls: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST /admin/approvals/{id}` on `replica` with `body`: status and JSON.
async fn decide(replica: &Replica, id: &str, body: Value) -> (u16, Value) {
    decide_at(replica.url(&format!("/admin/approvals/{id}")), body).await
}

/// Resolves INC0012345 on `c` (the call the rule covers): the call, once it waits.
async fn resolve(
    c: &RunningService<RoleClient, Recorder>,
) -> rmcp::service::RequestHandle<RoleClient> {
    start_call(
        c,
        "update_incident",
        json!({"number": "INC0012345", "state": "Resolved", "close_notes": "fixed"}),
    )
    .await
}

/// The call's result, within the tests' deadline.
async fn result_of(handle: rmcp::service::RequestHandle<RoleClient>) -> CallToolResult {
    tokio::time::timeout(DEADLINE, call_result(handle))
        .await
        .expect("the call ends once decided")
}

#[tokio::test]
async fn a_call_waiting_on_one_replica_is_listed_and_decided_on_the_other() {
    let pair = Pair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let c = client(a).await;

    // The call waits on a; b lists it, with a's node id.
    let handle = resolve(&c).await;
    let body = listed(b, "", 1).await;
    assert_eq!(body["unreachable_nodes"], json!([]), "{body}");
    let p = &body["approvals"][0];
    assert_eq!(p["node"], pair.a_node.as_str(), "{p}");
    assert_eq!(p["agent"], "servicenow");
    assert_eq!(p["tool"], "update_incident");
    assert_eq!(p["arguments"]["state"], "Resolved");
    let id = p["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with(&format!("{}~", pair.a_node)), "{id}");
    // b's own queue is empty; a's has it.
    let local = listed(b, "?scope=local", 0).await;
    assert_eq!(local["unreachable_nodes"], Value::Null, "{local}");
    let on_a = listed(a, "?scope=local", 1).await;
    assert_eq!(on_a["approvals"][0]["id"], id.as_str());

    // Unknown ids are 404 on b: on a (a's answer), without a replica, on no live replica.
    for unknown in [
        format!("{}~{}", pair.a_node, uuid::Uuid::now_v7()),
        "no-such-id".to_owned(),
        format!("gone-node~{}", uuid::Uuid::now_v7()),
    ] {
        let (status, body) = decide(b, &unknown, json!({"decision": "approve"})).await;
        assert_eq!(status, 404, "{unknown}: {body}");
        assert_eq!(body["code"], "approval_not_found", "{body}");
    }
    assert_eq!(listed(b, "", 1).await["approvals"][0]["id"], id.as_str());

    // b approves: the call on a runs.
    let (status, body) = decide(
        b,
        &id,
        json!({"decision": "approve", "reason": "customer confirmed", "operator": "olivia"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "approved");
    assert_eq!(body["decided_by"], "olivia");
    assert_eq!(body["tool"], "update_incident");
    let result = result_of(handle).await;
    assert_ne!(result.is_error, Some(true), "{}", tool_text(&result));
    assert!(
        tool_text(&result).contains("Resolved"),
        "{}",
        tool_text(&result)
    );
    // Delivered once: deciding it again, anywhere, is 404.
    let (status, body) = decide(b, &id, json!({"decision": "deny"})).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = decide(a, &id, json!({"decision": "deny"})).await;
    assert_eq!(status, 404);
    listed(b, "", 0).await;

    // A second call on a, denied through b (attributed to b's caller by default).
    let handle = resolve(&c).await;
    let id2 = listed(b, "", 1).await["approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = decide(
        b,
        &id2,
        json!({"decision": "deny", "reason": "not confirmed with the customer"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "denied");
    assert_eq!(body["decided_by"], "admin@127.0.0.1", "{body}");
    let result = result_of(handle).await;
    assert_eq!(result.is_error, Some(true), "{}", tool_text(&result));
    let text = tool_text(&result);
    assert!(text.contains("denied by an operator"), "{text}");
    assert!(text.contains("not confirmed with the customer"), "{text}");
    listed(b, "", 0).await;

    // Both decisions are in the calls' audit records on a, with who decided.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let records = loop {
        let (_, page) = a.get_json("/admin/audit?tool=update_incident").await;
        let records = page["records"].as_array().cloned().unwrap_or_default();
        if records.len() == 2 {
            break records;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a's trail lacks the decisions: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(records[1]["approval"]["id"], id.as_str());
    assert_eq!(records[1]["approval"]["decision"], "approved");
    assert_eq!(records[1]["approval"]["decided_by"], "olivia");
    assert_eq!(records[0]["approval"]["id"], id2.as_str());
    assert_eq!(records[0]["approval"]["decision"], "denied");
    assert_eq!(records[0]["approval"]["decided_by"], "admin@127.0.0.1");

    // b handed two decisions on.
    let metrics = http()
        .get(b.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"switchboard_cluster_events_total{event="approval_forwarded"} 2"#),
        "{metrics}"
    );
    let _ = c.cancel().await;
}

#[tokio::test]
async fn a_replica_that_does_not_answer_is_named_and_a_decision_for_it_is_an_error() {
    let pair = Pair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let c = client(a).await;
    let handle = resolve(&c).await;
    let id = listed(b, "", 1).await["approvals"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A member that does not answer: registered in Redis, at an address nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let record = json!({
        "id": "ghost", "url": format!("http://{closed}"), "instance": "x", "version": "0",
        "started_at_ms": 0, "heartbeat_at_ms": 0, "sessions": 0,
    })
    .to_string();
    redis_command(
        &pair.redis,
        &["SET", "switchboard:node:ghost", &record, "PX", "60000"],
    );
    redis_command(&pair.redis, &["SADD", "switchboard:nodes", "ghost"]);

    // b's list still has a's call, and names the replica that did not answer.
    let body = listed(b, "", 1).await;
    assert_eq!(body["approvals"][0]["id"], id.as_str());
    assert_eq!(body["unreachable_nodes"], json!(["ghost"]), "{body}");
    // A decision for a call on it is a clear error saying it may not have arrived.
    let ghost_id = format!("ghost~{}", uuid::Uuid::now_v7());
    let (status, body) = decide(b, &ghost_id, json!({"decision": "approve"})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "approval_node_unreachable", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("may not have reached it"),
        "{body}"
    );

    // a's call is unaffected: b still decides it.
    let (status, body) = decide(b, &id, json!({"decision": "approve"})).await;
    assert_eq!(status, 200, "{body}");
    let result = result_of(handle).await;
    assert_ne!(result.is_error, Some(true), "{}", tool_text(&result));
    let _ = c.cancel().await;
}

/// Sends one command to `redis` over its Unix socket; its reply's first line.
fn redis_command(redis: &RedisServer, args: &[&str]) -> String {
    let socket = PathBuf::from(redis.url().trim_start_matches("unix://"));
    let mut conn = std::os::unix::net::UnixStream::connect(socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut command = format!("*{}\r\n", args.len());
    for arg in args {
        command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    conn.write_all(command.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        conn.read_exact(&mut byte).unwrap();
        reply.push(byte[0]);
    }
    let reply = String::from_utf8(reply).unwrap();
    assert!(!reply.starts_with('-'), "redis refused {args:?}: {reply}");
    reply.trim_end().to_owned()
}
