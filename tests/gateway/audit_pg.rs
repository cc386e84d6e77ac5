//! The audit trail on a real PostgreSQL (`[audit] url`): the records of nested calls land in
//! it and read back through the admin API exactly as from `audit.db`; two replicas given the
//! same URL keep one trail, each reading the other's records; and PostgreSQL stopped mid-run
//! and started again loses no record the queue could hold, while the gateway answers calls
//! throughout.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::config::audit::{PostgresUrl, StoreTarget};

use crate::audit::{admin, call, gateway_with};
use crate::support::fake_llm::{FakeLlm, Step};
use crate::support::helpers::{TestGateway, http};
use crate::support::postgres::{PASSWORD, PgServer};

/// How long a test waits for something that should happen before it fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// The fixture gateway of `audit.rs` (redacting `work_notes`), its trail on `pg`.
async fn on_postgres(pg: &PgServer, fake: &FakeLlm, queue_size: Option<usize>) -> TestGateway {
    let url = PostgresUrl::parse(&pg.url()).unwrap();
    gateway_with(fake, &["work_notes"], |audit| {
        audit.store = StoreTarget::Postgres(url);
        if let Some(n) = queue_size {
            audit.queue_size = n;
        }
    })
    .await
}

/// The helpdesk delegating to the incident agent, which creates an incident.
fn delegation() -> Vec<Step> {
    vec![
        Step::ToolCalls(vec![("servicenow", json!({"task": "open an incident"}))]),
        Step::ToolCalls(vec![(
            "create_incident",
            json!({"short_description": "Printer on fire", "work_notes": "smoke seen"}),
        )]),
        Step::Echo("servicenow: "),
        Step::Echo("helpdesk: "),
    ]
}

/// `body` with what must differ between two runs of the same calls made comparable: each id
/// becomes `id<n>` by its first appearance in `ids`, and times, durations and sessions their
/// shape (checked here).
fn comparable(body: &Value, ids: &mut Vec<String>) -> Value {
    match body {
        Value::Array(items) => Value::Array(items.iter().map(|v| comparable(v, ids)).collect()),
        Value::Object(fields) => {
            let mut out = serde_json::Map::new();
            for (key, value) in fields {
                let value = match (key.as_str(), value) {
                    ("id" | "root_id" | "parent_id", Value::String(id)) => {
                        if !ids.contains(id) {
                            ids.push(id.clone());
                        }
                        let n = ids.iter().position(|i| i == id).unwrap();
                        json!(format!("id{n}"))
                    }
                    ("time", Value::String(t)) => {
                        assert!(t.len() == 24 && t.ends_with('Z'), "{t}");
                        json!("<time>")
                    }
                    ("duration_ms", Value::Number(d)) => {
                        assert!(d.as_f64().unwrap() >= 0.0, "{d}");
                        json!("<duration>")
                    }
                    ("session", Value::String(s)) => {
                        assert!(!s.is_empty());
                        json!("<session>")
                    }
                    _ => comparable(value, ids),
                };
                out.insert(key.clone(), value);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// `GET path` as status and body (JSON, or JSON lines as an array).
async fn read(gw: &TestGateway, path: &str) -> (u16, Value) {
    gw.state.audit().expect("the trail is on").flush().await;
    let response = http().get(gw.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if path.contains("format=jsonl") {
        Value::Array(
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        )
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, body)
}

/// The value of the series `series` (name and labels, as exported) on `gw`'s `/metrics`.
async fn metric(gw: &TestGateway, series: &str) -> f64 {
    let text = http()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

/// The `short_description`s of the create_incident records `gw` lists.
async fn created(gw: &TestGateway) -> Vec<String> {
    let (status, page) = read(gw, "/admin/audit?tool=create_incident&limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["arguments"]["short_description"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

async fn create(gw: &TestGateway, what: &str) {
    let text = call(
        gw,
        "servicenow",
        "create_incident",
        json!({"short_description": what}),
    )
    .await;
    assert!(text.contains("INC"), "the call was not answered: {text}");
}

#[tokio::test]
async fn nested_calls_land_in_postgres_and_read_back_exactly_as_from_audit_db() {
    // Arrange: the same calls on a gateway with audit.db and one with PostgreSQL.
    let pg = PgServer::start();
    let (fake_sqlite, fake_pg) = (
        FakeLlm::start(delegation()).await,
        FakeLlm::start(delegation()).await,
    );
    let on_sqlite = gateway_with(&fake_sqlite, &["work_notes"], |_| {}).await;
    let on_pg = on_postgres(&pg, &fake_pg, None).await;
    for gw in [&on_sqlite, &on_pg] {
        let answer = call(
            gw,
            "helpdesk",
            "helpdesk",
            json!({"task": "printer on fire"}),
        )
        .await;
        assert!(answer.contains("Printer on fire"), "{answer}");
        let refused = call(
            gw,
            "servicenow",
            "update_incident",
            json!({"number": "INC0012345", "urgency": 1}),
        )
        .await;
        assert!(refused.contains("not allowed"), "{refused}");
    }

    // Act: every kind of read, on both.
    let mut answers = Vec::new();
    for gw in [&on_sqlite, &on_pg] {
        let mut ids = Vec::new();
        let (_, all) = read(gw, "/admin/audit").await;
        let root = all["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["tool"] == "helpdesk")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, first) = read(gw, "/admin/audit?limit=2").await;
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let mut reads = vec![("all", 200, comparable(&all, &mut ids))];
        for (case, path) in [
            ("first page", "/admin/audit?limit=2".to_owned()),
            (
                "second page",
                format!("/admin/audit?limit=2&cursor={cursor}"),
            ),
            ("by agent", "/admin/audit?agent=servicenow".to_owned()),
            ("by tool", "/admin/audit?tool=create_incident".to_owned()),
            (
                "by outcome and client",
                "/admin/audit?outcome=refused&client=helpdesk-app".to_owned(),
            ),
            (
                "by time",
                "/admin/audit?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z".to_owned(),
            ),
            ("by nobody", "/admin/audit?principal=nobody".to_owned()),
            ("by root", format!("/admin/audit?root_id={root}")),
            ("tree", format!("/admin/audit/{root}")),
            ("unknown tree", "/admin/audit/nope".to_owned()),
            (
                "json lines",
                "/admin/audit?format=jsonl&agent=helpdesk".to_owned(),
            ),
        ] {
            let (status, body) = read(gw, &path).await;
            reads.push((case, status, comparable(&body, &mut ids)));
        }
        answers.push(reads);
    }

    // Assert: the same answers, case by case; and the records are in PostgreSQL itself.
    let (sqlite, postgres) = (&answers[0], &answers[1]);
    for ((case, s_status, s_body), (_, p_status, p_body)) in sqlite.iter().zip(postgres) {
        assert_eq!(
            (s_status, s_body),
            (p_status, p_body),
            "{case}: audit.db vs PostgreSQL"
        );
    }
    assert_eq!(sqlite[0].2["records"].as_array().unwrap().len(), 4);
    assert_eq!(sqlite[9].1, 200, "the tree");
    assert_eq!(sqlite[9].2["records"].as_array().unwrap().len(), 3);
    let db = pg.client().await;
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT root_id), \
             max(arguments->>'work_notes') FILTER (WHERE tool = 'create_incident') \
             FROM audit_record",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 4);
    assert_eq!(row.get::<_, i64>(1), 2);
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("[redacted]")
    );
    on_sqlite.stop().await;
    on_pg.stop().await;
}

#[tokio::test]
async fn two_replicas_on_one_url_keep_one_trail_and_read_each_others_records() {
    // Arrange: two gateways started at once on an empty database (both create the schema).
    let pg = PgServer::start();
    let (fake_a, fake_b) = (FakeLlm::start(vec![]).await, FakeLlm::start(vec![]).await);
    let (a, b) = tokio::join!(
        on_postgres(&pg, &fake_a, None),
        on_postgres(&pg, &fake_b, None)
    );

    // Act: each records a call.
    create(&a, "seen by replica a").await;
    create(&b, "seen by replica b").await;
    a.state.audit().unwrap().flush().await;
    b.state.audit().unwrap().flush().await;

    // Assert: each lists both, the same page; each reads the other's tree.
    for gw in [&a, &b] {
        let mut seen = created(gw).await;
        seen.sort();
        assert_eq!(seen, ["seen by replica a", "seen by replica b"]);
    }
    let (_, page_a) = read(&a, "/admin/audit").await;
    let (_, page_b) = read(&b, "/admin/audit").await;
    assert_eq!(page_a, page_b);
    for (reader, writer_text) in [(&a, "seen by replica b"), (&b, "seen by replica a")] {
        let record = page_a["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["arguments"]["short_description"] == writer_text)
            .unwrap();
        let (status, tree) = admin(
            reader,
            &format!("/admin/audit/{}", record["root_id"].as_str().unwrap()),
        )
        .await;
        assert_eq!(status, 200, "{tree}");
        assert_eq!(tree["records"][0], *record);
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn records_of_calls_answered_while_postgres_is_down_arrive_when_it_is_back() {
    // Arrange: a small queue, so that the outage also meets its bound.
    const QUEUE: usize = 8;
    const DURING: usize = 20;
    let mut pg = PgServer::start();
    let fake = FakeLlm::start(vec![]).await;
    let gw = on_postgres(&pg, &fake, Some(QUEUE)).await;
    create(&gw, "before").await;
    assert_eq!(created(&gw).await, ["before"]);

    // Act: PostgreSQL goes down; calls go on (each one answered: `create` checks).
    pg.stop();
    for i in 0..DURING {
        create(&gw, &format!("during {i}")).await;
    }
    let deadline = Instant::now() + DEADLINE;
    while metric(&gw, "switchboard_audit_records_held").await < 1.0 {
        assert!(Instant::now() < deadline, "the writer never held a batch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = gw.get_json("/admin/audit").await;
    assert_eq!(status, 500, "reads fail plainly meanwhile: {body}");
    assert_eq!(body["code"], "audit_unavailable", "{body}");
    assert!(!body.to_string().contains(PASSWORD), "{body}");
    pg.start_again();
    tokio::time::timeout(DEADLINE, gw.state.audit().unwrap().flush())
        .await
        .expect("the held records are written once PostgreSQL is back");

    // Assert: the first records of the outage, as many as the writer's batch and the queue
    // held, are there in order; the rest were dropped and counted; nothing is held now.
    let recorded = created(&gw).await;
    let during: Vec<&String> = recorded.iter().rev().skip(1).collect();
    let kept = during.len();
    assert!(
        (QUEUE + 1..=2 * QUEUE).contains(&kept),
        "kept {kept} (one batch of at most {QUEUE} held plus a full queue of {QUEUE}): {recorded:?}"
    );
    for (i, text) in during.iter().enumerate() {
        assert_eq!(**text, format!("during {i}"), "{recorded:?}");
    }
    assert_eq!(recorded.last().unwrap(), "before");
    let dropped = metric(&gw, "switchboard_audit_records_total{outcome=\"dropped\"}").await;
    assert_eq!(dropped as usize, DURING - kept);
    assert_eq!(metric(&gw, "switchboard_audit_records_held").await, 0.0);
    assert_eq!(
        metric(&gw, "switchboard_audit_records_total{outcome=\"failed\"}").await,
        0.0
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_refused_connection_stops_the_start_naming_the_server_never_the_password() {
    let pg = PgServer::start();
    let spec = switchboard::config::audit::AuditSpec {
        store: StoreTarget::Postgres(
            PostgresUrl::parse(&pg.url_with_password("wrong-s3cret")).unwrap(),
        ),
        ..Default::default()
    };
    let started = Instant::now();
    let error = match switchboard::audit::Trail::start(
        &spec,
        tempfile::tempdir().unwrap().path(),
        std::sync::Arc::new(switchboard::metrics::Metrics::new()),
    )
    .await
    {
        Ok(_) => panic!("started with a wrong password"),
        Err(e) => e,
    };
    assert!(error.contains("127.0.0.1:"), "{error}");
    assert!(error.contains("password authentication failed"), "{error}");
    assert!(!error.contains("wrong-s3cret"), "{error}");
    // Refused at once: no waiting for a server that answered.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
