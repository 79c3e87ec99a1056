//! Per-key admission across instances: one Lua call checks the key's requests-per-minute
//! window (a sorted set of admission times on the Redis clock) and its concurrency (the key's
//! lease set, see `leases`) and, when both allow, records the request and takes the lease,
//! atomically. When Redis does not answer, this instance's own [`MemoryLimiter`] decides
//! (limits then hold per instance only) until Redis is back.

use std::sync::Arc;
use std::time::Duration;

use super::leases::script;
use super::Shared;
use crate::store::limits::{Limiter, Limits, MemoryLimiter, Permit, Refusal, WINDOW};

/// KEYS[1] the key's admissions, KEYS[2] its leases. ARGV: rpm, concurrent, member, ttl ms,
/// window ms. Returns {0} admitted, {1, ms until the window has room}, {2} at concurrency.
const ADMIT: &str = "
local rpm = tonumber(ARGV[1])
local conc = tonumber(ARGV[2])
local ttl = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {1, tonumber(oldest[2]) + window - now}
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if conc > 0 and redis.call('ZCARD', KEYS[2]) >= conc then return {2, 0} end
redis.call('ZADD', KEYS[2], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[2], 2 * ttl)
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
end
return {0, 0}";

static ADMIT_SCRIPT: once_cell::sync::Lazy<redis::Script> =
    once_cell::sync::Lazy::new(|| redis::Script::new(&script(ADMIT)));

pub struct RedisLimiter {
    shared: Arc<Shared>,
    local: MemoryLimiter,
}

impl RedisLimiter {
    pub fn new(shared: Arc<Shared>) -> Self {
        RedisLimiter {
            shared,
            local: MemoryLimiter::default(),
        }
    }

    fn window_set(&self, key: &str) -> String {
        self.shared.key(&format!("rpm:{key}"))
    }
}

#[async_trait::async_trait]
impl Limiter for RedisLimiter {
    async fn admit(&self, key: &str, limits: Limits) -> Result<Permit, Refusal> {
        let set = self.shared.key_set(key);
        let (lease, member) = self.shared.new_lease(set.clone());
        let mut inv = ADMIT_SCRIPT.prepare_invoke();
        inv.key(self.window_set(key))
            .key(set)
            .arg(limits.rpm)
            .arg(limits.concurrent)
            .arg(member)
            .arg(self.shared.ttl_ms())
            .arg(WINDOW.as_millis() as u64);
        let mut conn = self.shared.conn();
        let answer = self
            .shared
            .call("admit", inv.invoke_async::<Vec<i64>>(&mut conn))
            .await;
        match answer.as_deref() {
            Some([0, ..]) => Ok(Permit::with(Box::new(lease))),
            Some([1, ms, ..]) => {
                lease.disarm();
                Err(Refusal::Rpm {
                    limit: limits.rpm,
                    retry_after: Duration::from_millis((*ms).max(0) as u64),
                })
            }
            Some(_) => {
                lease.disarm();
                Err(Refusal::Concurrency {
                    limit: limits.concurrent,
                })
            }
            None => {
                drop(lease);
                self.local.admit(key, limits).await
            }
        }
    }

    async fn in_flight(&self, key: &str) -> usize {
        match self.shared.lease_counts(&[self.shared.key_set(key)]).await {
            Some(v) => v.first().copied().unwrap_or(0),
            None => self.local.running(key),
        }
    }

    fn forget(&self, key: &str) {
        self.local.forget(key);
        let mut c = redis::cmd("DEL");
        c.arg(self.window_set(key));
        self.shared.queue(vec![c]);
    }
}
