//! The shared state every request reads: settings, identities, the upstream client and the
//! model catalog. Built once at start; cheap to share behind an `Arc`.

use std::sync::Arc;

use crate::catalog::ModelCatalog;
use crate::config::Settings;
use crate::pool::{Identity, IdentityPool};
use crate::qwen::client::{BaseUrl, Timeouts, UpstreamClient};

pub struct Gateway {
    pub settings: Settings,
    pub pool: IdentityPool,
    pub upstream: UpstreamClient,
    pub catalog: ModelCatalog,
    pub started: std::time::Instant,
}

impl Gateway {
    pub fn new(settings: Settings) -> Result<Arc<Gateway>, String> {
        let base = BaseUrl::parse(&settings.qwen_base_url)?;
        let upstream = UpstreamClient::new(
            base,
            Timeouts {
                connect: settings.connect_timeout,
                first_byte: settings.first_byte_timeout,
                idle: settings.idle_timeout,
            },
            256,
        )?;
        let mut identities = Vec::new();
        if settings.server_mode {
            if settings.cookies.is_empty() {
                if let Some(t) = &settings.qwen_token {
                    identities.push(Identity::new(0, Some(t.clone()), None));
                }
            }
            for (i, c) in settings.cookies.iter().enumerate() {
                // A token given beside a single cookie is that cookie's token.
                let token = if settings.cookies.len() == 1 {
                    settings.qwen_token.clone()
                } else {
                    None
                }
                .or_else(|| crate::qwen::jwt::token_from_cookie(c).map(str::to_string));
                identities.push(Identity::new(i, token, Some(c.clone())));
            }
        }
        Ok(Arc::new(Gateway {
            catalog: ModelCatalog::new(settings.models_cache_ttl),
            pool: IdentityPool::new(identities),
            upstream,
            settings,
            started: std::time::Instant::now(),
        }))
    }
}
