//! `GET /v1/models` (API key) and `GET /models` (open).

use pingora::proxy::Session;

use crate::context::RequestCtx;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::qwen::headers::Credentials;
use crate::qwen::models::openai_list;
use crate::respond;

pub async fn handle(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    needs_key: bool,
) -> Result<(), ApiError> {
    let mut client_creds = None;
    if needs_key {
        let (caller, creds) = super::authenticate(gw, session).await?;
        ctx.caller = caller.name();
        client_creds = creds;
    }
    let token = client_creds.as_ref().and_then(|c| c.token.clone());
    let creds = token.as_deref().map(|t| Credentials {
        token: t,
        cookie: client_creds.as_ref().and_then(|c| c.cookie.as_deref()),
    });
    let models = gw
        .catalog
        .get(&gw.upstream, &gw.pool, creds.as_ref())
        .await
        .map_err(|f| f.to_api_error())?;
    let body = serde_json::to_vec(&openai_list(&models, gw.runtime().simple_model_map))
        .expect("json value serialises");
    ctx.status = 200;
    respond::json(session, 200, body, &ctx.request_id)
        .await
        .map_err(|_| ApiError::new(500, "server_error", "write_failed", "write failed"))
}
