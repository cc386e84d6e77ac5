//! Unit tests for the embedded store's search through its full-text index: the index follows
//! every write at once, a file from before the index is migrated on open, the caller's text is
//! always plain text (never FTS5 syntax, never an SQL error), and the matching the README
//! documents (substrings of three or more characters from the index, shorter ones by a scan).

use super::*;
use crate::incidents::seed::SEEDS;

fn open() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    (dir, store)
}

fn text(query: &str) -> SearchQuery {
    SearchQuery {
        text: Some(query.to_owned()),
        limit: 100,
        ..SearchQuery::default()
    }
}

async fn numbers(store: &EmbeddedStore, query: &str) -> Vec<String> {
    store
        .search(text(query))
        .await
        .unwrap_or_else(|err| panic!("search {query:?} failed: {err}"))
        .iter()
        .map(|i| i.number.to_string())
        .collect()
}

/// FTS5's own check that the index holds exactly the text of the `incident` rows.
fn assert_index_in_step(path: &Path) {
    Connection::open(path)
        .unwrap()
        .execute(
            "INSERT INTO incident_text (incident_text, rank) VALUES ('integrity-check', 1)",
            [],
        )
        .expect("the index matches the table");
}

#[tokio::test]
async fn created_and_updated_incidents_are_found_by_their_new_words_at_once() {
    let (_dir, store) = open();
    let created = store
        .create(NewIncident {
            short_description: "Zeppelin hangar door stuck".into(),
            description: Some("The quartermaster cannot open it".into()),
            ..NewIncident::default()
        })
        .await
        .unwrap();
    let number = created.number.to_string();

    assert_eq!(numbers(&store, "zeppelin").await, [number.as_str()]);
    assert_eq!(numbers(&store, "QUARTERMASTER").await, [number.as_str()]);
    assert!(numbers(&store, "flux capacitor").await.is_empty());

    store
        .update(
            &number,
            IncidentPatch {
                short_description: Some("Airship hangar door stuck".into()),
                work_notes: Some("Ordered a new flux capacitor".into()),
                ..IncidentPatch::default()
            },
        )
        .await
        .unwrap();

    assert_eq!(numbers(&store, "flux capacitor").await, [number.as_str()]);
    assert_eq!(numbers(&store, "airship").await, [number.as_str()]);
    assert!(
        numbers(&store, "zeppelin").await.is_empty(),
        "the replaced summary is no longer indexed"
    );
    assert_eq!(
        numbers(&store, "quartermaster").await,
        [number.as_str()],
        "untouched fields stay indexed"
    );

    store
        .update(
            &number,
            IncidentPatch {
                state: Some(State::Resolved),
                close_notes: Some("Hinges replaced by the blacksmith".into()),
                ..IncidentPatch::default()
            },
        )
        .await
        .unwrap();

    assert_eq!(numbers(&store, "blacksmith").await, [number.as_str()]);
    assert_eq!(numbers(&store, &number).await, [number.as_str()]);
    assert_index_in_step(store.path());
}

#[tokio::test]
async fn a_file_from_before_the_index_is_migrated_and_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    // What a build with schema version 1 left behind: the table, its rows, no index.
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(SCHEMA).unwrap();
        for incident in crate::incidents::seed::incidents(now()).unwrap() {
            insert(&tx, &incident).unwrap();
        }
        tx.pragma_update(None, "user_version", 1).unwrap();
        tx.commit().unwrap();
    }

    let store = EmbeddedStore::open(dir.path()).unwrap();

    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_index_in_step(&path);
    assert_eq!(index_segments(&path), 1);
    assert_eq!(numbers(&store, "vpn").await, ["INC0012346"]);
    assert_eq!(numbers(&store, "loaner laptop").await, ["INC0012342"]);
    assert_eq!(numbers(&store, "inc0012343").await, ["INC0012343"]);
    assert_eq!(
        store.search(text("")).await.unwrap().len(),
        SEEDS.len(),
        "nothing lost"
    );
    let created = store
        .create(new_incident("Migrated gremlins"))
        .await
        .unwrap();
    assert_eq!(
        numbers(&store, "gremlins").await,
        [created.number.to_string()]
    );
    drop(store);

    // Reopening a migrated file changes nothing.
    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(
        numbers(&reopened, "gremlins").await,
        [created.number.to_string()]
    );
    assert_index_in_step(&path);
}

/// The reference the index must agree with: `query` as a case-insensitive substring of the
/// number, summary, description or notes.
fn contains(incident: &Incident, query: &str) -> bool {
    let query = query.to_lowercase();
    [
        Some(incident.number.as_str()),
        Some(incident.short_description.as_str()),
        incident.description.as_deref(),
        incident.work_notes.as_deref(),
        incident.close_notes.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(|field| field.to_lowercase().contains(&query))
}

fn new_incident(summary: &str) -> NewIncident {
    NewIncident {
        short_description: summary.to_owned(),
        ..NewIncident::default()
    }
}

#[tokio::test]
async fn fts_syntax_in_a_query_is_plain_text_and_never_an_error() {
    let (_dir, store) = open();
    let odd = store
        .create(NewIncident {
            short_description: "Plotter \"jams\" -- error: 0x50* (tray OR feeder) ^NEAR".into(),
            ..NewIncident::default()
        })
        .await
        .unwrap();
    let odd = odd.number.to_string();

    // Each query is the text it says, found where that text is, nowhere else.
    for query in [
        "\"jams\"",
        "\"jams",
        "-- error",
        "error: 0x50*",
        "0x50*",
        "(tray OR feeder)",
        "OR feeder)",
        "^NEAR",
        "NEAR",
        "\"jams\" -- error: 0x50* (tray",
    ] {
        assert_eq!(numbers(&store, query).await, [odd.as_str()], "{query:?}");
    }
    assert_eq!(
        numbers(&store, "(same printer)").await,
        ["INC0012347"],
        "parentheses in the seeds"
    );

    // Syntax that would mean something to FTS5 (or SQL): each finds what a plain substring
    // search finds, or nothing, never an error.
    let all = store.search(text("")).await.unwrap();
    for query in [
        "\"",
        "\"\"",
        "\"\"\"",
        "vpn*",
        "*",
        "***",
        "-vpn",
        "NOT vpn",
        "vpn OR email",
        "vpn AND email",
        "vpn NOT email",
        "number:INC0012346",
        "{number short_description}: vpn",
        "NEAR(vpn working)",
        "(vpn",
        "vpn)",
        "()",
        "'",
        "'; DROP TABLE incident; --",
        "\\",
        "%_%",
        "?1",
        "vpn\0working",
        "\0\0\0",
        "\u{1F4A5}\u{1F4A5}\u{1F4A5}",
    ] {
        let found = numbers(&store, query).await;
        let expected: Vec<String> = all
            .iter()
            .filter(|i| contains(i, query))
            .map(|i| i.number.to_string())
            .collect();
        assert_eq!(found, expected, "{query:?}");
    }
    assert_eq!(numbers(&store, "-vpn").await, Vec::<String>::new());
    assert_eq!(numbers(&store, "\"").await, [odd.as_str()]);

    // Empty and blank queries match everything, as before.
    for query in ["", "   ", "\t\n"] {
        assert_eq!(
            store.search(text(query)).await.unwrap().len(),
            SEEDS.len() + 1
        );
    }
    let long = "x".repeat(100_000);
    assert!(numbers(&store, &long).await.is_empty());
    assert_eq!(
        numbers(&store, "vpn").await,
        ["INC0012346"],
        "still serving"
    );
}

#[tokio::test]
async fn search_matches_substrings_case_insensitively() {
    let (_dir, store) = open();
    let accented = store
        .create(new_incident("Écran noir après la mise à jour"))
        .await
        .unwrap();
    let accented = accented.number.to_string();

    // Inside a word, from the index (three characters or more).
    assert_eq!(numbers(&store, "PN not").await, ["INC0012346"]);
    assert_eq!(numbers(&store, "vPn").await, ["INC0012346"]);
    assert_eq!(numbers(&store, "0012346").await, ["INC0012346"]);
    assert_eq!(numbers(&store, "orporate VP").await, ["INC0012346"]);
    // Words count in the order written, as one piece of text.
    assert!(numbers(&store, "working VPN").await.is_empty());
    assert!(numbers(&store, "VPN  not").await.is_empty(), "spaces count");
    // Case folding covers more than ASCII from the index; accents still count.
    assert_eq!(numbers(&store, "ÉCRAN NOIR").await, [accented.as_str()]);
    assert_eq!(numbers(&store, "écran").await, [accented.as_str()]);
    assert!(numbers(&store, "ecran").await.is_empty());

    // One or two characters: a scan, with the same substring matching (ASCII case folding).
    let pn = numbers(&store, "pN").await;
    assert!(pn.contains(&"INC0012346".to_owned()), "{pn:?}");
    let all_numbers = numbers(&store, "I").await;
    assert_eq!(all_numbers.len(), SEEDS.len() + 1, "every number has an I");
    assert!(numbers(&store, "%").await.is_empty(), "% is literal");
}

#[tokio::test]
async fn search_keeps_its_order_limit_and_filters_through_the_index() {
    let (_dir, store) = open();
    let mut created = Vec::new();
    for n in 0..3 {
        created.push(
            store
                .create(new_incident(&format!("Kraken sighting {n}")))
                .await
                .unwrap()
                .number
                .to_string(),
        );
    }

    let newest_first: Vec<&str> = created.iter().rev().map(String::as_str).collect();
    assert_eq!(numbers(&store, "kraken").await, newest_first);
    let two = store
        .search(SearchQuery {
            limit: 2,
            ..text("kraken")
        })
        .await
        .unwrap();
    let two: Vec<String> = two.iter().map(|i| i.number.to_string()).collect();
    assert_eq!(two, newest_first[..2]);
    let in_progress = store
        .search(SearchQuery {
            state: Some(State::InProgress),
            ..text("kraken")
        })
        .await
        .unwrap();
    assert!(in_progress.is_empty(), "new incidents are New");
    let new = store
        .search(SearchQuery {
            state: Some(State::New),
            priority: Some(Priority::Planning),
            ..text("kraken")
        })
        .await
        .unwrap();
    assert_eq!(new.len(), 3);
}

/// A text search with few matches is sorted here, one with many by SQLite: both give what
/// SQLite's `ORDER BY opened_at DESC, number DESC LIMIT` gives, ties on `opened_at` included.
#[tokio::test]
async fn few_or_many_matches_come_in_the_order_and_number_sqlite_sorts_them_to() {
    let (dir, store) = open();
    let mut created = Vec::new();
    for n in 0..50 {
        let incident = store
            .create(new_incident(&format!("Kraken sighting {n}")))
            .await
            .unwrap();
        created.push(incident.number.to_string());
    }
    // Opening times out of step with the numbers, each day shared by two incidents.
    let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
    for (i, number) in created.iter().enumerate() {
        let day = (i * 17) % 25 + 1;
        conn.execute(
            "UPDATE incident SET opened_at = ?1 WHERE number = ?2",
            rusqlite::params![format!("2026-03-{day:02} 08:00:00"), number],
        )
        .unwrap();
    }
    // SQLite's own order of every match: the reference.
    let sorted_by_sqlite = |query: &SearchQuery| -> Vec<String> {
        let (sql, values) = search_statement(query, None);
        let mut statement = conn.prepare(&sql).unwrap();
        let rows = statement
            .query_map(rusqlite::params_from_iter(values), |row| {
                row.get::<_, String>(0)
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    let mut cases = 0;
    // The index and the scan; limits whose unsorted read holds every match (100: 132 rows for
    // 50 matches), exactly as many (18: 50), and fewer (1, 5, 17: SQLite sorts).
    for query in ["kraken", "KRAKEN sight", "kr"] {
        let every = sorted_by_sqlite(&SearchQuery {
            limit: 1000,
            ..text(query)
        });
        assert_eq!(every.len(), 50, "{query:?} matches the 50: {every:?}");
        for limit in [1, 5, 17, 18, 40, 100] {
            let query = SearchQuery {
                limit,
                ..text(query)
            };
            let expected = sorted_by_sqlite(&query);
            assert_eq!(expected, every[..limit.min(50)], "{query:?}");
            let found: Vec<String> = store
                .search(query.clone())
                .await
                .unwrap()
                .iter()
                .map(|i| i.number.to_string())
                .collect();
            assert_eq!(found, expected, "{query:?}");
            cases += 1;
        }
    }
    assert_eq!(cases, 18);
    // Ties: two incidents opened on the same day come higher number first.
    let all = store.search(text("kraken")).await.unwrap();
    let tied = all
        .windows(2)
        .filter(|w| w[0].opened_at == w[1].opened_at)
        .count();
    assert!(tied > 0, "the data has ties");
    assert!(
        all.windows(2)
            .filter(|w| w[0].opened_at == w[1].opened_at)
            .all(|w| w[0].number.to_string() > w[1].number.to_string())
    );
}

#[test]
fn a_query_of_three_characters_or_more_uses_the_index() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedStore::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
    let plan = |query: &str| -> String {
        let (sql, values) = search_statement(&text(query), None);
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = statement
            .query_map(rusqlite::params_from_iter(values), |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    };

    let indexed = plan("vpn");
    let scanned = plan("vp");

    assert!(indexed.contains("VIRTUAL TABLE INDEX"), "{indexed}");
    assert!(!scanned.contains("incident_text"), "{scanned}");
}

/// How many segments the index has: its `_data` rows past the structure record (id 10) are
/// segment pages, whose id carries the segment id above bit 37.
fn index_segments(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT count(DISTINCT id >> 37) FROM incident_text_data WHERE id > 10",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

#[test]
fn a_new_store_starts_with_its_index_in_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedStore::open(dir.path()).unwrap());

    assert_eq!(index_segments(&dir.path().join(FILE_NAME)), 1);
}
