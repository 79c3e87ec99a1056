//! Token lifecycle: each identity gets its token at start (from its cookie, by signing in, or
//! as configured) and a fresh one ahead of expiry, on its own schedule with jitter so accounts
//! never refresh together. Failed refreshes back off; one identity's failure never touches the
//! others. A token refused by the upstream is refreshed at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::{Identity, Source};
use crate::convert::classify::{Failure, FailureClass};
use crate::gateway::Gateway;
use crate::qwen::api;

/// Never refresh one identity more often than this, whatever the token's lifetime.
const MIN_GAP_MS: i64 = 1_000;
const MAX_BACKOFF_MS: i64 = 300_000;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// When to refresh a token expiring at `exp_s` (unix seconds; 0 = unknown). `jitter` in [0, 1)
/// moves the time earlier by up to a tenth of the lead (at most 15 minutes), so identities
/// with equal expiries spread out.
pub fn next_refresh(
    now_ms: i64,
    exp_s: i64,
    ahead: Duration,
    interval: Duration,
    jitter: f64,
) -> i64 {
    let interval_ms = interval.as_millis() as i64;
    if exp_s <= 0 {
        return now_ms + interval_ms;
    }
    let target = exp_s * 1000 - ahead.as_millis() as i64;
    let lead = (target - now_ms).min(interval_ms);
    if lead <= MIN_GAP_MS {
        return now_ms + MIN_GAP_MS + (jitter * 1000.0) as i64;
    }
    let spread = (lead / 10).min(15 * 60 * 1000);
    now_ms + lead - (jitter * spread as f64) as i64
}

/// Exponential back-off after `failures` consecutive failed refreshes, with jitter.
pub fn backoff_ms(failures: u32, jitter: f64) -> i64 {
    let base = (2_000i64 << failures.min(8)).min(MAX_BACKOFF_MS);
    base / 2 + (jitter * (base / 2) as f64) as i64
}

/// Gets a new token for `id` the way its source allows.
async fn obtain(gw: &Gateway, id: &Identity) -> Result<String, Failure> {
    let client = &gw.upstream;
    match &id.source {
        Source::Account { email, password } => api::sign_in(client, email, password).await,
        Source::Cookie(cookie) => match api::token_from_cookie(client, cookie).await {
            Ok(t) => Ok(t),
            // The cookie's own token may have lapsed while ours is still good.
            Err(e) => match id.token() {
                Some(t) => api::token_from_bearer(client, &t).await.map_err(|_| e),
                None => Err(e),
            },
        },
        Source::Token => match id.token() {
            Some(t) => api::token_from_bearer(client, &t).await,
            None => Err(Failure::new(FailureClass::Auth, "no token configured")),
        },
    }
}

/// Refreshes one identity now; on success installs the token, writes it back to its settings
/// file if it came from one, and schedules the next refresh.
pub async fn refresh_identity(gw: &Gateway, id: &Identity) -> Result<(), Failure> {
    let result = obtain(gw, id).await;
    let now = now_ms();
    match result {
        Ok(token) => {
            if id.token_from_file {
                if let Some(path) = &gw.settings.token_file {
                    match super::writeback::write_token(path, &token) {
                        Ok(()) => log::info!(
                            "{}: refreshed token written back to {}",
                            id.label,
                            path.display()
                        ),
                        Err(e) => log::warn!(
                            "{}: could not write the token back to {}: {e}",
                            id.label,
                            path.display()
                        ),
                    }
                }
            }
            id.set_token(token);
            id.refresh_failures.store(0, Ordering::Relaxed);
            let next = next_refresh(
                now,
                id.expires_at(),
                gw.settings.token_refresh_ahead,
                Duration::from_secs(gw.settings.token_refresh_interval_hours.max(1) * 3600),
                fastrand::f64(),
            );
            id.next_refresh_ms.store(next, Ordering::Relaxed);
            log::info!("{}: token refreshed", id.label);
            crate::metrics::TOKEN_REFRESHES
                .with_label_values(&["ok"])
                .inc();
            gw.pool.token_events.notify_waiters();
            Ok(())
        }
        Err(f) => {
            crate::metrics::TOKEN_REFRESHES
                .with_label_values(&[f.class.as_str()])
                .inc();
            let n = id.refresh_failures.fetch_add(1, Ordering::Relaxed) + 1;
            id.next_refresh_ms
                .store(now + backoff_ms(n, fastrand::f64()), Ordering::Relaxed);
            log::warn!(
                "{}: token refresh failed ({}: {}); retry {} in the back-off",
                id.label,
                f.class.as_str(),
                f.detail,
                n
            );
            gw.pool.token_events.notify_waiters();
            Err(f)
        }
    }
}

pub struct TokenService {
    pub gw: Arc<Gateway>,
}

impl TokenService {
    fn due(&self, id: &Identity, now: i64) -> bool {
        // A disabled account is left alone (it may be disabled because the upstream objects).
        if id.refreshing.load(Ordering::Relaxed) || id.is_disabled() {
            return false;
        }
        if id.token().is_none() || id.refresh_requested.load(Ordering::Relaxed) {
            return id.next_refresh_ms.load(Ordering::Relaxed) <= now
                || id.refresh_failures.load(Ordering::Relaxed) == 0;
        }
        self.gw.settings.auto_refresh_token && id.next_refresh_ms.load(Ordering::Relaxed) <= now
    }
}

#[async_trait]
impl BackgroundService for TokenService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let s = &self.gw.settings;
        let now = now_ms();
        for id in self.gw.pool.all().iter() {
            if id.token().is_some() {
                let interval = Duration::from_secs(s.token_refresh_interval_hours.max(1) * 3600);
                let next = next_refresh(
                    now,
                    id.expires_at(),
                    s.token_refresh_ahead,
                    interval,
                    fastrand::f64(),
                );
                id.next_refresh_ms.store(next, Ordering::Relaxed);
            }
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = now_ms();
            let mut states = [0i64; 4];
            let instant = std::time::Instant::now();
            for id in self.gw.pool.all().iter() {
                let i = if id.is_disabled() {
                    3
                } else {
                    self.gw.pool.state(id, instant) as usize
                };
                states[i] += 1;
            }
            for (i, name) in ["healthy", "degraded", "down", "disabled"]
                .iter()
                .enumerate()
            {
                crate::metrics::IDENTITIES
                    .with_label_values(&[name])
                    .set(states[i]);
            }
            for id in self.gw.pool.all().iter() {
                if !self.due(id, now) {
                    continue;
                }
                id.refreshing.store(true, Ordering::Relaxed);
                id.refresh_requested.store(false, Ordering::Relaxed);
                let gw = self.gw.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    let _ = refresh_identity(&gw, &id).await;
                    id.refreshing.store(false, Ordering::Relaxed);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(3600);

    #[test]
    fn schedules_ahead_of_expiry_with_bounded_jitter() {
        let now = 1_000_000_000i64;
        let exp = now / 1000 + 48 * 3600;
        let ahead = Duration::from_secs(24 * 3600);
        let a = next_refresh(now, exp, ahead, 100 * H, 0.0);
        assert_eq!(a, now + 24 * 3600 * 1000);
        let b = next_refresh(now, exp, ahead, 100 * H, 0.999);
        assert!(b < a && a - b <= 15 * 60 * 1000);
        // The interval bounds the wait.
        assert_eq!(next_refresh(now, exp, ahead, H, 0.0), now + 3_600_000);
        // Already inside the window: soon, not now, and spread.
        let c = next_refresh(now, now / 1000 + 10, ahead, H, 0.5);
        assert_eq!(c, now + MIN_GAP_MS + 500);
        // Unknown expiry: check again after the interval.
        assert_eq!(next_refresh(now, 0, ahead, H, 0.0), now + 3_600_000);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff_ms(1, 0.0) < backoff_ms(3, 0.0));
        assert!(backoff_ms(30, 0.999) <= MAX_BACKOFF_MS);
        assert!(backoff_ms(1, 0.999) >= backoff_ms(1, 0.0));
    }
}
