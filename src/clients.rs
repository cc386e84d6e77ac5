//! Who is calling: client identity from bearer tokens, each client's limits as configured,
//! and its usage (requests, runs, refusals, live sessions). The limits are enforced by
//! [`crate::ratelimit`].
//!
//! With `[[clients]]` configured (or `MCP_SECRET_TOKEN` set), every MCP request needs a
//! client's token. With `[auth.oauth]`, a bearer that is no client's token is an OAuth access
//! token (checked by `crate::oauth`, up in the edge): its [`Principal`] is the caller, keyed
//! by subject, with the default `[limits]` counted per subject. With neither, MCP access is
//! open and each client IP is a caller of its own (its usage, like a principal's, is
//! forgotten by [`Clients::prune`] once idle, so idle callers cost nothing).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

use crate::config::clients::{AgentAccess, ClientSpec, Limits};
use crate::traffic::{Ring, bucket_index};

/// Who a request is from: a named client, or (open access) an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// A configured client.
    Named(Arc<str>),
    /// An anonymous peer (no clients configured).
    Ip(IpAddr),
    /// An OAuth principal, by its subject (`sub`): its sessions and limits are its own,
    /// whichever application or token it comes with.
    Principal(Arc<str>),
}

pub use crate::identity::Principal;

impl ClientKey {
    /// The client's name, for named clients; the subject, for OAuth principals.
    pub fn name(&self) -> Option<&Arc<str>> {
        match self {
            ClientKey::Named(n) | ClientKey::Principal(n) => Some(n),
            ClientKey::Ip(_) => None,
        }
    }
}

/// Why a request was refused before reaching an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token.
    MissingToken,
    /// A token no client has.
    WrongToken,
    /// A client that may not use this agent.
    AgentNotAllowed {
        /// The client's name.
        client: Arc<str>,
    },
    /// A limit was hit; retry after the given time.
    RateLimited {
        /// The limit's name: `requests_per_minute`, `agent_runs_per_minute` or `max_sessions`.
        limit: &'static str,
        /// When to try again.
        retry_after: Duration,
    },
}

/// Live counters of one client.
#[derive(Debug)]
pub struct Usage {
    /// MCP requests let through.
    pub requests: AtomicU64,
    /// Agent runs started.
    pub agent_runs: AtomicU64,
    /// Requests refused with 429.
    pub rate_limited: AtomicU64,
    /// Live sessions.
    pub sessions: AtomicUsize,
    /// Requests let through and refused, per 10-second bucket, for the last minute.
    recent: Mutex<Ring<(u32, u32)>>,
    /// When a request was last refused with 429, in milliseconds since the Unix epoch
    /// (0: never).
    last_refused_ms: AtomicU64,
}

/// Buckets of [`Usage::recent`]: a minute.
const RECENT_BUCKETS: usize = 6;

impl Default for Usage {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            agent_runs: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            sessions: AtomicUsize::new(0),
            recent: Mutex::new(Ring::new(RECENT_BUCKETS)),
            last_refused_ms: AtomicU64::new(0),
        }
    }
}

impl Usage {
    /// Counts a request let through (`refused` false) or refused with 429.
    pub fn note(&self, refused: bool) {
        let now = SystemTime::now();
        {
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            let (passed, refused_n) = recent.bucket_mut(bucket_index(now));
            let n = if refused { refused_n } else { passed };
            *n = n.saturating_add(1);
        }
        if refused {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            let ms = now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            self.last_refused_ms.store(ms, Ordering::Relaxed);
        }
    }

    /// Requests let through and refused with 429 in the last minute (six 10-second buckets,
    /// the current one included).
    pub fn last_minute(&self, now: SystemTime) -> (u64, u64) {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent
            .window(bucket_index(now), RECENT_BUCKETS)
            .fold((0, 0), |(a, r), (p, n)| {
                (a + u64::from(p), r + u64::from(n))
            })
    }

    /// Takes a session slot if fewer than `max` sessions are live.
    pub fn take_slot(self: &Arc<Self>, max: u32) -> Option<SessionSlot> {
        let max = max as usize;
        self.sessions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| SessionSlot {
                usage: self.clone(),
            })
    }

    /// When a request was last refused with 429.
    pub fn last_refused_at(&self) -> Option<SystemTime> {
        match self.last_refused_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }
}

/// A configured client and its limiters.
pub struct Client {
    /// Its name.
    pub name: Arc<str>,
    digest: [u8; 32],
    /// The agents it may use.
    pub agents: AgentAccess,
    /// Its limits.
    pub limits: Limits,
    /// Its place among the configured clients (its limiters' index).
    pub index: usize,
    /// Where its limits are set in `switchboard.toml` (`clients[2]`, or `limits`).
    pub limits_key: String,
    /// Its counters.
    pub usage: Arc<Usage>,
}

/// Every configured client, or (open access) the peers seen recently.
pub struct Clients {
    named: Vec<Arc<Client>>,
    defaults: Limits,
    /// Open access: whether loopback peers' requests are metered (see
    /// [`crate::config::ServerSpec::meter_loopback`]).
    meter_loopback: bool,
    ip_usage: DashMap<IpAddr, Arc<Usage>>,
    /// Whether OAuth access tokens are accepted (`[auth.oauth]`): then access is not open.
    oauth: bool,
    /// OAuth principals seen recently, by subject.
    principal_usage: DashMap<Arc<str>, Arc<Usage>>,
}

/// A session slot: counts toward the caller's `max_sessions` until dropped.
#[derive(Debug)]
pub struct SessionSlot {
    usage: Arc<Usage>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.usage.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An identified caller.
#[derive(Clone)]
pub struct Caller {
    /// Who.
    pub key: ClientKey,
    /// The configured client, unless access is open.
    pub client: Option<Arc<Client>>,
    /// Its limits (the client's, or the defaults).
    pub limits: Limits,
    /// Its counters.
    pub usage: Arc<Usage>,
    /// The OAuth principal, when an access token identified it.
    pub principal: Option<Arc<Principal>>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller").field("key", &self.key).finish()
    }
}

impl Clients {
    /// The clients of `specs`, with `defaults` for open access.
    pub fn new(specs: &[ClientSpec], defaults: Limits) -> Self {
        let named = specs
            .iter()
            .enumerate()
            .map(|(index, s)| {
                Arc::new(Client {
                    name: s.name.as_str().into(),
                    digest: s.token_digest,
                    agents: s.agents.clone(),
                    limits: s.limits,
                    index,
                    limits_key: s.limits_key.clone(),
                    usage: Arc::default(),
                })
            })
            .collect();
        Self {
            named,
            defaults,
            meter_loopback: true,
            ip_usage: DashMap::new(),
            oauth: false,
            principal_usage: DashMap::new(),
        }
    }

    /// Whether OAuth access tokens are accepted besides the clients' tokens: then MCP access
    /// is not open, even without clients.
    pub fn with_oauth(mut self, oauth: bool) -> Self {
        self.oauth = oauth;
        self
    }

    /// With open access, whether loopback peers' requests count against
    /// `requests_per_minute`/`burst` (`false`: one developer on the gateway's machine calls
    /// freely; their agent runs and sessions are still limited).
    pub fn with_meter_loopback(mut self, meter: bool) -> Self {
        self.meter_loopback = meter;
        self
    }

    /// With open access, whether loopback peers' requests are metered.
    pub fn meters_loopback(&self) -> bool {
        self.meter_loopback
    }

    /// Whether MCP access is open (no clients configured, no OAuth).
    pub fn is_open(&self) -> bool {
        self.named.is_empty() && !self.oauth
    }

    /// Live sessions on this replica per client key (named clients, then peers of open
    /// access), zero counts included.
    pub fn session_counts(&self) -> Vec<(ClientKey, u64)> {
        let named = self.named.iter().map(|c| {
            (
                ClientKey::Named(c.name.clone()),
                c.usage.sessions.load(Ordering::Relaxed) as u64,
            )
        });
        let peers = self.ip_usage.iter().map(|e| {
            (
                ClientKey::Ip(*e.key()),
                e.value().sessions.load(Ordering::Relaxed) as u64,
            )
        });
        let principals = self.principal_usage.iter().map(|e| {
            (
                ClientKey::Principal(e.key().clone()),
                e.value().sessions.load(Ordering::Relaxed) as u64,
            )
        });
        named.chain(peers).chain(principals).collect()
    }

    /// The configured clients.
    pub fn named(&self) -> &[Arc<Client>] {
        &self.named
    }

    /// With open access, the peers seen recently (live sessions, or requests still being
    /// counted) and their usage, by address.
    pub fn peers(&self) -> Vec<(IpAddr, Arc<Usage>)> {
        let mut peers: Vec<_> = self
            .ip_usage
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        peers.sort_by_key(|(ip, _)| *ip);
        peers
    }

    /// The default limits.
    pub fn defaults(&self) -> Limits {
        self.defaults
    }

    /// Identifies the caller of a request to `agent` with bearer `token` from `ip`.
    ///
    /// # Errors
    /// A missing or unknown token, or a client not allowed on `agent`.
    pub fn identify(
        &self,
        token: Option<&str>,
        ip: IpAddr,
        agent: &str,
    ) -> Result<Caller, Refusal> {
        if self.is_open() {
            let usage = self.ip_usage.entry(ip).or_default().clone();
            return Ok(Caller {
                key: ClientKey::Ip(ip),
                client: None,
                limits: self.defaults,
                usage,
                principal: None,
            });
        }
        let token = token.ok_or(Refusal::MissingToken)?;
        let client = self.client_of(token).ok_or(Refusal::WrongToken)?;
        self.named_caller(client, agent)
    }

    /// The configured client whose token `token` is, if any.
    pub fn client_of(&self, token: &str) -> Option<Arc<Client>> {
        let digest = crate::auth::digest(token);
        // Every client is compared, in constant time each: the time taken does not say
        // which one (if any) matched.
        let mut found = None;
        for client in &self.named {
            if crate::auth::digest_matches(&digest, &client.digest) {
                found = Some(client.clone());
            }
        }
        found
    }

    /// Configured `client` as the caller of a request to `agent`.
    ///
    /// # Errors
    /// The client may not use `agent`.
    pub fn named_caller(&self, client: Arc<Client>, agent: &str) -> Result<Caller, Refusal> {
        if !client.agents.allows(agent) {
            return Err(Refusal::AgentNotAllowed {
                client: client.name.clone(),
            });
        }
        Ok(Caller {
            key: ClientKey::Named(client.name.clone()),
            limits: client.limits,
            usage: client.usage.clone(),
            client: Some(client),
            principal: None,
        })
    }

    /// An OAuth `principal` as the caller: keyed by its subject, with the default limits.
    pub fn principal_caller(&self, principal: Principal) -> Caller {
        let subject: Arc<str> = principal.subject.as_str().into();
        let usage = self
            .principal_usage
            .entry(subject.clone())
            .or_default()
            .clone();
        Caller {
            key: ClientKey::Principal(subject),
            client: None,
            limits: self.defaults,
            usage,
            principal: Some(Arc::new(principal)),
        }
    }

    /// Forgets the usage of peers seen no more (idle peers cost nothing).
    pub fn prune(&self) {
        let now = SystemTime::now();
        let in_use = |u: &Arc<Usage>| {
            u.sessions.load(Ordering::Relaxed) > 0
                || Arc::strong_count(u) > 1
                || u.last_minute(now) != (0, 0)
        };
        self.ip_usage.retain(|_, u| in_use(u));
        self.principal_usage.retain(|_, u| in_use(u));
    }
}

impl Caller {
    /// The client's name, for named clients.
    pub fn name(&self) -> Option<&Arc<str>> {
        self.key.name()
    }
}
