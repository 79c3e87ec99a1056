//! Upstream identities (Qwen accounts), their health, and the choice of one per attempt.
//! Selection excludes identities already tried for the request, so fail-over is "pick again".
//!
//! The set of identities can change while the gateway runs (`/admin/identities`): it is an
//! immutable snapshot behind a lock held only to clone or swap it, so selection never waits on
//! a change and never holds a lock across an await. A removed identity is gone from the next
//! snapshot; requests that already hold it (an `Arc`) finish normally. Ids are never reused.

pub mod cleanup;
pub mod health;
pub mod tokens;
pub mod writeback;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use crate::config::{BreakerSettings, PoolStrategy};
use crate::convert::classify::Failure;
use health::{Availability, FollowUp, Health, State};

/// Where an identity's token comes from, which decides how it is refreshed.
#[derive(Clone)]
pub enum Source {
    /// A bare token (refreshed through `/api/v1/auths/` with the token itself while it is valid).
    Token,
    /// A browser cookie string.
    Cookie(String),
    /// Email and plaintext password, signed in with the SHA-256 form.
    Account { email: String, password: String },
}

pub struct Identity {
    pub id: usize,
    /// Safe to log and show: a kind and a number, plus a masked email for accounts.
    pub label: String,
    pub source: Source,
    token: RwLock<Option<Arc<str>>>,
    expires_at: AtomicI64,
    pub in_flight: AtomicUsize,
    health: Mutex<Health>,
    /// Set when the upstream refused the token; the token service acts on it.
    pub refresh_requested: AtomicBool,
    pub token_from_file: bool,
    /// Refresh schedule, owned by the token service: when (unix ms, 0 = now), how many
    /// consecutive refreshes failed, and whether one is running.
    pub next_refresh_ms: AtomicI64,
    pub refresh_failures: AtomicU32,
    pub refreshing: AtomicBool,
    /// Not picked while set (in-flight requests finish).
    pub disabled: AtomicBool,
    /// A digest of the credential, to recognise the same account again (across restarts, and
    /// when one is added twice). Not secret-bearing: a truncated SHA-256.
    pub fingerprint: String,
    /// The saved record's id when the identity was added through the admin API.
    pub uid: Option<String>,
}

impl std::fmt::Debug for Identity {
    // Only the label: the source holds secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

/// `d***@example.com`: enough to tell accounts apart, not enough to read the address.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((user, domain)) => {
            let first: String = user.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// The fingerprint of a credential: accounts by email, cookies by their text, bare tokens by
/// the configured token.
pub fn fingerprint(source: &Source, token: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let material = match source {
        Source::Account { email, .. } => format!("account:{}", email.trim().to_lowercase()),
        Source::Cookie(c) => format!("cookie:{c}"),
        Source::Token => format!("token:{}", token.unwrap_or("")),
    };
    crate::store::keys::hex(&Sha256::digest(material.as_bytes())[..16])
}

impl Identity {
    pub fn kind(&self) -> &'static str {
        match self.source {
            Source::Token => "token",
            Source::Cookie(_) => "cookie",
            Source::Account { .. } => "account",
        }
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    pub fn new(id: usize, token: Option<String>, source: Source) -> Self {
        let label = match &source {
            Source::Token => format!("token-{}", id + 1),
            Source::Cookie(_) => format!("cookie-{}", id + 1),
            Source::Account { email, .. } => format!("account-{} ({})", id + 1, mask_email(email)),
        };
        let fingerprint = fingerprint(&source, token.as_deref());
        let ident = Identity {
            id,
            label,
            source,
            token: RwLock::new(None),
            expires_at: AtomicI64::new(0),
            in_flight: AtomicUsize::new(0),
            health: Mutex::new(Health::default()),
            refresh_requested: AtomicBool::new(false),
            token_from_file: false,
            next_refresh_ms: AtomicI64::new(0),
            refresh_failures: AtomicU32::new(0),
            refreshing: AtomicBool::new(false),
            disabled: AtomicBool::new(false),
            fingerprint,
            uid: None,
        };
        if let Some(t) = token {
            ident.set_token(t);
        }
        ident
    }

    pub fn cookie(&self) -> Option<&str> {
        match &self.source {
            Source::Cookie(c) => Some(c),
            _ => None,
        }
    }

    pub fn token(&self) -> Option<Arc<str>> {
        self.token.read().expect("token lock").clone()
    }

    pub fn set_token(&self, token: String) {
        let exp = crate::qwen::jwt::expiry(&token).unwrap_or(0);
        self.expires_at.store(exp, Ordering::Relaxed);
        *self.token.write().expect("token lock") = Some(Arc::from(token));
        self.health
            .lock()
            .expect("health lock")
            .on_token_refreshed();
    }

    /// Unix seconds, or 0 when the token carries no readable expiry.
    pub fn expires_at(&self) -> i64 {
        self.expires_at.load(Ordering::Relaxed)
    }

    pub fn health(&self) -> Health {
        self.health.lock().expect("health lock").clone()
    }
}

/// Keeps an identity's in-flight count right however the request ends (and, with several
/// instances, holds its shared lease until then).
pub struct InFlight(Arc<Identity>, Option<Box<dyn Send + Sync>>);

impl InFlight {
    pub fn new(id: Arc<Identity>) -> Self {
        id.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(id, None)
    }

    /// Holds `lease` as long as this count.
    pub fn with_lease(mut self, lease: Box<dyn Send + Sync>) -> Self {
        self.1 = Some(lease);
        self
    }

    pub fn identity(&self) -> &Arc<Identity> {
        &self.0
    }
}

/// Told about rests this instance starts and ends, so other instances can honour them.
pub trait HealthSink: Send + Sync {
    /// `identity` rests for `rest` from now (a cooldown or an open breaker).
    fn rested(&self, identity: &Identity, rest: Duration);
    /// `identity` served again after resting here.
    fn recovered(&self, identity: &Identity);
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why no identity could be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Every identity was tried for this request (or there are none with a token).
    Exhausted,
    /// All are resting (breaker open or rate-limit cooldown); the soonest is back after this.
    AllDown(Duration),
    /// All are at their in-flight cap.
    AllBusy,
}

/// One consistent view of the pool's identities.
pub type Snapshot = Arc<Vec<Arc<Identity>>>;

pub struct IdentityPool {
    identities: RwLock<Snapshot>,
    next_id: AtomicUsize,
    next: AtomicUsize,
    strategy: PoolStrategy,
    cap: AtomicUsize,
    breaker: BreakerSettings,
    sink: OnceLock<Arc<dyn HealthSink>>,
    /// Woken after every sign-in or refresh attempt, for requests waiting on a first token.
    pub token_events: tokio::sync::Notify,
}

impl IdentityPool {
    pub fn new(
        identities: Vec<Identity>,
        strategy: PoolStrategy,
        cap: usize,
        breaker: BreakerSettings,
    ) -> Self {
        let next_id = identities.iter().map(|i| i.id + 1).max().unwrap_or(0);
        IdentityPool {
            identities: RwLock::new(Arc::new(identities.into_iter().map(Arc::new).collect())),
            next_id: AtomicUsize::new(next_id),
            next: AtomicUsize::new(0),
            strategy,
            cap: AtomicUsize::new(cap),
            breaker,
            sink: OnceLock::new(),
            token_events: tokio::sync::Notify::new(),
        }
    }

    /// Whether an enabled identity has never had a token and its first sign-in has not
    /// failed yet: right after start (or an admin add) a request is worth holding for it.
    pub fn awaiting_first_token(&self) -> bool {
        self.all().iter().any(|i| {
            !i.is_disabled()
                && i.token().is_none()
                && i.refresh_failures.load(Ordering::Relaxed) == 0
        })
    }

    /// The identities now (a snapshot: later changes do not affect it).
    pub fn all(&self) -> Snapshot {
        self.identities.read().expect("pool lock").clone()
    }

    pub fn get(&self, id: usize) -> Option<Arc<Identity>> {
        self.all().iter().find(|i| i.id == id).cloned()
    }

    /// A fresh id for an identity about to be added.
    pub fn next_id(&self) -> usize {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds an identity; it takes part in the next selection.
    pub fn add(&self, identity: Identity) -> Arc<Identity> {
        let identity = Arc::new(identity);
        let mut guard = self.identities.write().expect("pool lock");
        let mut list = (**guard).clone();
        list.push(identity.clone());
        *guard = Arc::new(list);
        identity
    }

    /// Adds an identity unless one with the same fingerprint is there (checked under the same
    /// lock, so two concurrent adds of one account cannot both succeed).
    pub fn add_unique(&self, identity: Identity) -> Result<Arc<Identity>, Arc<Identity>> {
        let identity = Arc::new(identity);
        let mut guard = self.identities.write().expect("pool lock");
        if let Some(existing) = guard.iter().find(|i| i.fingerprint == identity.fingerprint) {
            return Err(existing.clone());
        }
        let mut list = (**guard).clone();
        list.push(identity.clone());
        *guard = Arc::new(list);
        Ok(identity)
    }

    /// Puts a removed identity back (undoing a removal that could not be saved).
    pub fn restore(&self, identity: Arc<Identity>) {
        let mut guard = self.identities.write().expect("pool lock");
        if guard.iter().any(|i| i.id == identity.id) {
            return;
        }
        let mut list = (**guard).clone();
        list.push(identity);
        list.sort_by_key(|i| i.id);
        *guard = Arc::new(list);
    }

    /// Removes an identity from selection; requests using it finish.
    pub fn remove(&self, id: usize) -> Option<Arc<Identity>> {
        let mut guard = self.identities.write().expect("pool lock");
        let pos = guard.iter().position(|i| i.id == id)?;
        let mut list = (**guard).clone();
        let removed = list.remove(pos);
        *guard = Arc::new(list);
        Some(removed)
    }

    /// The per-identity in-flight cap (0 = none), changeable at runtime.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    pub fn cap(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }

    /// Where rests are announced (set once, when instances share state).
    pub fn set_sink(&self, sink: Arc<dyn HealthSink>) {
        let _ = self.sink.set(sink);
    }

    /// Applies a rest announced by another instance to every identity with `fingerprint`
    /// (`None`: no rest there now).
    pub fn apply_shared_rest(&self, fingerprint: &str, rest: Option<Duration>, now: Instant) {
        for id in self.all().iter().filter(|i| i.fingerprint == fingerprint) {
            id.health
                .lock()
                .expect("health lock")
                .set_shared_rest(rest.map(|d| now + d));
        }
    }

    /// Gives back a half-open trial taken by a pick that was not used.
    pub fn cancel_trial(&self, identity: &Identity) {
        identity.health.lock().expect("health lock").cancel_trial();
    }

    pub fn breaker(&self) -> &BreakerSettings {
        &self.breaker
    }

    pub fn state(&self, id: &Identity, now: Instant) -> State {
        id.health
            .lock()
            .expect("health lock")
            .state(now, &self.breaker)
    }

    /// Chooses an identity not in `tried`, by the configured strategy, among those with a
    /// token, not resting and under the in-flight cap. A half-open identity's trial is taken
    /// atomically with the choice so only one request tests it.
    pub fn pick(&self, tried: &[usize]) -> Result<Arc<Identity>, Unavailable> {
        self.pick_at(tried, Instant::now())
    }

    pub fn pick_at(&self, tried: &[usize], now: Instant) -> Result<Arc<Identity>, Unavailable> {
        let mut soonest: Option<Duration> = None;
        let mut busy = false;
        let mut any_left = false;
        let snapshot = self.all();
        let cap = self.cap.load(Ordering::Relaxed);
        // Rotating over the currently available identities (not over all of them) keeps the
        // spread even when some are resting.
        let mut candidates: Vec<(&Arc<Identity>, usize, bool)> = Vec::with_capacity(snapshot.len());
        for id in snapshot.iter() {
            if tried.contains(&id.id) || id.is_disabled() || id.token().is_none() {
                continue;
            }
            any_left = true;
            let flying = id.in_flight.load(Ordering::Relaxed);
            if cap > 0 && flying >= cap {
                busy = true;
                continue;
            }
            match id.health.lock().expect("health lock").availability(now) {
                Availability::Until(t) => {
                    let d = t - now;
                    soonest = Some(soonest.map_or(d, |s| s.min(d)));
                }
                Availability::Busy => busy = true,
                Availability::Trial => candidates.push((id, flying, true)),
                Availability::Yes => candidates.push((id, flying, false)),
            }
        }
        if !candidates.is_empty() {
            let turn = self.next.fetch_add(1, Ordering::Relaxed) % candidates.len();
            let chosen = match self.strategy {
                PoolStrategy::RoundRobin => candidates[turn],
                PoolStrategy::LeastInFlight => {
                    let least = candidates.iter().map(|c| c.1).min().unwrap_or(0);
                    let tied: Vec<_> = candidates.iter().filter(|c| c.1 == least).collect();
                    *tied[turn % tied.len()]
                }
            };
            let (id, _, trial) = chosen;
            if trial {
                let mut h = id.health.lock().expect("health lock");
                // Another request may have taken the trial since the scan.
                if h.availability(now) != Availability::Trial {
                    drop(h);
                    return self.pick_at(&[tried, &[id.id]].concat(), now);
                }
                h.start_trial();
            }
            return Ok(id.clone());
        }
        if !any_left {
            return Err(Unavailable::Exhausted);
        }
        match soonest {
            Some(d) if !busy => Err(Unavailable::AllDown(d)),
            _ => Err(Unavailable::AllBusy),
        }
    }

    pub fn report_success(&self, identity: &Identity) {
        let was_resting = {
            let mut h = identity.health.lock().expect("health lock");
            let r = h.resting();
            h.on_success();
            r
        };
        if was_resting {
            if let Some(sink) = self.sink.get() {
                sink.recovered(identity);
            }
        }
    }

    pub fn report_failure(&self, identity: &Identity, f: &Failure) {
        self.report_failure_at(identity, f, Instant::now());
    }

    pub fn report_failure_at(&self, identity: &Identity, f: &Failure, now: Instant) {
        let (follow, rest) = {
            let mut h = identity.health.lock().expect("health lock");
            let follow = h.on_failure(
                f.class,
                f.retry_after.map(Duration::from_secs),
                now,
                &self.breaker,
            );
            (follow, h.resting().then(|| h.until(now)).flatten())
        };
        if let (Some(rest), Some(sink)) = (rest, self.sink.get()) {
            sink.rested(identity, rest);
        }
        if follow == FollowUp::RefreshToken {
            identity.refresh_requested.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::classify::FailureClass;

    fn breaker() -> BreakerSettings {
        BreakerSettings {
            degraded_after: 1,
            open_after: 2,
            open_cooldown: Duration::from_secs(10),
            rate_limit_cooldown: Duration::from_secs(5),
        }
    }

    fn pool(strategy: PoolStrategy, cap: usize) -> IdentityPool {
        IdentityPool::new(
            vec![
                Identity::new(0, Some("a".into()), Source::Token),
                Identity::new(1, None, Source::Cookie("c=1".into())),
                Identity::new(2, Some("b".into()), Source::Token),
            ],
            strategy,
            cap,
            breaker(),
        )
    }

    #[test]
    fn round_robin_spreads_and_skips_tried_and_tokenless() {
        let p = pool(PoolStrategy::RoundRobin, 0);
        let picks: Vec<usize> = (0..6).map(|_| p.pick(&[]).unwrap().id).collect();
        assert!(!picks.contains(&1));
        assert_eq!(picks.iter().filter(|x| **x == 0).count(), 3, "{picks:?}");
        assert_eq!(p.pick(&[0]).unwrap().id, 2);
        assert_eq!(p.pick(&[0, 2]).unwrap_err(), Unavailable::Exhausted);
    }

    #[test]
    fn least_in_flight_and_caps() {
        let p = pool(PoolStrategy::LeastInFlight, 1);
        let a = InFlight::new(p.pick(&[]).unwrap());
        let b = InFlight::new(p.pick(&[]).unwrap());
        assert_ne!(a.identity().id, b.identity().id);
        assert_eq!(p.pick(&[]).unwrap_err(), Unavailable::AllBusy);
        drop(a);
        assert!(p.pick(&[]).is_ok());
    }

    #[test]
    fn resting_identities_are_skipped_and_all_down_says_when() {
        let p = pool(PoolStrategy::RoundRobin, 0);
        let now = Instant::now();
        let rl = Failure {
            retry_after: Some(3),
            ..Failure::new(FailureClass::RateLimit, "x")
        };
        let a = p.all()[0].clone();
        p.report_failure_at(&a, &rl, now);
        for _ in 0..4 {
            assert_eq!(p.pick_at(&[], now).unwrap().id, 2);
        }
        let b = p.all()[2].clone();
        p.report_failure_at(&b, &rl, now);
        match p.pick_at(&[], now) {
            Err(Unavailable::AllDown(d)) => assert!(d <= Duration::from_secs(3)),
            other => panic!("{other:?}"),
        }
        assert!(p.pick_at(&[], now + Duration::from_secs(4)).is_ok());
    }

    #[test]
    fn identities_come_and_go_at_runtime() {
        let p = pool(PoolStrategy::RoundRobin, 0);
        let before = p.all();
        let id = p.next_id();
        assert_eq!(id, 3);
        p.add(Identity::new(id, Some("d".into()), Source::Token));
        assert_eq!(before.len(), 3, "an old snapshot does not change");
        assert_eq!(p.pick(&[0, 2]).unwrap().id, 3);
        p.all()[0].disabled.store(true, Ordering::Relaxed);
        for _ in 0..4 {
            assert_ne!(p.pick(&[]).unwrap().id, 0);
        }
        let gone = p.remove(3).unwrap();
        assert_eq!(p.pick(&[2]).unwrap_err(), Unavailable::Exhausted);
        p.restore(gone);
        assert_eq!(p.pick(&[2]).unwrap().id, 3);
        assert!(p.get(1).is_some() && p.get(9).is_none());
        assert_ne!(p.next_id(), 3, "ids are never reused");
    }

    #[test]
    fn fingerprints_tell_credentials_apart() {
        let a = |e: &str| Source::Account {
            email: e.into(),
            password: "x".into(),
        };
        assert_eq!(
            fingerprint(&a("A@x.com"), None),
            fingerprint(&a("a@x.com "), None)
        );
        assert_ne!(
            fingerprint(&a("a@x.com"), None),
            fingerprint(&a("b@x.com"), None)
        );
        assert_ne!(
            fingerprint(&Source::Cookie("c=1".into()), None),
            fingerprint(&Source::Cookie("c=2".into()), None)
        );
        assert_eq!(fingerprint(&Source::Token, Some("t")).len(), 32);
    }

    #[test]
    fn auth_failures_request_a_refresh() {
        let p = pool(PoolStrategy::RoundRobin, 0);
        let a = p.all()[0].clone();
        p.report_failure(&a, &Failure::new(FailureClass::Auth, "401"));
        assert!(a.refresh_requested.load(Ordering::Relaxed));
    }

    #[test]
    fn masking() {
        assert_eq!(mask_email("demo@example.com"), "d***@example.com");
        let i = Identity::new(
            0,
            None,
            Source::Account {
                email: "x@y.z".into(),
                password: "hunter2".into(),
            },
        );
        assert_eq!(i.label, "account-1 (x***@y.z)");
    }
}
