//! The per-(user, Okta object) lock held across "look at Okta, decide, change Okta, record".
//!
//! Why it exists: a grant activating and another expiring for the same user and group must not
//! interleave (the expiring one would count the new one as absent and remove access it needs,
//! I5). The decide-then-call sections take this Redis lock (`SET NX PX` with a random token,
//! released by a compare-and-delete script), on every replica.
//!
//! What it must never do: release a lock it no longer owns (the token check), or wait forever
//! (acquisition has a deadline; the TTL bounds a crashed holder).

use std::time::Duration;

use crate::clock::Clock;
use crate::redis_conn::RedisConn;

/// How long the lock outlives its holder's last renewal. It bounds how long a crashed holder
/// delays the next expiry of the same access (I1), so it is short; a live holder renews it every
/// third of the TTL for as long as its work runs (see [`AccessLock::hold`]).
pub const LOCK_TTL: Duration = Duration::from_secs(6);
/// How long a caller waits for the lock before giving up (retryable).
pub const LOCK_WAIT: Duration = Duration::from_secs(20);

const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("Redis is unavailable for the access lock")]
    Redis(#[from] redis::RedisError),
    #[error("another change to the same access is in progress; try again")]
    Busy,
}

/// A held lock. Release it with [`AccessLock::release`]; if dropped, it expires after the TTL.
pub struct AccessLock {
    redis: RedisConn,
    key: String,
    token: String,
}

impl AccessLock {
    pub async fn acquire(redis: &RedisConn, name: &str, clock: &Clock) -> Result<Self, LockError> {
        let key = redis.key(&format!("lock:access:{name}"));
        let token = uuid::Uuid::new_v4().simple().to_string();
        let deadline = clock.now_ms() + LOCK_WAIT.as_millis() as i64;
        let mut wait_ms = 5u64;
        loop {
            let mut c = redis.conn();
            let got: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LOCK_TTL.as_millis() as u64)
                .query_async(&mut c)
                .await?;
            if got.is_some() {
                return Ok(AccessLock {
                    redis: redis.clone(),
                    key,
                    token,
                });
            }
            if clock.now_ms() >= deadline {
                return Err(LockError::Busy);
            }
            // Jitter so waiters on several replicas do not retry in lockstep.
            let jitter = rand::random::<u64>() % wait_ms.max(1);
            tokio::time::sleep(Duration::from_millis(wait_ms + jitter)).await;
            wait_ms = (wait_ms * 2).min(200);
        }
    }

    /// Runs `work` while keeping the lock alive: every third of the TTL the expiry is pushed out
    /// again, if the lock is still ours. Renewal runs in the same task (a `select!`), so there
    /// is no background task to leak, and it stops the moment `work` finishes.
    pub async fn hold<F: std::future::Future>(&self, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        let period = LOCK_TTL / 3;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lost = false;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick(), if !lost => {
                    let mut c = self.redis.conn();
                    let r: Result<i64, _> = redis::Script::new(RENEW)
                        .key(&self.key)
                        .arg(&self.token)
                        .arg(LOCK_TTL.as_millis() as u64)
                        .invoke_async(&mut c)
                        .await;
                    match r {
                        Ok(1) => {}
                        Ok(_) => {
                            // Someone else holds it now; they re-read state before acting.
                            tracing::warn!(key = %self.key, "access lock lost while held");
                            lost = true;
                        }
                        // Redis hiccup: try again next tick; the TTL still covers us until then.
                        Err(e) => tracing::warn!(error = %e, "cannot renew access lock"),
                    }
                }
            }
        }
    }

    /// Compare-and-delete: only our own token is removed.
    pub async fn release(self) {
        let mut c = self.redis.conn();
        let r: Result<i64, _> = redis::Script::new(RELEASE)
            .key(&self.key)
            .arg(&self.token)
            .invoke_async(&mut c)
            .await;
        match r {
            Ok(1) => {}
            Ok(_) => tracing::warn!(key = %self.key, "access lock had expired before release"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot release access lock; it expires by itself")
            }
        }
    }
}
