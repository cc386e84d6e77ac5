//! A stdio upstream's stderr, line by line into the gateway's log, in bounded memory.
//!
//! The pipe is always drained (a child blocks once a full pipe stops its writes), but what is
//! kept and logged is bounded: a line is cut at [`MAX_LINE_BYTES`] (the rest of it is read
//! and counted, never stored), at most [`LINES_PER_SECOND`] lines a second are logged (the
//! others are counted, and their number logged once the second is over), and the last
//! [`TAIL_LINES`] lines are kept to explain an exit ([`StderrLog::tail`]); control characters
//! (terminal escapes) are replaced, so a process cannot rewrite the log. Lines are logged
//! at `debug` (servers write their chatter there); the tail of a process that exited
//! unexpectedly is logged at `warn` by its supervisor.
//!
//! [`StderrLog::step`] reads what the pipe has now and handles it before it returns, so it
//! is cancel-safe: a supervisor polls it in a `select!` next to its other work.

use std::collections::VecDeque;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::time::{Duration, Instant};

/// Longest part of a line that is kept and logged, in bytes.
pub(super) const MAX_LINE_BYTES: usize = 2048;
/// Most lines logged in one second; the rest are counted.
pub(super) const LINES_PER_SECOND: u32 = 50;
/// Lines kept to explain an exit.
pub(super) const TAIL_LINES: usize = 10;

/// The log of one process's stderr.
pub(crate) struct StderrLog<R> {
    reader: BufReader<R>,
    /// The line being read (at most [`MAX_LINE_BYTES`]).
    line: Vec<u8>,
    /// Bytes of the current line past [`MAX_LINE_BYTES`], read and dropped.
    cut: usize,
    /// How logs name the upstream, and the process.
    target: String,
    pid: Option<u32>,
    /// The second being counted, lines logged in it, and lines not logged since the last
    /// report.
    window: Instant,
    logged: u32,
    suppressed: u64,
    /// The last lines, newest last.
    tail: VecDeque<String>,
    /// The pipe is closed (or failed).
    done: bool,
}

impl<R: AsyncRead + Unpin> StderrLog<R> {
    /// The log of `stderr`, the stderr of `target`'s process `pid`.
    pub(crate) fn new(stderr: R, target: String, pid: Option<u32>) -> Self {
        Self {
            reader: BufReader::with_capacity(8 * 1024, stderr),
            line: Vec::new(),
            cut: 0,
            target,
            pid,
            window: Instant::now(),
            logged: 0,
            suppressed: 0,
            tail: VecDeque::with_capacity(TAIL_LINES),
            done: false,
        }
    }

    /// Whether the pipe is closed: [`Self::step`] has nothing more to read.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Reads what the pipe has (waiting until it has something) and logs every line it
    /// completes. At the end of the pipe, logs the last unfinished line and is done.
    pub(crate) async fn step(&mut self) {
        if self.done {
            return std::future::pending().await;
        }
        let read = match self.reader.fill_buf().await {
            Ok(buf) if !buf.is_empty() => {
                let mut used = 0;
                let mut complete = Vec::new();
                while used < buf.len() {
                    let rest = &buf[used..];
                    let (part, ends) = match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => (&rest[..i], true),
                        None => (rest, false),
                    };
                    let room = MAX_LINE_BYTES.saturating_sub(self.line.len());
                    let kept = part.len().min(room);
                    self.line.extend_from_slice(&part[..kept]);
                    self.cut += part.len() - kept;
                    used += part.len() + usize::from(ends);
                    if ends {
                        complete.push((std::mem::take(&mut self.line), self.cut));
                        self.cut = 0;
                    }
                }
                Some((used, complete))
            }
            // End of the pipe, or an error reading it: nothing more will come.
            Ok(_) | Err(_) => None,
        };
        match read {
            Some((used, complete)) => {
                self.reader.consume(used);
                for (line, cut) in complete {
                    self.emit(&line, cut);
                }
            }
            None => {
                if !self.line.is_empty() || self.cut > 0 {
                    let line = std::mem::take(&mut self.line);
                    let cut = std::mem::take(&mut self.cut);
                    self.emit(&line, cut);
                }
                self.report_suppressed();
                self.done = true;
            }
        }
    }

    /// Logs what is left in the pipe, for at most `limit` (a grandchild may keep it open).
    pub(super) async fn finish(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            while !self.done {
                self.step().await;
            }
        })
        .await;
        self.report_suppressed();
    }

    /// The last lines read, oldest first.
    pub(super) fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// Logs one line (when the second's budget allows) and keeps it in the tail.
    fn emit(&mut self, line: &[u8], cut: usize) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Control characters (terminal escapes, a stray carriage return) would let a process
        // rewrite what the log shows: each becomes U+FFFD.
        let mut text: String = String::from_utf8_lossy(line)
            .chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect();
        if cut > 0 {
            text.push_str(&format!(" [... {cut} more bytes not shown]"));
        }
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.report_suppressed();
            self.window = now;
            self.logged = 0;
        }
        if self.logged < LINES_PER_SECOND {
            self.logged += 1;
            tracing::debug!(upstream = %self.target, pid = self.pid, line = %text, "Upstream MCP server stderr.");
        } else {
            self.suppressed += 1;
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text);
    }

    /// Logs how many lines were not, if any.
    fn report_suppressed(&mut self) {
        if self.suppressed > 0 {
            tracing::warn!(upstream = %self.target, pid = self.pid, lines = self.suppressed, "Upstream MCP server stderr lines not logged (over {LINES_PER_SECOND} a second).");
            self.suppressed = 0;
        }
    }

    /// Lines not logged since the last report.
    #[cfg(test)]
    fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    async fn drain<R: AsyncRead + Unpin>(log: &mut StderrLog<R>) {
        while !log.is_done() {
            log.step().await;
        }
    }

    #[tokio::test]
    async fn lines_are_split_cut_at_the_limit_and_the_last_are_kept() {
        let long = "x".repeat(MAX_LINE_BYTES + 100);
        let text = format!("first\r\n{long}\nthird \x1b[2Jwithout newline");
        let mut log = StderrLog::new(text.as_bytes(), "t".into(), Some(1));
        drain(&mut log).await;
        let tail = log.tail();
        assert_eq!(tail.len(), 3, "{tail:?}");
        assert_eq!(tail[0], "first");
        assert!(
            tail[1].starts_with(&"x".repeat(MAX_LINE_BYTES)),
            "{}",
            &tail[1][..20]
        );
        assert!(
            tail[1].ends_with(" [... 100 more bytes not shown]"),
            "{}",
            tail[1].len()
        );
        assert_eq!(
            tail[2], "third \u{fffd}[2Jwithout newline",
            "escapes are defused"
        );
    }

    #[tokio::test]
    async fn a_huge_line_without_newline_is_read_in_bounded_memory() {
        // 8 MiB in one line, written in pieces through a small pipe: all of it is read
        // (the writer never blocks for good), 2 KiB of it kept.
        let (mut tx, rx) = tokio::io::duplex(4096);
        let writer = tokio::spawn(async move {
            let chunk = vec![b'a'; 64 * 1024];
            for _ in 0..128 {
                tx.write_all(&chunk).await.unwrap();
            }
        });
        let mut log = StderrLog::new(rx, "t".into(), None);
        drain(&mut log).await;
        writer.await.unwrap();
        let tail = log.tail();
        assert_eq!(tail.len(), 1);
        assert!(tail[0].ends_with(&format!(
            " [... {} more bytes not shown]",
            8 * 1024 * 1024 - MAX_LINE_BYTES
        )));
    }

    #[tokio::test]
    async fn at_most_the_rate_is_logged_and_the_rest_counted() {
        let text: String = (0..LINES_PER_SECOND + 30)
            .map(|i| format!("line {i}\n"))
            .collect();
        let mut log = StderrLog::new(text.as_bytes(), "t".into(), None);
        // One read takes all the lines within the same second.
        log.step().await;
        assert_eq!(log.suppressed(), 30);
        assert_eq!(log.tail().len(), TAIL_LINES);
        assert_eq!(
            log.tail().last().unwrap(),
            &format!("line {}", LINES_PER_SECOND + 29)
        );
        // A second later the count is reported and the budget is whole again.
        log.window = log.window.checked_sub(Duration::from_secs(1)).unwrap();
        log.emit(b"later", 0);
        assert_eq!(log.suppressed(), 0);
        assert_eq!(log.logged, 1);
    }
}
