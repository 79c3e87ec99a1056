//! Generation through the chat APIs (`-image`, `-image_edit`, `-video`, `chat_type: "t2i"`):
//! the result is an ordinary assistant answer holding Markdown, streamed or not, in the
//! dialect of the API that asked.
//!
//! An image is sent once it exists, like a chat answer's first output, so every failure
//! before it keeps its status and its retry. A video can take minutes: a streaming client
//! gets its 200 once the upstream task exists, then `: keep-alive` comments while it renders,
//! and a failure after that point ends the stream with an error event.

use std::sync::Arc;

use pingora::proxy::Session;
use tokio::time::Instant;

use crate::auth::ClientCredentials;
use crate::context::RequestCtx;
use crate::convert::input::ChatInput;
use crate::convert::model::{parse_model, GenKind};
use crate::convert::stream::{FinishReason, Sink, Usage};
use crate::convert::tokens::estimate;
use crate::gateway::Gateway;
use crate::openai::completion::Aggregator;
use crate::openai::error::ApiError;
use crate::pool::Identity;
use crate::relay::client_gone;
use crate::relay::render::Render;
use crate::{respond, sse};

use super::body::GenSpec;
use super::extract::{image_markdown, video_markdown};
use super::failover::{self, Tally};
use super::upstream::{self, Job, Polled, Poller};

pub async fn serve(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    client_creds: Option<ClientCredentials>,
    input: &ChatInput,
    render: &Render,
    kind: GenKind,
) -> Result<(), ApiError> {
    ctx.model = Some(input.model.clone());
    let super::prompt::ChatGeneration {
        kind,
        prompt,
        size,
        images,
    } = super::prompt::from_chat(input, kind)?;
    let ephemeral = super::ephemeral(gw, client_creds).await?;
    let base = parse_model(&input.model).base;
    let model = super::resolve_model(gw, ephemeral.as_ref(), Some(&base), kind).await?;
    log::info!(
        "request {}: {} on {model}{}",
        ctx.request_id,
        kind.chat_type(),
        size.map_or(String::new(), |s| format!(" at {s}"))
    );
    let job = Job {
        spec: GenSpec {
            kind,
            model,
            prompt,
            size,
        },
        images,
    };
    let _in_flight = crate::metrics::InFlightGuard::new();
    let tally = Tally::default();
    let out = Answer {
        render,
        stream: input.stream,
        prompt_tokens: estimate(&job.spec.prompt),
    };
    let result = match kind {
        GenKind::Video => video(gw, session, ctx, &tally, ephemeral.as_ref(), &job, &out).await,
        _ => image(gw, session, ctx, &tally, ephemeral.as_ref(), &job, &out).await,
    };
    tally.apply(ctx);
    result
}

/// How the answer goes out.
struct Answer<'a> {
    render: &'a Render,
    stream: bool,
    prompt_tokens: u64,
}

impl Answer<'_> {
    fn usage(&self, text: &str, input: Option<u64>, output: Option<u64>) -> Usage {
        Usage {
            prompt_tokens: input.unwrap_or(self.prompt_tokens),
            completion_tokens: output.filter(|n| *n > 0).unwrap_or_else(|| estimate(text)),
            reasoning_tokens: 0,
            estimated: input.is_none(),
        }
    }

    /// The whole answer: a 200 with the JSON, or a complete stream.
    async fn send(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        text: &str,
        usage: Usage,
    ) -> Result<(), ApiError> {
        ctx.mark_first_token();
        ctx.status = 200;
        if self.stream {
            let header = respond::sse_header(&ctx.request_id, &self.render.headers)
                .map_err(|_| write_failed())?;
            let mut sink = self.render.stream_sink();
            sink.content(text);
            sink.finish(FinishReason::Stop, &usage);
            if session.write_response_header(header, false).await.is_ok() {
                let _ = session.write_response_body(Some(sink.take()), true).await;
            }
            return Ok(());
        }
        let mut agg = Aggregator::default();
        agg.content(text);
        agg.finish(FinishReason::Stop, &usage);
        let body = bytes::Bytes::from(self.render.whole(&agg));
        let headers = &self.render.headers;
        let sent = respond::send(
            session,
            200,
            "application/json",
            body,
            &ctx.request_id,
            headers,
        )
        .await;
        if sent.is_err() {
            ctx.status = 499;
        }
        Ok(())
    }
}

fn write_failed() -> ApiError {
    ApiError::new(500, "server_error", "write_failed", "write failed")
}

async fn image(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    tally: &Tally,
    ephemeral: Option<&Arc<Identity>>,
    job: &Job,
    out: &Answer<'_>,
) -> Result<(), ApiError> {
    let Some(mut results) = super::images(gw, session, tally, ephemeral, job, 1, false).await?
    else {
        ctx.status = 499;
        return Ok(());
    };
    let (r, _) = results.remove(0);
    let text = image_markdown(&r.url);
    let usage = out.usage(&text, r.input_tokens, r.output_tokens);
    out.send(session, ctx, &text, usage).await
}

async fn video(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    tally: &Tally,
    ephemeral: Option<&Arc<Identity>>,
    job: &Job,
    out: &Answer<'_>,
) -> Result<(), ApiError> {
    if !out.stream {
        let Some((url, _task)) = super::video(gw, session, tally, ephemeral, job).await? else {
            ctx.status = 499;
            return Ok(());
        };
        let text = video_markdown(&url);
        return out
            .send(session, ctx, &text, out.usage(&text, None, None))
            .await;
    }
    session.downstream_session.set_abort_on_close(true);
    let deadline = Instant::now() + gw.settings.total_timeout;
    let pooled = ephemeral.is_none();
    let start = failover::run(gw, tally, ephemeral, move |id| async move {
        upstream::start_video(gw, &id, job, deadline, pooled).await
    });
    let (task, _held) = tokio::select! {
        r = start => r?,
        _ = client_gone(session) => {
            ctx.status = 499;
            return Ok(());
        }
    };
    // The task exists: from here on the client hears from us while it renders.
    let header =
        respond::sse_header(&ctx.request_id, &out.render.headers).map_err(|_| write_failed())?;
    ctx.status = 200;
    if session.write_response_header(header, false).await.is_err()
        || keep_alive(session).await.is_err()
    {
        return Ok(());
    }
    let mut poller = Poller::new(gw, task);
    let mut sink = out.render.stream_sink();
    loop {
        let polled = tokio::select! {
            r = poller.next() => r,
            _ = client_gone(session) => return Ok(()),
        };
        match polled {
            Ok(Polled::Waiting) => {
                if keep_alive(session).await.is_err() {
                    return Ok(());
                }
            }
            Ok(Polled::Done(url)) => {
                ctx.mark_first_token();
                let text = video_markdown(&url);
                sink.content(&text);
                sink.finish(FinishReason::Stop, &out.usage(&text, None, None));
                let _ = session.write_response_body(Some(sink.take()), true).await;
                return Ok(());
            }
            Err(e) => {
                log::warn!(
                    "request {}: video task {} failed after the stream started: {}",
                    ctx.request_id,
                    poller.task_id(),
                    e.message
                );
                ctx.error_class = Some("generation");
                sink.error(&e);
                let _ = session.write_response_body(Some(sink.take()), true).await;
                return Ok(());
            }
        }
    }
}

async fn keep_alive(session: &mut Session) -> pingora::Result<()> {
    session
        .write_response_body(Some(sse::keepalive()), false)
        .await
}
