//! Per-request state carried through the Pingora hooks, read by the access log.

use std::time::{Duration, Instant};

pub struct RequestCtx {
    pub request_id: String,
    pub started: Instant,
    pub route: &'static str,
    pub caller: String,
    pub model: Option<String>,
    pub status: u16,
    pub ttft: Option<Duration>,
    pub identity: Option<String>,
    pub attempts: u32,
    pub error_class: Option<&'static str>,
    /// Token usage of the answer, when one finished (for the per-key counters).
    pub usage: Option<crate::convert::stream::Usage>,
    /// The key's concurrency slot, released when the request's context is dropped.
    pub permit: Option<crate::store::limits::Permit>,
    /// Refused by the key's own limits.
    pub rate_limited: bool,
    /// A streamed answer's 200 and event-stream header are out: anything more, errors
    /// included, can only be events.
    pub stream_open: bool,
}

impl Default for RequestCtx {
    fn default() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        RequestCtx {
            request_id: id[..16].to_string(),
            started: Instant::now(),
            route: "-",
            caller: "-".into(),
            model: None,
            status: 0,
            ttft: None,
            identity: None,
            attempts: 0,
            error_class: None,
            usage: None,
            permit: None,
            rate_limited: false,
            stream_open: false,
        }
    }
}

impl RequestCtx {
    /// Whether the request ended without an answer: an error status, no status at all, or a
    /// stream whose 200 went out and then ended in an error event (no usage recorded).
    pub fn failed(&self) -> bool {
        self.status >= 400 || self.status == 0 || (self.stream_open && self.usage.is_none())
    }

    pub fn mark_first_token(&mut self) {
        if self.ttft.is_none() {
            self.ttft = Some(self.started.elapsed());
        }
    }

    /// One structured line; holds no secret by construction (only names, ids and numbers).
    pub fn access_line(&self, method: &str, path: &str) -> String {
        format!(
            "request_id={} method={} path={} route={} key={} model={} status={} ttft_ms={} duration_ms={} identity={} attempts={} error={}",
            self.request_id,
            method,
            path,
            self.route,
            self.caller,
            self.model.as_deref().unwrap_or("-"),
            self.status,
            self.ttft.map_or("-".to_string(), |d| d.as_millis().to_string()),
            self.started.elapsed().as_millis(),
            self.identity.as_deref().unwrap_or("-"),
            self.attempts,
            self.error_class.unwrap_or("-"),
        )
    }
}
