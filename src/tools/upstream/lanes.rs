//! Upstream sessions and the tokens they carry. A [`Lane`] is one MCP session with the
//! upstream and its [`TokenSlot`]: an upstream without token exchange has one lane for every
//! call; with token exchange the upstream sees the caller, so each caller's access token has
//! a lane of its own ([`Lanes`]: keyed by the token's SHA-256, never the token), closed when
//! unused for the idle time (swept when a caller's lane is looked up: no task of its own), and
//! at most `max_sessions` of them (when full, the one unused longest goes; when all are in
//! use, the call is refused).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::model::ClientConfig;
use rmcp::service::RunningService;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::auth::TokenSlot;

/// One open client session with the upstream.
pub(super) struct Connection {
    /// Tells this session from its successors, so a call that saw it fail drops only it.
    pub(super) id: u64,
    /// The rmcp client. Dropping the last `Arc` closes it (its drop guard cancels it).
    pub(super) service: RunningService<RoleClient, ClientConfig>,
}

impl Connection {
    /// Stops the client's tasks now, even while calls still hold it (they fail at once).
    pub(super) fn close(&self) {
        self.service.cancellation_token().cancel();
    }
}

/// One session with the upstream and the token its requests carry.
#[derive(Default)]
pub(super) struct Lane {
    /// Read by the session's HTTP client for every request.
    pub(super) slot: Arc<TokenSlot>,
    /// The open session, if any. A `std` mutex: held only to read or swap, never across
    /// `.await`.
    connection: Mutex<Option<Arc<Connection>>>,
    /// Held while a session is opened and its tools listed, so that concurrent first calls
    /// open one session, not one each.
    pub(super) connecting: tokio::sync::Mutex<()>,
    /// Calls using it now: a lane in use is never closed for idleness or room.
    users: AtomicUsize,
    /// When a call last let go of it, in milliseconds since [`Lanes`] began.
    last_used: AtomicU64,
}

impl Lane {
    /// The open session, if any.
    pub(super) fn current(&self) -> Option<Arc<Connection>> {
        self.connection().clone()
    }

    /// Makes `connection` the lane's session.
    pub(super) fn install(&self, connection: Arc<Connection>) {
        *self.connection() = Some(connection);
    }

    /// Whether `connection` is still the lane's session.
    pub(super) fn is_current(&self, connection: &Connection) -> bool {
        self.connection()
            .as_ref()
            .is_some_and(|c| c.id == connection.id)
    }

    /// Forgets `connection` if it is still the lane's session; whether it was.
    pub(super) fn forget(&self, connection: &Connection) -> bool {
        let mut current = self.connection();
        if current.as_ref().is_some_and(|c| c.id == connection.id) {
            *current = None;
            return true;
        }
        false
    }

    /// Closes the lane's session, if any.
    fn close(&self) {
        if let Some(connection) = self.connection().take() {
            connection.close();
        }
    }

    fn connection(&self) -> MutexGuard<'_, Option<Arc<Connection>>> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A lane while a call uses it.
pub(super) struct LaneUse {
    lane: Arc<Lane>,
    since: Instant,
}

impl std::ops::Deref for LaneUse {
    type Target = Lane;
    fn deref(&self) -> &Lane {
        &self.lane
    }
}

impl LaneUse {
    /// `lane`, counted as in use until dropped; `since`: when [`Lanes`] began.
    pub(super) fn new(lane: Arc<Lane>, since: Instant) -> Self {
        lane.users.fetch_add(1, Ordering::SeqCst);
        Self { lane, since }
    }
}

impl Drop for LaneUse {
    fn drop(&mut self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.lane.last_used.store(now, Ordering::SeqCst);
        self.lane.users.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The lanes of the callers of a token-exchange upstream.
pub(super) struct Lanes {
    /// SHA-256 of the caller's access token → its lane. A `std` mutex: never held across
    /// `.await`.
    by_token: Mutex<HashMap<[u8; 32], Arc<Lane>>>,
    max: usize,
    idle: Duration,
    began: Instant,
}

/// Why no lane could be had.
#[derive(Debug)]
pub(super) struct Full(pub(super) usize);

impl Lanes {
    /// At most `max` lanes, each closed after `idle` unused.
    pub(super) fn new(max: usize, idle: Duration) -> Self {
        Self {
            by_token: Mutex::new(HashMap::new()),
            max: max.max(1),
            idle,
            began: Instant::now(),
        }
    }

    /// The lane of the caller whose access token is `token`, made if new. Lanes unused for
    /// the idle time are closed first; when `max` are open, the one unused longest.
    ///
    /// # Errors
    /// [`Full`] when `max` lanes are all in use by calls.
    pub(super) fn get(&self, token: &SecretString) -> Result<LaneUse, Full> {
        let key: [u8; 32] = Sha256::digest(token.expose_secret().as_bytes()).into();
        let now = self.began.elapsed().as_millis() as u64;
        let idle = self.idle.as_millis() as u64;
        let unused = |lane: &Lane| lane.users.load(Ordering::SeqCst) == 0;
        let mut lanes = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        lanes.retain(|_, lane| {
            let keep =
                !unused(lane) || now.saturating_sub(lane.last_used.load(Ordering::SeqCst)) < idle;
            if !keep {
                lane.close();
            }
            keep
        });
        if let Some(lane) = lanes.get(&key) {
            return Ok(LaneUse::new(lane.clone(), self.began));
        }
        if lanes.len() >= self.max {
            let oldest = lanes
                .iter()
                .filter(|(_, lane)| unused(lane))
                .min_by_key(|(_, lane)| lane.last_used.load(Ordering::SeqCst))
                .map(|(key, _)| *key);
            match oldest.and_then(|key| lanes.remove(&key)) {
                Some(lane) => lane.close(),
                None => return Err(Full(self.max)),
            }
        }
        let lane = Arc::new(Lane::default());
        lane.last_used.store(now, Ordering::SeqCst);
        lanes.insert(key, lane.clone());
        Ok(LaneUse::new(lane, self.began))
    }

    /// How many lanes are kept now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Closes every lane.
    pub(super) fn close_all(&self) {
        let mut lanes = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        for lane in lanes.values() {
            lane.close();
        }
        lanes.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn token(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn one_lane_per_token_bounded_and_only_unused_ones_give_way() {
        let lanes = Lanes::new(2, Duration::from_secs(600));
        let a = lanes.get(&token("a")).unwrap();
        let a_again = lanes.get(&token("a")).unwrap();
        assert!(Arc::ptr_eq(&a.lane, &a_again.lane), "same token, same lane");
        let b = lanes.get(&token("b")).unwrap();
        assert!(!Arc::ptr_eq(&a.lane, &b.lane));
        assert!(
            lanes.get(&token("c")).is_err(),
            "both in use: no room, none is closed"
        );
        drop((a, a_again));
        let c = lanes.get(&token("c")).unwrap();
        assert_eq!(lanes.len(), 2, "a, unused, gave way to c");
        let a = lanes.get(&token("a"));
        assert!(a.is_err(), "b and c are in use");
        drop((b, c));
    }

    #[test]
    fn unused_lanes_close_after_the_idle_time() {
        let lanes = Lanes::new(10, Duration::ZERO);
        drop(lanes.get(&token("a")).unwrap());
        let _b = lanes.get(&token("b")).unwrap();
        assert_eq!(lanes.len(), 1, "a was idle");
        let _c = lanes.get(&token("c")).unwrap();
        assert_eq!(lanes.len(), 2, "b is in use, so it stays");
    }
}
