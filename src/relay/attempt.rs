//! One attempt on one identity: create the chat, open the completion, convert until the first
//! output (nothing is written downstream before that), then commit and stream to the end.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pingora::proxy::Session;
use tokio::time::Instant;

use super::cork;
use crate::config::StreamCommit;
use crate::context::RequestCtx;
use crate::convert::classify::{
    classify_html, classify_json_error, classify_status, looks_like_html, Failure, FailureClass,
};
use crate::convert::request::ChatPlan;
use crate::convert::stream::{prompt_estimate, ConvertOptions, Converter, Sink, Step};
use crate::gateway::Gateway;
use crate::openai::completion::Aggregator;
use crate::pool::Identity;
use crate::qwen::api;
use crate::qwen::body::{completion_body_with_media, new_chat_body, MessageIds};
use crate::qwen::client::Exchange;
use crate::qwen::headers::{self, Credentials};
use crate::respond;

use super::render::{Render, StreamSink};
use crate::sse::SseDecoder;

pub enum Outcome {
    /// A response was written.
    Served,
    /// A stream was committed and then the upstream failed: the client got an error event,
    /// and the failure still counts against the identity.
    ServedThenFailed(Failure),
    /// Nothing was written downstream; another identity may be tried.
    Failed(Failure),
    /// A required tool call was not made and nothing was written: retry with a hint.
    NoToolCall,
    /// The request itself cannot be served (e.g. an attachment that cannot be uploaded);
    /// another identity would fare no better.
    Refused(crate::openai::error::ApiError),
    ClientGone,
}

/// A bound for error bodies and non-SSE replies: enough for any JSON envelope or WAF page.
const ERROR_BODY_LIMIT: usize = 256 * 1024;

fn now() -> (u64, u64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.as_millis() as u64)
}

// Each argument is a different owner's state (shared gateway, downstream session, request
// bookkeeping, the plan, the identity, the request deadline, pool membership, the client
// API); bundling them would only move the list elsewhere.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &ChatPlan,
    identity: &Arc<Identity>,
    deadline: Instant,
    pooled: bool,
    render: &Render,
) -> Outcome {
    let Some(token) = identity.token() else {
        return Outcome::Failed(Failure::new(
            FailureClass::Auth,
            "the identity has no token",
        ));
    };
    let creds = Credentials {
        token: &token,
        cookie: identity.cookie(),
    };
    // Attachments go to the upstream's storage first; the message references their URLs.
    let mut media = Vec::with_capacity(plan.media.len());
    for m in &plan.media {
        let kind = if m.video {
            crate::media::MediaKind::Video
        } else {
            crate::media::MediaKind::Image
        };
        let s = &gw.settings;
        // Boxed so that a stream's future does not reserve room for the upload's states.
        match Box::pin(crate::media::ingest::ingest(
            &m.source,
            kind,
            &s.media,
            &s.media_cache,
            &gw.upstream,
            &creds,
        ))
        .await
        {
            Ok(up) => media.push((m.video, up.file_url)),
            Err(e) => return Outcome::Refused(e.to_api_error()),
        }
    }
    let (secs, millis) = now();
    // Deleted when this attempt ends, however it ends; a client-mode caller's chats are theirs.
    let mut cleanup = None;
    let open = async {
        let chat_id = api::new_chat(&gw.upstream, &creds, new_chat_body(plan, millis)).await?;
        if pooled {
            cleanup = Some(gw.cleaner.guard(identity.clone(), chat_id.clone()));
        }
        let path = format!("/api/v2/chat/completions?chat_id={chat_id}");
        let mut req = gw.upstream.request("POST", &path);
        headers::apply(&mut req, &gw.upstream.base, &creds, "text/event-stream");
        let body = completion_body_with_media(plan, &chat_id, &MessageIds::random(), secs, &media);
        gw.upstream.send(req, Bytes::from(body)).await
    };
    let ex = tokio::select! {
        r = tokio::time::timeout_at(deadline, open) => match r {
            Ok(Ok(ex)) => ex,
            Ok(Err(f)) => return Outcome::Failed(f),
            Err(_) => return Outcome::Failed(Failure::new(FailureClass::Timeout, "total time limit reached")),
        },
        _ = client_gone(session) => return Outcome::ClientGone,
    };
    let mut ex = match check_reply(gw, ex).await {
        Ok(ex) => ex,
        Err(f) => return Outcome::Failed(f),
    };

    // Runtime settings (changeable through /admin/settings) are read per attempt.
    let rt = gw.runtime();
    let opts = ConvertOptions {
        reasoning: rt.reasoning_output,
        search_mode: rt.search_info_mode,
        stop: plan.stop.clone(),
        max_tokens: plan.max_tokens,
        prompt_estimate: prompt_estimate(&plan.prompt),
        tools: plan.tools.clone(),
    };
    // Only a first try may be retried for a missing required call.
    let needs_call = plan.tools.as_ref().is_some_and(|t| t.must_call()) && !plan.corrective;
    // The relay's one timer per read also bounds upstream silence (see `Relay::pump`).
    ex.untimed_reads();
    let mut relay = Relay {
        gw,
        decoder: SseDecoder::new(gw.settings.max_sse_line_bytes),
        first_chunk: true,
        deadline,
        last_read: Instant::now(),
    };
    if plan.stream {
        let mut conv = Converter::new(render.stream_sink(), opts);
        relay
            .stream(session, ctx, ex, &mut conv, needs_call, render)
            .await
    } else {
        let mut conv = Converter::new(Aggregator::default(), opts);
        match relay
            .pump(session, &mut ex, &mut conv, |_| false, None)
            .await
        {
            Pumped::Finished => {
                relay.release(ex).await;
                if needs_call && conv.calls() == 0 {
                    return Outcome::NoToolCall;
                }
                ctx.usage = conv.final_usage();
                ctx.mark_first_token();
                ctx.status = 200;
                let body = Bytes::from(render.whole(conv.sink()));
                match respond::send(
                    session,
                    200,
                    "application/json",
                    body,
                    &ctx.request_id,
                    &render.headers,
                )
                .await
                {
                    Ok(()) => Outcome::Served,
                    Err(_) => Outcome::ClientGone,
                }
            }
            Pumped::Failed(f) => {
                gw.upstream.abort(ex).await;
                Outcome::Failed(f)
            }
            Pumped::Committed | Pumped::Idle => {
                unreachable!("aggregation never commits early nor waits with a deadline")
            }
            Pumped::ClientGone => {
                gw.upstream.abort(ex).await;
                Outcome::ClientGone
            }
        }
    }
}

/// Turns a non-200 or non-SSE completion reply into a classified failure.
async fn check_reply(gw: &Gateway, mut ex: Exchange) -> Result<Exchange, Failure> {
    if ex.status == 200 && ex.is_event_stream() {
        return Ok(ex);
    }
    let status = ex.status;
    let retry_after = ex.retry_after();
    let body = ex.read_to_end(ERROR_BODY_LIMIT).await;
    gw.upstream.abort(ex).await;
    let body = body?;
    if status != 200 {
        return Err(classify_status(status, retry_after, &body));
    }
    if looks_like_html(&body) {
        return Err(classify_html(200, &body));
    }
    Err(classify_json_error(&body).unwrap_or_else(|| {
        Failure::new(
            FailureClass::Transient,
            "the completion reply was not an event stream",
        )
    }))
}

/// Resolves when the downstream client closes its connection.
pub(crate) async fn client_gone(session: &mut Session) {
    loop {
        match session.downstream_session.read_body_or_idle(true).await {
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return,
        }
    }
}

enum Pumped {
    /// The converter finished the answer.
    Finished,
    /// The commit predicate fired; the caller continues streaming.
    Committed,
    /// Nothing to send by `idle_until`: time for a keep-alive comment.
    Idle,
    Failed(Failure),
    ClientGone,
}

struct Relay<'a> {
    gw: &'a Gateway,
    decoder: SseDecoder,
    first_chunk: bool,
    /// The request's total time limit.
    deadline: Instant,
    /// When the upstream last sent anything (silence is bounded by its idle timeout).
    last_read: Instant,
}

impl Relay<'_> {
    /// Reads and converts upstream chunks until the answer ends, fails, or `commit` says the
    /// output so far should be sent.
    async fn pump<S: Sink>(
        &mut self,
        session: &mut Session,
        ex: &mut Exchange,
        conv: &mut Converter<S>,
        commit: impl Fn(&Converter<S>) -> bool,
        idle_until: Option<Instant>,
    ) -> Pumped {
        loop {
            // One timer for all three limits (Pingora's own per-read timer is off): the total
            // deadline, upstream silence, and a keep-alive due before either.
            let silent = self.last_read + self.gw.upstream.idle_timeout();
            let limit = silent.min(self.deadline);
            let wake = idle_until.map_or(limit, |t| t.min(limit));
            let read = tokio::select! {
                r = tokio::time::timeout_at(wake, ex.read()) => r,
                _ = client_gone(session) => return Pumped::ClientGone,
            };
            let step = match read {
                Err(_) if wake < limit => return Pumped::Idle,
                Err(_) if silent < self.deadline => Step::Failed(Failure::new(
                    FailureClass::Timeout,
                    "reading the upstream stream: ReadTimedout",
                )),
                Err(_) => Step::Failed(Failure::new(
                    FailureClass::Timeout,
                    "total time limit reached",
                )),
                Ok(Err(f)) => Step::Failed(f),
                Ok(Ok(Some(chunk))) => {
                    self.last_read = Instant::now();
                    self.feed(conv, &chunk)
                }
                Ok(Ok(None)) => self.finish(conv),
            };
            match step {
                Step::Continue => {
                    if commit(conv) {
                        // Chunks that already arrived go out in the same write: one syscall and
                        // one downstream frame per burst instead of per upstream event.
                        match self.drain_ready(ex, conv) {
                            Step::Continue => return Pumped::Committed,
                            Step::Done => return Pumped::Finished,
                            Step::Failed(f) => return Pumped::Failed(f),
                        }
                    }
                }
                Step::Done => return Pumped::Finished,
                Step::Failed(f) => return Pumped::Failed(f),
            }
        }
    }

    /// Converts upstream chunks that can be read without waiting (at most a bounded number,
    /// so one fast upstream cannot starve the write).
    fn drain_ready<S: Sink>(&mut self, ex: &mut Exchange, conv: &mut Converter<S>) -> Step {
        for _ in 0..64 {
            // Pingora's body reader commits its state before awaiting, so dropping a read that
            // is not ready loses nothing.
            let Some(read) = ready_now(ex.read()) else {
                return Step::Continue;
            };
            let step = match read {
                Err(f) => Step::Failed(f),
                Ok(Some(chunk)) => self.feed(conv, &chunk),
                Ok(None) => self.finish(conv),
            };
            if step != Step::Continue {
                return step;
            }
        }
        Step::Continue
    }

    /// Flushes the decoder at the end of the upstream body.
    fn finish<S: Sink>(&mut self, conv: &mut Converter<S>) -> Step {
        let mut step = Step::Continue;
        self.decoder.finish(|ev| {
            if step == Step::Continue {
                step = conv.on_event(ev);
            }
        });
        if step == Step::Continue {
            step = conv.on_eof();
        }
        step
    }

    fn feed<S: Sink>(&mut self, conv: &mut Converter<S>, chunk: &[u8]) -> Step {
        if std::mem::take(&mut self.first_chunk) && looks_like_html(chunk) {
            // An HTML page labelled as an event stream; its marks are near the top.
            return Step::Failed(classify_html(200, chunk));
        }
        let mut step = Step::Continue;
        let fed = self.decoder.feed(chunk, |ev| {
            if step == Step::Continue {
                step = conv.on_event(ev);
            }
        });
        if let Err(crate::sse::SseError::LineTooLong { limit }) = fed {
            if step == Step::Continue {
                step = Step::Failed(Failure::new(
                    FailureClass::Transient,
                    format!("an upstream event line exceeded {limit} bytes"),
                ));
            }
        }
        step
    }

    /// Streams to the client: waits for the first output, commits the 200, then relays.
    async fn stream(
        &mut self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut ex: Exchange,
        conv: &mut Converter<StreamSink>,
        needs_call: bool,
        render: &Render,
    ) -> Outcome {
        // A required call holds everything back until a call appears, so that an answer
        // without one can still be retried.
        let commit = |c: &Converter<StreamSink>| {
            if needs_call {
                c.calls() > 0
            } else {
                c.has_output()
            }
        };
        let keepalive = self.gw.settings.sse_keepalive;
        if self.gw.settings.stream_commit == StreamCommit::Accepted && !ctx.stream_open {
            // The comment makes the first bytes go out now, not only the header.
            let corked = cork::set(session, true);
            let opened = open_stream(session, ctx, render).await.is_ok()
                && self.keep_alive(session).await.is_ok();
            if corked {
                cork::set(session, false);
            }
            if !opened {
                self.gw.upstream.abort(ex).await;
                return Outcome::ClientGone;
            }
        }
        loop {
            let idle = idle_deadline(ctx, keepalive);
            match self.pump(session, &mut ex, conv, commit, idle).await {
                Pumped::Idle => {
                    if self.keep_alive(session).await.is_err() {
                        self.gw.upstream.abort(ex).await;
                        return Outcome::ClientGone;
                    }
                }
                Pumped::Committed => break,
                Pumped::Finished => {
                    if needs_call && conv.calls() == 0 {
                        self.release(ex).await;
                        return Outcome::NoToolCall;
                    }
                    break;
                }
                Pumped::Failed(f) => {
                    self.gw.upstream.abort(ex).await;
                    return Outcome::Failed(f);
                }
                Pumped::ClientGone => {
                    self.gw.upstream.abort(ex).await;
                    return Outcome::ClientGone;
                }
            }
        }
        // Uncorked after the first write, whichever it is.
        let mut corked = false;
        if !ctx.stream_open {
            corked = cork::set(session, true);
            if open_stream(session, ctx, render).await.is_err() {
                self.gw.upstream.abort(ex).await;
                return Outcome::ClientGone;
            }
        }
        ctx.mark_first_token();
        loop {
            let out = conv.sink_mut().take();
            if conv.is_done() {
                ctx.usage = conv.final_usage();
                let written = session.write_response_body(Some(out), true).await;
                if corked {
                    cork::set(session, false);
                }
                self.release(ex).await;
                return if written.is_ok() {
                    Outcome::Served
                } else {
                    Outcome::ClientGone
                };
            }
            if !out.is_empty() && session.write_response_body(Some(out), false).await.is_err() {
                self.gw.upstream.abort(ex).await;
                return Outcome::ClientGone;
            }
            if std::mem::take(&mut corked) {
                cork::set(session, false);
            }
            let idle = idle_deadline(ctx, keepalive);
            let pending = |c: &Converter<StreamSink>| c.sink().pending() > 0;
            match self.pump(session, &mut ex, conv, pending, idle).await {
                Pumped::Committed | Pumped::Finished => {}
                Pumped::Idle => {
                    if self.keep_alive(session).await.is_err() {
                        self.gw.upstream.abort(ex).await;
                        return Outcome::ClientGone;
                    }
                }
                Pumped::Failed(f) => {
                    log::warn!(
                        "request {} stream failed after commit: {} ({})",
                        ctx.request_id,
                        f.class.as_str(),
                        f.detail
                    );
                    ctx.error_class = Some(f.class.as_str());
                    conv.sink_mut().error(&f.to_api_error());
                    let tail = conv.sink_mut().take();
                    self.gw.upstream.abort(ex).await;
                    let _ = session.write_response_body(Some(tail), true).await;
                    // The client heard of it; the identity's health hears of it too.
                    return Outcome::ServedThenFailed(f);
                }
                Pumped::ClientGone => {
                    self.gw.upstream.abort(ex).await;
                    return Outcome::ClientGone;
                }
            }
        }
    }

    async fn keep_alive(&mut self, session: &mut Session) -> pingora::Result<()> {
        session
            .write_response_body(Some(crate::sse::keepalive()), false)
            .await
    }

    /// Drains what is left of a finished upstream body (briefly) so the connection can be
    /// pooled; a body that keeps going is cut instead. Boxed: it runs once per request, and
    /// inline its state would be reserved in every open stream.
    fn release(
        &mut self,
        ex: Exchange,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(self.release_inline(ex))
    }

    async fn release_inline(&mut self, mut ex: Exchange) {
        let drained = tokio::time::timeout(std::time::Duration::from_millis(250), async {
            let mut n = 0usize;
            while let Ok(Some(b)) = ex.read().await {
                n += b.len();
                if n > ERROR_BODY_LIMIT {
                    return false;
                }
            }
            true
        })
        .await;
        if matches!(drained, Ok(true)) {
            self.gw.upstream.release(ex).await;
        } else {
            self.gw.upstream.abort(ex).await;
        }
    }
}

/// Sends the 200 and event-stream header; from here on the client hears only events.
async fn open_stream(
    session: &mut Session,
    ctx: &mut RequestCtx,
    render: &Render,
) -> pingora::Result<()> {
    let header = respond::sse_header(&ctx.request_id, &render.headers)?;
    ctx.status = 200;
    ctx.stream_open = true;
    session.write_response_header(header, false).await
}

/// When a keep-alive is due if nothing is sent before: only once the stream is open.
fn idle_deadline(ctx: &RequestCtx, every: Option<std::time::Duration>) -> Option<Instant> {
    every
        .filter(|_| ctx.stream_open)
        .map(|d| Instant::now() + d)
}

/// Polls a future once; `None` when it would have to wait.
fn ready_now<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(fut).poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
