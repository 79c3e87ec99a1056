//! Token upkeep in the background: identities configured with only a cookie get their token at
//! start, and cookie-backed tokens are refreshed ahead of expiry when `AUTO_REFRESH_TOKEN` is on.
//! Each identity is handled on its own, so one failing never affects the others.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::gateway::Gateway;
use crate::qwen::api;

/// Refresh a token this long before it expires.
const REFRESH_AHEAD_SECS: i64 = 24 * 3600;

pub struct TokenService {
    pub gw: Arc<Gateway>,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl TokenService {
    async fn sweep(&self, only_missing: bool) {
        for id in self.gw.pool.all() {
            let Some(cookie) = id.cookie.as_deref() else {
                continue;
            };
            let exp = id.expires_at();
            let due = id.token().is_none() || (exp > 0 && exp - now_secs() < REFRESH_AHEAD_SECS);
            if !due || (only_missing && id.token().is_some()) {
                continue;
            }
            match api::token_from_cookie(&self.gw.upstream, cookie).await {
                Ok(t) => {
                    id.set_token(t);
                    log::info!("{}: token obtained from cookie", id.label);
                }
                Err(f) => log::warn!(
                    "{}: could not obtain a token from its cookie: {} ({})",
                    id.label,
                    f.class.as_str(),
                    f.detail
                ),
            }
        }
    }
}

#[async_trait]
impl BackgroundService for TokenService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.sweep(true).await;
        let hours = self.gw.settings.token_refresh_interval_hours.max(1);
        let mut tick = tokio::time::interval(Duration::from_secs(hours * 3600));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if self.gw.settings.auto_refresh_token {
                        self.sweep(false).await;
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
