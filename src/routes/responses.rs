//! `POST /v1/responses`: the OpenAI Responses API for Codex-style clients.

use pingora::proxy::Session;

use crate::context::RequestCtx;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::relay::render::{Dialect, Render};
use crate::responses::request::ResponsesRequest;

pub async fn handle(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let (creds, body) = super::chat::read_json(gw, session, ctx).await?;
    let req = ResponsesRequest::parse(&body)?;
    let input = req.to_input()?;
    let mut render = Render::new(Dialect::Responses, &input.model);
    render.skeleton = Some(req.skeleton(&render.id, render.created, &input.model));
    super::chat::serve(gw, session, ctx, creds, &input, &render).await
}
