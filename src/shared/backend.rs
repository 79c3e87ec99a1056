//! The data document in Redis, one hash per part so that instances changing different entries
//! at once never overwrite each other: `keys` (added keys: digests and masked forms, never a
//! key), and with `DATA_SAVE_MODE=redis` also `identities` (added identities with their
//! credentials, as the data file holds them: protect Redis accordingly), `configured`
//! (configured identities disabled or removed, by fingerprint) and `settings` (overrides).
//! Usage lives in its own counters (see `usage`).
//!
//! A save writes only the entries that differ from the document as last saved or loaded, in
//! one MULTI with an increment of `data:version`, then publishes `data` so the other
//! instances reload (see `sync`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Shared;
use crate::store::{Backend, Document, StoreError, DOCUMENT_VERSION};

pub struct RedisBackend {
    shared: Arc<Shared>,
}

impl RedisBackend {
    pub fn new(shared: Arc<Shared>) -> Self {
        RedisBackend { shared }
    }
}

const PARTS: [&str; 4] = ["keys", "identities", "configured", "settings"];

fn json_map<T: Serialize>(
    items: impl IntoIterator<Item = (String, T)>,
) -> BTreeMap<String, String> {
    items
        .into_iter()
        .map(|(k, v)| (k, serde_json::to_string(&v).expect("serialises")))
        .collect()
}

/// Each part of the document as id -> JSON; only the parts this mode keeps in Redis.
fn parts(doc: &Document, document: bool) -> Vec<BTreeMap<String, String>> {
    let mut out = vec![json_map(doc.keys.iter().map(|k| (k.id.clone(), k)))];
    if document {
        out.push(json_map(doc.identities.iter().map(|r| (r.uid.clone(), r))));
        out.push(json_map(doc.configured_identities.clone()));
        out.push(json_map(doc.settings.clone()));
    }
    out
}

fn parse<T: DeserializeOwned>(
    hash: &str,
    raw: BTreeMap<String, String>,
) -> Result<Vec<(String, T)>, StoreError> {
    raw.into_iter()
        .map(|(k, v)| {
            serde_json::from_str(&v)
                .map(|t| (k.clone(), t))
                .map_err(|e| StoreError(format!("entry {k:?} of {hash} is invalid: {e}")))
        })
        .collect()
}

impl Shared {
    /// The document's change counter, for a cheap "anything new?" check.
    pub async fn data_version(&self) -> Option<i64> {
        let mut conn = self.conn();
        self.call(
            "data",
            redis::cmd("GET")
                .arg(self.key("data:version"))
                .query_async::<Option<i64>>(&mut conn),
        )
        .await
        .map(|v| v.unwrap_or(0))
    }

    /// Loads the document (and its version) from Redis.
    pub async fn load_document(&self) -> Result<(Document, i64), StoreError> {
        let names: Vec<String> = PARTS.iter().map(|p| self.key(p)).collect();
        let mut p = redis::pipe();
        for n in &names {
            p.cmd("HGETALL").arg(n);
        }
        p.cmd("GET").arg(self.key("data:version"));
        let mut conn = self.conn();
        type Hash = BTreeMap<String, String>;
        let (keys, ids, conf, sets, version): (Hash, Hash, Hash, Hash, Option<i64>) =
            tokio::time::timeout(self.settings.timeout, p.query_async(&mut conn))
                .await
                .map_err(|_| StoreError("timed out".into()))?
                .map_err(|e| StoreError(super::scrub(&e.to_string(), &self.settings.url)))?;
        let mut doc = Document {
            version: DOCUMENT_VERSION,
            keys: parse(&names[0], keys)?
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
            ..Document::default()
        };
        if self.document {
            doc.identities = parse(&names[1], ids)?.into_iter().map(|(_, v)| v).collect();
            doc.configured_identities = parse(&names[2], conf)?.into_iter().collect();
            doc.settings = parse(&names[3], sets)?.into_iter().collect();
        }
        Ok((doc, version.unwrap_or(0)))
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        if self.shared.document {
            "redis"
        } else {
            "none"
        }
    }

    fn location(&self) -> String {
        format!(
            "Redis (REDIS_URL {}, REDIS_PREFIX {:?})",
            self.shared.settings.redacted_url(),
            self.shared.settings.prefix
        )
    }

    fn keeps_usage(&self) -> bool {
        false
    }

    async fn load(&self) -> Result<Option<Document>, StoreError> {
        self.shared
            .load_document()
            .await
            .map(|(d, v)| {
                self.shared.data_sync.loaded(v);
                Some(d)
            })
            .map_err(|e| StoreError(format!("the saved data in {}: {e}", self.location())))
    }

    async fn save(&self, before: &Document, doc: &Document) -> Result<(), StoreError> {
        let s = &self.shared;
        let old = parts(before, s.document);
        let new = parts(doc, s.document);
        let mut p = redis::pipe();
        p.atomic();
        let mut changed = false;
        for ((name, old), new) in PARTS.iter().zip(&old).zip(&new) {
            let hash = s.key(name);
            for (id, json) in new {
                if old.get(id) != Some(json) {
                    p.cmd("HSET").arg(&hash).arg(id).arg(json);
                    changed = true;
                }
            }
            for id in old.keys().filter(|id| !new.contains_key(*id)) {
                p.cmd("HDEL").arg(&hash).arg(id);
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        p.cmd("INCR").arg(s.key("data:version"));
        p.cmd("PUBLISH").arg(s.channel()).arg("data");
        let mut conn = s.conn();
        match s.call("save", p.query_async::<()>(&mut conn)).await {
            Some(()) => Ok(()),
            None => Err(StoreError(format!(
                "the change could not be saved in {}",
                self.location()
            ))),
        }
    }
}
