//! The upstream side of one generation on one account (protocol §8): upload the input images,
//! create a chat, then either read the image stream to its URL, or start a video task and
//! poll its status. Nothing here writes downstream; callers decide what the client sees.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;
use tokio::time::Instant;

use crate::convert::classify::{
    classify_html, classify_json_error, classify_status, looks_like_html, Failure, FailureClass,
};
use crate::convert::model::GenKind;
use crate::gateway::Gateway;
use crate::media::{MediaError, MediaKind};
use crate::openai::error::ApiError;
use crate::pool::cleanup::CleanupGuard;
use crate::pool::Identity;
use crate::qwen::api;
use crate::qwen::client::Exchange;
use crate::qwen::headers::{self, Credentials};
use crate::sse::SseDecoder;

use super::body::{self, GenSpec};
use super::extract::{find_task_id, parse_task, ImageScan, TaskState};
use super::failover::AttemptError;

/// Error bodies and synchronous replies are small JSON documents or WAF pages.
const REPLY_LIMIT: usize = 256 * 1024;
/// Generated images are a few MB; this bounds a `b64_json` download.
const RESULT_MAX_BYTES: usize = 32 << 20;
/// Streaming clients hear from the gateway at least this often while a video renders, so
/// proxies with a 30-60 s idle timeout keep the connection.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);
/// Status polls that may fail in a row before the wait is given up.
const POLL_FAILURES: u32 = 3;
/// Chat-detail reads when the t2v reply names no task (peers try 5 times, §8.3).
const DETAIL_TRIES: u32 = 3;

/// An image a generation edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputImage {
    /// A client's `data:` URI or http(s) URL: uploaded like chat input (guard, cache).
    Source(String),
    /// A file part, already checked for type and size.
    Bytes { bytes: Bytes, mime: String },
    /// An earlier result already in the upstream's storage: referenced as is.
    Linked(String),
}

#[derive(Debug, Clone)]
pub struct Job {
    pub spec: GenSpec,
    pub images: Vec<InputImage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageResult {
    pub url: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

fn now() -> (u64, u64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.as_millis() as u64)
}

fn token_of(identity: &Identity) -> Result<Arc<str>, AttemptError> {
    identity.token().ok_or_else(|| {
        AttemptError::Retry(Failure::new(
            FailureClass::Auth,
            "the identity has no token",
        ))
    })
}

fn creds<'a>(identity: &'a Identity, token: &'a str) -> Credentials<'a> {
    Credentials {
        token,
        cookie: identity.cookie(),
    }
}

/// Uploads (or links) the input images with this account's storage grant.
async fn files(
    gw: &Gateway,
    c: &Credentials<'_>,
    images: &[InputImage],
) -> Result<Vec<Value>, AttemptError> {
    let s = &gw.settings;
    let mut out = Vec::with_capacity(images.len());
    for img in images {
        let uploaded = match img {
            InputImage::Linked(url) => {
                out.push(body::linked_file(url));
                continue;
            }
            InputImage::Source(src) => {
                crate::media::ingest(
                    src,
                    MediaKind::Image,
                    &s.media,
                    &s.media_cache,
                    &gw.upstream,
                    c,
                )
                .await
            }
            InputImage::Bytes { bytes, mime } => crate::media::upload_cached(
                &s.media_cache,
                &gw.upstream,
                c,
                bytes.clone(),
                mime,
                &s.media.upload,
            )
            .await
            .map_err(MediaError::Upload),
        };
        match uploaded {
            Ok(up) => out.push(body::uploaded_file(&up)),
            Err(e) => return Err(AttemptError::Stop(e.to_api_error())),
        }
    }
    Ok(out)
}

/// Creates the chat and posts the completion; the chat is deleted when the guard drops.
async fn open<'a>(
    gw: &'a Gateway,
    identity: &Arc<Identity>,
    c: &Credentials<'_>,
    spec: &GenSpec,
    files: &[Value],
    pooled: bool,
) -> Result<(String, Exchange, Option<CleanupGuard<'a>>), Failure> {
    let (secs, millis) = now();
    let chat_id = api::new_chat(&gw.upstream, c, body::new_chat(spec, millis)).await?;
    let guard = pooled.then(|| gw.cleaner.guard(identity.clone(), chat_id.clone()));
    let mut req = gw.upstream.request(
        "POST",
        &format!("/api/v2/chat/completions?chat_id={chat_id}"),
    );
    let accept = if spec.kind == GenKind::Video {
        "application/json"
    } else {
        "text/event-stream"
    };
    headers::apply(&mut req, &gw.upstream.base, c, accept);
    let fid = uuid::Uuid::new_v4().to_string();
    let b = body::completion(spec, &chat_id, files, &fid, secs);
    let ex = gw.upstream.send(req, Bytes::from(b)).await?;
    Ok((chat_id, ex, guard))
}

/// Reads a whole (small) reply; a non-200, a WAF page or an error envelope is a failure.
async fn read_reply(gw: &Gateway, mut ex: Exchange) -> Result<Bytes, Failure> {
    let status = ex.status;
    let retry_after = ex.retry_after();
    let body = ex.read_to_end(REPLY_LIMIT).await;
    gw.upstream.release(ex).await;
    let body = body?;
    if status != 200 {
        return Err(classify_status(status, retry_after, &body));
    }
    if looks_like_html(&body) {
        return Err(classify_html(200, &body));
    }
    if let Some(f) = classify_json_error(&body) {
        return Err(f);
    }
    Ok(body)
}

fn timed_out() -> Failure {
    Failure::new(FailureClass::Timeout, "total time limit reached")
}

/// One t2i or image_edit generation: the URL of the generated image.
pub async fn image_once(
    gw: &Gateway,
    identity: &Arc<Identity>,
    job: &Job,
    deadline: Instant,
    pooled: bool,
) -> Result<ImageResult, AttemptError> {
    let token = token_of(identity)?;
    let c = creds(identity, &token);
    let files = files(gw, &c, &job.images).await?;
    let opened =
        tokio::time::timeout_at(deadline, open(gw, identity, &c, &job.spec, &files, pooled));
    let (_chat, mut ex, _cleanup) = opened.await.map_err(|_| timed_out())??;
    let mut scan = ImageScan::default();
    if ex.status != 200 || !ex.is_event_stream() {
        // Some failures come as JSON; so might a result, which is then taken as well.
        let body = read_reply(gw, ex).await?;
        scan.feed(&body);
        if scan.url.is_none() {
            let f = Failure::new(FailureClass::Transient, "the reply was not an event stream");
            return Err(f.into());
        }
    } else {
        let mut decoder = SseDecoder::new(gw.settings.max_sse_line_bytes);
        while !scan.done() {
            let read = tokio::time::timeout_at(deadline, ex.read()).await;
            match read.map_err(|_| timed_out()) {
                Ok(Ok(Some(chunk))) => {
                    if scan.text.is_empty() && scan.url.is_none() && looks_like_html(&chunk) {
                        gw.upstream.abort(ex).await;
                        return Err(classify_html(200, &chunk).into());
                    }
                    let fed = decoder.feed(&chunk, |ev| scan.feed(ev));
                    if fed.is_err() {
                        gw.upstream.abort(ex).await;
                        let f = Failure::new(FailureClass::Transient, "an event line was too long");
                        return Err(f.into());
                    }
                }
                Ok(Ok(None)) => {
                    decoder.finish(|ev| scan.feed(ev));
                    break;
                }
                Ok(Err(f)) | Err(f) => {
                    gw.upstream.abort(ex).await;
                    return Err(f.into());
                }
            }
        }
        gw.upstream.release(ex).await;
    }
    if let Some(f) = scan.failure {
        return Err(f.into());
    }
    match scan.url {
        Some(url) => Ok(ImageResult {
            url,
            input_tokens: scan.input_tokens,
            output_tokens: scan.output_tokens,
        }),
        None if !scan.text.trim().is_empty() => Err(AttemptError::Stop(ApiError::new(
            502,
            "upstream_error",
            "generation_failed",
            format!(
                "The Qwen upstream answered with text instead of an image: {}",
                scan.text.trim().chars().take(300).collect::<String>()
            ),
        ))),
        None => Err(Failure::new(
            FailureClass::Empty,
            "the image stream ended without an image",
        )
        .into()),
    }
}

/// A started video task, with the account and the chat it lives in.
pub struct VideoTask<'a> {
    pub task_id: String,
    identity: Arc<Identity>,
    _cleanup: Option<CleanupGuard<'a>>,
}

/// Starts a t2v task (the synchronous reply carries its id, §8.3).
pub async fn start_video<'a>(
    gw: &'a Gateway,
    identity: &Arc<Identity>,
    job: &Job,
    deadline: Instant,
    pooled: bool,
) -> Result<VideoTask<'a>, AttemptError> {
    let token = token_of(identity)?;
    let c = creds(identity, &token);
    let opened = tokio::time::timeout_at(deadline, open(gw, identity, &c, &job.spec, &[], pooled));
    let (chat_id, ex, cleanup) = opened.await.map_err(|_| timed_out())??;
    let reply = tokio::time::timeout_at(deadline, read_reply(gw, ex))
        .await
        .map_err(|_| timed_out())??;
    let mut task_id = task_in_reply(&reply);
    // A reply without the id: the chat detail may name it (peers' fallback, §8.3).
    let mut tries = 0;
    while task_id.is_none() && tries < DETAIL_TRIES {
        tries += 1;
        tokio::time::sleep(gw.settings.video_poll_interval.min(Duration::from_secs(2))).await;
        let path = format!("/api/v2/chats/{chat_id}");
        if let Ok(detail) = api::get_json(&gw.upstream, &c, &path).await {
            task_id = serde_json::from_slice::<Value>(&detail)
                .ok()
                .as_ref()
                .and_then(find_task_id);
        }
    }
    let Some(task_id) = task_id else {
        return Err(AttemptError::Stop(ApiError::new(
            502,
            "upstream_error",
            "generation_failed",
            "The Qwen upstream accepted the video request but named no task to follow \
             (no task_id in the reply or the chat).",
        )));
    };
    Ok(VideoTask {
        task_id,
        identity: identity.clone(),
        _cleanup: cleanup,
    })
}

/// The task id in a JSON reply, or in SSE events when the upstream streamed anyway.
fn task_in_reply(reply: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<Value>(reply) {
        return find_task_id(&v);
    }
    let mut found = None;
    let mut decoder = SseDecoder::new(REPLY_LIMIT);
    let mut look = |ev: &[u8]| {
        if found.is_none() {
            found = serde_json::from_slice::<Value>(ev)
                .ok()
                .as_ref()
                .and_then(find_task_id);
        }
    };
    let _ = decoder.feed(reply, &mut look);
    decoder.finish(&mut look);
    found
}

/// Whether a video is ready yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// Not yet; a streaming caller sends a keep-alive now.
    Waiting,
    Done(String),
}

/// Polls one video task until it ends, fails, or `VIDEO_TIMEOUT_SECS` passes.
pub struct Poller<'a> {
    gw: &'a Gateway,
    task: VideoTask<'a>,
    next_poll: Instant,
    deadline: Instant,
    failures: u32,
    status: String,
}

impl<'a> Poller<'a> {
    pub fn new(gw: &'a Gateway, task: VideoTask<'a>) -> Self {
        let now = Instant::now();
        Poller {
            gw,
            next_poll: now + gw.settings.video_poll_interval,
            deadline: now + gw.settings.video_timeout,
            task,
            failures: 0,
            status: "pending".into(),
        }
    }

    pub fn task_id(&self) -> &str {
        &self.task.task_id
    }

    /// Waits until the next poll or keep-alive is due, whichever is first.
    pub async fn next(&mut self) -> Result<Polled, ApiError> {
        let wake = self
            .next_poll
            .min(Instant::now() + KEEPALIVE_EVERY)
            .min(self.deadline);
        tokio::time::sleep_until(wake).await;
        if Instant::now() >= self.deadline {
            return Err(self.timeout());
        }
        if Instant::now() < self.next_poll {
            return Ok(Polled::Waiting);
        }
        self.next_poll = Instant::now() + self.gw.settings.video_poll_interval;
        let poll = tokio::time::timeout_at(self.deadline, self.poll()).await;
        match poll {
            Err(_) => Err(self.timeout()),
            Ok(Ok(TaskState::Done(url))) => Ok(Polled::Done(url)),
            Ok(Ok(TaskState::Waiting(status))) => {
                self.failures = 0;
                self.status = status;
                Ok(Polled::Waiting)
            }
            Ok(Ok(TaskState::Failed(why))) => Err(ApiError::new(
                502,
                "upstream_error",
                "generation_failed",
                format!(
                    "The Qwen upstream reported video task {} as failed: {why}",
                    self.task.task_id
                ),
            )),
            Ok(Err(f)) => {
                self.failures += 1;
                log::warn!(
                    "video task {}: status poll failed ({}): {}",
                    self.task.task_id,
                    f.class.as_str(),
                    f.detail
                );
                if self.failures >= POLL_FAILURES {
                    let mut e = f.to_api_error();
                    e.message = format!(
                        "Following video task {} failed: {}",
                        self.task.task_id, e.message
                    );
                    return Err(e);
                }
                Ok(Polled::Waiting)
            }
        }
    }

    async fn poll(&self) -> Result<TaskState, Failure> {
        let token = self
            .task
            .identity
            .token()
            .ok_or_else(|| Failure::new(FailureClass::Auth, "the identity has no token"))?;
        let c = creds(&self.task.identity, &token);
        let path = format!("/api/v1/tasks/status/{}", self.task.task_id);
        let reply = api::get_json(&self.gw.upstream, &c, &path).await?;
        let v: Value = serde_json::from_slice(&reply)
            .map_err(|_| Failure::new(FailureClass::Transient, "the task status was unreadable"))?;
        Ok(parse_task(&v))
    }

    fn timeout(&self) -> ApiError {
        ApiError::new(
            504,
            "upstream_error",
            "generation_timeout",
            format!(
                "The video was not ready within {} s (VIDEO_TIMEOUT_SECS); upstream task {} was \
                 still {}.",
                self.gw.settings.video_timeout.as_secs(),
                self.task.task_id,
                self.status
            ),
        )
    }
}

/// Downloads a generated file for `b64_json`. The URL comes from the upstream, not the
/// client, but it is still fetched behind the address guard; only the configured upstream's
/// own address is exempt, since an operator who points the gateway at a host trusts it.
pub async fn download(gw: &Gateway, url: &str) -> Result<Bytes, ApiError> {
    let mut opts = gw.settings.media.fetch.clone();
    opts.kind = MediaKind::ImageOrVideo;
    opts.max_bytes = RESULT_MAX_BYTES;
    let base = &gw.upstream.base;
    if let Ok(addrs) = tokio::net::lookup_host((base.host.as_str(), base.port)).await {
        opts.allowed_addrs.extend(addrs.map(|a| a.ip()));
    }
    match crate::media::fetch(url, &opts).await {
        Ok((bytes, _)) => Ok(bytes),
        Err(e) => {
            let status = if e.status() == 504 { 504 } else { 502 };
            Err(ApiError::new(
                status,
                "upstream_error",
                "generation_download_failed",
                format!("The generated image could not be downloaded: {e}"),
            ))
        }
    }
}
