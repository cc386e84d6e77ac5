//! Budget accounts shared by the replicas ([`crate::costs`]): one Redis hash per account
//! and period, `tokens` and `micros` (the cost in millionths) added to atomically, expiring
//! after its period.

use std::time::Duration;

use super::{Cluster, Error};

impl Cluster {
    /// Adds `tokens` and `micros` to account period `key`, which expires after `ttl`.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn usage_add(
        &self,
        key: &str,
        tokens: u64,
        micros: i64,
        ttl: Duration,
    ) -> Result<(), Error> {
        let key = self.key(&format!("usage:{key}"));
        let mut redis = self.0.redis.clone();
        let _: () = redis::pipe()
            .atomic()
            .hincr(&key, "tokens", tokens)
            .ignore()
            .hincr(&key, "micros", micros)
            .ignore()
            .expire(&key, i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
            .ignore()
            .query_async(&mut redis)
            .await?;
        Ok(())
    }

    /// What account period `key` has spent: `(tokens, micros)`.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn usage_get(&self, key: &str) -> Result<(u64, i64), Error> {
        let key = self.key(&format!("usage:{key}"));
        let mut redis = self.0.redis.clone();
        let (tokens, micros): (Option<u64>, Option<i64>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("tokens")
            .arg("micros")
            .query_async(&mut redis)
            .await?;
        Ok((tokens.unwrap_or(0), micros.unwrap_or(0)))
    }
}
