//! In-flight leases across instances. Each running request that counts against a shared limit
//! (an identity's in-flight cap, a key's concurrency) holds a lease: a member
//! `<instance>:<n>` of a sorted set per resource, scored by its expiry on the Redis clock.
//! Counting purges expired members first, so a total is "leases still renewed".
//!
//! The owning instance renews all its live leases every third of `REDIS_LEASE_TTL_MS` (one
//! script call); a killed instance stops renewing and its leases drop out of every count
//! within the TTL. A release is sent at once, in the background, so the next request sees
//! the slot free a round trip after the answer. A renewal only extends
//! leases still present, so it never brings back one released meanwhile; a lease missing for
//! longer than a moment (dropped while Redis was away) is added again. A release lost to a
//! Redis blip expires on its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Shared, LUA_NOW};

/// Takes a lease when the set holds fewer than `limit` live ones (0 = no limit).
/// KEYS[1] the set; ARGV: limit, member, ttl ms. Returns 1 when taken.
pub const ACQUIRE: &str = "
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[1])
if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
return 1";

/// Renews the leases still present. KEYS: the sets; ARGV[1] ttl ms, ARGV[1+i] the member in
/// KEYS[i]. Returns the positions (1-based) of members not found.
const RENEW: &str = "
local ttl = tonumber(ARGV[1])
local missing = {}
for i, k in ipairs(KEYS) do
  if redis.call('ZSCORE', k, ARGV[i + 1]) then
    redis.call('ZADD', k, now + ttl, ARGV[i + 1])
    redis.call('PEXPIRE', k, 2 * ttl)
  else
    missing[#missing + 1] = i
  end
end
return missing";

/// A lease younger than this may simply not have been written yet when a renewal misses it.
const SETTLE: Duration = Duration::from_secs(1);

/// Live leases in each set. KEYS: the sets.
const COUNT: &str = "
local out = {}
for i, k in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  out[i] = redis.call('ZCARD', k)
end
return out";

pub fn script(body: &str) -> String {
    format!("{LUA_NOW}{body}")
}

/// Sent by digest (EVALSHA; the text only once per Redis restart).
static ACQUIRE_SCRIPT: once_cell::sync::Lazy<redis::Script> =
    once_cell::sync::Lazy::new(|| redis::Script::new(&script(ACQUIRE)));

fn take(set: &str, limit: usize, member: &str, ttl_ms: u64) -> redis::ScriptInvocation<'static> {
    let mut inv = ACQUIRE_SCRIPT.prepare_invoke();
    inv.key(set).arg(limit).arg(member).arg(ttl_ms);
    inv
}

/// This instance's live leases: id -> (set key, taken at).
#[derive(Default)]
pub struct LeaseBook {
    next: AtomicU64,
    live: Mutex<HashMap<u64, (String, Instant)>>,
}

impl LeaseBook {
    fn add(&self, set: &str) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.live
            .lock()
            .expect("lease lock")
            .insert(id, (set.to_string(), Instant::now()));
        id
    }

    fn remove(&self, id: u64) {
        self.live.lock().expect("lease lock").remove(&id);
    }

    fn snapshot(&self) -> Vec<(u64, String, Instant)> {
        self.live
            .lock()
            .expect("lease lock")
            .iter()
            .map(|(k, (s, t))| (*k, s.clone(), *t))
            .collect()
    }

    fn contains(&self, id: u64) -> bool {
        self.live.lock().expect("lease lock").contains_key(&id)
    }
}

/// Held for as long as the request runs; dropping it releases the lease.
pub struct Lease {
    shared: Arc<Shared>,
    id: u64,
    set: String,
    /// False for a lease Redis refused: nothing to release there.
    armed: bool,
}

impl Lease {
    /// Forgets a lease Redis did not record.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.leases.remove(self.id);
        if !self.armed {
            return;
        }
        let shared = self.shared.clone();
        let mut c = redis::cmd("ZREM");
        c.arg(std::mem::take(&mut self.set))
            .arg(shared.member(self.id));
        self.shared.runtime().spawn(async move {
            let mut conn = shared.conn();
            shared.call("release", c.query_async::<()>(&mut conn)).await;
        });
    }
}

impl Shared {
    fn member(&self, id: u64) -> String {
        format!("{}:{id}", self.instance)
    }

    pub fn ttl_ms(&self) -> u64 {
        self.settings.lease_ttl.as_millis() as u64
    }

    /// Registers a lease on `set` locally; the caller makes it known to Redis.
    pub(crate) fn new_lease(self: &Arc<Self>, set: String) -> (Lease, String) {
        let id = self.leases.add(&set);
        let member = self.member(id);
        (
            Lease {
                shared: self.clone(),
                id,
                set,
                armed: true,
            },
            member,
        )
    }

    /// A lease on `set` if fewer than `limit` are live (0 = always), awaited: `Some(None)`
    /// when at the limit, `None` when Redis did not answer.
    pub async fn acquire(self: &Arc<Self>, set: String, limit: usize) -> Option<Option<Lease>> {
        let (lease, member) = self.new_lease(set.clone());
        let inv = take(&set, limit, &member, self.ttl_ms());
        let mut conn = self.conn();
        match self.call("lease", inv.invoke_async::<i64>(&mut conn)).await {
            Some(1) => Some(Some(lease)),
            Some(_) => {
                lease.disarm();
                Some(None)
            }
            // Unknown whether it was taken: let it go (a stray member expires on its own).
            None => None,
        }
    }

    /// Renews every live lease of this instance (the heartbeat), and adds back those that
    /// went missing while Redis was away.
    pub(crate) async fn renew(&self) {
        let live = self.leases.snapshot();
        let renew = script(RENEW);
        let mut conn = self.conn();
        for chunk in live.chunks(256) {
            let keys: Vec<String> = chunk.iter().map(|(_, s, _)| s.clone()).collect();
            let mut args = vec![self.ttl_ms().to_string()];
            args.extend(chunk.iter().map(|(id, _, _)| self.member(*id)));
            let cmd = Shared::eval(&renew, &keys, &args);
            let Some(missing) = self
                .call("renew", cmd.query_async::<Vec<usize>>(&mut conn))
                .await
            else {
                return;
            };
            for i in missing {
                let Some((id, set, at)) = chunk.get(i.wrapping_sub(1)) else {
                    continue;
                };
                if at.elapsed() < SETTLE || !self.leases.contains(*id) {
                    continue;
                }
                let inv = take(set, 0, &self.member(*id), self.ttl_ms());
                self.call("renew", inv.invoke_async::<i64>(&mut conn)).await;
            }
        }
    }

    /// Live leases in each set, across instances; `None` when Redis did not answer.
    pub async fn lease_counts(&self, sets: &[String]) -> Option<Vec<usize>> {
        if sets.is_empty() {
            return Some(Vec::new());
        }
        let cmd = Shared::eval(&script(COUNT), sets, &[]);
        let mut conn = self.conn();
        self.call("lease_count", cmd.query_async::<Vec<usize>>(&mut conn))
            .await
    }

    pub fn identity_set(&self, fingerprint: &str) -> String {
        self.key(&format!("lease:identity:{fingerprint}"))
    }

    pub fn key_set(&self, key_id: &str) -> String {
        self.key(&format!("lease:key:{key_id}"))
    }
}
