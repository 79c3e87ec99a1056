//! The gateway's mutable operational state: client keys, runtime settings, identities added
//! or changed at runtime, per-key limits and usage.
//!
//! Call sites use [`State`] only. Durable storage sits behind the small [`Backend`] trait
//! (load the whole document at start, save it after a change), and admission behind
//! [`limits::Limiter`]; `DATA_SAVE_MODE=none` and `file` are the backends here. With
//! `REDIS_URL`, `shared::backend` and `shared::limiter` implement the same two traits (chosen
//! in [`State::open`]), usage goes to Redis, and other instances' changes are merged in by
//! [`State::apply_remote`] (`merge.rs`).

pub mod file;
pub mod keys;
pub mod limits;
mod merge;
pub mod mode;
pub mod settings;
pub mod usage;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::config::{DataSave, Settings};
use crate::shared::Shared;
use keys::{KeyEntry, KeyRegistry};
use limits::{Limiter, Limits, MemoryLimiter, Permit, Refusal};
use settings::{Overrides, Runtime};
use usage::{Counters, Delta, UsageBook};

pub use merge::RemoteIdentities;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Credentials of an identity added through the admin API.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Credential {
    Cookie { cookie: String },
    Account { email: String, password: String },
}

impl fmt::Debug for Credential {
    // Never the secret itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Cookie { .. } => f.write_str("Cookie(..)"),
            Credential::Account { email, .. } => {
                write!(f, "Account({})", crate::pool::mask_email(email))
            }
        }
    }
}

/// An identity added through the admin API, as saved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityRecord {
    pub uid: String,
    #[serde(flatten)]
    pub credential: Credential,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub added_at: i64,
}

/// A configured identity (from the environment) disabled or removed through the admin API,
/// found again at start by its fingerprint.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConfiguredOverride {
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub removed: bool,
}

/// Everything a backend keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Document {
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub saved_at: i64,
    /// Added keys (digests and masked forms only).
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    #[serde(default)]
    pub identities: Vec<IdentityRecord>,
    /// By fingerprint.
    #[serde(default)]
    pub configured_identities: BTreeMap<String, ConfiguredOverride>,
    /// Runtime setting overrides by name.
    #[serde(default)]
    pub settings: Overrides,
    #[serde(default)]
    pub usage: BTreeMap<String, Counters>,
}

pub const DOCUMENT_VERSION: u32 = 1;

/// Durable storage of the document.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// The `DATA_SAVE_MODE` value.
    fn name(&self) -> &'static str;
    /// Where the data is, for messages (e.g. `DATA_FILE /var/lib/qwen-gateway/data.json`).
    fn location(&self) -> String {
        format!("DATA_SAVE_MODE={}", self.name())
    }
    /// Whether usage is saved in the document (false: it is kept elsewhere).
    fn keeps_usage(&self) -> bool {
        true
    }
    /// The saved document, or `None` when nothing was saved yet.
    async fn load(&self) -> Result<Option<Document>, StoreError>;
    /// Saves `doc`; `before` is the document as last saved or loaded, for backends that
    /// write only what changed.
    async fn save(&self, before: &Document, doc: &Document) -> Result<(), StoreError>;
    /// The saved document when another process changed it since this one last read or wrote
    /// it (two gateways on one data file, as during a graceful reload); `None` otherwise.
    async fn changed_elsewhere(&self) -> Result<Option<Document>, StoreError> {
        Ok(None)
    }
    /// Keeps other processes from saving until the returned value is dropped, so that taking
    /// in their changes and writing are one step (file: a lock beside the file).
    fn hold(&self) -> Result<Option<Box<dyn Send>>, StoreError> {
        Ok(None)
    }
}

/// `DATA_SAVE_MODE=none`: changes live in memory only.
pub struct MemoryBackend;

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "none"
    }

    async fn load(&self) -> Result<Option<Document>, StoreError> {
        Ok(None)
    }

    async fn save(&self, _: &Document, _: &Document) -> Result<(), StoreError> {
        Ok(())
    }
}

#[derive(Default)]
struct IdentityBook {
    records: Vec<IdentityRecord>,
    configured: BTreeMap<String, ConfiguredOverride>,
}

pub struct State {
    pub keys: KeyRegistry,
    pub usage: UsageBook,
    limiter: Box<dyn Limiter>,
    backend: Box<dyn Backend>,
    /// Set when instances share state (usage then goes there).
    shared: Option<Arc<Shared>>,
    /// The runtime settings as configured; overrides apply on top.
    base: Runtime,
    overrides: RwLock<Overrides>,
    runtime: RwLock<Arc<Runtime>>,
    identities: Mutex<IdentityBook>,
    /// The document as last saved or loaded. Held while saving, so saves never interleave
    /// and an older snapshot never replaces a newer one.
    saved: tokio::sync::Mutex<Document>,
    /// Identity changes taken in from a data file another process wrote, for the pool to
    /// follow (`FlushService`, which holds the pool).
    follow: Mutex<Vec<RemoteIdentities>>,
}

impl State {
    /// Opens the configured backend (Redis when `shared` is given) and merges what it saved
    /// with the configuration.
    pub async fn open(
        settings: &Settings,
        shared: Option<Arc<Shared>>,
    ) -> Result<State, StoreError> {
        let (backend, limiter): (Box<dyn Backend>, Box<dyn Limiter>) =
            match (&shared, &settings.data_save) {
                (Some(s), _) => (
                    Box::new(crate::shared::backend::RedisBackend::new(s.clone())),
                    Box::new(crate::shared::limiter::RedisLimiter::new(s.clone())),
                ),
                (None, DataSave::File(path)) => (
                    Box::new(file::FileBackend::new(path.clone())),
                    Box::<MemoryLimiter>::default(),
                ),
                (None, _) => (Box::new(MemoryBackend), Box::<MemoryLimiter>::default()),
            };
        let mut state = Self::with_backend(settings, backend, limiter).await?;
        state.shared = shared;
        // Saving once now finds an unwritable place at start, not at the first admin change.
        state.persist().await?;
        Ok(state)
    }

    pub async fn with_backend(
        settings: &Settings,
        backend: Box<dyn Backend>,
        limiter: Box<dyn Limiter>,
    ) -> Result<State, StoreError> {
        let doc = backend.load().await?.unwrap_or_default();
        if doc.version > DOCUMENT_VERSION {
            return Err(StoreError(format!(
                "the saved data ({}) has version {}, newer than this build's {}",
                backend.location(),
                doc.version,
                DOCUMENT_VERSION
            )));
        }
        let base = Runtime::from_settings(settings);
        let runtime = settings::effective(&base, &doc.settings).map_err(|e| {
            StoreError(format!(
                "the saved settings in {} are invalid: {e}",
                backend.location()
            ))
        })?;
        Ok(State {
            keys: KeyRegistry::new(&settings.api_keys, doc.keys.clone()),
            usage: UsageBook::new(doc.usage.clone()),
            limiter,
            backend,
            shared: None,
            base,
            overrides: RwLock::new(doc.settings.clone()),
            runtime: RwLock::new(Arc::new(runtime)),
            identities: Mutex::new(IdentityBook {
                records: doc.identities.clone(),
                configured: doc.configured_identities.clone(),
            }),
            saved: tokio::sync::Mutex::new(doc),
            follow: Mutex::new(Vec::new()),
        })
    }

    pub fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The settings in force now; cheap (an `Arc` clone), read at request time.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.read().expect("runtime lock").clone()
    }

    pub fn overrides(&self) -> Overrides {
        self.overrides.read().expect("overrides lock").clone()
    }

    pub fn base(&self) -> &Runtime {
        &self.base
    }

    /// Applies a settings change (see `settings::patch`) and saves it; on a failed save the
    /// change is undone.
    pub async fn patch_settings(
        &self,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Arc<Runtime>, PatchError> {
        let old = self.overrides();
        let (next, r) = settings::patch(&self.base, &old, body).map_err(PatchError::Invalid)?;
        let old_runtime = self.runtime();
        let r = Arc::new(r);
        *self.overrides.write().expect("overrides lock") = next;
        *self.runtime.write().expect("runtime lock") = r.clone();
        if let Err(e) = self.persist().await {
            *self.overrides.write().expect("overrides lock") = old;
            *self.runtime.write().expect("runtime lock") = old_runtime;
            return Err(PatchError::Save(e));
        }
        Ok(r)
    }

    /// The limits that apply to a user key now.
    pub fn limits_for(&self, key: &KeyEntry) -> Limits {
        let rt = self.runtime();
        Limits {
            rpm: key.rpm_limit.unwrap_or(rt.key_rpm_limit),
            concurrent: key.max_concurrent.unwrap_or(rt.key_max_concurrent),
        }
    }

    pub async fn admit(&self, key: &KeyEntry) -> Result<Permit, Refusal> {
        self.limiter.admit(&key.id, self.limits_for(key)).await
    }

    /// Requests of the key running now (on every instance, when they share state).
    pub async fn in_flight(&self, key_id: &str) -> usize {
        self.limiter.in_flight(key_id).await
    }

    pub fn forget_key(&self, key_id: &str) {
        self.limiter.forget(key_id);
    }

    pub fn record_usage(&self, key_id: &str, d: Delta) {
        match &self.shared {
            Some(s) => s.record_usage(key_id, d, keys::now_secs()),
            None => self.usage.record(key_id, d, keys::now_secs()),
        }
    }

    /// Every key's usage (summed over the instances when they share state).
    pub async fn usage_snapshot(&self) -> Result<BTreeMap<String, Counters>, StoreError> {
        match &self.shared {
            Some(s) => s.usage_totals().await.ok_or_else(|| {
                StoreError("the shared usage counters could not be read from Redis".into())
            }),
            None => Ok(self.usage.snapshot()),
        }
    }

    /// Resets one key's usage, or all, and saves.
    pub async fn reset_usage(&self, key: Option<&str>) -> Result<(), StoreError> {
        match &self.shared {
            Some(s) => s.reset_usage(key).await.then_some(()).ok_or_else(|| {
                StoreError("the shared usage counters could not be reset in Redis".into())
            }),
            None => {
                self.usage.reset(key);
                self.persist().await
            }
        }
    }

    pub fn identity_records(&self) -> Vec<IdentityRecord> {
        self.identities
            .lock()
            .expect("identities lock")
            .records
            .clone()
    }

    pub fn configured_override(&self, fingerprint: &str) -> ConfiguredOverride {
        self.identities
            .lock()
            .expect("identities lock")
            .configured
            .get(fingerprint)
            .copied()
            .unwrap_or_default()
    }

    /// Changes the saved identity data with `f`, saves, and undoes the change if the save
    /// fails.
    pub async fn change_identities(
        &self,
        f: impl FnOnce(&mut Vec<IdentityRecord>, &mut BTreeMap<String, ConfiguredOverride>),
    ) -> Result<(), StoreError> {
        let before = {
            let mut book = self.identities.lock().expect("identities lock");
            let before = (book.records.clone(), book.configured.clone());
            let IdentityBook {
                records,
                configured,
            } = &mut *book;
            f(records, configured);
            before
        };
        if let Err(e) = self.persist().await {
            let mut book = self.identities.lock().expect("identities lock");
            book.records = before.0;
            book.configured = before.1;
            return Err(e);
        }
        Ok(())
    }

    /// The whole document as it stands.
    pub fn document(&self) -> Document {
        let (records, configured) = {
            let b = self.identities.lock().expect("identities lock");
            (b.records.clone(), b.configured.clone())
        };
        Document {
            version: DOCUMENT_VERSION,
            saved_at: keys::now_secs(),
            keys: self.keys.stored(),
            identities: records,
            configured_identities: configured,
            settings: self.overrides(),
            usage: if self.backend.keeps_usage() {
                self.usage.snapshot()
            } else {
                BTreeMap::new()
            },
        }
    }

    /// Saves the current state through the backend (a no-op with `DATA_SAVE_MODE=none`).
    /// Only the async save lock is held across the write; the snapshot's locks are not.
    pub async fn persist(&self) -> Result<(), StoreError> {
        let mut saved = self.saved.lock().await;
        let _held = self.backend.hold()?;
        if !self.take_in_elsewhere(&mut saved).await {
            return Ok(());
        }
        let doc = self.document();
        self.backend
            .save(&saved, &doc)
            .await
            .inspect_err(|e| log::error!("saving the data failed: {e}"))?;
        *saved = doc;
        Ok(())
    }

    /// Takes in the data file as another process left it, if one did (see `file.rs`), so that
    /// the next save keeps its changes. `false` when a newer build wrote it: this one then
    /// leaves the file alone.
    async fn take_in_elsewhere(&self, saved: &mut Document) -> bool {
        match self.backend.changed_elsewhere().await {
            Ok(Some(fresh)) if fresh.version > DOCUMENT_VERSION => {
                log::warn!(
                    "{} was written by a newer build (data version {}); not saving over it",
                    self.backend.location(),
                    fresh.version
                );
                false
            }
            Ok(Some(fresh)) => {
                log::info!(
                    "{} was changed by another process; taking its changes in",
                    self.backend.location()
                );
                let c = self.take_in(saved, fresh);
                self.follow.lock().expect("follow lock").push(c);
                true
            }
            Ok(None) => true,
            // Unreadable or invalid: the save that follows replaces it.
            Err(e) => {
                log::warn!("{e}");
                true
            }
        }
    }

    /// Saves changed usage counters and takes in another process's changes to the data file
    /// (the save does that itself; without one, only the look). Returns the identity changes
    /// taken in since the last call, for the pool.
    pub async fn flush(&self) -> Vec<RemoteIdentities> {
        if !self.flush_usage().await {
            let mut saved = self.saved.lock().await;
            self.take_in_elsewhere(&mut saved).await;
        }
        std::mem::take(&mut *self.follow.lock().expect("follow lock"))
    }

    /// Saves when the usage counters changed since the last flush; `true` when it tried.
    pub async fn flush_usage(&self) -> bool {
        let Some(mark) = self.usage.take_dirty_for_save() else {
            return false;
        };
        if self.persist().await.is_ok() {
            mark.saved();
        }
        true
    }
}

#[derive(Debug)]
pub enum PatchError {
    Invalid(String),
    Save(StoreError),
}

/// Saves the usage counters now and then when they changed, and takes in what another process
/// wrote to the data file meanwhile; other changes are saved at once by the admin API, and the
/// last counters by [`save_at_exit`].
pub struct FlushService {
    pub gw: Arc<crate::gateway::Gateway>,
}

/// How often changed usage counters are saved.
pub const USAGE_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for FlushService {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(USAGE_FLUSH_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    for c in self.gw.state.flush().await {
                        crate::gateway::follow_identities(&self.gw, c);
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Whether this gateway saves usage itself (not with shared state, where usage goes to Redis as
/// it happens, nor with `DATA_SAVE_MODE=none`).
pub fn saves_usage(gw: &crate::gateway::Gateway) -> bool {
    gw.state.shared().is_none() && gw.state.backend_name() != "none"
}

/// The last save of changed usage, once the server's runtimes are gone. It cannot be a task of
/// theirs: with no grace period Pingora shuts the runtimes down right after signalling
/// shutdown, which drops their tasks, so a final flush there may never run and the counters
/// since the last flush would be lost. Only when something changed, so that the old process of
/// a graceful reload does not overwrite, with nothing new, what its successor saved meanwhile.
pub fn save_at_exit(gw: &crate::gateway::Gateway) {
    if !saves_usage(gw) {
        return;
    }
    match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => {
            rt.block_on(gw.state.flush_usage());
        }
        Err(e) => log::error!("saving the data at exit failed: {e}"),
    }
}
