//! Unit tests of the embedded store's group commit ([`super::super::writer`]): writes queued
//! together commit in one transaction, in order, with gapless numbers; a write that fails
//! fails alone; dropping the store commits what is queued.
//!
//! To put writes in one group on purpose, a test first [`hold`]s the writer with a write
//! that waits, queues the writes behind it, waits until they are all queued, then lets go:
//! the writer then takes them all in one group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

/// How long a test waits for writes to reach the queue.
const DEADLINE: Duration = Duration::from_secs(10);

fn new_incident(summary: &str) -> NewIncident {
    NewIncident {
        short_description: summary.to_owned(),
        ..NewIncident::default()
    }
}

fn notes(note: &str) -> IncidentPatch {
    IncidentPatch {
        work_notes: Some(note.into()),
        ..IncidentPatch::default()
    }
}

/// Occupies the writer thread with a write that waits until the returned sender sends (or
/// is dropped); returns once that write runs, so what is queued next waits behind it.
async fn hold(store: &Arc<EmbeddedStore>) -> (std::sync::mpsc::Sender<()>, JoinHandle<()>) {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (running, is_running) = oneshot::channel();
    let holder = tokio::spawn({
        let store = Arc::clone(store);
        async move {
            store
                .write(move |_| {
                    let _ = running.send(());
                    let _ = released.recv();
                    Ok(())
                })
                .await
                .unwrap();
        }
    });
    is_running.await.unwrap();
    (release, holder)
}

/// Waits until `n` writes wait in the queue.
async fn queued(store: &EmbeddedStore, n: usize) {
    let deadline = Instant::now() + DEADLINE;
    while store.queued_writes() < n {
        assert!(Instant::now() < deadline, "{n} writes never queued");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_in_one_group_get_distinct_consecutive_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let (release, holder) = hold(&store).await;

    let creates: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create(new_incident(&format!("c{i}"))).await })
        })
        .collect();
    queued(&store, 50).await;
    release.send(()).unwrap();
    holder.await.unwrap();

    let mut numbers = Vec::new();
    for create in creates {
        let incident = create.await.unwrap().unwrap();
        assert_eq!(
            store.get(incident.number.as_str()).await.unwrap().as_ref(),
            Some(&incident),
            "acknowledged, so stored"
        );
        numbers.push(incident.number.sequence());
    }
    numbers.sort_unstable();
    let expected: Vec<u32> = (12_349..12_399).collect();
    assert_eq!(numbers, expected, "distinct, consecutive, after the seeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_write_fails_alone_and_its_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let (release, holder) = hold(&store).await;

    // In queue order: a create, a blank create (a rule violation), a write that changes a
    // row then breaks the UNIQUE constraint, a write that changes a row then panics, an
    // update of an unknown incident, and a last create.
    let mut writes: Vec<JoinHandle<Result<String, Error>>> = Vec::new();
    let spawn_create = |summary: &'static str| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let incident = store.create(new_incident(summary)).await?;
            Ok(incident.number.as_str().to_owned())
        })
    };
    writes.push(spawn_create("before"));
    queued(&store, 1).await;
    writes.push(spawn_create("   "));
    queued(&store, 2).await;
    writes.push(tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            store
                .write(|conn| {
                    conn.execute(
                        "UPDATE incident SET short_description = 'clobbered' \
                         WHERE number = 'INC0012346'",
                        [],
                    )?;
                    conn.execute(
                        "UPDATE incident SET number = 'INC0012345' WHERE number = 'INC0012346'",
                        [],
                    )?;
                    Ok(String::from("constraint kept"))
                })
                .await
        }
    }));
    queued(&store, 3).await;
    writes.push(tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            store
                .write(|conn| -> Result<String, Error> {
                    conn.execute(
                        "UPDATE incident SET short_description = 'half done' \
                         WHERE number = 'INC0012345'",
                        [],
                    )?;
                    panic!("a bug in a write");
                })
                .await
        }
    }));
    queued(&store, 4).await;
    writes.push(tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            let incident = store.update("INC0099999", notes("nobody")).await?;
            Ok(incident.number.as_str().to_owned())
        }
    }));
    queued(&store, 5).await;
    writes.push(spawn_create("after"));
    queued(&store, 6).await;
    release.send(()).unwrap();
    holder.await.unwrap();

    let mut results = Vec::new();
    for write in writes {
        results.push(write.await.unwrap());
    }
    assert_eq!(results[0].as_ref().unwrap(), "INC0012349");
    assert!(
        matches!(
            results[1],
            Err(Error::Invalid(Violation::EmptyShortDescription))
        ),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(Error::Storage(_))),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(results[3], Err(Error::WritePanicked)),
        "{:?}",
        results[3]
    );
    assert!(
        matches!(results[4], Err(Error::NotFound { .. })),
        "{:?}",
        results[4]
    );
    // The failed writes took no number and left no change.
    assert_eq!(results[5].as_ref().unwrap(), "INC0012350");
    for (number, summary) in [("INC0012349", "before"), ("INC0012350", "after")] {
        let stored = store.get(number).await.unwrap().expect("committed");
        assert_eq!(stored.short_description, summary);
    }
    let vpn = store.get("INC0012346").await.unwrap().unwrap();
    assert_eq!(vpn.short_description, "VPN not working");
    let other = store.get("INC0012345").await.unwrap().unwrap();
    assert_ne!(other.short_description, "half done");
    // And the writer goes on.
    let next = store.create(new_incident("later")).await.unwrap();
    assert_eq!(next.number.as_str(), "INC0012351");
}

const NOTES: [&str; 4] = ["note-1", "note-2", "note-3", "note-4"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_of_one_incident_in_one_group_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let created = store.create(new_incident("Printer on fire")).await.unwrap();
    let number: &'static str = created.number.as_str().to_owned().leak();
    let (release, holder) = hold(&store).await;

    let mut updates = Vec::new();
    for (i, note) in NOTES.into_iter().enumerate() {
        let store_ = Arc::clone(&store);
        updates.push(tokio::spawn(async move {
            store_.update(number, notes(note)).await
        }));
        queued(&store, i + 1).await;
    }
    let resolve = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            store
                .update(
                    number,
                    IncidentPatch {
                        state: Some(State::Resolved),
                        close_notes: Some("fixed".into()),
                        ..IncidentPatch::default()
                    },
                )
                .await
        }
    });
    queued(&store, 5).await;
    release.send(()).unwrap();
    holder.await.unwrap();

    // Each update saw the ones queued before it.
    let mut answers = Vec::new();
    for update in updates {
        answers.push(update.await.unwrap().unwrap());
    }
    for (i, answer) in answers.iter().enumerate() {
        let journal = answer.work_notes.as_deref().unwrap();
        assert_eq!(journal.matches("(Work notes)").count(), i + 1, "{journal}");
    }
    let resolved = resolve.await.unwrap().unwrap();
    assert_eq!(resolved.state, State::Resolved);
    let stored = store.get(number).await.unwrap().unwrap();
    assert_eq!(stored, resolved, "the last write wins, with every note");
    let journal = stored.work_notes.unwrap();
    let positions: Vec<usize> = NOTES
        .into_iter()
        .map(|note| journal.find(&format!("\n{note}")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{journal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_the_store_commits_the_writes_still_queued() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let (release, holder) = hold(&store).await;
    // A caller that queued its write and went away (its request was cancelled): the write
    // was accepted and must still be committed.
    let gone = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.create(new_incident("queued at shutdown")).await }
    });
    queued(&store, 1).await;
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());

    // The last owner drops the store while the writer is still busy: the drop waits for the
    // queue to drain (on a thread of its own, as it blocks).
    let holder_store = Arc::clone(&store);
    drop(store);
    let dropping = std::thread::spawn(move || drop(holder_store));
    release.send(()).unwrap();
    holder.await.unwrap();
    dropping.join().unwrap();

    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    let stored = reopened.get("INC0012349").await.unwrap().expect("drained");
    assert_eq!(stored.short_description, "queued at shutdown");
}
