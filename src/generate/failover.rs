//! Identity fail-over for generations, with the chat relay's rules (`relay::run`): any
//! failure before a result is retried on another account, up to `UPSTREAM_RETRIES` more;
//! moderation and problems with the request itself are not. Several generations of one
//! request (`n` images) run side by side, so the bookkeeping for the access log is shared
//! through a [`Tally`] instead of the request context.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::context::RequestCtx;
use crate::convert::classify::{Failure, FailureClass};
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::pool::{Identity, InFlight};

/// How one attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    /// The account or the upstream failed; another account may do better.
    Retry(Failure),
    /// Final: the request itself cannot be served (a bad input image, a failed task).
    Stop(ApiError),
}

impl From<Failure> for AttemptError {
    fn from(f: Failure) -> Self {
        AttemptError::Retry(f)
    }
}

/// What the access log reports about the attempts of one request.
#[derive(Default)]
pub struct Tally {
    attempts: AtomicU32,
    identity: Mutex<Option<String>>,
    error_class: Mutex<Option<&'static str>>,
}

impl Tally {
    pub fn apply(&self, ctx: &mut RequestCtx) {
        ctx.attempts += self.attempts.load(Ordering::Relaxed);
        if let Some(label) = self.identity.lock().expect("tally lock").clone() {
            ctx.identity = Some(label);
        }
        if let Some(class) = *self.error_class.lock().expect("tally lock") {
            ctx.error_class = Some(class);
        }
    }

    fn error(&self, class: &'static str) {
        *self.error_class.lock().expect("tally lock") = Some(class);
    }
}

/// Runs `attempt` on pool identities (or the caller's own, in client mode) until one
/// succeeds. The in-flight guard is returned with the result so that a caller that keeps
/// using the account (video polling) keeps counting against its cap.
pub async fn run<T, F, Fut>(
    gw: &Gateway,
    tally: &Tally,
    ephemeral: Option<&Arc<Identity>>,
    mut attempt: F,
) -> Result<(T, InFlight), ApiError>
where
    F: FnMut(Arc<Identity>) -> Fut,
    Fut: Future<Output = Result<T, AttemptError>>,
{
    let mut tried: Vec<usize> = Vec::new();
    let mut last: Option<Failure> = None;
    let mut unavailable = None;
    for _ in 0..=gw.settings.upstream_retries {
        let guard = match ephemeral {
            Some(e) if tried.is_empty() => InFlight::new(e.clone()),
            Some(_) => break,
            None => match gw.acquire_identity(&tried).await {
                Ok(g) => g,
                Err(why) => {
                    unavailable = Some(why);
                    break;
                }
            },
        };
        let identity = guard.identity().clone();
        tried.push(identity.id);
        tally.attempts.fetch_add(1, Ordering::Relaxed);
        *tally.identity.lock().expect("tally lock") = Some(identity.label.clone());
        match attempt(identity.clone()).await {
            Ok(v) => {
                crate::metrics::UPSTREAM_ATTEMPTS
                    .with_label_values(&["ok"])
                    .inc();
                if ephemeral.is_none() {
                    gw.pool.report_success(&identity);
                }
                return Ok((v, guard));
            }
            Err(AttemptError::Stop(e)) => {
                tally.error(if e.code.contains("media") {
                    "media"
                } else {
                    "generation"
                });
                return Err(e);
            }
            Err(AttemptError::Retry(f)) => {
                crate::metrics::UPSTREAM_ATTEMPTS
                    .with_label_values(&[f.class.as_str()])
                    .inc();
                log::warn!(
                    "generation attempt on {} failed: {} ({})",
                    identity.label,
                    f.class.as_str(),
                    f.detail
                );
                if ephemeral.is_none() {
                    gw.pool.report_failure(&identity, &f);
                }
                tally.error(f.class.as_str());
                let retry = f.class != FailureClass::Moderation;
                last = Some(f);
                if !retry {
                    break;
                }
                crate::metrics::FAILOVERS
                    .with_label_values(&[last.as_ref().map_or("-", |f| f.class.as_str())])
                    .inc();
            }
        }
    }
    Err(match last {
        Some(f) => f.to_api_error(),
        None => crate::relay::no_identity_error(unavailable),
    })
}
