//! Per-identity health: a circuit breaker plus rate-limit cooldowns. Pure: the caller passes
//! the current instant, so tests drive time directly.
//!
//! `healthy` -> (`degraded_after` consecutive failures) `degraded`, still chosen ->
//! (`open_after`) `down`, skipped until `open_cooldown` ends -> one half-open trial request:
//! success closes the breaker, failure opens it again.
//!
//! With several instances (Redis), a rest another instance started (its cooldown or open
//! breaker) is mirrored as `shared_until`: honoured like a local rest until it ends, never
//! changed by this instance's own successes or failures.

use std::time::{Duration, Instant};

use crate::config::BreakerSettings;
use crate::convert::classify::FailureClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Healthy = 0,
    Degraded = 1,
    Down = 2,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Degraded => "degraded",
            State::Down => "down",
        }
    }
}

/// Whether an identity may take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Yes,
    /// The breaker's cooldown is over: exactly one trial request may go.
    Trial,
    /// Not before this instant.
    Until(Instant),
    /// A trial is already in flight; no estimate.
    Busy,
}

#[derive(Debug, Clone, Default)]
pub struct Health {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    cooldown_until: Option<Instant>,
    trial_in_flight: bool,
    /// A rest announced by another instance (see the module doc).
    shared_until: Option<Instant>,
    pub last_error: Option<FailureClass>,
    pub successes: u64,
    pub failures: u64,
}

/// What the pool should do after a failure beyond updating health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    None,
    /// The token was refused: refresh it now.
    RefreshToken,
}

impl Health {
    pub fn state(&self, now: Instant, cfg: &BreakerSettings) -> State {
        if self.open_until.is_some()
            || self.cooldown_until.is_some_and(|u| u > now)
            || self.shared_until.is_some_and(|u| u > now)
        {
            State::Down
        } else if self.consecutive_failures >= cfg.degraded_after && cfg.degraded_after > 0 {
            State::Degraded
        } else {
            State::Healthy
        }
    }

    pub fn availability(&self, now: Instant) -> Availability {
        match (self.shared_until.filter(|u| *u > now), self.local(now)) {
            (Some(s), Availability::Until(t)) => Availability::Until(s.max(t)),
            (Some(s), _) => Availability::Until(s),
            (None, a) => a,
        }
    }

    /// Sets (or clears) the rest another instance announced.
    pub fn set_shared_rest(&mut self, until: Option<Instant>) {
        self.shared_until = until;
    }

    /// Gives back a trial taken by `start_trial` that was not used.
    pub fn cancel_trial(&mut self) {
        self.trial_in_flight = false;
    }

    /// Whether this instance rests the identity (cooldown or breaker not closed).
    pub fn resting(&self) -> bool {
        self.open_until.is_some() || self.cooldown_until.is_some()
    }

    fn local(&self, now: Instant) -> Availability {
        if let Some(until) = self.cooldown_until.filter(|u| *u > now) {
            return Availability::Until(until.max(self.open_until.unwrap_or(until)));
        }
        match self.open_until {
            Some(until) if until > now => Availability::Until(until),
            Some(_) if self.trial_in_flight => Availability::Busy,
            Some(_) => Availability::Trial,
            None => Availability::Yes,
        }
    }

    /// Marks the half-open trial as taken; only call after `availability` said `Trial`.
    pub fn start_trial(&mut self) {
        self.trial_in_flight = true;
    }

    pub fn on_success(&mut self) {
        self.consecutive_failures = 0;
        self.open_until = None;
        self.cooldown_until = None;
        self.trial_in_flight = false;
        self.last_error = None;
        self.successes += 1;
    }

    pub fn on_failure(
        &mut self,
        class: FailureClass,
        retry_after: Option<Duration>,
        now: Instant,
        cfg: &BreakerSettings,
    ) -> FollowUp {
        self.last_error = Some(class);
        self.failures += 1;
        let was_trial = std::mem::take(&mut self.trial_in_flight);
        match class {
            // A WAF page or a refused prompt says nothing about the account.
            FailureClass::Waf | FailureClass::Moderation => {
                if was_trial {
                    self.open_until = Some(now);
                }
                return FollowUp::None;
            }
            FailureClass::RateLimit | FailureClass::Empty => {
                let rest = retry_after.unwrap_or(cfg.rate_limit_cooldown);
                self.cooldown_until = Some(now + rest);
            }
            FailureClass::Auth | FailureClass::Transient | FailureClass::Timeout => {}
        }
        self.consecutive_failures += 1;
        if was_trial || self.consecutive_failures >= cfg.open_after {
            self.open_until = Some(now + cfg.open_cooldown);
        }
        if class == FailureClass::Auth {
            FollowUp::RefreshToken
        } else {
            FollowUp::None
        }
    }

    /// A fresh token clears auth failures: the refused token is gone.
    pub fn on_token_refreshed(&mut self) {
        if self.last_error == Some(FailureClass::Auth) {
            self.consecutive_failures = 0;
            self.open_until = None;
            self.last_error = None;
        }
    }

    pub fn until(&self, now: Instant) -> Option<Duration> {
        match self.availability(now) {
            Availability::Until(t) => Some(t - now),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerSettings {
        BreakerSettings {
            degraded_after: 2,
            open_after: 3,
            open_cooldown: Duration::from_secs(10),
            rate_limit_cooldown: Duration::from_secs(30),
        }
    }

    #[test]
    fn breaker_opens_then_half_opens_then_closes() {
        let c = cfg();
        let t0 = Instant::now();
        let mut h = Health::default();
        assert_eq!(h.state(t0, &c), State::Healthy);
        h.on_failure(FailureClass::Transient, None, t0, &c);
        assert_eq!(h.state(t0, &c), State::Healthy);
        h.on_failure(FailureClass::Transient, None, t0, &c);
        assert_eq!(h.state(t0, &c), State::Degraded);
        assert_eq!(h.availability(t0), Availability::Yes);
        h.on_failure(FailureClass::Timeout, None, t0, &c);
        assert_eq!(h.state(t0, &c), State::Down);
        assert_eq!(
            h.availability(t0),
            Availability::Until(t0 + Duration::from_secs(10))
        );
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(h.availability(t1), Availability::Trial);
        h.start_trial();
        assert_eq!(h.availability(t1), Availability::Busy);
        h.on_success();
        assert_eq!(h.state(t1, &c), State::Healthy);
        assert_eq!(h.availability(t1), Availability::Yes);
    }

    #[test]
    fn failed_trial_reopens() {
        let c = cfg();
        let t0 = Instant::now();
        let mut h = Health::default();
        for _ in 0..3 {
            h.on_failure(FailureClass::Transient, None, t0, &c);
        }
        let t1 = t0 + Duration::from_secs(11);
        h.start_trial();
        h.on_failure(FailureClass::Transient, None, t1, &c);
        assert_eq!(
            h.availability(t1),
            Availability::Until(t1 + Duration::from_secs(10))
        );
    }

    #[test]
    fn rate_limit_cools_down_for_retry_after_or_default() {
        let c = cfg();
        let t0 = Instant::now();
        let mut h = Health::default();
        h.on_failure(
            FailureClass::RateLimit,
            Some(Duration::from_secs(5)),
            t0,
            &c,
        );
        assert_eq!(
            h.availability(t0),
            Availability::Until(t0 + Duration::from_secs(5))
        );
        assert_eq!(
            h.availability(t0 + Duration::from_secs(6)),
            Availability::Yes
        );
        let mut h = Health::default();
        h.on_failure(FailureClass::Empty, None, t0, &c);
        assert_eq!(h.until(t0), Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_shared_rest_is_honoured_until_it_ends() {
        let c = cfg();
        let t0 = Instant::now();
        let mut h = Health::default();
        h.set_shared_rest(Some(t0 + Duration::from_secs(7)));
        assert_eq!(h.state(t0, &c), State::Down);
        assert_eq!(h.until(t0), Some(Duration::from_secs(7)));
        // A longer local rest wins; a success here does not lift the other instance's rest.
        h.on_failure(
            FailureClass::RateLimit,
            Some(Duration::from_secs(9)),
            t0,
            &c,
        );
        assert_eq!(h.until(t0), Some(Duration::from_secs(9)));
        h.on_success();
        assert_eq!(h.until(t0), Some(Duration::from_secs(7)));
        let t1 = t0 + Duration::from_secs(8);
        assert_eq!(h.availability(t1), Availability::Yes);
        assert_eq!(h.state(t1, &c), State::Healthy);
    }

    #[test]
    fn waf_is_not_the_accounts_fault_and_auth_asks_for_a_refresh() {
        let c = cfg();
        let t0 = Instant::now();
        let mut h = Health::default();
        for _ in 0..10 {
            assert_eq!(
                h.on_failure(FailureClass::Waf, None, t0, &c),
                FollowUp::None
            );
        }
        assert_eq!(h.state(t0, &c), State::Healthy);
        assert_eq!(
            h.on_failure(FailureClass::Auth, None, t0, &c),
            FollowUp::RefreshToken
        );
        h.on_failure(FailureClass::Auth, None, t0, &c);
        assert_eq!(h.state(t0, &c), State::Degraded);
        h.on_token_refreshed();
        assert_eq!(h.state(t0, &c), State::Healthy);
    }
}
