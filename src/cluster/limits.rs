//! Rate limits shared by the replicas: one GCRA step per request, done atomically in Redis
//! by a Lua script (Redis's own clock, so the replicas' clocks do not matter). The same
//! quotas as governor's on a single node: `per_minute` sustained, `burst` at once.

use std::sync::LazyLock;
use std::time::Duration;

use super::{Cluster, Error};

/// KEYS[1]: the limiter's key. ARGV[1]: microseconds per request; ARGV[2]: the burst
/// tolerance in microseconds (interval × burst). Returns {1, 0} when allowed, else {0, µs
/// to wait}. The theoretical arrival time is kept as an integer count of microseconds.
static GCRA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local t = redis.call('TIME')
          local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
          local interval = tonumber(ARGV[1])
          local tolerance = tonumber(ARGV[2])
          local tat = tonumber(redis.call('GET', KEYS[1]) or now)
          if tat < now then tat = now end
          local new_tat = tat + interval
          if new_tat - now > tolerance then
            return {0, new_tat - tolerance - now}
          end
          redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
          return {1, 0}",
    )
});

impl Cluster {
    /// One request against the shared limiter `name` (`per_minute` sustained, `burst` at
    /// once): `Ok(Ok(()))` when allowed, `Ok(Err(wait))` when over it.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn rate_check(
        &self,
        name: &str,
        per_minute: u32,
        burst: u32,
    ) -> Result<Result<(), Duration>, Error> {
        let interval_us = (60_000_000 / u64::from(per_minute.max(1))).max(1);
        let tolerance_us = interval_us.saturating_mul(u64::from(burst.max(1)));
        let mut redis = self.0.redis.clone();
        let (allowed, wait_us): (i64, i64) = GCRA
            .key(self.key(&format!("limit:{name}")))
            .arg(interval_us)
            .arg(tolerance_us)
            .invoke_async(&mut redis)
            .await?;
        Ok(if allowed == 1 {
            Ok(())
        } else {
            Err(Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)))
        })
    }
}

/// KEYS[1]: a client's per-replica session counts (hash: node id → count). ARGV[1]: this
/// node's id; ARGV[2]: the prefix of node keys. Sums the counts of the other live replicas
/// and drops those of replicas that left.
static SESSIONS_ELSEWHERE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local total = 0
          local h = redis.call('HGETALL', KEYS[1])
          for i = 1, #h, 2 do
            if h[i] ~= ARGV[1] then
              if redis.call('EXISTS', ARGV[2] .. h[i]) == 1 then
                total = total + tonumber(h[i + 1])
              else
                redis.call('HDEL', KEYS[1], h[i])
              end
            end
          end
          return total",
    )
});

/// How long a client's session counts stay in Redis without an update.
const COUNTS_TTL_SECS: i64 = 24 * 3600;

impl Cluster {
    /// Live sessions of `owner` (see [`super::sessions::owner_tag`]) on the other replicas.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn sessions_elsewhere(&self, owner: &str) -> Result<u64, Error> {
        let mut redis = self.0.redis.clone();
        let total: i64 = SESSIONS_ELSEWHERE
            .key(self.key(&format!("client-sessions:{owner}")))
            .arg(self.node_id())
            .arg(self.key("node:"))
            .invoke_async(&mut redis)
            .await?;
        Ok(u64::try_from(total).unwrap_or(0))
    }

    /// Publishes this replica's live session count of each client (0 removes it).
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn publish_session_counts(&self, counts: &[(String, u64)]) -> Result<(), Error> {
        if counts.is_empty() {
            return Ok(());
        }
        let node = self.node_id();
        let mut pipe = redis::pipe();
        for (owner, count) in counts {
            let key = self.key(&format!("client-sessions:{owner}"));
            if *count == 0 {
                pipe.hdel(&key, &node).ignore();
            } else {
                pipe.hset(&key, &node, *count)
                    .ignore()
                    .expire(&key, COUNTS_TTL_SECS)
                    .ignore();
            }
        }
        let mut redis = self.0.redis.clone();
        let _: () = pipe.query_async(&mut redis).await?;
        Ok(())
    }
}
