//! Unit tests for the embedded incident store ([`super::EmbeddedStore`]): opening, WAL and
//! schema checks, seeding, creates and updates under the incident rules, search, and
//! incident numbers that stay distinct under concurrent writers.

use std::collections::HashSet;
use std::sync::Arc;

use super::*;
use crate::incidents::model::DEFAULT_CLOSE_CODE;
use crate::incidents::seed::SEEDS;

fn open() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    (dir, store)
}

fn everything() -> SearchQuery {
    SearchQuery {
        limit: 10_000,
        ..SearchQuery::default()
    }
}

fn new_incident(summary: &str) -> NewIncident {
    NewIncident {
        short_description: summary.to_owned(),
        ..NewIncident::default()
    }
}

#[tokio::test]
async fn seeded_store_has_the_vpn_incident() {
    let (_dir, store) = open();

    let vpn = store.get("INC0012346").await.unwrap().expect("seeded");

    assert_eq!(vpn.short_description, "VPN not working");
    assert!(
        vpn.description
            .as_deref()
            .unwrap()
            .contains("corporate VPN")
    );
    assert_eq!(vpn.state, State::InProgress);
    assert_eq!(vpn.impact, Level::Medium);
    assert_eq!(vpn.urgency, Level::Medium);
    assert_eq!(vpn.priority, Priority::Moderate);
    assert_eq!(vpn.category.as_deref(), Some("network"));
    assert_eq!(vpn.sys_id.len(), 32);
    let all = store.search(everything()).await.unwrap();
    assert_eq!(all.len(), SEEDS.len());
    let states: HashSet<State> = all.iter().map(|i| i.state).collect();
    for state in State::ALL {
        assert!(states.contains(state), "a seed in state {state}");
    }
    for resolved in all.iter().filter(|i| i.state.is_resolved()) {
        assert!(resolved.close_notes.is_some(), "{}", resolved.number);
        assert!(resolved.resolved_at.is_some(), "{}", resolved.number);
    }
}

#[tokio::test]
async fn open_configures_wal_and_full_sync_and_creates_the_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");

    let store = EmbeddedStore::open(&data).unwrap();

    assert_eq!(store.path(), data.join(FILE_NAME));
    assert!(store.path().exists());
    // Read on the writer connection itself: `synchronous` is a per-connection setting.
    let (mode, sync, version) = store
        .write(|conn| {
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            Ok((mode, sync, version))
        })
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "synchronous = FULL");
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn open_reports_a_data_dir_that_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();

    let err = EmbeddedStore::open(&file.join("data")).err().unwrap();

    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn open_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedStore::open(dir.path()).unwrap());
    Connection::open(dir.path().join(FILE_NAME))
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();

    let err = EmbeddedStore::open(dir.path()).err().unwrap();

    assert!(
        matches!(err, Error::UnsupportedSchema { found: 99, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn create_then_get_returns_the_same_incident() {
    let (_dir, store) = open();

    let created = store
        .create(NewIncident {
            short_description: "Login failure for all users".into(),
            description: Some("Nobody can sign in to the intranet.".into()),
            urgency: Some(Level::High),
            impact: Some(Level::High),
            caller: Some("Joe Employee".into()),
            work_notes: Some("Opened from chat.".into()),
            ..NewIncident::default()
        })
        .await
        .unwrap();

    assert_eq!(created.number.as_str(), "INC0012349", "max seed + 1");
    assert_eq!(created.state, State::New);
    assert_eq!(created.priority, Priority::Critical);
    assert!(
        created
            .work_notes
            .as_deref()
            .unwrap()
            .ends_with("Opened from chat.")
    );
    let fetched = store.get("inc0012349").await.unwrap();
    assert_eq!(fetched, Some(created));
}

#[tokio::test]
async fn create_rejects_a_blank_summary_and_stores_nothing() {
    let (_dir, store) = open();

    let err = store.create(new_incident("  ")).await.unwrap_err();

    assert!(matches!(
        err,
        Error::Invalid(Violation::EmptyShortDescription)
    ));
    assert_eq!(store.search(everything()).await.unwrap().len(), SEEDS.len());
}

#[tokio::test]
async fn get_validates_numbers_and_misses_unknown_ones() {
    let (_dir, store) = open();

    assert_eq!(store.get("INC0099999").await.unwrap(), None);
    let err = store.get("12346").await.unwrap_err();
    assert!(matches!(err, Error::Invalid(Violation::BadNumber { .. })));
    assert!(
        err.to_string().contains("INC followed by 7 digits"),
        "{err}"
    );
}

#[tokio::test]
async fn update_changes_state_and_recomputes_priority() {
    let (_dir, store) = open();

    let updated = store
        .update(
            "INC0012346",
            IncidentPatch {
                urgency: Some(Level::High),
                state: Some(State::OnHold),
                ..IncidentPatch::default()
            },
        )
        .await
        .unwrap();

    assert_eq!(updated.priority, Priority::High);
    assert_eq!(updated.state, State::OnHold);
    let stored = store.get("INC0012346").await.unwrap().unwrap();
    assert_eq!(stored, updated);
    assert!(stored.updated_at > stored.opened_at);
}

#[tokio::test]
async fn resolving_without_close_notes_is_rejected_and_changes_nothing() {
    let (_dir, store) = open();
    let before = store.get("INC0012346").await.unwrap().unwrap();

    let err = store
        .update(
            "INC0012346",
            IncidentPatch {
                state: Some(State::Resolved),
                work_notes: Some("Fixed it.".into()),
                ..IncidentPatch::default()
            },
        )
        .await
        .unwrap_err();

    assert!(
        matches!(err, Error::Invalid(Violation::CloseNotesRequired { .. })),
        "{err:?}"
    );
    assert_eq!(store.get("INC0012346").await.unwrap().unwrap(), before);
}

#[tokio::test]
async fn resolving_with_close_notes_sets_resolution_fields() {
    let (_dir, store) = open();

    let resolved = store
        .update(
            "INC0012346",
            IncidentPatch {
                state: Some(State::Resolved),
                close_notes: Some("VPN config fixed".into()),
                ..IncidentPatch::default()
            },
        )
        .await
        .unwrap();

    assert_eq!(resolved.state, State::Resolved);
    assert_eq!(resolved.close_notes.as_deref(), Some("VPN config fixed"));
    assert_eq!(resolved.close_code.as_deref(), Some(DEFAULT_CLOSE_CODE));
    assert_eq!(resolved.resolved_at, Some(resolved.updated_at));
    assert_eq!(store.get("INC0012346").await.unwrap(), Some(resolved));
}

#[tokio::test]
async fn update_of_an_unknown_incident_is_not_found() {
    let (_dir, store) = open();

    let err = store
        .update(
            "INC0099999",
            IncidentPatch {
                state: Some(State::InProgress),
                ..IncidentPatch::default()
            },
        )
        .await
        .unwrap_err();

    assert!(matches!(&err, Error::NotFound { number } if number.as_str() == "INC0099999"));
    assert_eq!(err.to_string(), "incident INC0099999 not found");
}

#[tokio::test]
async fn work_notes_are_appended_to_the_journal() {
    let (_dir, store) = open();
    let created = store.create(new_incident("Disk full")).await.unwrap();
    let number = created.number.as_str();

    for note in ["First look.", "Cleaned temp files."] {
        store
            .update(
                number,
                IncidentPatch {
                    work_notes: Some(note.into()),
                    ..IncidentPatch::default()
                },
            )
            .await
            .unwrap();
    }

    let journal = store
        .get(number)
        .await
        .unwrap()
        .unwrap()
        .work_notes
        .unwrap();
    let first = journal.find("First look.").expect("first note kept");
    let second = journal
        .find("Cleaned temp files.")
        .expect("second note added");
    assert!(first < second, "{journal}");
    assert_eq!(journal.matches("(Work notes)").count(), 2, "{journal}");
}

#[tokio::test]
async fn search_matches_text_case_insensitively() {
    let (_dir, store) = open();

    let vpn = store
        .search(SearchQuery {
            text: Some("vpn".into()),
            ..SearchQuery::default()
        })
        .await
        .unwrap();
    let by_close_notes = store
        .search(SearchQuery {
            text: Some("ONLINE OFFICE REPAIR".into()),
            ..SearchQuery::default()
        })
        .await
        .unwrap();
    let by_work_notes = store
        .search(SearchQuery {
            text: Some("loaner laptop".into()),
            ..SearchQuery::default()
        })
        .await
        .unwrap();
    let by_number = store
        .search(SearchQuery {
            text: Some("inc0012343".into()),
            ..SearchQuery::default()
        })
        .await
        .unwrap();
    let wildcard = store
        .search(SearchQuery {
            text: Some("%".into()),
            ..SearchQuery::default()
        })
        .await
        .unwrap();

    let numbers = |found: &[Incident]| -> Vec<String> {
        found.iter().map(|i| i.number.to_string()).collect()
    };
    assert_eq!(numbers(&vpn), ["INC0012346"]);
    assert_eq!(numbers(&by_close_notes), ["INC0012341"]);
    assert_eq!(numbers(&by_work_notes), ["INC0012342"]);
    assert_eq!(numbers(&by_number), ["INC0012343"]);
    assert!(wildcard.is_empty(), "% is literal");
}

#[tokio::test]
async fn search_filters_by_state_and_priority_newest_first() {
    let (_dir, store) = open();

    let new = store
        .search(SearchQuery {
            state: Some(State::New),
            ..SearchQuery::default()
        })
        .await
        .unwrap();
    let high = store
        .search(SearchQuery {
            priority: Some(Priority::High),
            ..SearchQuery::default()
        })
        .await
        .unwrap();
    let new_and_low = store
        .search(SearchQuery {
            state: Some(State::New),
            priority: Some(Priority::Low),
            ..SearchQuery::default()
        })
        .await
        .unwrap();

    assert!(new.len() >= 2 && new.iter().all(|i| i.state == State::New));
    assert!(new.windows(2).all(|w| w[0].opened_at >= w[1].opened_at));
    assert!(!high.is_empty() && high.iter().all(|i| i.priority == Priority::High));
    assert!(
        new_and_low
            .iter()
            .all(|i| i.state == State::New && i.priority == Priority::Low)
    );
    assert!(new_and_low.len() < new.len());
}

#[tokio::test]
async fn search_honours_the_limit() {
    let (_dir, store) = open();

    let two = store
        .search(SearchQuery {
            limit: 2,
            ..SearchQuery::default()
        })
        .await
        .unwrap();

    let numbers: Vec<&str> = two.iter().map(|i| i.number.as_str()).collect();
    assert_eq!(numbers, ["INC0012348", "INC0012347"], "the two newest");
}

#[tokio::test]
async fn reopening_keeps_data_and_does_not_reseed() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let created = store.create(new_incident("Keep me")).await.unwrap();
    let updated = store
        .update(
            "INC0012346",
            IncidentPatch {
                state: Some(State::Resolved),
                close_notes: Some("VPN config fixed".into()),
                ..IncidentPatch::default()
            },
        )
        .await
        .unwrap();
    drop(store);

    let reopened = EmbeddedStore::open(dir.path()).unwrap();

    let all = reopened.search(everything()).await.unwrap();
    assert_eq!(all.len(), SEEDS.len() + 1);
    assert_eq!(
        reopened.get(created.number.as_str()).await.unwrap(),
        Some(created)
    );
    assert_eq!(reopened.get("INC0012346").await.unwrap(), Some(updated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_get_distinct_numbers() {
    let (_dir, store) = open();
    let store = Arc::new(store);

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut numbers = Vec::new();
            for i in 0..25 {
                let incident = store
                    .create(new_incident(&format!("task {task} incident {i}")))
                    .await
                    .unwrap();
                numbers.push(incident.number.sequence());
            }
            numbers
        });
    }
    let mut all = Vec::new();
    while let Some(numbers) = tasks.join_next().await {
        all.extend(numbers.unwrap());
    }

    let distinct: HashSet<u32> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 200);
    assert_eq!(distinct.iter().min(), Some(&12_349));
    assert_eq!(distinct.iter().max(), Some(&12_548), "no gaps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_never_share_a_number() {
    // Two writer connections, as two processes would have: only BEGIN IMMEDIATE keeps
    // their max + 1 apart.
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let second = Arc::new(EmbeddedStore::open(dir.path()).unwrap());

    let mut tasks = tokio::task::JoinSet::new();
    for store in [first, second] {
        for _ in 0..2 {
            let store = Arc::clone(&store);
            tasks.spawn(async move {
                let mut numbers = Vec::new();
                for _ in 0..15 {
                    numbers.push(store.create(new_incident("x")).await.unwrap().number);
                }
                numbers
            });
        }
    }
    let mut all = Vec::new();
    while let Some(numbers) = tasks.join_next().await {
        all.extend(numbers.unwrap());
    }

    let distinct: HashSet<IncidentNumber> = all.iter().cloned().collect();
    assert_eq!(all.len(), 60);
    assert_eq!(distinct.len(), 60);
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<EmbeddedStore>();
}
