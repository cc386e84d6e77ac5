//! The embedded store's one writer: a thread that owns the writing connection and commits
//! concurrent writes together (group commit).
//!
//! Callers queue their write ([`Writer::write`]) and wait. The thread takes every write
//! waiting (at most [`MAX_GROUP`]), runs them in one `BEGIN IMMEDIATE` transaction, each in
//! its own savepoint, commits once and then answers each caller. With `synchronous = FULL`
//! the commit syncs the WAL once for the whole group, so throughput rises with the number of
//! concurrent writers instead of falling, as it did when each write took SQLite's write lock
//! on its own.
//!
//! The guarantees:
//! - **Durable before acknowledged.** A caller gets its result only after the commit that
//!   holds its write returned, that is after the sync; a caller whose group failed to commit
//!   gets an error ([`Error::Commit`]) and its write is not in the file.
//! - **Isolated failures.** A write that fails (a rule violation, a constraint, even a panic)
//!   is rolled back to its savepoint and fails alone; the other writes of its group commit.
//! - **In order.** Writes run in the order they were queued, each seeing the ones before it,
//!   so two updates of one incident apply in order and `max + 1` numbering stays gapless.
//! - **Nothing accepted is dropped.** Dropping the [`Writer`] closes the queue; the thread
//!   commits what is still queued, then ends, and the drop waits for it.
//! - **No hangs.** If the thread ever stops, queued and new callers get
//!   [`Error::WriterStopped`] instead of waiting forever.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::Error;

/// The most writes committed in one transaction. Bounds how long one group holds the write
/// lock (and so the wait of the writes that arrive meanwhile).
const MAX_GROUP: usize = 256;

/// How many writes may wait for the writer; callers beyond that wait (asynchronously) for
/// room in the queue.
const QUEUE: usize = 4 * MAX_GROUP;

/// The writer thread and the queue that feeds it. Dropping it drains the queue and waits for
/// the thread.
pub(super) struct Writer {
    /// Declared before `_thread`, so it drops first: the queue closes, the thread commits
    /// what is left and ends, then `_thread`'s drop joins it.
    queue: mpsc::Sender<Box<dyn Job>>,
    /// Never read: it is here to be dropped, after `queue`.
    _thread: JoinOnDrop,
}

impl Writer {
    /// Starts the writer thread, which owns `conn` from now on.
    ///
    /// # Errors
    /// [`Error::WriterThread`] when the thread cannot be started.
    pub(super) fn start(conn: Connection) -> Result<Self, Error> {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("incident-writer".into())
            .spawn(move || run(conn, jobs))
            .map_err(Error::WriterThread)?;
        Ok(Self {
            queue,
            _thread: JoinOnDrop(Some(thread)),
        })
    }

    /// Runs `work` on the writer connection, inside a savepoint of the next group's
    /// transaction, and returns its result once that transaction is committed. When `work`
    /// fails, its changes are rolled back and its error returned; the rest of the group is
    /// unaffected.
    ///
    /// # Errors
    /// `work`'s error; [`Error::Commit`] when the group's transaction failed;
    /// [`Error::WritePanicked`] when `work` panicked; [`Error::WriterStopped`] when the
    /// writer thread is gone.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            work: Some(work),
            outcome: None,
            reply,
        });
        // Either fails only when the thread has ended (its receiver, or the job holding our
        // reply sender, was dropped unanswered).
        self.queue
            .send(job)
            .await
            .map_err(|_| Error::WriterStopped)?;
        answer.await.map_err(|_| Error::WriterStopped)?
    }

    /// How many writes wait in the queue (not counting the group being committed).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

/// Joins the writer thread when dropped.
struct JoinOnDrop(Option<JoinHandle<()>>);

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            // Err only if the thread panicked; its callers have had their errors already.
            let _ = thread.join();
        }
    }
}

/// One queued write: its work, then its outcome, and where the answer goes.
trait Job: Send {
    /// Runs the work; true when it succeeded and its changes are to be kept.
    fn apply(&mut self, conn: &Connection) -> bool;

    /// Answers the caller once the group's fate is known: its own outcome if the group
    /// committed, otherwise the group's error (or its own, if it had failed anyway).
    fn answer(self: Box<Self>, group: Result<(), &Arc<rusqlite::Error>>);
}

struct Pending<T, F> {
    work: Option<F>,
    outcome: Option<Result<T, Error>>,
    reply: oneshot::Sender<Result<T, Error>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
{
    fn apply(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // AssertUnwindSafe: after a panic the work's savepoint is rolled back, so the
        // connection holds nothing half-done, and the work itself is never run again.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| work(conn)))
            .unwrap_or(Err(Error::WritePanicked));
        let kept = outcome.is_ok();
        self.outcome = Some(outcome);
        kept
    }

    fn answer(self: Box<Self>, group: Result<(), &Arc<rusqlite::Error>>) {
        let Self { outcome, reply, .. } = *self;
        let answer = match (group, outcome) {
            (_, Some(Err(own))) => Err(own),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Err(group), _) => Err(Error::Commit(Arc::clone(group))),
            // The group committed without running this write: cannot happen (a group commits
            // only after every write in it ran), but the caller must not wait for nothing.
            (Ok(()), None) => Err(Error::WriterStopped),
        };
        // The caller may have gone (its request was cancelled): nobody to tell.
        let _ = reply.send(answer);
    }
}

/// The writer thread: takes the writes waiting, commits them as one group, answers them;
/// ends when the queue is closed and empty.
fn run(conn: Connection, mut jobs: mpsc::Receiver<Box<dyn Job>>) {
    let mut group: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_GROUP);
    while jobs.blocking_recv_many(&mut group, MAX_GROUP) > 0 {
        let committed = commit_group(&conn, &mut group).map_err(Arc::new);
        if let Err(err) = &committed {
            tracing::error!(error = %err, writes = group.len(), "Incident store group commit failed.");
        }
        for job in group.drain(..) {
            job.answer(committed.as_ref().map(|_| ()));
        }
    }
}

/// Runs every write of `group` in one transaction, each in a savepoint, and commits. On
/// error the transaction is rolled back: none of the group's writes happened.
fn commit_group(conn: &Connection, group: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    if !conn.is_autocommit() {
        // A failed group whose rollback failed too: its callers have their errors; drop it.
        execute(conn, "ROLLBACK")?;
    }
    execute(conn, "BEGIN IMMEDIATE")?;
    let result = group
        .iter_mut()
        .try_for_each(|job| apply_in_savepoint(conn, job.as_mut()))
        .and_then(|()| execute(conn, "COMMIT"));
    if result.is_err() && !conn.is_autocommit() {
        // Leave the connection outside any transaction for the next group (if even this
        // rollback fails, the next group retries it before its BEGIN).
        let _ = execute(conn, "ROLLBACK");
    }
    result
}

/// Runs one write inside a savepoint: released when it succeeded, rolled back when not.
fn apply_in_savepoint(conn: &Connection, job: &mut dyn Job) -> rusqlite::Result<()> {
    execute(conn, "SAVEPOINT write")?;
    let kept = job.apply(conn);
    if conn.is_autocommit() {
        // SQLite rolled back the whole transaction on the write's error (e.g. disk full):
        // the writes before it are gone too, so the group fails.
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
            Some("the transaction was rolled back by an error in one of its writes".into()),
        ));
    }
    if !kept {
        execute(conn, "ROLLBACK TO write")?;
    }
    execute(conn, "RELEASE write")
}

/// Runs one of the writer's fixed statements (prepared once per connection, then cached).
fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A writer whose thread has already ended: its queue's receiver is `jobs`, or gone.
    fn ended() -> (Writer, mpsc::Receiver<Box<dyn Job>>) {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let writer = Writer {
            queue,
            _thread: JoinOnDrop(None),
        };
        (writer, jobs)
    }

    #[tokio::test]
    async fn a_writer_that_has_ended_fails_new_writes_at_once() {
        let (writer, jobs) = ended();
        drop(jobs);

        let err = writer.write(|_| Ok(())).await.unwrap_err();

        assert!(matches!(err, Error::WriterStopped), "{err}");
        assert_eq!(err.to_string(), "incident store writer has stopped");
    }

    #[tokio::test]
    async fn a_write_queued_when_the_writer_ends_fails_instead_of_hanging() {
        let (writer, mut jobs) = ended();
        let writer = Arc::new(writer);
        let queued = tokio::spawn({
            let writer = Arc::clone(&writer);
            async move { writer.write(|_| Ok(())).await }
        });
        // The write is in the queue; the "thread" ends without answering it.
        let job = jobs.recv().await.unwrap();
        drop(job);
        drop(jobs);

        let err = queued.await.unwrap().unwrap_err();

        assert!(matches!(err, Error::WriterStopped), "{err}");
    }

    #[tokio::test]
    async fn a_failed_group_fails_every_write_in_it_with_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        // Another connection holds the write lock, and the writer's has no busy timeout:
        // the group's BEGIN IMMEDIATE fails at once.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let writer = Writer::start(conn).unwrap();

        let err = writer
            .write(|conn| Ok(conn.execute("INSERT INTO t VALUES (1)", [])?))
            .await
            .unwrap_err();

        assert!(matches!(err, Error::Commit(_)), "{err}");
        assert!(err.to_string().contains("not saved"), "{err}");
        // The lock released, the same writer commits the next group.
        other.execute_batch("ROLLBACK").unwrap();
        let inserted = writer
            .write(|conn| Ok(conn.execute("INSERT INTO t VALUES (2)", [])?))
            .await
            .unwrap();
        assert_eq!(inserted, 1);
    }
}
