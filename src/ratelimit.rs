//! Every limit check of the gateway, in one place: requests and agent runs per minute
//! (GCRA), and concurrent sessions per client.
//!
//! On a single node the rates are governor's limiters: one pair per configured client, and
//! keyed ones per client IP for open access (so one flooding client never slows another).
//! In cluster mode they are one GCRA per client in Redis, on Redis's clock, so that the rate
//! holds over every replica; while Redis is away each replica falls back to its own
//! limiters. `max_sessions` counts this replica's sessions plus those the other replicas
//! last reported (see [`crate::cluster`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::clients::{Caller, ClientKey, Clients, Refusal, SessionSlot};
use crate::cluster::Cluster;
use crate::config::clients::Limits;

/// The two limits that are rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rate {
    /// `requests_per_minute` with `burst`: every MCP POST.
    Requests,
    /// `agent_runs_per_minute`: calls that start an LLM run.
    AgentRuns,
}

impl Rate {
    fn limit(self) -> &'static str {
        match self {
            Rate::Requests => "requests_per_minute",
            Rate::AgentRuns => "agent_runs_per_minute",
        }
    }

    /// Per minute, and the burst allowed.
    fn quota_of(self, l: &Limits) -> (u32, u32) {
        match self {
            Rate::Requests => (l.requests_per_minute.get(), l.burst.get()),
            // Runs cost money: a burst of at most a minute's worth.
            Rate::AgentRuns => (l.agent_runs_per_minute.get(), l.agent_runs_per_minute.get()),
        }
    }

    fn quota(self, l: &Limits) -> Quota {
        match self {
            Rate::Requests => Quota::per_minute(l.requests_per_minute).allow_burst(l.burst),
            Rate::AgentRuns => {
                Quota::per_minute(l.agent_runs_per_minute).allow_burst(l.agent_runs_per_minute)
            }
        }
    }
}

/// One client's rate limiters on this replica.
struct Pair {
    requests: DefaultDirectRateLimiter,
    agent_runs: DefaultDirectRateLimiter,
}

/// The limits of every caller, enforced.
pub struct RateLimits {
    /// Per configured client, by [`crate::clients::Client::index`].
    named: Vec<Pair>,
    /// Open access: whether loopback peers' requests are metered.
    meter_loopback: bool,
    /// Open access: per client IP.
    ip_requests: DefaultKeyedRateLimiter<IpAddr>,
    ip_runs: DefaultKeyedRateLimiter<IpAddr>,
    /// OAuth principals: per subject, with the default limits.
    principal_requests: DefaultKeyedRateLimiter<Arc<str>>,
    principal_runs: DefaultKeyedRateLimiter<Arc<str>>,
    /// Cluster mode: the shared counters.
    cluster: Option<Cluster>,
}

impl RateLimits {
    /// The limiters of `clients` (and of open access, with their defaults), shared over
    /// `cluster` if given.
    pub fn new(clients: &Clients, cluster: Option<Cluster>) -> Self {
        let pair = |l: &Limits| Pair {
            requests: RateLimiter::direct(Rate::Requests.quota(l)),
            agent_runs: RateLimiter::direct(Rate::AgentRuns.quota(l)),
        };
        let defaults = clients.defaults();
        Self {
            named: clients.named().iter().map(|c| pair(&c.limits)).collect(),
            meter_loopback: clients.meters_loopback(),
            ip_requests: RateLimiter::keyed(Rate::Requests.quota(&defaults)),
            ip_runs: RateLimiter::keyed(Rate::AgentRuns.quota(&defaults)),
            principal_requests: RateLimiter::keyed(Rate::Requests.quota(&defaults)),
            principal_runs: RateLimiter::keyed(Rate::AgentRuns.quota(&defaults)),
            cluster,
        }
    }

    /// Counts one MCP request of `caller` against its `requests_per_minute`.
    ///
    /// # Errors
    /// [`Refusal::RateLimited`] when over the limit.
    pub async fn check_request(&self, caller: &Caller) -> Result<(), Refusal> {
        self.check(caller, Rate::Requests).await
    }

    /// Counts one agent run of `caller` against its `agent_runs_per_minute`.
    ///
    /// # Errors
    /// [`Refusal::RateLimited`] when over the limit.
    pub async fn check_agent_run(&self, caller: &Caller) -> Result<(), Refusal> {
        self.check(caller, Rate::AgentRuns).await
    }

    async fn check(&self, caller: &Caller, rate: Rate) -> Result<(), Refusal> {
        let outcome = match self.healthy_cluster() {
            // Open access on loopback with [limits] left to its defaults: one developer
            // on the gateway's machine (see `Clients::requests_unmetered`).
            _ if rate == Rate::Requests && self.unmetered(caller) => Ok(()),
            Some(cluster) => match self.check_shared(cluster, caller, rate).await {
                Ok(outcome) => outcome,
                // Redis just went away: this replica's own limiter protects the agents
                // until it is back.
                Err(e) => {
                    tracing::debug!(error = %e, "Shared limit unavailable; limiting locally.");
                    self.check_local(caller, rate)
                }
            },
            None => self.check_local(caller, rate),
        };
        let usage = &caller.usage;
        match outcome {
            Ok(()) => {
                let counter = match rate {
                    Rate::Requests => &usage.requests,
                    Rate::AgentRuns => &usage.agent_runs,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if rate == Rate::Requests {
                    usage.note(false);
                }
                Ok(())
            }
            Err(retry_after) => {
                usage.note(true);
                Err(Refusal::RateLimited {
                    limit: rate.limit(),
                    retry_after,
                })
            }
        }
    }

    /// This replica's limiter: `Err(wait)` when over the limit.
    fn check_local(&self, caller: &Caller, rate: Rate) -> Result<(), Duration> {
        let outcome = match (&caller.client, &caller.key) {
            (Some(c), _) => match self.named.get(c.index) {
                Some(pair) => match rate {
                    Rate::Requests => pair.requests.check(),
                    Rate::AgentRuns => pair.agent_runs.check(),
                },
                None => Ok(()),
            },
            (None, ClientKey::Ip(ip)) => match rate {
                Rate::Requests => self.ip_requests.check_key(ip),
                Rate::AgentRuns => self.ip_runs.check_key(ip),
            },
            (None, ClientKey::Principal(subject)) => match rate {
                Rate::Requests => self.principal_requests.check_key(subject),
                Rate::AgentRuns => self.principal_runs.check_key(subject),
            },
            (None, ClientKey::Named(_)) => Ok(()),
        };
        outcome.map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// The cluster's GCRA in Redis: `Ok(Err(wait))` when over the limit.
    async fn check_shared(
        &self,
        cluster: &Cluster,
        caller: &Caller,
        rate: Rate,
    ) -> Result<Result<(), Duration>, crate::cluster::Error> {
        let owner = crate::cluster::sessions::owner_tag(&caller.key);
        let (per_minute, burst) = rate.quota_of(&caller.limits);
        let name = match rate {
            Rate::Requests => format!("requests:{owner}"),
            Rate::AgentRuns => format!("runs:{owner}"),
        };
        cluster.rate_check(&name, per_minute, burst).await
    }

    /// Takes a session slot of `caller` within its `max_sessions`: counted over the cluster
    /// in cluster mode (the other replicas' counts are at most a heartbeat old), else (or
    /// while Redis is away) on this replica.
    ///
    /// # Errors
    /// [`Refusal::RateLimited`] (`max_sessions`) when all are taken.
    pub async fn open_session(&self, caller: &Caller) -> Result<SessionSlot, Refusal> {
        let max = caller.limits.max_sessions;
        let Some(cluster) = self.healthy_cluster() else {
            return take_slot(caller, max);
        };
        let owner = crate::cluster::sessions::owner_tag(&caller.key);
        let elsewhere = match cluster.sessions_elsewhere(&owner).await {
            Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
            Err(e) => {
                tracing::debug!(error = %e, "Shared session counts unavailable; counting locally.");
                0
            }
        };
        let slot = take_slot(caller, max.saturating_sub(elsewhere))?;
        let here = caller.usage.sessions.load(Ordering::Relaxed) as u64;
        let _ = cluster.publish_session_counts(&[(owner, here)]).await;
        Ok(slot)
    }

    /// Forgets per-IP limiter state that has fully recovered (idle peers cost nothing).
    pub fn prune(&self) {
        self.ip_requests.retain_recent();
        self.ip_runs.retain_recent();
        self.ip_requests.shrink_to_fit();
        self.ip_runs.shrink_to_fit();
        self.principal_requests.retain_recent();
        self.principal_runs.retain_recent();
        self.principal_requests.shrink_to_fit();
        self.principal_runs.shrink_to_fit();
    }

    /// Whether `caller`'s requests are exempt from `requests_per_minute`/`burst`: open
    /// access, a loopback peer, and `[limits]` left to its defaults.
    fn unmetered(&self, caller: &Caller) -> bool {
        !self.meter_loopback
            && caller.client.is_none()
            && matches!(caller.key, ClientKey::Ip(ip) if ip.to_canonical().is_loopback())
    }

    fn healthy_cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref().filter(|c| c.is_healthy())
    }
}

/// A session slot of `caller` if it has fewer than `max` sessions here.
fn take_slot(caller: &Caller, max: u32) -> Result<SessionSlot, Refusal> {
    caller.usage.take_slot(max).ok_or_else(|| {
        caller.usage.note(true);
        Refusal::RateLimited {
            limit: "max_sessions",
            // A session ends when its client leaves; there is no fixed time to wait.
            retry_after: Duration::from_secs(1),
        }
    })
}
