//! The upstream model list, cached with a TTL. Readers never wait on a refresh that another
//! request already started unless there is no list at all; a failed refresh keeps the stale list.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::convert::classify::Failure;
use crate::pool::IdentityPool;
use crate::qwen::api;
use crate::qwen::client::UpstreamClient;
use crate::qwen::headers::Credentials;
use crate::qwen::models::{self, ModelInfo};

pub type Models = Arc<Vec<ModelInfo>>;

pub struct ModelCatalog {
    ttl: Duration,
    cached: RwLock<Option<(Instant, Models)>>,
    refresh: tokio::sync::Mutex<()>,
}

impl ModelCatalog {
    pub fn new(ttl: Duration) -> Self {
        ModelCatalog {
            ttl,
            cached: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Models> {
        let c = self.cached.read().expect("catalog lock");
        c.as_ref()
            .filter(|(at, _)| self.ttl.is_zero() || at.elapsed() < self.ttl)
            .map(|(_, m)| m.clone())
    }

    fn stale(&self) -> Option<Models> {
        self.cached
            .read()
            .expect("catalog lock")
            .as_ref()
            .map(|(_, m)| m.clone())
    }

    /// The model list, fetched through `creds` (or the pool) when missing or expired.
    pub async fn get(
        &self,
        client: &UpstreamClient,
        pool: &IdentityPool,
        creds: Option<&Credentials<'_>>,
    ) -> Result<Models, Failure> {
        if let Some(m) = self.fresh() {
            return Ok(m);
        }
        // A concurrent refresh is joined rather than repeated.
        let _guard = self.refresh.lock().await;
        if let Some(m) = self.fresh() {
            return Ok(m);
        }
        let result = match creds {
            Some(c) => api::list_models(client, c).await,
            None => {
                let mut last = Err(Failure::new(
                    crate::convert::classify::FailureClass::Auth,
                    "no upstream identity has a token yet",
                ));
                for id in pool.all().iter().filter(|i| !i.is_disabled()) {
                    let Some(token) = id.token() else { continue };
                    let c = Credentials {
                        token: &token,
                        cookie: id.cookie(),
                    };
                    last = api::list_models(client, &c).await;
                    if last.is_ok() {
                        break;
                    }
                }
                last
            }
        };
        match result {
            Ok(raw) => {
                let list: Models = Arc::new(raw.iter().filter_map(models::parse).collect());
                *self.cached.write().expect("catalog lock") = Some((Instant::now(), list.clone()));
                Ok(list)
            }
            Err(f) => match self.stale() {
                Some(m) => {
                    log::warn!(
                        "model list refresh failed ({}); keeping the cached list",
                        f.class.as_str()
                    );
                    Ok(m)
                }
                None => Err(f),
            },
        }
    }
}
