//! Identity rests across instances. When this instance rests an identity (a 429 cooldown for
//! its `Retry-After`, an empty-answer cooldown, an open breaker), it writes `rest:<fingerprint>`
//! with that expiry (PX; a longer rest already there is kept) and publishes the fingerprint;
//! when a resting identity serves again here, the key is deleted and published too.
//!
//! Other instances keep a mirror (`Health::shared_until`): updated on each published message
//! (milliseconds after the write), and re-read for every identity each
//! `REDIS_SYNC_INTERVAL_MS` in case a message was missed (the subscriber reconnecting), which
//! bounds the staleness. Expiries travel as remaining time (`PTTL`), so clocks need not agree.
//! Identities are matched by credential fingerprint (a truncated SHA-256), never by secrets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::pool::{HealthSink, Identity, IdentityPool};

/// KEYS[1] the rest key; ARGV: ms, channel, message.
const REST: &str = "
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1";

pub struct RestSink(pub Arc<Shared>);

impl Shared {
    pub fn rest_key(&self, fingerprint: &str) -> String {
        self.key(&format!("rest:{fingerprint}"))
    }

    /// Remaining rests for each fingerprint (`None`: not resting); `None` if Redis failed.
    pub async fn rests(&self, fingerprints: &[String]) -> Option<Vec<Option<Duration>>> {
        if fingerprints.is_empty() {
            return Some(Vec::new());
        }
        let mut p = redis::pipe();
        for fp in fingerprints {
            p.cmd("PTTL").arg(self.rest_key(fp));
        }
        let mut conn = self.conn();
        let ttls = self
            .call("rests", p.query_async::<Vec<i64>>(&mut conn))
            .await?;
        Some(
            ttls.into_iter()
                .map(|ms| (ms > 0).then(|| Duration::from_millis(ms as u64)))
                .collect(),
        )
    }

    /// Re-reads every identity's shared rest into the pool's mirror.
    pub async fn refresh_rests(&self, pool: &IdentityPool) {
        let fps: Vec<String> = pool.all().iter().map(|i| i.fingerprint.clone()).collect();
        if let Some(rests) = self.rests(&fps).await {
            let now = Instant::now();
            for (fp, rest) in fps.iter().zip(rests) {
                pool.apply_shared_rest(fp, rest, now);
            }
        }
    }
}

impl HealthSink for RestSink {
    fn rested(&self, identity: &Identity, rest: Duration) {
        let s = &self.0;
        let ms = rest.as_millis().max(1) as u64;
        s.queue(vec![Shared::eval(
            REST,
            &[s.rest_key(&identity.fingerprint)],
            &[
                ms.to_string(),
                s.channel(),
                format!("rest {}", identity.fingerprint),
            ],
        )]);
    }

    fn recovered(&self, identity: &Identity) {
        let s = &self.0;
        let mut del = redis::cmd("DEL");
        del.arg(s.rest_key(&identity.fingerprint));
        let mut publish = redis::cmd("PUBLISH");
        publish
            .arg(s.channel())
            .arg(format!("rest {}", identity.fingerprint));
        s.queue(vec![del, publish]);
    }
}
