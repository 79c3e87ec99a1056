//! The upstream exchange for chat completions, served from `request_filter` with Pingora's own
//! client ("pattern D" in pingora-notes §13) instead of Pingora's proxy path.
//!
//! Why: the upstream answers HTTP 200 for most failures (empty streams, error envelopes,
//! moderation, WAF pages) and Pingora's proxy path must commit the client's status line before
//! the body filters can see any of that. Here nothing is written downstream until the first
//! piece of real output has been converted, so an early failure still gets a truthful status
//! and a retry on another identity, for request bodies of any size (the proxy path can only
//! replay 64 KiB). Measured in §13 at no throughput cost against the proxy path.

mod attempt;
mod cork;
pub mod render;

use pingora::proxy::Session;

use crate::context::RequestCtx;
use crate::convert::classify::{Failure, FailureClass};
use crate::convert::request::ChatPlan;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::pool::{Identity, InFlight, Unavailable};
use crate::respond;

pub(crate) use attempt::client_gone;
pub use attempt::Outcome;

pub async fn run(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &ChatPlan,
    ephemeral: Option<std::sync::Arc<Identity>>,
    render: &render::Render,
) -> Result<(), ApiError> {
    let mut plan = std::borrow::Cow::Borrowed(plan);
    let _in_flight = crate::metrics::InFlightGuard::new();
    // Detect a client that goes away while we wait on the upstream.
    session.downstream_session.set_abort_on_close(true);
    let deadline = tokio::time::Instant::now() + gw.settings.total_timeout;
    let mut tried: Vec<usize> = Vec::new();
    let mut last: Option<Failure> = None;
    let mut unavailable: Option<Unavailable> = None;
    let tool_retry = usize::from(plan.tools.as_ref().is_some_and(|t| t.must_call()));
    let max_attempts = 1 + gw.runtime().upstream_retries + tool_retry;
    for _ in 0..max_attempts {
        let guard = match &ephemeral {
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
        ctx.attempts += 1;
        ctx.identity = Some(identity.label.clone());
        let outcome = attempt::run(
            gw,
            session,
            ctx,
            &plan,
            guard.identity(),
            deadline,
            ephemeral.is_none(),
            render,
        )
        .await;
        match outcome {
            Outcome::Served => {
                crate::metrics::UPSTREAM_ATTEMPTS
                    .with_label_values(&["ok"])
                    .inc();
                if ephemeral.is_none() {
                    gw.pool.report_success(&identity);
                }
                return Ok(());
            }
            Outcome::ServedThenFailed(f) => {
                crate::metrics::UPSTREAM_ATTEMPTS
                    .with_label_values(&[f.class.as_str()])
                    .inc();
                if ephemeral.is_none() {
                    gw.pool.report_failure(&identity, &f);
                }
                return Ok(());
            }
            Outcome::ClientGone => {
                ctx.status = 499;
                return Ok(());
            }
            Outcome::Refused(e) => {
                ctx.error_class = Some("media");
                fail(session, ctx, render, &e).await;
                return Ok(());
            }
            Outcome::NoToolCall => {
                // Not the account's fault: the same account gets the corrective retry.
                log::info!(
                    "request {}: no tool call despite tool_choice; one corrective retry",
                    ctx.request_id
                );
                tried.pop();
                plan = std::borrow::Cow::Owned(plan.corrected());
            }
            Outcome::Failed(f) => {
                crate::metrics::UPSTREAM_ATTEMPTS
                    .with_label_values(&[f.class.as_str()])
                    .inc();
                log::warn!(
                    "request {} attempt {} on {} failed: {} ({})",
                    ctx.request_id,
                    ctx.attempts,
                    identity.label,
                    f.class.as_str(),
                    f.detail
                );
                if ephemeral.is_none() {
                    gw.pool.report_failure(&identity, &f);
                }
                ctx.error_class = Some(f.class.as_str());
                let retry = !matches!(f.class, FailureClass::Moderation);
                last = Some(f);
                if !retry || tokio::time::Instant::now() >= deadline {
                    break;
                }
                crate::metrics::FAILOVERS
                    .with_label_values(&[last.as_ref().map_or("-", |f| f.class.as_str())])
                    .inc();
            }
        }
    }
    let err = match last {
        Some(f) => f.to_api_error(),
        None => no_identity_error(unavailable),
    };
    fail(session, ctx, render, &err).await;
    Ok(())
}

/// Tells the client the request failed: with the error's status, or as an error event when
/// the stream's 200 is already out (`STREAM_COMMIT=accepted`).
async fn fail(
    session: &mut Session,
    ctx: &mut RequestCtx,
    render: &render::Render,
    err: &ApiError,
) {
    // A client that already left cannot be told; the access log still records the outcome.
    if ctx.stream_open {
        ctx.error_class.get_or_insert(err.code);
        let mut sink = render.stream_sink();
        sink.error(err);
        let _ = session.write_response_body(Some(sink.take()), true).await;
        return;
    }
    ctx.status = err.status;
    let _ = respond::error_as(session, render.dialect, err, &ctx.request_id).await;
}

/// The error when no identity could be tried (or none was left to try) and nothing failed.
pub fn no_identity_error(unavailable: Option<Unavailable>) -> ApiError {
    match unavailable {
        Some(Unavailable::AllDown(wait)) => ApiError::new(
            503,
            "upstream_error",
            "all_identities_down",
            "Every upstream account is resting after failures or rate limits; retry later.",
        )
        .with_retry_after(wait.as_secs() + 1),
        Some(Unavailable::AllBusy) => ApiError::new(
            503,
            "upstream_error",
            "all_identities_busy",
            "Every upstream account is at its concurrency limit; retry shortly.",
        )
        .with_retry_after(1),
        _ => ApiError::new(
            503,
            "upstream_error",
            "no_upstream_identity",
            "No upstream account is ready to serve this request.",
        )
        .with_retry_after(5),
    }
}
