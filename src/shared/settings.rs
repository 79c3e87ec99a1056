//! The Redis settings, read from the same key/value source as the rest of the configuration.
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `REDIS_URL` | none (no sharing) | `redis://[user:password@]host:port[/db]` (or `rediss://`) |
//! | `REDIS_PREFIX` | `qwen-gateway:` | prefix of every key and of the event channel |
//! | `REDIS_LEASE_TTL_MS` | `30000` | life of an in-flight lease that its instance stops renewing |
//! | `REDIS_SYNC_INTERVAL_MS` | `1000` | full refresh of shared rests and data (pub/sub is the fast path) |
//! | `REDIS_TIMEOUT_MS` | `1000` | connect and response timeout of one Redis call |

use std::time::Duration;

/// How to reach Redis and how the shared state behaves. `url` may hold a password: never
/// format it, use [`RedisSettings::redacted_url`].
#[derive(Clone)]
pub struct RedisSettings {
    pub url: String,
    pub prefix: String,
    pub lease_ttl: Duration,
    pub sync_interval: Duration,
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("lease_ttl", &self.lease_ttl)
            .field("sync_interval", &self.sync_interval)
            .finish()
    }
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable)".into(),
    }
}

fn millis(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: u64,
) -> Result<Duration, String> {
    match get(key) {
        None => Ok(Duration::from_millis(default)),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Duration::from_millis(n)),
            _ => Err(format!(
                "{key} must be a whole number of milliseconds above 0, got {v:?}"
            )),
        },
    }
}

impl RedisSettings {
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// `None` when `REDIS_URL` is not set. The URL is checked here (not connected to).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let Some(url) = get("REDIS_URL").map(|u| u.trim().to_string()) else {
            return Ok(None);
        };
        // The parser's own messages may quote the URL, password included: not repeated here.
        if redis::Client::open(url.as_str()).is_err() {
            return Err(format!(
                "REDIS_URL is not a valid Redis URL ({}); expected redis://[user:password@]host:port[/db]",
                redact(&url)
            ));
        }
        let prefix = get("REDIS_PREFIX").unwrap_or_else(|| "qwen-gateway:".into());
        if prefix
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!(
                "REDIS_PREFIX must not hold spaces or control characters, got {prefix:?}"
            ));
        }
        Ok(Some(RedisSettings {
            url,
            prefix,
            lease_ttl: millis(&get, "REDIS_LEASE_TTL_MS", 30_000)?,
            sync_interval: millis(&get, "REDIS_SYNC_INTERVAL_MS", 1_000)?,
            timeout: millis(&get, "REDIS_TIMEOUT_MS", 1_000)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Option<RedisSettings>, String> {
        let m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RedisSettings::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn parses_and_never_shows_the_password() {
        assert!(load(&[]).unwrap().is_none());
        let s = load(&[
            ("REDIS_URL", "redis://user:hunter2@127.0.0.1:6390/2"),
            ("REDIS_LEASE_TTL_MS", "1500"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.lease_ttl, Duration::from_millis(1500));
        assert_eq!(s.prefix, "qwen-gateway:");
        assert!(!s.redacted_url().contains("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
        for (k, v) in [
            ("REDIS_URL", "http://nope"),
            ("REDIS_LEASE_TTL_MS", "0"),
            ("REDIS_SYNC_INTERVAL_MS", "x"),
            ("REDIS_PREFIX", "a b"),
        ] {
            let mut pairs = vec![("REDIS_URL", "redis://127.0.0.1:1")];
            pairs.retain(|p| p.0 != k);
            pairs.push((k, v));
            let e = load(&pairs).unwrap_err();
            assert!(e.contains(k), "{e}");
        }
        let e = load(&[("REDIS_URL", "http://u:secret@x")]).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
