//! The trail's writer: when records are queued it lets more gather for [`GATHER`], takes as
//! many as are waiting (up to [`MAX_BATCH`]) and writes them in one transaction off the async
//! threads, then to the JSON-lines copy; prunes past the retention hourly.
//!
//! Gathering is what keeps the trail cheap on a busy gateway: while the writer sleeps, a
//! queued record wakes nobody, so the writer (and the blocking thread that writes) runs a few
//! times a second, not once per call.
//!
//! # When the store fails
//!
//! `audit.db`: a batch is tried three times, then counted as `failed` and logged. PostgreSQL
//! (across the network, so down or restarting for a while): the writer keeps the batch and
//! tries again with a growing pause (0.1 s to 2 s) until it is written; the records queued
//! meanwhile wait in the queue, and once it is full new records are dropped and counted, as
//! ever. The calls are never held up. One warning per outage and one line when it ends;
//! `switchboard_audit_records_held` says how many records the writer holds meanwhile.
//! Only a batch the server refuses as data (SQLSTATE classes 22, 23) is given up at once.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::Record;
use super::store::Store;
use crate::config::audit::JsonlTarget;
use crate::metrics::Metrics;

/// The most records written in one transaction.
pub const MAX_BATCH: usize = 512;

/// How long records gather after the first one of a batch is queued.
pub const GATHER: Duration = Duration::from_millis(50);

/// A record of an answered call is written within this long (the writer takes records as
/// soon as they are queued; this bounds one batch's write and its retries).
pub const FLUSH_WITHIN: Duration = Duration::from_secs(1);

/// How often records past the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What the writer is sent.
pub enum Message {
    /// A record to write.
    Record(Box<Record>),
    /// Answer once everything queued before is written.
    Flush(oneshot::Sender<()>),
}

/// The JSON-lines copy of the trail.
pub enum Jsonl {
    /// None configured.
    Off,
    /// Standard output.
    Stdout,
    /// A file opened for appending.
    File(std::fs::File),
}

impl Jsonl {
    /// Opens `target`.
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub fn open(target: Option<&JsonlTarget>) -> Result<Self, String> {
        Ok(match target {
            None => Jsonl::Off,
            Some(JsonlTarget::Stdout) => Jsonl::Stdout,
            Some(JsonlTarget::File(path)) => Jsonl::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("[audit] jsonl: cannot open {}: {e}", path.display()))?,
            ),
        })
    }

    fn write(&mut self, batch: &[Record]) -> std::io::Result<()> {
        let mut lines = Vec::with_capacity(batch.len() * 512);
        for record in batch {
            serde_json::to_writer(&mut lines, record)?;
            lines.push(b'\n');
        }
        match self {
            Jsonl::Off => Ok(()),
            Jsonl::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&lines)?;
                out.flush()
            }
            Jsonl::File(file) => file.write_all(&lines),
        }
    }
}

/// Runs until every sender is gone.
pub async fn run(
    mut rx: mpsc::Receiver<Message>,
    store: Arc<Store>,
    retention: Option<Duration>,
    jsonl: Jsonl,
    metrics: Arc<Metrics>,
) {
    let jsonl = Arc::new(std::sync::Mutex::new(jsonl));
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut messages = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut messages, MAX_BATCH) => {
                if n == 0 {
                    return;
                }
                let flush = messages.iter().any(|m| matches!(m, Message::Flush(_)));
                if !flush && messages.len() < MAX_BATCH {
                    tokio::time::sleep(GATHER).await;
                    while messages.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(message) => messages.push(message),
                            Err(_) => break,
                        }
                    }
                }
            }
            _ = prune.tick() => {
                let Some(retention) = retention else { continue };
                let cutoff = super::unix_ms() - retention.as_millis() as i64;
                match store.prune(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(records = n, "Audit records past the retention deleted."),
                    Err(e) => tracing::warn!(error = %e, "Audit retention: records could not be deleted."),
                }
                continue;
            }
        }
        let mut batch = Vec::with_capacity(messages.len());
        let mut flushes = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Record(r) => batch.push(*r),
                Message::Flush(done) => flushes.push(done),
            }
        }
        if !batch.is_empty() {
            write(&store, &jsonl, batch, &metrics, &rx).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Writes one batch: tried three times on `audit.db`; kept until written on a store that
/// [`Store::keeps_batches`] (unless the trail is gone, or the store refuses the data).
async fn write(
    store: &Store,
    jsonl: &Arc<std::sync::Mutex<Jsonl>>,
    batch: Vec<Record>,
    metrics: &Metrics,
    rx: &mpsc::Receiver<Message>,
) {
    let n = batch.len() as u64;
    let batch = Arc::new(batch);
    let mut tries = 0u32;
    let mut pause = Duration::from_millis(100);
    let mut outage: Option<Instant> = None;
    let result = loop {
        tries += 1;
        let error = match store.write(&batch).await {
            Ok(()) => break Ok(()),
            Err(e) => e,
        };
        let keep = store.keeps_batches() && error.transient && !rx.is_closed();
        if !keep && (tries >= 3 || !error.transient || store.keeps_batches()) {
            break Err(error);
        }
        if keep && outage.is_none() {
            outage = Some(Instant::now());
            metrics.audit_records_held(n as i64);
            tracing::warn!(
                store = %store.describe(),
                records = n,
                error = %error,
                "Audit store unavailable: holding the batch and retrying until it is back; new records wait in the queue ([audit] queue_size) and are dropped once it is full."
            );
        }
        tokio::time::sleep(pause).await;
        if keep {
            pause = (pause * 2).min(MAX_PAUSE);
        }
    };
    if outage.is_some() {
        metrics.audit_records_held(0);
    }
    if let (Some(since), Ok(())) = (outage, &result) {
        tracing::info!(
            store = %store.describe(),
            seconds = since.elapsed().as_secs_f64(),
            tries,
            "Audit store back: the held records are written."
        );
    }
    let off = matches!(
        *jsonl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        Jsonl::Off
    );
    if !off {
        let copy = jsonl.clone();
        let lines = batch.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut copy = copy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(e) = copy.write(&lines) {
                tracing::warn!(error = %e, "Audit records could not be written to the JSON-lines copy.");
            }
        })
        .await;
    }
    match result {
        Ok(()) => metrics.audit_records("written", n),
        Err(e) => {
            metrics.audit_records("failed", n);
            tracing::error!(records = n, store = %store.describe(), error = %e, "Audit records could not be written.");
        }
    }
}

/// The longest pause between two tries of a kept batch.
const MAX_PAUSE: Duration = Duration::from_secs(2);
