//! Per-key admission: requests per minute (a sliding one-minute window) and concurrent
//! requests. `Limiter` is the seam for the shared one (`shared::limiter`, Redis); `MemoryLimiter`
//! keeps the counts in this process. No lock is held beyond the check itself.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits in force for one key; 0 = none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub rpm: u32,
    pub concurrent: u32,
}

/// Why a request was refused, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Rpm { limit: u32, retry_after: Duration },
    Concurrency { limit: u32 },
}

/// Held for as long as the request runs; dropping it releases the concurrency slot.
pub struct Permit {
    _release: Option<Box<dyn Send + Sync>>,
}

impl Permit {
    pub fn none() -> Self {
        Permit { _release: None }
    }

    pub fn with(release: Box<dyn Send + Sync>) -> Self {
        Permit {
            _release: Some(release),
        }
    }
}

#[async_trait::async_trait]
pub trait Limiter: Send + Sync {
    /// Admits one request for `key` or says why not. An admitted request counts against the
    /// minute's budget at once and against the concurrency limit until the permit drops.
    async fn admit(&self, key: &str, limits: Limits) -> Result<Permit, Refusal>;
    /// Requests of `key` running now.
    async fn in_flight(&self, key: &str) -> usize;
    /// Forgets a removed key.
    fn forget(&self, key: &str);
}

/// The sliding window of the requests-per-minute limit.
pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Default)]
struct KeyWindow {
    recent: Mutex<VecDeque<Instant>>,
    in_flight: AtomicUsize,
}

struct Slot(Arc<KeyWindow>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
pub struct MemoryLimiter {
    keys: Mutex<HashMap<String, Arc<KeyWindow>>>,
}

impl MemoryLimiter {
    fn window(&self, key: &str) -> Arc<KeyWindow> {
        let mut m = self.keys.lock().expect("limiter lock");
        if let Some(w) = m.get(key) {
            return w.clone();
        }
        let w = Arc::new(KeyWindow::default());
        m.insert(key.to_string(), w.clone());
        w
    }
}

#[async_trait::async_trait]
impl Limiter for MemoryLimiter {
    async fn admit(&self, key: &str, limits: Limits) -> Result<Permit, Refusal> {
        self.admit_at(key, limits, Instant::now())
    }

    async fn in_flight(&self, key: &str) -> usize {
        self.running(key)
    }

    fn forget(&self, key: &str) {
        self.keys.lock().expect("limiter lock").remove(key);
    }
}

impl MemoryLimiter {
    /// [`Limiter::admit`] at an explicit instant (tests drive time with it).
    pub fn admit_at(&self, key: &str, limits: Limits, now: Instant) -> Result<Permit, Refusal> {
        let w = self.window(key);
        let mut recent = w.recent.lock().expect("window lock");
        while recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            recent.pop_front();
        }
        if limits.rpm > 0 && recent.len() >= limits.rpm as usize {
            let oldest = *recent.front().expect("non-empty when at the limit");
            return Err(Refusal::Rpm {
                limit: limits.rpm,
                retry_after: WINDOW.saturating_sub(now.saturating_duration_since(oldest)),
            });
        }
        let running = w.in_flight.fetch_add(1, Ordering::AcqRel);
        if limits.concurrent > 0 && running >= limits.concurrent as usize {
            w.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Concurrency {
                limit: limits.concurrent,
            });
        }
        if limits.rpm > 0 {
            recent.push_back(now);
        }
        drop(recent);
        Ok(Permit::with(Box::new(Slot(w))))
    }

    pub fn running(&self, key: &str) -> usize {
        self.keys
            .lock()
            .expect("limiter lock")
            .get(key)
            .map_or(0, |w| w.in_flight.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_window_slides() {
        let l = MemoryLimiter::default();
        let t0 = Instant::now();
        let lim = Limits {
            rpm: 2,
            concurrent: 0,
        };
        let _a = l.admit_at("k", lim, t0).unwrap();
        let _b = l.admit_at("k", lim, t0 + Duration::from_secs(10)).unwrap();
        match l.admit_at("k", lim, t0 + Duration::from_secs(20)) {
            Err(Refusal::Rpm { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(40))
            }
            _ => panic!("expected a refusal"),
        }
        // Other keys have their own budget.
        assert!(l.admit_at("other", lim, t0).is_ok());
        assert!(l.admit_at("k", lim, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn concurrency_is_released_on_drop() {
        let l = MemoryLimiter::default();
        let t = Instant::now();
        let lim = Limits {
            rpm: 0,
            concurrent: 1,
        };
        let p = l.admit_at("k", lim, t).unwrap();
        assert_eq!(l.running("k"), 1);
        assert!(matches!(
            l.admit_at("k", lim, t),
            Err(Refusal::Concurrency { limit: 1 })
        ));
        drop(p);
        assert_eq!(l.running("k"), 0);
        assert!(l.admit_at("k", lim, t).is_ok());
    }
}
