//! `POST /v1/chat/completions`, and the path every chat-like API shares once its request is
//! mapped into the neutral conversation: translate, resolve the model, relay.

use bytes::Bytes;
use pingora::proxy::Session;

use crate::auth::ClientCredentials;
use crate::context::RequestCtx;
use crate::convert::input::ChatInput;
use crate::convert::model::parse_model;
use crate::convert::request::translate;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::openai::request::ChatRequest;
use crate::pool::{Identity, Source};
use crate::qwen::headers::Credentials;
use crate::qwen::models;
use crate::relay;
use crate::relay::render::{Dialect, Render};
use crate::respond;

/// Authenticates, checks the content type and reads the body of a JSON API request.
pub async fn read_json(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(Option<ClientCredentials>, Bytes), ApiError> {
    let (caller, client_creds) = super::authenticate(gw, session).await?;
    ctx.caller = caller.name();
    super::admit(gw, ctx, &caller).await?;
    let ct = session
        .req_header()
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.is_empty() && !ct.to_ascii_lowercase().contains("json") {
        return Err(ApiError::new(
            415,
            "invalid_request_error",
            "unsupported_media_type",
            format!("Content-Type must be application/json, got '{ct}'."),
        ));
    }
    let body = respond::read_body(session, gw.settings.max_body_bytes).await?;
    Ok((client_creds, body))
}

pub async fn handle(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let (creds, body) = read_json(gw, session, ctx).await?;
    let input = ChatRequest::parse(&body)?.to_input()?;
    let mut render = Render::new(Dialect::OpenAi, &input.model);
    render.include_usage = input.include_usage;
    serve(gw, session, ctx, creds, &input, &render).await
}

/// Client mode brings its own account for this request only.
pub(crate) async fn client_identity(
    gw: &Gateway,
    creds: ClientCredentials,
) -> Result<Identity, ApiError> {
    let token = match (creds.token, &creds.cookie) {
        (Some(t), _) => t,
        (None, Some(cookie)) => crate::qwen::api::token_from_cookie(&gw.upstream, cookie)
            .await
            .map_err(|f| f.to_api_error())?,
        (None, None) => {
            return Err(ApiError::new(
                401,
                "invalid_request_error",
                "missing_upstream_credentials",
                "Client mode needs 'Authorization: Bearer api_key;qwen_token;cookie' with a Qwen token or cookie.",
            ))
        }
    };
    let source = match creds.cookie {
        Some(cookie) => Source::Cookie(cookie),
        None => Source::Token,
    };
    Ok(Identity::new(0, Some(token), source))
}

pub async fn serve(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    client_creds: Option<ClientCredentials>,
    // Borrowed: the caller keeps them, and an owned argument would be stored twice in the
    // state machine that every open stream holds.
    input: &ChatInput,
    render: &Render,
) -> Result<(), ApiError> {
    if let Some(kind) = crate::generate::prompt::requested_kind(input)? {
        return crate::generate::chat::serve(gw, session, ctx, client_creds, input, render, kind)
            .await;
    }
    let mut plan = translate(input, gw.runtime().thinking_format)?;
    ctx.model = Some(plan.requested_model.clone());
    if gw.settings.debug_mode {
        // The seed logs the user's question in debug mode; truncated, and never credentials.
        let q = input
            .turns
            .iter()
            .rev()
            .find(|t| t.role == crate::convert::input::Role::User);
        let q: String = q
            .map_or("", |t| t.text.as_str())
            .chars()
            .take(120)
            .collect();
        log::debug!("request {} question: {q:?}", ctx.request_id);
    }
    let ephemeral = match client_creds {
        // Behind an `Arc`: it stays alive for the whole stream, in every open stream's state.
        Some(c) => Some(std::sync::Arc::new(client_identity(gw, c).await?)),
        None => None,
    };
    let token = ephemeral.as_ref().and_then(|i| i.token());
    let creds = token.as_deref().map(|t| Credentials {
        token: t,
        cookie: ephemeral.as_ref().and_then(|i| i.cookie()),
    });
    // A catalog we cannot fetch does not block chatting: the name is then sent as given.
    if let Ok(list) = gw.catalog.get(&gw.upstream, &gw.pool, creds.as_ref()).await {
        let spec = parse_model(&plan.requested_model);
        match models::find(&list, &spec.base) {
            Some(m) if m.allows(spec.thinking, spec.search) => {
                plan.upstream_model = m.id.clone();
                if !m.thinking {
                    plan.thinking = false;
                }
                // Images sent to a model without vision go to the vision fallback instead,
                // for the whole exchange (chat creation and completion alike).
                if !plan.media.is_empty() && !m.vision {
                    let fallback = &gw.settings.vision_fallback_model;
                    log::info!(
                        "request {}: {} has no vision; using {fallback}",
                        ctx.request_id,
                        m.id
                    );
                    plan.upstream_model =
                        models::find(&list, fallback).map_or(fallback.clone(), |f| f.id.clone());
                }
            }
            _ => return Err(ApiError::model_not_found(&plan.requested_model)),
        }
    }
    relay::run(gw, session, ctx, &plan, ephemeral, render).await
}
