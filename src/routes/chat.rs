//! `POST /v1/chat/completions`: authenticate, read and validate the body, translate it, check
//! the model against the catalog, then hand over to the relay.

use pingora::proxy::Session;

use crate::context::RequestCtx;
use crate::convert::model::parse_model;
use crate::convert::request::translate;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::openai::request::ChatRequest;
use crate::pool::{Identity, Source};
use crate::qwen::headers::Credentials;
use crate::qwen::models;
use crate::relay;
use crate::respond;

pub async fn handle(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let (caller, client_creds) = super::authenticate(gw, session)?;
    ctx.caller = caller.name();
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
    let req = ChatRequest::parse(&body)?;
    let mut plan = translate(&req, gw.settings.thinking_format)?;
    ctx.model = Some(plan.requested_model.clone());

    // Client mode brings its own account for this request only.
    let ephemeral = match client_creds {
        Some(c) => {
            let token = match (c.token, &c.cookie) {
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
            let source = match c.cookie {
                Some(cookie) => Source::Cookie(cookie),
                None => Source::Token,
            };
            Some(Identity::new(0, Some(token), source))
        }
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
        let found =
            models::find(&list, &spec.base).or_else(|| models::find(&list, &plan.requested_model));
        match found {
            Some(m) if m.id.eq_ignore_ascii_case(&plan.requested_model) => {
                plan.upstream_model = m.id.clone();
                plan.chat_type = "t2t";
            }
            Some(m) if m.allows(spec.thinking, spec.search) => {
                plan.upstream_model = m.id.clone();
                if !m.thinking {
                    plan.thinking = false;
                }
            }
            _ => return Err(ApiError::model_not_found(&plan.requested_model)),
        }
    }
    relay::run(gw, session, ctx, &plan, ephemeral).await
}
