//! Admin-only routes (the first API key): `POST /refresh-token` refreshes every identity's token
//! now and reports each result.

use pingora::proxy::Session;
use serde_json::json;

use crate::auth::Caller;
use crate::context::RequestCtx;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::pool::tokens::refresh_identity;
use crate::respond;

/// Admin routes need the admin key; with no keys configured they are closed, not open.
pub fn require_admin(
    gw: &Gateway,
    session: &Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    if gw.settings.api_keys.is_empty() {
        return Err(ApiError::forbidden());
    }
    let (caller, _) = super::authenticate(gw, session)?;
    ctx.caller = caller.name();
    match caller {
        Caller::Admin => Ok(()),
        _ => Err(ApiError::forbidden()),
    }
}

pub async fn refresh_tokens(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    require_admin(gw, session, ctx)?;
    let mut results = Vec::new();
    for id in gw.pool.all() {
        let r = tokio::time::timeout(gw.settings.total_timeout, refresh_identity(gw, id)).await;
        results.push(match r {
            Ok(Ok(())) => json!({"id": id.label, "ok": true, "expires_at": id.expires_at()}),
            Ok(Err(f)) => {
                json!({"id": id.label, "ok": false, "error": f.class.as_str(), "detail": f.detail})
            }
            Err(_) => json!({"id": id.label, "ok": false, "error": "timeout"}),
        });
    }
    let ok = results.iter().all(|r| r["ok"] == true);
    let body =
        serde_json::to_vec(&json!({"ok": ok, "results": results})).expect("json value serialises");
    ctx.status = 200;
    respond::json(session, 200, body, &ctx.request_id)
        .await
        .map_err(|_| ApiError::new(500, "server_error", "write_failed", "write failed"))
}
