//! Start-up configuration and the subset that `/__sim/config` may change at run time.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// How the simulator is set up. `Default` gives one demo account and fast, plain answers.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// `(email, plaintext password)`. Sign-in expects the lower-case hex SHA-256 of the password.
    pub accounts: Vec<(String, String)>,
    /// Lifetime of minted JWTs.
    pub token_ttl_secs: i64,
    /// Pause between SSE events.
    pub delta_delay_ms: u64,
    /// If set, every plain answer has exactly this many answer deltas (`"w{i} "`), for benchmarks.
    pub answer_deltas: Option<usize>,
    /// HS256 secret used for minting and verifying JWTs.
    pub jwt_secret: String,
}

pub const DEMO_EMAIL: &str = "demo@example.com";
pub const DEMO_PASSWORD: &str = "demo-password";
pub const THIRTY_DAYS_SECS: i64 = 30 * 24 * 3600;

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            accounts: vec![(DEMO_EMAIL.to_string(), DEMO_PASSWORD.to_string())],
            token_ttl_secs: THIRTY_DAYS_SECS,
            delta_delay_ms: 0,
            answer_deltas: None,
            jwt_secret: "qwen-sim-fixed-hs256-secret".to_string(),
        }
    }
}

/// Sentinel for "answer_deltas not set"; atomics keep the hot path lock-free.
const NO_DELTAS: u64 = u64::MAX;

/// The knobs that tests may turn while the server is running.
#[derive(Debug)]
pub(crate) struct RuntimeConfig {
    token_ttl_secs: AtomicI64,
    delta_delay_ms: AtomicU64,
    answer_deltas: AtomicU64,
}

impl RuntimeConfig {
    pub fn new(cfg: &SimConfig) -> Self {
        RuntimeConfig {
            token_ttl_secs: AtomicI64::new(cfg.token_ttl_secs),
            delta_delay_ms: AtomicU64::new(cfg.delta_delay_ms),
            answer_deltas: AtomicU64::new(cfg.answer_deltas.map_or(NO_DELTAS, |n| n as u64)),
        }
    }

    pub fn token_ttl_secs(&self) -> i64 {
        self.token_ttl_secs.load(Ordering::Relaxed)
    }

    pub fn delta_delay_ms(&self) -> u64 {
        self.delta_delay_ms.load(Ordering::Relaxed)
    }

    pub fn answer_deltas(&self) -> Option<usize> {
        match self.answer_deltas.load(Ordering::Relaxed) {
            NO_DELTAS => None,
            n => Some(n as usize),
        }
    }

    pub fn set_token_ttl_secs(&self, v: i64) {
        self.token_ttl_secs.store(v, Ordering::Relaxed);
    }

    pub fn set_delta_delay_ms(&self, v: u64) {
        self.delta_delay_ms.store(v, Ordering::Relaxed);
    }

    pub fn set_answer_deltas(&self, v: Option<usize>) {
        self.answer_deltas
            .store(v.map_or(NO_DELTAS, |n| n as u64), Ordering::Relaxed);
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "token_ttl_secs": self.token_ttl_secs(),
            "delta_delay_ms": self.delta_delay_ms(),
            "answer_deltas": self.answer_deltas(),
        })
    }
}
