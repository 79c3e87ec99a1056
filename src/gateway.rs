//! The shared state every request reads: settings, identities, the upstream client, the model
//! catalog, the chat cleaner, and the operational state changed through the admin API (keys,
//! runtime settings, limits, usage). Built once at start; shared behind an `Arc`.

use std::sync::Arc;

use crate::catalog::ModelCatalog;
use crate::config::Settings;
use crate::pool::cleanup::ChatCleaner;
use crate::pool::{Identity, IdentityPool, InFlight, Source, Unavailable};
use crate::qwen::client::{BaseUrl, Timeouts, UpstreamClient};
use crate::store::{Credential, IdentityRecord, State};

pub struct Gateway {
    /// The configuration as loaded at start. Settings that can change at runtime are read
    /// through [`Gateway::runtime`] instead.
    pub settings: Settings,
    pub state: State,
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

/// An identity for a saved record, with pool id `id`.
pub fn identity_from_record(id: usize, rec: &IdentityRecord) -> Identity {
    let (token, source) = match &rec.credential {
        Credential::Cookie { cookie } => (
            crate::qwen::jwt::token_from_cookie(cookie).map(str::to_string),
            Source::Cookie(cookie.clone()),
        ),
        Credential::Account { email, password } => (
            None,
            Source::Account {
                email: email.clone(),
                password: password.clone(),
            },
        ),
    };
    let mut ident = Identity::new(id, token, source);
    ident.uid = Some(rec.uid.clone());
    ident
        .disabled
        .store(rec.disabled, std::sync::atomic::Ordering::Relaxed);
    ident
}

/// The configured identities with the saved changes applied: configured ones disabled or
/// removed through the admin API, then the ones added through it (a saved identity that is
/// also configured is left to the configuration).
pub fn merged_identities(settings: &Settings, state: &State) -> Vec<Identity> {
    let mut out: Vec<Identity> = Vec::new();
    let mut next = 0;
    for mut ident in identities(settings) {
        next = next.max(ident.id + 1);
        let o = state.configured_override(&ident.fingerprint);
        if o.removed {
            log::info!("{}: removed through the admin API; not used", ident.label);
            continue;
        }
        if o.disabled {
            *ident.disabled.get_mut() = true;
        }
        out.push(ident);
    }
    if !settings.server_mode {
        return out;
    }
    for rec in state.identity_records() {
        let ident = identity_from_record(next, &rec);
        if out.iter().any(|i| i.fingerprint == ident.fingerprint) {
            continue;
        }
        next += 1;
        out.push(ident);
    }
    out
}

/// How long a request waits for identities still on their first sign-in (just after start or
/// an admin add) before it is refused: a restart should not turn its first requests into 503s.
const FIRST_TOKEN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Gateway {
    /// The runtime settings in force now (see `store::settings`).
    pub fn runtime(&self) -> Arc<crate::store::settings::Runtime> {
        self.state.runtime()
    }

    /// Chooses an identity for one attempt and counts it in flight, holding the request for
    /// up to `FIRST_TOKEN_WAIT` when the only identities left are still signing in.
    pub async fn acquire_identity(&self, tried: &[usize]) -> Result<InFlight, Unavailable> {
        let until = tokio::time::Instant::now() + FIRST_TOKEN_WAIT;
        loop {
            // Registered before the check so a sign-in finishing in between is not missed.
            let signed_in = self.pool.token_events.notified();
            match self.acquire_ready(tried).await {
                Err(Unavailable::Exhausted) if self.pool.awaiting_first_token() => {
                    if tokio::time::timeout_at(until, signed_in).await.is_err() {
                        return Err(Unavailable::Exhausted);
                    }
                }
                other => return other,
            }
        }
    }

    /// Chooses an identity for one attempt and counts it in flight. With shared state and a
    /// per-identity cap, the cap holds across instances: a lease is taken in Redis (one call)
    /// and an identity at its cap elsewhere is passed over. Without a cap no decision needs
    /// the other instances' counts, so none is taken.
    async fn acquire_ready(&self, tried: &[usize]) -> Result<InFlight, Unavailable> {
        let Some(shared) = self.state.shared() else {
            return self.pool.pick(tried).map(InFlight::new);
        };
        let mut skip = tried.to_vec();
        let mut busy_elsewhere = false;
        loop {
            let id = match self.pool.pick(&skip) {
                Ok(id) => id,
                Err(Unavailable::Exhausted) if busy_elsewhere => return Err(Unavailable::AllBusy),
                Err(e) => return Err(e),
            };
            let cap = self.pool.cap();
            if cap == 0 {
                return Ok(InFlight::new(id));
            }
            match shared
                .acquire(shared.identity_set(&id.fingerprint), cap)
                .await
            {
                Some(Some(lease)) => return Ok(InFlight::new(id).with_lease(Box::new(lease))),
                Some(None) => {
                    self.pool.cancel_trial(&id);
                    busy_elsewhere = true;
                    skip.push(id.id);
                }
                // Redis did not answer: this instance's own cap decided.
                None => return Ok(InFlight::new(id)),
            }
        }
    }

    pub fn new(settings: Settings) -> Result<Arc<Gateway>, String> {
        let shared = match &settings.redis {
            Some(r) => Some(crate::shared::Shared::connect(
                r,
                settings.data_save == crate::config::DataSave::Redis,
            )?),
            None => None,
        };
        let state = match &shared {
            Some(s) => crate::shared::block_on(s.runtime(), State::open(&settings, shared.clone())),
            None => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime: {e}"))?;
                // A thread of its own: the caller may be inside a runtime already.
                std::thread::scope(|sc| {
                    sc.spawn(|| rt.block_on(State::open(&settings, None)))
                        .join()
                        .expect("start-up task panicked")
                })
            }
        }
        .map_err(|e| e.to_string())?;
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
            merged_identities(&settings, &state),
            settings.pool_strategy,
            state.runtime().max_in_flight_per_identity,
            settings.breaker,
        );
        if let Some(s) = &shared {
            pool.set_sink(Arc::new(crate::shared::rests::RestSink(s.clone())));
            settings
                .media_cache
                .attach_remote(Arc::new(crate::shared::cache::SharedUploads(s.clone())));
        }
        Ok(Arc::new(Gateway {
            catalog: ModelCatalog::new(settings.models_cache_ttl),
            cleaner: ChatCleaner::new(settings.chat_cleanup),
            coder: Default::default(),
            pool,
            upstream,
            settings,
            state,
            started: std::time::Instant::now(),
        }))
    }
}

/// Makes the pool follow identity changes another gateway saved (another instance sharing
/// Redis, or another process on the same data file).
pub fn follow_identities(gw: &Gateway, c: crate::store::RemoteIdentities) {
    use std::sync::atomic::Ordering::Relaxed;
    for (uid, rec) in c.records {
        let existing = gw
            .pool
            .all()
            .iter()
            .find(|i| i.uid.as_deref() == Some(uid.as_str()))
            .cloned();
        match (rec, existing) {
            (Some(r), Some(i)) => i.disabled.store(r.disabled, Relaxed),
            (Some(r), None) if gw.settings.server_mode => {
                let ident = identity_from_record(gw.pool.next_id(), &r);
                if let Ok(i) = gw.pool.add_unique(ident) {
                    // The token service signs it in on its next round.
                    log::info!("identity {} added by another gateway", i.label);
                }
            }
            (None, Some(i)) => {
                gw.pool.remove(i.id);
                log::info!("identity {} removed by another gateway", i.label);
            }
            _ => {}
        }
    }
    for (fp, o) in c.configured {
        for i in gw
            .pool
            .all()
            .iter()
            .filter(|i| i.uid.is_none() && i.fingerprint == fp)
        {
            if o.removed {
                gw.pool.remove(i.id);
                log::info!("identity {} removed by another gateway", i.label);
            } else {
                i.disabled.store(o.disabled, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::store::limits::MemoryLimiter;
    use crate::store::{Backend, ConfiguredOverride, Document, StoreError};

    /// A backend holding a document in memory, to test the merge at start.
    struct Fixed(Mutex<Option<Document>>);

    #[async_trait::async_trait]
    impl Backend for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        async fn load(&self) -> Result<Option<Document>, StoreError> {
            Ok(self.0.lock().unwrap().clone())
        }
        async fn save(&self, _: &Document, doc: &Document) -> Result<(), StoreError> {
            *self.0.lock().unwrap() = Some(doc.clone());
            Ok(())
        }
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(&HashMap::new(), &move |k| env.get(k).cloned()).unwrap()
    }

    #[test]
    fn saved_data_merges_with_the_configuration() {
        let s = settings(&[
            ("API_KEY", "sk-admin-00000000000,sk-user-000000000000"),
            ("COOKIE", "a=1|||b=2|||c=3"),
            ("OUTPUT_THINK", "true"),
        ]);
        let configured = identities(&s);
        let mut doc = Document::default();
        doc.configured_identities.insert(
            configured[0].fingerprint.clone(),
            ConfiguredOverride {
                disabled: false,
                removed: true,
            },
        );
        doc.configured_identities.insert(
            configured[1].fingerprint.clone(),
            ConfiguredOverride {
                disabled: true,
                removed: false,
            },
        );
        let rec = |uid: &str, cookie: &str| IdentityRecord {
            uid: uid.into(),
            credential: Credential::Cookie {
                cookie: cookie.into(),
            },
            disabled: false,
            added_at: 1,
        };
        // "c=3" is configured too: the configuration wins, no duplicate.
        doc.identities = vec![rec("id-1", "d=4"), rec("id-2", "c=3")];
        doc.settings
            .insert("think_output".into(), serde_json::json!("hidden"));
        let state = block(State::with_backend(
            &s,
            Box::new(Fixed(Mutex::new(Some(doc)))),
            Box::<MemoryLimiter>::default(),
        ))
        .unwrap();
        let ids = merged_identities(&s, &state);
        let labels: Vec<&str> = ids.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(labels, ["cookie-2", "cookie-3", "cookie-4"]);
        assert!(ids[0].is_disabled() && !ids[1].is_disabled());
        assert_eq!(ids[2].uid.as_deref(), Some("id-1"));
        assert_eq!(
            state.runtime().reasoning_output,
            crate::config::ReasoningOutput::Hidden
        );
        assert_eq!(
            state.base().reasoning_output,
            crate::config::ReasoningOutput::Field
        );
        assert!(state.keys.has_admin());

        // An invalid saved setting is an error naming where it came from.
        let mut bad = Document::default();
        bad.settings
            .insert("upstream_retries".into(), serde_json::json!("many"));
        let e = block(State::with_backend(
            &s,
            Box::new(Fixed(Mutex::new(Some(bad)))),
            Box::<MemoryLimiter>::default(),
        ))
        .err()
        .unwrap();
        assert!(e.0.contains("DATA_SAVE_MODE=fixed") && e.0.contains("upstream_retries"));
    }
}
