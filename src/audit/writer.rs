//! The trail's writer: takes queued records as they come, as many as are waiting (up to
//! [`MAX_BATCH`]), and writes them in one transaction off the async threads, then to the
//! JSON-lines copy; prunes past the retention hourly.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::Record;
use super::sqlite::SqliteTrail;
use crate::config::audit::JsonlTarget;
use crate::metrics::Metrics;

/// The most records written in one transaction.
pub const MAX_BATCH: usize = 512;

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
    store: Arc<SqliteTrail>,
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
            }
            _ = prune.tick() => {
                let store = store.clone();
                let now = super::unix_ms();
                match tokio::task::spawn_blocking(move || store.prune(now)).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::info!(records = n, "Audit records past the retention deleted."),
                    Ok(Err(e)) => tracing::warn!(error = %e, "Audit retention: records could not be deleted."),
                    Err(_) => {}
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
            write(&store, &jsonl, batch, &metrics).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Writes one batch, retrying a failed transaction twice.
async fn write(
    store: &Arc<SqliteTrail>,
    jsonl: &Arc<std::sync::Mutex<Jsonl>>,
    batch: Vec<Record>,
    metrics: &Metrics,
) {
    let n = batch.len() as u64;
    let (store, jsonl) = (store.clone(), jsonl.clone());
    let written = tokio::task::spawn_blocking(move || {
        let mut result = store.write(&batch);
        for _ in 0..2 {
            if result.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            result = store.write(&batch);
        }
        let mut copy = jsonl.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = copy.write(&batch) {
            tracing::warn!(error = %e, "Audit records could not be written to the JSON-lines copy.");
        }
        result
    })
    .await;
    match written {
        Ok(Ok(())) => metrics.audit_records("written", n),
        Ok(Err(e)) => {
            metrics.audit_records("failed", n);
            tracing::error!(records = n, error = %e, "Audit records could not be written to audit.db.");
        }
        Err(e) => {
            metrics.audit_records("failed", n);
            tracing::error!(records = n, error = %e, "Audit write did not finish.");
        }
    }
}
