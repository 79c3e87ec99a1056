//! Client API keys: the configured ones (`API_KEY`, the first is the admin key) and the ones
//! added through the admin API. Only a SHA-256 digest and a masked form of each key are kept
//! (also in the data file); the full value of an added key is shown once, when it is created.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::Caller;
use crate::openai::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// From `API_KEY`; removed by editing the configuration, not through the API.
    Env,
    /// Added through the admin API (and kept in the data file).
    Admin,
}

/// One key as the gateway holds it: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Stable, safe to log: `admin`, `key-1`.. for `API_KEY`, `k-<8 hex>` for added keys.
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// `sk-…wxyz`: enough to recognise a key, not to use it.
    pub masked: String,
    pub origin: Origin,
    #[serde(default)]
    pub admin: bool,
    /// Requests per minute; `None` = the default (`KEY_RPM_LIMIT`), 0 = no limit.
    #[serde(default)]
    pub rpm_limit: Option<u32>,
    /// Concurrent chat requests; `None` = the default (`KEY_MAX_CONCURRENT`), 0 = no limit.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    #[serde(default)]
    pub created_at: i64,
}

pub fn digest_hex(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The first three characters and the last four, for keys long enough to spare them.
pub fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 16 {
        return "…".into();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// A new key: `sk-qg-` and 64 hex characters from the OS's random source (two v4 UUIDs,
/// 244 random bits).
pub fn generate() -> String {
    format!(
        "sk-qg-{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A short random id for added keys and identities.
pub fn short_id(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A key a client may send: 16 to 256 visible ASCII characters, none of which would break
/// the header forms (`,` separates `API_KEY`, `;` the client-mode credentials).
pub fn validate_key(key: &str) -> Result<(), String> {
    if !(16..=256).contains(&key.len()) {
        return Err("'key' must be 16 to 256 characters long.".into());
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b',' && b != b';')
    {
        return Err("'key' may only hold visible ASCII characters other than ',' and ';'.".into());
    }
    Ok(())
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Each key with its digest.
type KeyList = Arc<Vec<(Arc<KeyEntry>, [u8; 32])>>;

/// The key is already known (same value or same id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate;

/// The keys in force. Readers take a snapshot (an `Arc` clone under a short read lock);
/// changes replace the whole list.
pub struct KeyRegistry {
    keys: RwLock<KeyList>,
}

impl KeyRegistry {
    /// The configured keys (the first is the admin key) followed by the stored ones. A stored
    /// key equal to a configured one is dropped: the configuration wins.
    pub fn new(configured: &[String], stored: Vec<KeyEntry>) -> Self {
        let mut list: Vec<(Arc<KeyEntry>, [u8; 32])> = Vec::new();
        for (i, k) in configured.iter().enumerate() {
            let d: [u8; 32] = Sha256::digest(k.as_bytes()).into();
            if list.iter().any(|(_, e)| *e == d) {
                continue;
            }
            let entry = KeyEntry {
                id: if i == 0 {
                    "admin".into()
                } else {
                    format!("key-{i}")
                },
                name: if i == 0 {
                    "admin".into()
                } else {
                    format!("API_KEY #{}", i + 1)
                },
                sha256: hex(&d),
                masked: mask(k),
                origin: Origin::Env,
                admin: i == 0,
                rpm_limit: None,
                max_concurrent: None,
                created_at: 0,
            };
            list.push((Arc::new(entry), d));
        }
        for mut e in stored {
            let Some(d) = unhex(&e.sha256) else {
                log::warn!("stored key {} has no valid digest; skipped", e.id);
                continue;
            };
            if list.iter().any(|(x, dd)| *dd == d || x.id == e.id) {
                continue;
            }
            e.origin = Origin::Admin;
            e.admin = false;
            list.push((Arc::new(e), d));
        }
        KeyRegistry {
            keys: RwLock::new(Arc::new(list)),
        }
    }

    fn snapshot(&self) -> KeyList {
        self.keys.read().expect("keys lock").clone()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    pub fn has_admin(&self) -> bool {
        self.snapshot().iter().any(|(e, _)| e.admin)
    }

    pub fn list(&self) -> Vec<Arc<KeyEntry>> {
        self.snapshot().iter().map(|(e, _)| e.clone()).collect()
    }

    /// The added keys, as saved in the data file.
    pub fn stored(&self) -> Vec<KeyEntry> {
        self.snapshot()
            .iter()
            .filter(|(e, _)| e.origin == Origin::Admin)
            .map(|(e, _)| (**e).clone())
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<KeyEntry>> {
        self.snapshot()
            .iter()
            .find(|(e, _)| e.id == id)
            .map(|(e, _)| e.clone())
    }

    /// Who sent `presented`. Digests are compared so that neither content nor length leaks
    /// through timing, and every key is checked so the position of a match does not either.
    /// With no key at all the gateway is open.
    pub fn identify(&self, presented: Option<&str>) -> Result<Caller, ApiError> {
        let keys = self.snapshot();
        if keys.is_empty() {
            return Ok(Caller::Open);
        }
        let Some(p) = presented else {
            return Err(ApiError::unauthorized());
        };
        let pd: [u8; 32] = Sha256::digest(p.as_bytes()).into();
        let mut found: Option<&Arc<KeyEntry>> = None;
        for (e, d) in keys.iter() {
            if bool::from(pd.ct_eq(d)) && found.is_none() {
                found = Some(e);
            }
        }
        match found {
            Some(e) if e.admin => Ok(Caller::Admin),
            Some(e) => Ok(Caller::User(e.clone())),
            None => Err(ApiError::unauthorized()),
        }
    }

    /// Adds a key; `Err` when the same key is already known.
    pub fn add(&self, entry: KeyEntry) -> Result<Arc<KeyEntry>, Duplicate> {
        // Entries are built with a digest; one without a valid digest could never match.
        let d = unhex(&entry.sha256).unwrap_or([0; 32]);
        let mut guard = self.keys.write().expect("keys lock");
        if guard.iter().any(|(e, dd)| *dd == d || e.id == entry.id) {
            return Err(Duplicate);
        }
        let mut list = (**guard).clone();
        let e = Arc::new(entry);
        list.push((e.clone(), d));
        *guard = Arc::new(list);
        Ok(e)
    }

    /// Replaces an entry with the result of `f` (which may refuse).
    pub fn update<E>(
        &self,
        id: &str,
        f: impl FnOnce(&KeyEntry) -> Result<KeyEntry, E>,
    ) -> Option<Result<Arc<KeyEntry>, E>> {
        let mut guard = self.keys.write().expect("keys lock");
        let pos = guard.iter().position(|(e, _)| e.id == id)?;
        let new = match f(&guard[pos].0) {
            Ok(n) => Arc::new(n),
            Err(e) => return Some(Err(e)),
        };
        let mut list = (**guard).clone();
        list[pos].0 = new.clone();
        *guard = Arc::new(list);
        Some(Ok(new))
    }

    /// Adds or replaces (by id) a key saved elsewhere; one with a configured key's digest is
    /// ignored (the configuration wins).
    pub fn put_stored(&self, mut entry: KeyEntry) {
        let Some(d) = unhex(&entry.sha256) else {
            return;
        };
        entry.origin = Origin::Admin;
        entry.admin = false;
        let mut guard = self.keys.write().expect("keys lock");
        if guard.iter().any(|(e, dd)| {
            (*dd == d && e.id != entry.id) || (e.id == entry.id && e.origin == Origin::Env)
        }) {
            return;
        }
        let mut list = (**guard).clone();
        let e = Arc::new(entry);
        match list.iter().position(|(x, _)| x.id == e.id) {
            Some(pos) => list[pos] = (e, d),
            None => list.push((e, d)),
        }
        *guard = Arc::new(list);
    }

    pub fn remove(&self, id: &str) -> Option<Arc<KeyEntry>> {
        let mut guard = self.keys.write().expect("keys lock");
        let pos = guard.iter().position(|(e, _)| e.id == id)?;
        let mut list = (**guard).clone();
        let (e, _) = list.remove(pos);
        *guard = Arc::new(list);
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(id: &str, key: &str) -> KeyEntry {
        KeyEntry {
            id: id.into(),
            name: id.into(),
            sha256: digest_hex(key),
            masked: mask(key),
            origin: Origin::Admin,
            admin: false,
            rpm_limit: Some(5),
            max_concurrent: None,
            created_at: 1,
        }
    }

    #[test]
    fn configured_and_added_keys() {
        let r = KeyRegistry::new(
            &[
                "sk-admin-000000000000".into(),
                "sk-user-0000000000000".into(),
            ],
            vec![added("k-1", "sk-added-00000000000000")],
        );
        assert_eq!(
            r.identify(Some("sk-admin-000000000000")).unwrap(),
            Caller::Admin
        );
        match r.identify(Some("sk-user-0000000000000")).unwrap() {
            Caller::User(e) => assert_eq!(e.id, "key-1"),
            other => panic!("{other:?}"),
        }
        match r.identify(Some("sk-added-00000000000000")).unwrap() {
            Caller::User(e) => assert_eq!(e.rpm_limit, Some(5)),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.identify(Some("nope")).unwrap_err().status, 401);
        assert_eq!(r.identify(None).unwrap_err().status, 401);
        assert_eq!(r.stored().len(), 1);
        assert!(r.add(added("k-2", "sk-user-0000000000000")).is_err());
        r.remove("k-1").unwrap();
        assert_eq!(
            r.identify(Some("sk-added-00000000000000"))
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            KeyRegistry::new(&[], vec![]).identify(None).unwrap(),
            Caller::Open
        );
    }

    #[test]
    fn masks_and_validation() {
        assert_eq!(mask("sk-abcdefghijklmnop"), "sk-…mnop");
        assert_eq!(mask("short"), "…");
        let k = generate();
        assert!(validate_key(&k).is_ok() && k.len() == 70);
        assert!(validate_key("short").is_err());
        assert!(validate_key("sk-has,comma-0000000").is_err());
        assert!(validate_key("sk-has space-0000000").is_err());
    }
}
