//! Upstream identities (Qwen accounts) and the choice of one per attempt.
//!
//! This is the seam the identity pool grows from: selection excludes identities already tried
//! for the request, so fail-over is "pick again"; health and breaker state will hang off
//! [`Identity`] and [`IdentityPool::report`].

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::convert::classify::FailureClass;

pub struct Identity {
    pub id: usize,
    /// Safe to log and show: never derived from the secret's characters.
    pub label: String,
    pub cookie: Option<String>,
    token: RwLock<Option<Arc<str>>>,
    expires_at: AtomicI64,
    pub in_flight: AtomicUsize,
    last_error: RwLock<Option<&'static str>>,
}

impl Identity {
    pub fn new(id: usize, token: Option<String>, cookie: Option<String>) -> Self {
        let ident = Identity {
            id,
            label: format!("identity-{}", id + 1),
            cookie,
            token: RwLock::new(None),
            expires_at: AtomicI64::new(0),
            in_flight: AtomicUsize::new(0),
            last_error: RwLock::new(None),
        };
        if let Some(t) = token {
            ident.set_token(t);
        }
        ident
    }

    pub fn token(&self) -> Option<Arc<str>> {
        self.token.read().expect("token lock").clone()
    }

    pub fn set_token(&self, token: String) {
        let exp = crate::qwen::jwt::expiry(&token).unwrap_or(0);
        self.expires_at.store(exp, Ordering::Relaxed);
        *self.token.write().expect("token lock") = Some(Arc::from(token));
    }

    /// Unix seconds, or 0 when the token carries no readable expiry.
    pub fn expires_at(&self) -> i64 {
        self.expires_at.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<&'static str> {
        *self.last_error.read().expect("error lock")
    }

    fn set_last_error(&self, e: Option<&'static str>) {
        *self.last_error.write().expect("error lock") = e;
    }
}

/// Keeps an identity's in-flight count right however the request ends.
pub struct InFlight(Arc<Identity>);

impl InFlight {
    pub fn new(id: Arc<Identity>) -> Self {
        id.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(id)
    }

    pub fn identity(&self) -> &Arc<Identity> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct IdentityPool {
    identities: Vec<Arc<Identity>>,
    next: AtomicUsize,
}

impl IdentityPool {
    pub fn new(identities: Vec<Identity>) -> Self {
        IdentityPool {
            identities: identities.into_iter().map(Arc::new).collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn all(&self) -> &[Arc<Identity>] {
        &self.identities
    }

    pub fn len(&self) -> usize {
        self.identities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Round-robin over identities that have a token and were not tried for this request.
    pub fn pick(&self, tried: &[usize]) -> Option<Arc<Identity>> {
        let n = self.identities.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.identities[(start + i) % n])
            .find(|id| !tried.contains(&id.id) && id.token().is_some())
            .cloned()
    }

    pub fn report(&self, identity: &Identity, outcome: Result<(), FailureClass>) {
        identity.set_last_error(outcome.err().map(FailureClass::as_str));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_skips_tried_and_tokenless() {
        let pool = IdentityPool::new(vec![
            Identity::new(0, Some("a".into()), None),
            Identity::new(1, None, Some("c=1".into())),
            Identity::new(2, Some("b".into()), None),
        ]);
        let picks: Vec<usize> = (0..4).map(|_| pool.pick(&[]).unwrap().id).collect();
        assert!(picks.iter().all(|p| *p != 1));
        assert!(picks.contains(&0) && picks.contains(&2));
        assert_eq!(pool.pick(&[0]).unwrap().id, 2);
        assert!(pool.pick(&[0, 2]).is_none());
    }

    #[test]
    fn in_flight_guard() {
        let id = Arc::new(Identity::new(0, Some("t".into()), None));
        {
            let _g = InFlight::new(id.clone());
            assert_eq!(id.in_flight.load(Ordering::Relaxed), 1);
        }
        assert_eq!(id.in_flight.load(Ordering::Relaxed), 0);
    }
}

pub mod tokens;
