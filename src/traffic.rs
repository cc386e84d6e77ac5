//! Recent traffic per agent, in memory: the last 15 minutes of tool calls and LLM requests
//! in 10-second buckets, for the admin API's `GET /admin/traffic` and the console's charts.
//!
//! Prometheus (`/metrics`) keeps totals since start for a scraper to rate; this keeps what
//! an operator looking at the gateway right now wants without one: calls per second,
//! latency percentiles and errors over the last minutes. Each agent has a fixed ring of
//! buckets (about 30 KiB) behind a `std` mutex held only to add one observation or copy
//! the ring out; latencies go into a log-scale histogram per bucket (each bucket √2 wide),
//! so percentiles are exact to within that factor and merge across buckets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds per bucket.
pub const BUCKET_SECS: u64 = 10;
/// Buckets kept: 15 minutes.
pub const BUCKETS: usize = 90;

/// Histogram bins: bin `i` holds latencies up to `FIRST_BOUND_US × √2^i`; the last is open.
const BINS: usize = 44;
const FIRST_BOUND_US: f64 = 50.0;

/// A latency histogram of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram([u32; BINS]);

impl Default for Histogram {
    fn default() -> Self {
        Self([0; BINS])
    }
}

fn bound_us(bin: usize) -> f64 {
    FIRST_BOUND_US * std::f64::consts::SQRT_2.powi(bin as i32)
}

impl Histogram {
    fn record(&mut self, micros: u64) {
        let bin = if micros as f64 <= FIRST_BOUND_US {
            0
        } else {
            // bound(i) >= micros  <=>  i >= 2 * log2(micros / first)
            let i = (2.0 * (micros as f64 / FIRST_BOUND_US).log2()).ceil();
            (i as usize).min(BINS - 1)
        };
        self.0[bin] = self.0[bin].saturating_add(1);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    fn count(&self) -> u64 {
        self.0.iter().map(|&n| u64::from(n)).sum()
    }

    /// The `q`-quantile (0..=1) in milliseconds, interpolated inside its bin; `None` when
    /// empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &n) in self.0.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let before = seen as f64;
            seen += u64::from(n);
            if seen as f64 >= rank {
                let low = if i == 0 { 0.0 } else { bound_us(i - 1) };
                let high = bound_us(i);
                let within = (rank - before) / f64::from(n);
                return Some((low + (high - low) * within) / 1000.0);
            }
        }
        Some(bound_us(BINS - 1) / 1000.0)
    }
}

/// What one agent did in one bucket.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bucket {
    /// Tool calls from MCP clients that finished.
    pub calls: u32,
    /// Of those, the ones that failed (error result, invalid arguments, cancelled).
    pub errors: u32,
    /// Their latencies.
    pub latency: Histogram,
    /// Chat-completion requests of agent runs.
    pub llm_requests: u32,
    /// Of those, the failed ones.
    pub llm_errors: u32,
    /// Their latencies.
    pub llm_latency: Histogram,
    /// LLM prompt tokens.
    pub prompt_tokens: u64,
    /// LLM completion tokens.
    pub completion_tokens: u64,
}

impl Bucket {
    fn merge(&mut self, other: &Bucket) {
        self.calls = self.calls.saturating_add(other.calls);
        self.errors = self.errors.saturating_add(other.errors);
        self.latency.merge(&other.latency);
        self.llm_requests = self.llm_requests.saturating_add(other.llm_requests);
        self.llm_errors = self.llm_errors.saturating_add(other.llm_errors);
        self.llm_latency.merge(&other.llm_latency);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
    }
}

/// A ring of time buckets of [`BUCKET_SECS`] seconds: slot `i % len` holds bucket number `i`
/// (seconds since the epoch / [`BUCKET_SECS`]) or an older one, which reads as empty. Used for
/// each agent's 15 minutes here and for each client's last minute ([`crate::clients`]).
#[derive(Debug)]
pub struct Ring<B> {
    slots: Box<[(u64, B)]>,
}

impl<B: Copy + Default> Ring<B> {
    /// A ring of `len` buckets.
    pub fn new(len: usize) -> Self {
        Self {
            slots: vec![(0, B::default()); len.max(1)].into_boxed_slice(),
        }
    }

    fn slot(&self, index: u64) -> usize {
        (index % self.slots.len() as u64) as usize
    }

    /// Bucket number `index`, emptied first if its slot held an older one.
    pub fn bucket_mut(&mut self, index: u64) -> &mut B {
        let slot = &mut self.slots[self.slot(index)];
        if slot.0 != index {
            *slot = (index, B::default());
        }
        &mut slot.1
    }

    /// Bucket number `index` (empty when its slot holds another one).
    pub fn bucket(&self, index: u64) -> B {
        let slot = &self.slots[self.slot(index)];
        if slot.0 == index {
            slot.1
        } else {
            B::default()
        }
    }

    /// The last `n` buckets up to and including number `last`, oldest first.
    pub fn window(&self, last: u64, n: usize) -> impl Iterator<Item = B> + '_ {
        let first = last.saturating_sub(n as u64 - 1);
        (first..=last).map(|i| self.bucket(i))
    }
}

/// The bucket number of `t`.
pub fn bucket_index(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) / BUCKET_SECS
}

/// Start of the 15-minute window that ends with `now`'s bucket, in seconds since the epoch.
pub fn window_start(now: SystemTime) -> u64 {
    bucket_index(now).saturating_sub(BUCKETS as u64 - 1) * BUCKET_SECS
}

/// One agent's ring, shared so a recorder never holds the map's lock while it adds.
type AgentRing = Arc<Mutex<Ring<Bucket>>>;

/// Recent traffic of every agent. Agents appear on their first observation and are
/// forgotten by [`Traffic::retain`] when a reload removes them.
#[derive(Default)]
pub struct Traffic {
    agents: Mutex<HashMap<Arc<str>, AgentRing>>,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic").finish_non_exhaustive()
    }
}

/// One agent's buckets, oldest first, ending with the current one.
#[derive(Debug, Clone)]
pub struct Series {
    /// The agent.
    pub agent: Arc<str>,
    /// Start of the first bucket, seconds since the Unix epoch.
    pub start_unix: u64,
    /// [`BUCKETS`] buckets of [`BUCKET_SECS`] seconds each; the last one is still filling.
    pub buckets: Vec<Bucket>,
}

impl Series {
    /// The last `n` buckets merged.
    pub fn last(&self, n: usize) -> Bucket {
        let mut sum = Bucket::default();
        for b in self.buckets.iter().rev().take(n) {
            sum.merge(b);
        }
        sum
    }
}

impl Traffic {
    fn ring(&self, agent: &str) -> AgentRing {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ring) = agents.get(agent) {
            return ring.clone();
        }
        let ring = Arc::new(Mutex::new(Ring::new(BUCKETS)));
        agents.insert(Arc::from(agent), ring.clone());
        ring
    }

    fn with_bucket(&self, agent: &str, at: SystemTime, f: impl FnOnce(&mut Bucket)) {
        let ring = self.ring(agent);
        let mut ring = ring.lock().unwrap_or_else(PoisonError::into_inner);
        f(ring.bucket_mut(bucket_index(at)));
    }

    /// A tool call of `agent` finished at `at` after `micros`.
    pub fn tool_call(&self, agent: &str, at: SystemTime, micros: u64, failed: bool) {
        self.with_bucket(agent, at, |b| {
            b.calls = b.calls.saturating_add(1);
            if failed {
                b.errors = b.errors.saturating_add(1);
            }
            b.latency.record(micros);
        });
    }

    /// A chat-completion request of `agent` finished at `at`.
    pub fn llm_request(
        &self,
        agent: &str,
        at: SystemTime,
        micros: u64,
        failed: bool,
        prompt: u64,
        completion: u64,
    ) {
        self.with_bucket(agent, at, |b| {
            b.llm_requests = b.llm_requests.saturating_add(1);
            if failed {
                b.llm_errors = b.llm_errors.saturating_add(1);
            }
            b.llm_latency.record(micros);
            b.prompt_tokens = b.prompt_tokens.saturating_add(prompt);
            b.completion_tokens = b.completion_tokens.saturating_add(completion);
        });
    }

    /// The last 15 minutes of `agent` as of `now` (empty buckets for an agent never seen).
    pub fn series(&self, agent: &str, now: SystemTime) -> Series {
        let ring = self
            .agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agent)
            .cloned();
        let buckets = match ring {
            Some(ring) => {
                let ring = ring.lock().unwrap_or_else(PoisonError::into_inner);
                ring.window(bucket_index(now), BUCKETS).collect()
            }
            None => vec![Bucket::default(); BUCKETS],
        };
        Series {
            agent: Arc::from(agent),
            start_unix: window_start(now),
            buckets,
        }
    }

    /// Forgets agents that are no longer served.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| keep(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn quantiles_land_within_a_bin_of_the_truth() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(ms * 1000);
        }
        let p50 = h.quantile_ms(0.5).unwrap_or_default();
        let p99 = h.quantile_ms(0.99).unwrap_or_default();
        assert!((50.0 / 1.5..=50.0 * 1.5).contains(&p50), "p50 {p50}");
        assert!((99.0 / 1.5..=99.0 * 1.5).contains(&p99), "p99 {p99}");
        assert_eq!(Histogram::default().quantile_ms(0.5), None);
    }

    #[test]
    fn tiny_and_huge_latencies_stay_in_the_end_bins() {
        let mut h = Histogram::default();
        h.record(0);
        h.record(u64::MAX);
        assert_eq!(h.0[0], 1);
        assert_eq!(h.0[BINS - 1], 1);
    }

    #[test]
    fn calls_land_in_their_bucket_and_old_ones_age_out() {
        let t = Traffic::default();
        let now = 1_000_000u64;
        t.tool_call("a", at(now), 2_000, false);
        t.tool_call("a", at(now), 4_000, true);
        t.tool_call("a", at(now - 60), 1_000, false);
        // Older than the window: its slot is reused and reads as empty.
        t.tool_call("a", at(now - 900 - 10), 1_000, false);
        t.llm_request("a", at(now), 500_000, false, 100, 20);
        let s = t.series("a", at(now));
        assert_eq!(s.buckets.len(), BUCKETS);
        let current = s.buckets[BUCKETS - 1];
        assert_eq!((current.calls, current.errors), (2, 1));
        assert_eq!(current.prompt_tokens, 100);
        assert_eq!(s.buckets[BUCKETS - 7].calls, 1);
        let total: u32 = s.buckets.iter().map(|b| b.calls).sum();
        assert_eq!(total, 3);
        assert_eq!(s.last(6).calls, 2);
        assert_eq!(s.last(7).calls, 3);
        assert_eq!(s.start_unix, (now / 10 - 89) * 10);
    }

    #[test]
    fn unknown_and_forgotten_agents_read_as_empty() {
        let t = Traffic::default();
        t.tool_call("gone", at(1_000_000), 1_000, false);
        t.retain(|name| name != "gone");
        for agent in ["gone", "never"] {
            let s = t.series(agent, at(1_000_000));
            assert_eq!(s.buckets.len(), BUCKETS);
            assert!(s.buckets.iter().all(|b| b.calls == 0), "{agent}");
        }
    }
}
