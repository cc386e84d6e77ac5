//! Tasks shared by the replicas (see [`crate::tasks`]).
//!
//! A task is a JSON record at `<prefix>:task:<id>`, written by the replica running it and
//! read by any replica (so `tasks/get` works wherever the client's request lands); once the
//! task ends the key expires with the task. `<prefix>:tasks` (a sorted set by creation time)
//! lists them for the admin API. What a client sends to a running task through another
//! replica (`tasks/update`, `tasks/cancel`) waits in `<prefix>:task-mail:<id>`, a list the
//! running replica empties a few times a second.

use redis::AsyncCommands;

use super::{Cluster, Error};
use crate::tasks::record::Record;

/// How long an unread mailbox is kept.
const MAIL_TTL_SECS: i64 = 3600;

impl Cluster {
    /// Writes task `record`, to expire with it.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn put_task(&self, record: &Record, now_ms: u64) -> Result<(), Error> {
        let body = serde_json::to_string(record).unwrap_or_default();
        let mut redis = self.0.redis.clone();
        let key = self.key(&format!("task:{}", record.id));
        let mut pipe = redis::pipe();
        match record.expires_ms {
            Some(expires) => {
                let ms = expires.saturating_sub(now_ms).max(1);
                pipe.set_options(
                    &key,
                    body,
                    redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ms)),
                )
            }
            None => pipe.set(&key, body),
        };
        pipe.zadd(self.key("tasks"), &record.id, record.created_ms);
        let _: () = pipe.query_async(&mut redis).await?;
        Ok(())
    }

    /// Task `id`.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn get_task(&self, id: &str) -> Result<Option<Record>, Error> {
        let mut redis = self.0.redis.clone();
        let body: Option<String> = redis.get(self.key(&format!("task:{id}"))).await?;
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
    }

    /// The newest `limit` tasks of the cluster, newest first (expired ones leave the list).
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn list_tasks(&self, limit: usize) -> Result<Vec<Record>, Error> {
        let mut redis = self.0.redis.clone();
        let index = self.key("tasks");
        let stop = isize::try_from(limit).unwrap_or(isize::MAX).max(1) - 1;
        let ids: Vec<String> = redis.zrevrange(&index, 0, stop).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| self.key(&format!("task:{id}")))
            .collect();
        let bodies: Vec<Option<String>> = redis.mget(&keys).await?;
        let mut records = Vec::new();
        let mut gone = Vec::new();
        for (id, body) in ids.iter().zip(bodies) {
            match body.and_then(|b| serde_json::from_str::<Record>(&b).ok()) {
                Some(r) => records.push(r),
                None => gone.push(id.clone()),
            }
        }
        if !gone.is_empty() {
            let _: usize = redis.zrem(&index, gone).await?;
        }
        Ok(records)
    }

    /// Leaves `mail` (JSON) for the replica running task `id`.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn post_task_mail(&self, id: &str, mail: &serde_json::Value) -> Result<(), Error> {
        let mut redis = self.0.redis.clone();
        let key = self.key(&format!("task-mail:{id}"));
        let _: () = redis::pipe()
            .rpush(&key, mail.to_string())
            .expire(&key, MAIL_TTL_SECS)
            .query_async(&mut redis)
            .await?;
        Ok(())
    }

    /// Takes the mail left for task `id`, oldest first.
    ///
    /// # Errors
    /// Redis did not answer.
    pub async fn take_task_mail(&self, id: &str) -> Result<Vec<serde_json::Value>, Error> {
        let mut redis = self.0.redis.clone();
        let key = self.key(&format!("task-mail:{id}"));
        let (mail, _): (Vec<String>, usize) = redis::pipe()
            .atomic()
            .lrange(&key, 0, -1)
            .del(&key)
            .query_async(&mut redis)
            .await?;
        Ok(mail
            .iter()
            .filter_map(|m| serde_json::from_str(m).ok())
            .collect())
    }
}
