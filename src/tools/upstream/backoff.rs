//! How long the gateway waits before it starts an upstream MCP server again after it could
//! not be started or ended by itself: 0.5 s, doubling up to 30 s, and back to 0.5 s once a
//! run lasted a minute. One mechanism for every `command` upstream: the supervised
//! processes of `[[tools]] type = "mcp"` ([`super::stdio`]) and the per-session processes of
//! `[[servers]]` ([`crate::federation`]).

use std::time::Duration;

/// The first wait before a restart.
const FIRST: Duration = Duration::from_millis(500);
/// The longest wait before a restart.
const MAX: Duration = Duration::from_secs(30);
/// A run that lasted this long was healthy: the next wait is [`FIRST`] again.
const HEALTHY: Duration = Duration::from_secs(60);

/// The waits between the starts of one upstream.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Backoff {
    /// The wait before the next start, after a run that lasted `ran` (`Duration::ZERO`: it
    /// could not be started); the wait after that one doubles.
    pub(crate) fn failed(&mut self, ran: Duration) -> Duration {
        if ran >= HEALTHY {
            self.next = FIRST;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(MAX);
        wait
    }

    /// A start succeeded: the next failure waits [`FIRST`] again.
    pub(crate) fn succeeded(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_half_a_second_up_to_thirty_and_resets_after_a_healthy_run() {
        let mut backoff = Backoff::default();
        let secs: Vec<f64> = (0..10)
            .map(|_| backoff.failed(Duration::ZERO).as_secs_f64())
            .collect();
        assert_eq!(
            secs,
            vec![0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
        );
        assert_eq!(backoff.failed(HEALTHY), FIRST);
        assert_eq!(backoff.failed(Duration::ZERO), FIRST * 2);
        backoff.succeeded();
        assert_eq!(backoff.failed(Duration::ZERO), FIRST);
    }
}
