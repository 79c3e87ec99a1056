//! Retries with doubling back-off for the upload steps (protocol §7.1: timeouts and 5xx are
//! retried 3 times after 1 s, 2 s and 4 s; a 403 is a permission error and fails at once).
//! The back-off unit is a setting so tests can run the same schedule in milliseconds.

use std::future::Future;
use std::time::Duration;

use crate::convert::classify::Failure;

/// The outcome of one failed attempt: worth repeating, or final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Retry(Failure),
    Fatal(Failure),
}

impl Step {
    pub fn failure(&self) -> &Failure {
        match self {
            Step::Retry(f) | Step::Fatal(f) => f,
        }
    }

    pub fn into_failure(self) -> Failure {
        match self {
            Step::Retry(f) | Step::Fatal(f) => f,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts after the first.
    pub retries: u32,
    /// The first pause; each later one doubles.
    pub unit: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            retries: 3,
            unit: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// The pause before retry `n` (0-based): unit, 2 x unit, 4 x unit, ...
    pub fn delay(&self, n: u32) -> Duration {
        self.unit.saturating_mul(1u32 << n.min(16))
    }

    /// Runs `attempt` until it succeeds, fails fatally, or the retries are spent; the last
    /// failure is returned with the number of attempts noted in its detail.
    pub async fn run<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, Step>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Step>>,
    {
        let mut n = 0;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(Step::Retry(f)) if n < self.retries => {
                    log::warn!(
                        "{what} failed ({}), retry {} of {}",
                        f.detail,
                        n + 1,
                        self.retries
                    );
                    tokio::time::sleep(self.delay(n)).await;
                    n += 1;
                }
                Err(Step::Retry(mut f)) => {
                    if n > 0 {
                        f.detail = format!("{} (after {} attempts)", f.detail, n + 1);
                    }
                    return Err(Step::Retry(f));
                }
                Err(fatal) => return Err(fatal),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::classify::FailureClass;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_double() {
        let b = Backoff::default();
        let d: Vec<u64> = (0..3).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(d, [1, 2, 4]);
    }

    #[tokio::test]
    async fn retries_then_succeeds_or_stops() {
        let b = Backoff {
            retries: 3,
            unit: Duration::from_millis(1),
        };
        let calls = AtomicU32::new(0);
        let r: Result<u32, Step> = b
            .run("t", || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 2 {
                    Err(Step::Retry(Failure::new(FailureClass::Transient, "5xx")))
                } else {
                    Ok(n)
                }
            })
            .await;
        assert_eq!(r, Ok(2));

        calls.store(0, Ordering::SeqCst);
        let r: Result<(), Step> = b
            .run("t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Step::Retry(Failure::new(FailureClass::Transient, "5xx")))
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(r.unwrap_err().failure().detail.contains("after 4 attempts"));

        calls.store(0, Ordering::SeqCst);
        let r: Result<(), Step> = b
            .run("t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Step::Fatal(Failure::new(FailureClass::Auth, "403")))
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(matches!(r, Err(Step::Fatal(_))));
    }
}
