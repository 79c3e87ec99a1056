//! Prometheus metrics, served by `pingora-prometheus` on their own listener (`METRICS_LISTEN`).
//! Labels are closed sets (routes, statuses, failure classes, states) or resolved model ids, so
//! no client input and no secret can become a label.

use once_cell::sync::Lazy;
use pingora_prometheus::prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
    HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
};

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

pub static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "qwen_gateway_requests_total",
        "Requests by route, model and status",
        &["route", "model", "status"]
    )
    .expect("metric registers once")
});

pub static DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "qwen_gateway_request_duration_seconds",
        "Total request time by route",
        &["route"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

pub static TTFT: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "qwen_gateway_time_to_first_token_seconds",
        "Time until the first answer byte was sent, by route",
        &["route"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("metric registers once")
});

pub static UPSTREAM_ATTEMPTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "qwen_gateway_upstream_attempts_total",
        "Upstream attempts by outcome (ok or the failure class)",
        &["outcome"]
    )
    .expect("metric registers once")
});

pub static FAILOVERS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "qwen_gateway_failovers_total",
        "Requests moved to another identity after a failure, by failure class",
        &["class"]
    )
    .expect("metric registers once")
});

pub static IDENTITIES: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "qwen_gateway_identities",
        "Identities by health state (or disabled through the admin API)",
        &["state"]
    )
    .expect("metric registers once")
});

pub static TOKEN_REFRESHES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "qwen_gateway_token_refreshes_total",
        "Token refreshes by outcome",
        &["outcome"]
    )
    .expect("metric registers once")
});

pub static IN_FLIGHT: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "qwen_gateway_in_flight_requests",
        "Chat-like requests currently being served"
    )
    .expect("metric registers once")
});

pub static REDIS_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "qwen_gateway_redis_errors_total",
        "Failed Redis calls of the shared state, by operation (the instance then uses its own state)",
        &["op"]
    )
    .expect("metric registers once")
});

pub static REDIS_UP: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "qwen_gateway_redis_up",
        "1 while the shared state in Redis is reachable, 0 while degraded to local state"
    )
    .expect("metric registers once")
});

/// Counts a request as in flight for as long as it lives.
pub struct InFlightGuard;

impl InFlightGuard {
    pub fn new() -> Self {
        IN_FLIGHT.inc();
        InFlightGuard
    }
}

impl Default for InFlightGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        IN_FLIGHT.dec();
    }
}
