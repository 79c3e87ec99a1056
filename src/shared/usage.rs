//! Usage counters across instances: a hash `usage:<key id>` per key (`HINCRBY` per field) and
//! a set `usage:keys` of the key ids that have one. Each request adds its delta to a local
//! pending map and wakes the writer, which sends everything pending in one pipeline; a failed
//! send puts the deltas back, so a Redis blip delays counts but loses none (short of a crash
//! while Redis is down). `/admin/usage` on any instance reads the sums from Redis plus what
//! this instance has not sent yet.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::Shared;
use crate::store::usage::{Counters, Delta};

const FIELDS: [&str; 6] = [
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "errors",
    "rate_limited",
    "last_used_at",
];

#[derive(Default)]
pub struct PendingUsage {
    by_key: Mutex<BTreeMap<String, Counters>>,
}

fn add(into: &mut Counters, c: &Counters) {
    into.requests = into.requests.saturating_add(c.requests);
    into.prompt_tokens = into.prompt_tokens.saturating_add(c.prompt_tokens);
    into.completion_tokens = into.completion_tokens.saturating_add(c.completion_tokens);
    into.errors = into.errors.saturating_add(c.errors);
    into.rate_limited = into.rate_limited.saturating_add(c.rate_limited);
    into.last_used_at = into.last_used_at.max(c.last_used_at);
}

impl PendingUsage {
    pub fn record(&self, key: &str, d: Delta, now: i64) {
        let mut m = self.by_key.lock().expect("usage lock");
        let c = m.entry(key.to_string()).or_default();
        add(
            c,
            &Counters {
                requests: 1,
                prompt_tokens: d.prompt_tokens,
                completion_tokens: d.completion_tokens,
                errors: u64::from(d.error),
                rate_limited: u64::from(d.rate_limited),
                last_used_at: now,
            },
        );
    }

    pub fn take(&self) -> BTreeMap<String, Counters> {
        std::mem::take(&mut *self.by_key.lock().expect("usage lock"))
    }

    /// Puts back deltas that could not be sent.
    pub fn restore(&self, back: BTreeMap<String, Counters>) {
        let mut m = self.by_key.lock().expect("usage lock");
        for (k, c) in back {
            add(m.entry(k).or_default(), &c);
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, Counters> {
        self.by_key.lock().expect("usage lock").clone()
    }

    pub fn forget(&self, key: Option<&str>) {
        let mut m = self.by_key.lock().expect("usage lock");
        match key {
            Some(k) => {
                m.remove(k);
            }
            None => m.clear(),
        }
    }
}

impl Shared {
    fn usage_key(&self, key_id: &str) -> String {
        self.key(&format!("usage:{key_id}"))
    }

    pub fn record_usage(&self, key: &str, d: Delta, now: i64) {
        self.usage.record(key, d, now);
        self.wake_usage();
    }

    /// The commands adding `pending` to the shared counters.
    pub(crate) fn usage_cmds(&self, pending: &BTreeMap<String, Counters>) -> Vec<redis::Cmd> {
        let mut out = Vec::new();
        for (k, c) in pending {
            let h = self.usage_key(k);
            for (field, v) in FIELDS[..5].iter().zip([
                c.requests,
                c.prompt_tokens,
                c.completion_tokens,
                c.errors,
                c.rate_limited,
            ]) {
                if v > 0 {
                    let mut cmd = redis::cmd("HINCRBY");
                    cmd.arg(&h).arg(*field).arg(v);
                    out.push(cmd);
                }
            }
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&h).arg("last_used_at").arg(c.last_used_at);
            out.push(cmd);
            let mut cmd = redis::cmd("SADD");
            cmd.arg(self.key("usage:keys")).arg(k);
            out.push(cmd);
        }
        out
    }

    /// Every key's counters across instances (plus what this one has not sent yet); `None`
    /// when Redis did not answer.
    pub async fn usage_totals(&self) -> Option<BTreeMap<String, Counters>> {
        let mut conn = self.conn();
        let ids: Vec<String> = self
            .call(
                "usage",
                redis::cmd("SMEMBERS")
                    .arg(self.key("usage:keys"))
                    .query_async(&mut conn),
            )
            .await?;
        let mut p = redis::pipe();
        for id in &ids {
            p.cmd("HMGET").arg(self.usage_key(id)).arg(&FIELDS[..]);
        }
        let rows: Vec<Vec<Option<i64>>> = if ids.is_empty() {
            Vec::new()
        } else {
            self.call("usage", p.query_async(&mut conn)).await?
        };
        let mut out = BTreeMap::new();
        for (id, r) in ids.into_iter().zip(rows) {
            let n = |i: usize| r.get(i).copied().flatten().unwrap_or(0).max(0);
            out.insert(
                id,
                Counters {
                    requests: n(0) as u64,
                    prompt_tokens: n(1) as u64,
                    completion_tokens: n(2) as u64,
                    errors: n(3) as u64,
                    rate_limited: n(4) as u64,
                    last_used_at: n(5),
                },
            );
        }
        for (k, c) in self.usage.snapshot() {
            add(out.entry(k).or_default(), &c);
        }
        Some(out)
    }

    /// Resets one key's counters, or all; `false` when Redis did not answer.
    pub async fn reset_usage(&self, key: Option<&str>) -> bool {
        self.usage.forget(key);
        let mut conn = self.conn();
        let ids: Vec<String> = match key {
            Some(k) => vec![k.to_string()],
            None => match self
                .call(
                    "usage",
                    redis::cmd("SMEMBERS")
                        .arg(self.key("usage:keys"))
                        .query_async(&mut conn),
                )
                .await
            {
                Some(ids) => ids,
                None => return false,
            },
        };
        let mut p = redis::pipe();
        p.atomic();
        for id in &ids {
            p.cmd("DEL").arg(self.usage_key(id));
            p.cmd("SREM").arg(self.key("usage:keys")).arg(id);
        }
        if ids.is_empty() {
            return true;
        }
        self.call("usage", p.query_async::<()>(&mut conn))
            .await
            .is_some()
    }
}
