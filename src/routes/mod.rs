//! Every downstream route is answered from `request_filter`: local ones directly, chat
//! completions through the relay (see `relay` for why the proxy path is not used for them).

pub mod admin;
pub mod chat;
pub mod form;
pub mod health;
pub mod images;
pub mod messages;
pub mod models;
pub mod responses;
pub mod videos;

use pingora::proxy::Session;

use crate::auth::{self, Caller, ClientCredentials};
use crate::context::RequestCtx;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::relay::render::Dialect;
use crate::respond;

/// Authenticates an API request; in client mode also returns the caller's upstream credentials.
pub async fn authenticate(
    gw: &Gateway,
    session: &Session,
) -> Result<(Caller, Option<ClientCredentials>), ApiError> {
    let h = &session.req_header().headers;
    let authz = h.get("authorization").and_then(|v| v.to_str().ok());
    let xkey = h.get("x-api-key").and_then(|v| v.to_str().ok());
    let presented = auth::presented_key(authz, xkey);
    let (key, creds) = if gw.settings.server_mode {
        (presented, None)
    } else {
        let (key, creds) = auth::split_client_mode(presented.unwrap_or(""));
        ((!key.is_empty()).then_some(key), Some(creds))
    };
    let caller = match gw.state.keys.identify(key) {
        // A key added on another instance a moment ago: one version check (and a reload
        // when the data changed) instead of waiting for its event.
        Err(e) if key.is_some() && gw.state.shared().is_some() => {
            crate::shared::sync::reload_if_changed(gw).await;
            gw.state.keys.identify(key).map_err(|_| e)?
        }
        r => r?,
    };
    Ok((caller, creds))
}

/// Applies a user key's own limits (requests per minute, concurrent requests) on the routes
/// that reach the upstream. The admin key and an open gateway are not limited.
pub async fn admit(gw: &Gateway, ctx: &mut RequestCtx, caller: &Caller) -> Result<(), ApiError> {
    let Caller::User(key) = caller else {
        return Ok(());
    };
    if !matches!(ctx.route, "chat" | "messages" | "responses" | "coder") {
        return Ok(());
    }
    match gw.state.admit(key).await {
        Ok(permit) => {
            ctx.permit = Some(permit);
            Ok(())
        }
        Err(refusal) => {
            ctx.rate_limited = true;
            Err(limit_error(refusal))
        }
    }
}

pub fn limit_error(r: crate::store::limits::Refusal) -> ApiError {
    use crate::store::limits::Refusal;
    match r {
        Refusal::Rpm { limit, retry_after } => {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let secs = secs.max(1);
            ApiError::new(
                429,
                "requests",
                "rate_limit_exceeded",
                format!(
                    "Rate limit reached for this API key: {limit} requests per minute. Retry in {secs} s."
                ),
            )
            .with_retry_after(secs)
        }
        Refusal::Concurrency { limit } => ApiError::new(
            429,
            "requests",
            "concurrency_limit_exceeded",
            format!(
                "This API key already has {limit} requests running, its limit. Retry when one ends."
            ),
        )
        .with_retry_after(1),
    }
}

/// Dispatches one request; always answers it, so the proxy never goes upstream on its own.
pub async fn handle(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<()> {
    let method = session.req_header().method.as_str().to_string();
    let path = session.req_header().uri.path().to_string();
    let result = match (method.as_str(), path.as_str()) {
        ("POST", "/v1/chat/completions") => {
            ctx.route = "chat";
            chat::handle(gw, session, ctx).await
        }
        ("POST", "/v1/messages") => {
            ctx.route = "messages";
            messages::handle(gw, session, ctx).await
        }
        ("POST", "/v1/messages/count_tokens") => {
            ctx.route = "count_tokens";
            messages::count_tokens(gw, session, ctx).await
        }
        ("POST", "/v1/responses") => {
            ctx.route = "responses";
            responses::handle(gw, session, ctx).await
        }
        ("POST", "/v1/images/generations") => {
            ctx.route = "images_generations";
            images::generations(gw, session, ctx).await
        }
        ("POST", "/v1/images/edits") => {
            ctx.route = "images_edits";
            images::edits(gw, session, ctx).await
        }
        ("POST", "/v1/videos") => {
            ctx.route = "videos";
            videos::create(gw, session, ctx).await
        }
        ("POST", "/cli/v1/chat/completions") => {
            ctx.route = "coder";
            crate::coder::completions(gw, session, ctx).await
        }
        ("GET" | "POST", "/cli/v1/models") => {
            ctx.route = "coder_models";
            match authenticate(gw, session).await {
                Ok((caller, _)) => {
                    ctx.caller = caller.name();
                    crate::coder::models(session, ctx).await
                }
                Err(e) => Err(e),
            }
        }
        ("GET", "/v1/models") => {
            ctx.route = "models";
            models::handle(gw, session, ctx, true).await
        }
        ("GET", "/models") => {
            ctx.route = "models_open";
            models::handle(gw, session, ctx, false).await
        }
        ("POST", "/refresh-token") => {
            ctx.route = "refresh_token";
            admin::refresh_tokens(gw, session, ctx).await
        }
        ("GET", "/health") | ("GET", "/healthz") => {
            ctx.route = "health";
            health::handle(gw, session, ctx).await
        }
        (_, p) if p == "/admin" || p.starts_with("/admin/") => {
            admin::handle(gw, session, ctx, &method, &path).await
        }
        (
            _,
            "/v1/chat/completions"
            | "/v1/messages"
            | "/v1/responses"
            | "/v1/images/generations"
            | "/v1/images/edits"
            | "/v1/videos"
            | "/v1/models"
            | "/models"
            | "/health",
        ) => {
            ctx.route = "method_not_allowed";
            Err(ApiError::new(
                405,
                "invalid_request_error",
                "method_not_allowed",
                format!("{method} is not allowed on {path}."),
            ))
        }
        _ => {
            ctx.route = "not_found";
            Err(ApiError::not_found(format!(
                "Unknown route: {method} {path}"
            )))
        }
    };
    if let Err(e) = result {
        ctx.status = e.status;
        let dialect = if path.starts_with("/v1/messages") {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        };
        respond::error_as(session, dialect, &e, &ctx.request_id).await?;
    }
    Ok(())
}
