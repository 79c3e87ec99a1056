//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: the Anthropic Messages API.

use pingora::proxy::Session;

use crate::anthropic::request::MessagesRequest;
use crate::context::RequestCtx;
use crate::convert::request::translate;
use crate::convert::tokens::estimate;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::relay::render::{Dialect, Render};
use crate::respond;

/// Names the request fields that were accepted but have no effect upstream.
pub const IGNORED_HEADER: &str = "x-qwen-gateway-ignored-fields";

pub async fn handle(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let (creds, body) = super::chat::read_json(gw, session, ctx).await?;
    let (req, ignored) = MessagesRequest::parse(&body)?;
    let input = req.to_input()?;
    let mut render = Render::new(Dialect::Anthropic, &input.model);
    if !ignored.is_empty() {
        render.headers.push((IGNORED_HEADER, ignored.join(", ")));
    }
    render.input_estimate = estimate(&translate(&input, gw.runtime().thinking_format)?.prompt);
    super::chat::serve(gw, session, ctx, creds, &input, &render).await
}

pub async fn count_tokens(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let (_, body) = super::chat::read_json(gw, session, ctx).await?;
    let (req, _) = MessagesRequest::parse(&body)?;
    let input = req.to_input()?;
    // What the upstream will be sent, tools included; a local estimate (the upstream adds its
    // own hidden system prompt on top, which no client can count).
    let plan = translate(&input, gw.runtime().thinking_format)?;
    let body = serde_json::to_vec(&serde_json::json!({"input_tokens": estimate(&plan.prompt)}))
        .expect("json value serialises");
    ctx.status = 200;
    respond::json(session, 200, body, &ctx.request_id)
        .await
        .map_err(|_| ApiError::new(500, "server_error", "write_failed", "write failed"))
}
