//! Image and video generation (protocol §8): text to image (`t2i`), image edit
//! (`image_edit`) and text to video (`t2v`), for chat completions with a generation model
//! (`chat`) and for the OpenAI media endpoints (`routes::images`, `routes::videos`).
//!
//! * [`size`], [`extract`], [`prompt`], [`body`] and [`multipart`] are pure: ratios, result
//!   and task parsing, Markdown, what a conversation asks for, upstream bodies, form data.
//! * [`upstream`] is one generation on one account; [`failover`] runs it across the pool
//!   with the chat relay's rules, so every failure before a result gets a truthful status
//!   and another account.
//! * Results are never empty successes: a stream without an image, a failed or endless
//!   video task, a reply without a task id all become errors with honest statuses.

pub mod body;
pub mod chat;
pub mod extract;
pub mod failover;
pub mod multipart;
pub mod prompt;
pub mod size;
pub mod upstream;

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use pingora::proxy::Session;
use tokio::time::Instant;

use crate::auth::ClientCredentials;
use crate::convert::model::GenKind;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::pool::Identity;
use crate::qwen::headers::Credentials;
use crate::qwen::models;

use failover::Tally;
use upstream::{ImageResult, Job, Polled, Poller};

/// Used when the client names no model (or an OpenAI one) and the catalog is unavailable.
pub const DEFAULT_MODEL: &str = "qwen3-max";

/// `n` on the images endpoints: each image is its own upstream generation.
pub const MAX_IMAGES: usize = 4;

/// Model names OpenAI clients send by default; they mean "the gateway's choice".
fn is_openai_media_model(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    n.is_empty() || n.starts_with("dall-e") || n.starts_with("gpt-image") || n.starts_with("sora")
}

fn verb(kind: GenKind) -> &'static str {
    match kind {
        GenKind::Image => "generate images",
        GenKind::ImageEdit => "edit images",
        GenKind::Video => "generate videos",
    }
}

/// Client mode's own account for this request; `None` in server mode.
pub async fn ephemeral(
    gw: &Gateway,
    creds: Option<ClientCredentials>,
) -> Result<Option<Arc<Identity>>, ApiError> {
    match creds {
        Some(c) => Ok(Some(Arc::new(
            crate::routes::chat::client_identity(gw, c).await?,
        ))),
        None => Ok(None),
    }
}

/// The upstream model id that does `kind` for the requested base name (suffixes removed).
/// No name, or an OpenAI default name, picks the first catalog model that can.
pub async fn resolve_model(
    gw: &Gateway,
    ephemeral: Option<&Arc<Identity>>,
    base: Option<&str>,
    kind: GenKind,
) -> Result<String, ApiError> {
    let wanted = base.filter(|b| !is_openai_media_model(b));
    let token = ephemeral.and_then(|i| i.token());
    let creds = token.as_deref().map(|t| Credentials {
        token: t,
        cookie: ephemeral.and_then(|i| i.cookie()),
    });
    // As for chat, a catalog that cannot be fetched does not block: names go as given.
    let Ok(list) = gw.catalog.get(&gw.upstream, &gw.pool, creds.as_ref()).await else {
        return Ok(wanted.unwrap_or(DEFAULT_MODEL).to_string());
    };
    let not_found = |msg: String| ApiError {
        param: Some("model"),
        ..ApiError::new(404, "invalid_request_error", "model_not_found", msg)
    };
    match wanted {
        Some(name) => match models::find(&list, name) {
            Some(m) if m.generates(kind) => Ok(m.id.clone()),
            Some(m) => Err(not_found(format!(
                "The model '{}' cannot {}; see GET /v1/models for its -image, -image_edit and \
                 -video variants.",
                m.id,
                verb(kind)
            ))),
            None => Err(ApiError::model_not_found(name)),
        },
        None => list
            .iter()
            .find(|m| m.generates(kind))
            .map(|m| m.id.clone())
            .ok_or_else(|| not_found(format!("No upstream model can {}.", verb(kind)))),
    }
}

/// Polls a set of futures together on the current task (no spawning, so they may borrow).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// One image, through the pool, downloaded too when the client wants the bytes.
async fn one_image(
    gw: &Gateway,
    tally: &Tally,
    ephemeral: Option<&Arc<Identity>>,
    job: &Job,
    download: bool,
) -> Result<(ImageResult, Option<Bytes>), ApiError> {
    let deadline = Instant::now() + gw.settings.total_timeout;
    let pooled = ephemeral.is_none();
    let (result, _in_flight) = failover::run(gw, tally, ephemeral, move |id| async move {
        upstream::image_once(gw, &id, job, deadline, pooled).await
    })
    .await?;
    let bytes = if download {
        Some(upstream::download(gw, &result.url).await?)
    } else {
        None
    };
    Ok((result, bytes))
}

/// `n` images side by side; the first failure fails the request (no partial answers).
/// `Ok(None)` when the client went away first.
pub async fn images(
    gw: &Gateway,
    session: &mut Session,
    tally: &Tally,
    ephemeral: Option<&Arc<Identity>>,
    job: &Job,
    n: usize,
    download: bool,
) -> Result<Option<Vec<(ImageResult, Option<Bytes>)>>, ApiError> {
    session.downstream_session.set_abort_on_close(true);
    let all = join_all(
        (0..n)
            .map(|_| one_image(gw, tally, ephemeral, job, download))
            .collect(),
    );
    let results = tokio::select! {
        r = all => r,
        _ = crate::relay::client_gone(session) => return Ok(None),
    };
    results.into_iter().collect::<Result<Vec<_>, _>>().map(Some)
}

/// A video from start to finish without streaming: (URL, upstream task id), or `Ok(None)`
/// when the client went away while it rendered.
pub async fn video(
    gw: &Gateway,
    session: &mut Session,
    tally: &Tally,
    ephemeral: Option<&Arc<Identity>>,
    job: &Job,
) -> Result<Option<(String, String)>, ApiError> {
    session.downstream_session.set_abort_on_close(true);
    let deadline = Instant::now() + gw.settings.total_timeout;
    let pooled = ephemeral.is_none();
    let start = failover::run(gw, tally, ephemeral, move |id| async move {
        upstream::start_video(gw, &id, job, deadline, pooled).await
    });
    let (task, _in_flight) = tokio::select! {
        r = start => r?,
        _ = crate::relay::client_gone(session) => return Ok(None),
    };
    let mut poller = Poller::new(gw, task);
    loop {
        let polled = tokio::select! {
            r = poller.next() => r?,
            _ = crate::relay::client_gone(session) => return Ok(None),
        };
        if let Polled::Done(url) = polled {
            return Ok(Some((url, poller.task_id().to_string())));
        }
    }
}
