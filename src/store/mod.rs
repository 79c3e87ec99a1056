//! The gateway's mutable operational state: client keys, runtime settings, identities added
//! or changed at runtime, per-key limits and usage.
//!
//! Call sites use [`State`] only. Durable storage sits behind the small [`Backend`] trait
//! (load the whole document at start, save it after a change), and admission behind
//! [`limits::Limiter`]; `DATA_SAVE_MODE=none` and `file` are the backends here. A shared
//! backend (e.g. Redis) implements the same two traits and is chosen in [`State::open`];
//! nothing else changes.

pub mod file;
pub mod keys;
pub mod limits;
pub mod settings;
pub mod usage;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::{DataSave, Settings};
use keys::{KeyEntry, KeyRegistry};
use limits::{Limiter, Limits, MemoryLimiter, Permit, Refusal};
use settings::{Overrides, Runtime};
use usage::{Counters, Delta, UsageBook};

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
pub trait Backend: Send + Sync {
    /// The `DATA_SAVE_MODE` value.
    fn name(&self) -> &'static str;
    /// Where the data is, for messages (e.g. `DATA_FILE /var/lib/qwen-gateway/data.json`).
    fn location(&self) -> String {
        format!("DATA_SAVE_MODE={}", self.name())
    }
    /// The saved document, or `None` when nothing was saved yet.
    fn load(&self) -> Result<Option<Document>, StoreError>;
    fn save(&self, doc: &Document) -> Result<(), StoreError>;
}

/// `DATA_SAVE_MODE=none`: changes live in memory only.
pub struct MemoryBackend;

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "none"
    }

    fn load(&self) -> Result<Option<Document>, StoreError> {
        Ok(None)
    }

    fn save(&self, _: &Document) -> Result<(), StoreError> {
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
    /// The runtime settings as configured; overrides apply on top.
    base: Runtime,
    overrides: RwLock<Overrides>,
    runtime: RwLock<Arc<Runtime>>,
    identities: Mutex<IdentityBook>,
    /// Serialises saves, so an older snapshot never replaces a newer one.
    save_lock: Mutex<()>,
}

impl State {
    /// Opens the configured backend and merges what it saved with the configuration.
    pub fn open(settings: &Settings) -> Result<State, StoreError> {
        let backend: Box<dyn Backend> = match &settings.data_save {
            DataSave::None => Box::new(MemoryBackend),
            DataSave::File(path) => Box::new(file::FileBackend::new(path.clone())),
        };
        let state = Self::with_backend(settings, backend, Box::<MemoryLimiter>::default())?;
        // Saving once now finds an unwritable place at start, not at the first admin change.
        state.persist()?;
        Ok(state)
    }

    pub fn with_backend(
        settings: &Settings,
        backend: Box<dyn Backend>,
        limiter: Box<dyn Limiter>,
    ) -> Result<State, StoreError> {
        let doc = backend.load()?.unwrap_or_default();
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
            keys: KeyRegistry::new(&settings.api_keys, doc.keys),
            usage: UsageBook::new(doc.usage),
            limiter,
            backend,
            base,
            overrides: RwLock::new(doc.settings),
            runtime: RwLock::new(Arc::new(runtime)),
            identities: Mutex::new(IdentityBook {
                records: doc.identities,
                configured: doc.configured_identities,
            }),
            save_lock: Mutex::new(()),
        })
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
    pub fn patch_settings(
        &self,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Arc<Runtime>, PatchError> {
        let old = self.overrides();
        let (next, r) = settings::patch(&self.base, &old, body).map_err(PatchError::Invalid)?;
        let old_runtime = self.runtime();
        let r = Arc::new(r);
        *self.overrides.write().expect("overrides lock") = next;
        *self.runtime.write().expect("runtime lock") = r.clone();
        if let Err(e) = self.persist() {
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

    pub fn admit(&self, key: &KeyEntry) -> Result<Permit, Refusal> {
        self.limiter
            .admit(&key.id, self.limits_for(key), Instant::now())
    }

    pub fn in_flight(&self, key_id: &str) -> usize {
        self.limiter.in_flight(key_id)
    }

    pub fn forget_key(&self, key_id: &str) {
        self.limiter.forget(key_id);
    }

    pub fn record_usage(&self, key_id: &str, d: Delta) {
        self.usage.record(key_id, d, keys::now_secs());
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
    pub fn change_identities(
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
        if let Err(e) = self.persist() {
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
            usage: self.usage.snapshot(),
        }
    }

    /// Saves the current state through the backend (a no-op with `DATA_SAVE_MODE=none`).
    /// Locks are only held while the snapshot is taken and written, never across an await.
    pub fn persist(&self) -> Result<(), StoreError> {
        let _g = self.save_lock.lock().expect("save lock");
        let doc = self.document();
        self.backend.save(&doc).inspect_err(|e| {
            log::error!("saving the data failed: {e}");
        })
    }

    /// Saves when the usage counters changed since the last flush.
    pub fn flush_usage(&self) {
        if self.usage.take_dirty() && self.persist().is_err() {
            // Try again on the next flush.
            self.usage.reset_dirty();
        }
    }
}

#[derive(Debug)]
pub enum PatchError {
    Invalid(String),
    Save(StoreError),
}

/// Saves the usage counters now and then (and once more at shutdown) when they changed; other
/// changes are saved at once by the admin API.
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
                _ = tick.tick() => self.gw.state.flush_usage(),
                _ = shutdown.changed() => {
                    self.gw.state.flush_usage();
                    return;
                }
            }
        }
    }
}
