//! Per-key usage counters: requests, tokens, errors. Updated once per request (from the access
//! log hook), read by `/admin/usage`, saved with the data in file mode.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Answers with a status of 400 or more (limit refusals included).
    pub errors: u64,
    /// Of those, refused by the key's own limits (429).
    pub rate_limited: u64,
    /// Unix seconds of the last request.
    pub last_used_at: i64,
}

/// What one request adds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delta {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub error: bool,
    pub rate_limited: bool,
}

#[derive(Default)]
pub struct UsageBook {
    by_key: Mutex<BTreeMap<String, Counters>>,
    dirty: AtomicBool,
}

impl UsageBook {
    pub fn new(saved: BTreeMap<String, Counters>) -> Self {
        UsageBook {
            by_key: Mutex::new(saved),
            dirty: AtomicBool::new(false),
        }
    }

    pub fn record(&self, key: &str, d: Delta, now: i64) {
        {
            let mut m = self.by_key.lock().expect("usage lock");
            let c = match m.get_mut(key) {
                Some(c) => c,
                None => m.entry(key.to_string()).or_default(),
            };
            c.requests = c.requests.saturating_add(1);
            c.prompt_tokens = c.prompt_tokens.saturating_add(d.prompt_tokens);
            c.completion_tokens = c.completion_tokens.saturating_add(d.completion_tokens);
            c.errors += u64::from(d.error);
            c.rate_limited += u64::from(d.rate_limited);
            c.last_used_at = now;
        }
        self.dirty.store(true, Ordering::Release);
    }

    pub fn snapshot(&self) -> BTreeMap<String, Counters> {
        self.by_key.lock().expect("usage lock").clone()
    }

    pub fn get(&self, key: &str) -> Counters {
        self.by_key
            .lock()
            .expect("usage lock")
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets one key's counters, or all of them.
    pub fn reset(&self, key: Option<&str>) {
        let mut m = self.by_key.lock().expect("usage lock");
        match key {
            Some(k) => {
                m.remove(k);
            }
            None => m.clear(),
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Marks the counters as changed (after a failed save).
    pub fn reset_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Whether anything changed since the last call.
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }

    /// Takes in what another process added to the saved counters (`before` is what this
    /// process last saved or read, `after` what the file holds now): their increments are
    /// added to this process's counters, and a reset there lowers them here. Counters never go
    /// below zero, and a key left with no counts at all is dropped, as a reset drops it.
    pub fn absorb(&self, before: &BTreeMap<String, Counters>, after: &BTreeMap<String, Counters>) {
        let none = Counters::default();
        let mut m = self.by_key.lock().expect("usage lock");
        let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        for key in keys {
            let (b, a) = (
                before.get(key).unwrap_or(&none),
                after.get(key).unwrap_or(&none),
            );
            if a == b {
                continue;
            }
            let c = m.entry(key.clone()).or_default();
            let shift = |mine: u64, b: u64, a: u64| {
                (i128::from(mine) + i128::from(a) - i128::from(b)).clamp(0, u64::MAX.into()) as u64
            };
            c.requests = shift(c.requests, b.requests, a.requests);
            c.prompt_tokens = shift(c.prompt_tokens, b.prompt_tokens, a.prompt_tokens);
            c.completion_tokens = shift(
                c.completion_tokens,
                b.completion_tokens,
                a.completion_tokens,
            );
            c.errors = shift(c.errors, b.errors, a.errors);
            c.rate_limited = shift(c.rate_limited, b.rate_limited, a.rate_limited);
            c.last_used_at = c.last_used_at.max(a.last_used_at);
            if (c.requests, c.prompt_tokens, c.completion_tokens) == (0, 0, 0) {
                m.remove(key);
            }
        }
    }

    /// Takes the changed mark for a save, to be handed back unless the save completes: after a
    /// failure, and also when the saving task is dropped (at shutdown), so that the next save
    /// still writes the counters.
    pub fn take_dirty_for_save(&self) -> Option<DirtyMark<'_>> {
        // `then`, not `then_some`: a mark built and dropped would set the flag it reports as clear.
        self.take_dirty().then(|| DirtyMark { book: self })
    }
}

/// A taken changed mark; see [`UsageBook::take_dirty_for_save`].
pub struct DirtyMark<'a> {
    book: &'a UsageBook,
}

impl DirtyMark<'_> {
    /// The save completed.
    pub fn saved(self) {
        std::mem::forget(self);
    }
}

impl Drop for DirtyMark<'_> {
    fn drop(&mut self) {
        self.book.reset_dirty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_saturates() {
        let b = UsageBook::default();
        b.record(
            "k",
            Delta {
                prompt_tokens: 3,
                completion_tokens: u64::MAX,
                error: false,
                rate_limited: false,
            },
            5,
        );
        b.record(
            "k",
            Delta {
                prompt_tokens: 1,
                completion_tokens: 1,
                error: true,
                rate_limited: true,
            },
            6,
        );
        let c = b.get("k");
        assert_eq!(c.requests, 2);
        assert_eq!(c.prompt_tokens, 4);
        assert_eq!(c.completion_tokens, u64::MAX);
        assert_eq!((c.errors, c.rate_limited, c.last_used_at), (1, 1, 6));
        assert!(b.take_dirty());
        assert!(!b.take_dirty());
    }

    fn counts(requests: u64, tokens: u64, at: i64) -> Counters {
        Counters {
            requests,
            prompt_tokens: tokens,
            completion_tokens: tokens,
            last_used_at: at,
            ..Default::default()
        }
    }

    #[test]
    fn another_process_counts_join_and_its_resets_apply() {
        let saved: BTreeMap<String, Counters> = [
            ("a".into(), counts(2, 10, 5)),
            ("b".into(), counts(4, 4, 5)),
        ]
        .into();
        let b = UsageBook::new(saved.clone());
        b.record("a", Delta::default(), 7);
        // The other process counted 3 more on "a", reset "b" and counted "c" once.
        let there: BTreeMap<String, Counters> = [
            ("a".into(), counts(5, 13, 6)),
            ("c".into(), counts(1, 1, 8)),
        ]
        .into();
        b.absorb(&saved, &there);
        let now = b.snapshot();
        assert_eq!(now["a"], counts(6, 13, 7));
        assert!(!now.contains_key("b"), "a reset there is a reset here");
        assert_eq!(now["c"], counts(1, 1, 8));
        // Nothing new there: nothing changes.
        b.absorb(&there, &there);
        assert_eq!(b.snapshot(), now);
    }

    #[test]
    fn a_save_that_does_not_complete_hands_the_mark_back() {
        let b = UsageBook::default();
        assert!(b.take_dirty_for_save().is_none());
        assert!(b.take_dirty_for_save().is_none(), "asking changes nothing");
        b.reset_dirty();
        drop(b.take_dirty_for_save().unwrap());
        let mark = b.take_dirty_for_save().expect("dropped: still changed");
        mark.saved();
        assert!(b.take_dirty_for_save().is_none());
        assert!(!b.take_dirty());
    }
}
