//! The shared state every request reads: settings, identities, the upstream client, the model
//! catalog and the chat cleaner. Built once at start; shared behind an `Arc`.

use std::sync::Arc;

use crate::catalog::ModelCatalog;
use crate::config::Settings;
use crate::pool::cleanup::ChatCleaner;
use crate::pool::{Identity, IdentityPool, Source};
use crate::qwen::client::{BaseUrl, Timeouts, UpstreamClient};

pub struct Gateway {
    pub settings: Settings,
    pub pool: IdentityPool,
    pub upstream: UpstreamClient,
    pub catalog: ModelCatalog,
    pub cleaner: ChatCleaner,
    pub coder: crate::coder::Coder,
    pub started: std::time::Instant,
}

/// The configured identities: a bare token, cookies (a token given beside a single cookie is
/// that cookie's token), and email/password accounts.
pub fn identities(settings: &Settings) -> Vec<Identity> {
    let mut out = Vec::new();
    if !settings.server_mode {
        return out;
    }
    let single_cookie = settings.cookies.len() == 1;
    if let (Some(t), false) = (&settings.qwen_token, single_cookie) {
        let mut id = Identity::new(out.len(), Some(t.clone()), Source::Token);
        id.token_from_file = settings.token_file.is_some();
        out.push(id);
    }
    for c in &settings.cookies {
        let token = if single_cookie {
            settings.qwen_token.clone()
        } else {
            None
        }
        .or_else(|| crate::qwen::jwt::token_from_cookie(c).map(str::to_string));
        let mut id = Identity::new(out.len(), token, Source::Cookie(c.clone()));
        id.token_from_file =
            single_cookie && settings.token_file.is_some() && settings.qwen_token.is_some();
        out.push(id);
    }
    for (email, password) in &settings.accounts {
        out.push(Identity::new(
            out.len(),
            None,
            Source::Account {
                email: email.clone(),
                password: password.clone(),
            },
        ));
    }
    out
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
        let pool = IdentityPool::new(
            identities(&settings),
            settings.pool_strategy,
            settings.max_in_flight_per_identity,
            settings.breaker,
        );
        Ok(Arc::new(Gateway {
            catalog: ModelCatalog::new(settings.models_cache_ttl),
            cleaner: ChatCleaner::new(settings.chat_cleanup),
            coder: Default::default(),
            pool,
            upstream,
            settings,
            started: std::time::Instant::now(),
        }))
    }
}
