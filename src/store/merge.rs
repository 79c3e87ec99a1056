//! Taking in what other instances saved (shared state, see `shared::sync`, or a data file that
//! another process wrote, see `file.rs`): a three-way merge
//! of the reloaded document against the one last saved or loaded here. An entry that changed
//! there (added, changed, removed) is taken from there; every other entry stays as this
//! instance has it, so a local change that is being saved right now is never lost to a
//! reload that raced it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::keys::KeyEntry;
use super::{settings, ConfiguredOverride, Document, IdentityRecord, State};

/// Entries of `fresh` that differ from `base`: (id, new value or `None` when removed).
fn changes<T: Clone + PartialEq>(
    base: &BTreeMap<String, T>,
    fresh: &BTreeMap<String, T>,
) -> Vec<(String, Option<T>)> {
    let mut out: Vec<(String, Option<T>)> = fresh
        .iter()
        .filter(|(k, v)| base.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    out.extend(
        base.keys()
            .filter(|k| !fresh.contains_key(*k))
            .map(|k| (k.clone(), None)),
    );
    out
}

fn by_id<T: Clone>(items: &[T], id: impl Fn(&T) -> String) -> BTreeMap<String, T> {
    items.iter().map(|t| (id(t), t.clone())).collect()
}

/// What changed in the identity data, for the pool to follow.
#[derive(Debug, Default)]
pub struct RemoteIdentities {
    /// Added identities (by uid): the record, or `None` when removed.
    pub records: Vec<(String, Option<IdentityRecord>)>,
    /// Configured identities (by fingerprint) disabled, enabled or removed.
    pub configured: Vec<(String, ConfiguredOverride)>,
}

impl State {
    /// Merges `fresh` (the saved data as another instance left it) into this instance's state;
    /// returns the identity changes, which the caller applies to the pool.
    pub async fn apply_remote(&self, fresh: Document) -> RemoteIdentities {
        let mut saved = self.saved.lock().await;
        self.take_in(&mut saved, fresh)
    }

    /// [`State::apply_remote`] with the save lock held; `saved` becomes `fresh`. Usage, when
    /// the document holds it (a data file shared by two processes), is merged by counts: the
    /// other process's increments join this one's.
    pub(super) fn take_in(&self, saved: &mut Document, fresh: Document) -> RemoteIdentities {
        if self.backend.keeps_usage() {
            self.usage.absorb(&saved.usage, &fresh.usage);
        }
        let key_id = |k: &KeyEntry| k.id.clone();
        for (id, entry) in changes(&by_id(&saved.keys, key_id), &by_id(&fresh.keys, key_id)) {
            match entry {
                Some(e) => {
                    log::info!("key {id} added or changed by another gateway");
                    self.keys.put_stored(e);
                }
                None => {
                    log::info!("key {id} removed by another gateway");
                    self.keys.remove(&id);
                    self.forget_key(&id);
                }
            }
        }
        let setting_changes = changes(&saved.settings, &fresh.settings);
        if !setting_changes.is_empty() {
            let mut next = self.overrides();
            for (name, v) in setting_changes {
                match v {
                    Some(v) => next.insert(name, v),
                    None => next.remove(&name),
                };
            }
            match settings::effective(&self.base, &next) {
                Ok(r) => {
                    *self.overrides.write().expect("overrides lock") = next;
                    *self.runtime.write().expect("runtime lock") = Arc::new(r);
                    log::info!("settings changed by another gateway");
                }
                Err(e) => log::warn!("ignoring invalid settings saved by another gateway: {e}"),
            }
        }
        let uid = |r: &IdentityRecord| r.uid.clone();
        let out = RemoteIdentities {
            records: changes(
                &by_id(&saved.identities, uid),
                &by_id(&fresh.identities, uid),
            ),
            configured: changes(&saved.configured_identities, &fresh.configured_identities)
                .into_iter()
                .map(|(fp, o)| (fp, o.unwrap_or_default()))
                .collect(),
        };
        {
            let mut book = self.identities.lock().expect("identities lock");
            for (uid, rec) in &out.records {
                book.records.retain(|r| &r.uid != uid);
                if let Some(r) = rec {
                    book.records.push(r.clone());
                }
            }
            for (fp, o) in &out.configured {
                if *o == ConfiguredOverride::default() {
                    book.configured.remove(fp);
                } else {
                    book.configured.insert(fp.clone(), *o);
                }
            }
        }
        *saved = fresh;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_entries_changed_elsewhere_are_taken() {
        let base: BTreeMap<String, u32> =
            [("a".into(), 1), ("b".into(), 2), ("c".into(), 3)].into();
        let fresh: BTreeMap<String, u32> =
            [("a".into(), 1), ("b".into(), 5), ("d".into(), 4)].into();
        let mut got = changes(&base, &fresh);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("b".to_string(), Some(5)),
                ("c".to_string(), None),
                ("d".to_string(), Some(4))
            ]
        );
    }
}
