//! The admin API under `/admin/` (admin key only: no key is 401, a user key 403) and the admin
//! web page (`GET /admin`, served without a key; every data call it makes needs the key).
//! `POST /refresh-token` (the seed's route) refreshes every identity's token now.
//!
//! No response here carries a secret: keys are shown masked (the full value of an added key
//! is returned once, by the call that creates it), identities by label, never cookie, token or
//! password.

mod identities;
mod keys;
mod settings;
mod ui;
mod usage;

use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::context::RequestCtx;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::pool::tokens::refresh_identity;
use crate::respond;

/// Largest admin request body.
const BODY_LIMIT: usize = 64 * 1024;

/// Admin routes need the admin key; with no keys configured they are closed, not open.
pub async fn require_admin(
    gw: &Gateway,
    session: &Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    if gw.state.keys.is_empty() {
        return Err(ApiError::forbidden());
    }
    let (caller, _) = super::authenticate(gw, session).await?;
    ctx.caller = caller.name();
    match caller {
        Caller::Admin => Ok(()),
        _ => Err(ApiError::forbidden()),
    }
}

/// Dispatches `/admin` and everything under it.
pub async fn handle(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    method: &str,
    path: &str,
) -> Result<(), ApiError> {
    ctx.route = "admin";
    if method == "GET" {
        if let Some(asset) = ui::asset(path) {
            ctx.route = "admin_ui";
            return ui::serve(session, ctx, asset).await;
        }
    }
    // Everything else needs the admin key first, unknown paths included: a caller without
    // it learns nothing about the API.
    require_admin(gw, session, ctx).await?;
    let rest = path.trim_start_matches("/admin").trim_matches('/');
    let parts: Vec<&str> = rest.split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["keys"]) => {
            ctx.route = "admin_keys";
            keys::list(gw, session, ctx).await
        }
        ("POST", ["keys"]) => {
            ctx.route = "admin_keys";
            keys::add(gw, session, ctx).await
        }
        ("PATCH", ["keys", id]) => {
            ctx.route = "admin_keys";
            keys::update(gw, session, ctx, id).await
        }
        ("DELETE", ["keys", id]) => {
            ctx.route = "admin_keys";
            keys::remove(gw, session, ctx, id).await
        }
        ("GET", ["identities"]) => {
            ctx.route = "admin_identities";
            identities::list(gw, session, ctx).await
        }
        ("POST", ["identities"]) => {
            ctx.route = "admin_identities";
            identities::add(gw, session, ctx).await
        }
        ("POST", ["identities", "refresh"]) => {
            ctx.route = "admin_identities";
            refresh_all(gw, session, ctx).await
        }
        ("DELETE", ["identities", id]) => {
            ctx.route = "admin_identities";
            identities::remove(gw, session, ctx, id).await
        }
        ("POST", ["identities", id, action @ ("disable" | "enable" | "refresh")]) => {
            ctx.route = "admin_identities";
            identities::action(gw, session, ctx, id, action).await
        }
        ("GET", ["settings"]) => {
            ctx.route = "admin_settings";
            settings::get(gw, session, ctx).await
        }
        ("PATCH" | "PUT", ["settings"]) => {
            ctx.route = "admin_settings";
            settings::update(gw, session, ctx).await
        }
        ("GET", ["usage"]) => {
            ctx.route = "admin_usage";
            usage::list(gw, session, ctx).await
        }
        ("DELETE", ["usage"]) => {
            ctx.route = "admin_usage";
            usage::reset(gw, session, ctx, None).await
        }
        ("DELETE", ["usage", key]) => {
            ctx.route = "admin_usage";
            usage::reset(gw, session, ctx, Some(key)).await
        }
        (
            _,
            ["keys"]
            | ["keys", _]
            | ["identities"]
            | ["identities", _]
            | ["identities", _, _]
            | ["settings"]
            | ["usage"]
            | ["usage", _],
        ) => Err(ApiError::new(
            405,
            "invalid_request_error",
            "method_not_allowed",
            format!("{method} is not allowed on {path}."),
        )),
        _ => Err(ApiError::not_found(format!(
            "Unknown admin route: {method} {path}"
        ))),
    }
}

/// Headers on every admin API answer: nothing here may be cached or sniffed.
const API_HEADERS: [(&str, &str); 2] = [
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
];

pub(super) async fn reply(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    v: &Value,
) -> Result<(), ApiError> {
    let body = serde_json::to_vec(v).expect("json value serialises");
    let extra: Vec<(&'static str, String)> = API_HEADERS
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    ctx.status = status;
    respond::send(
        session,
        status,
        "application/json",
        Bytes::from(body),
        &ctx.request_id,
        &extra,
    )
    .await
    .map_err(|_| write_failed())
}

fn write_failed() -> ApiError {
    ApiError::new(500, "server_error", "write_failed", "write failed")
}

pub(super) fn save_failed(e: &crate::store::StoreError) -> ApiError {
    ApiError::new(
        500,
        "server_error",
        "data_save_failed",
        format!("The change could not be saved, so it was not made: {e}"),
    )
}

/// Reads a JSON object body (an empty body is an empty object).
pub(super) async fn read_object(session: &mut Session) -> Result<Map<String, Value>, ApiError> {
    let ct = session
        .req_header()
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !ct.is_empty() && !ct.contains("json") {
        return Err(ApiError::new(
            415,
            "invalid_request_error",
            "unsupported_media_type",
            "Content-Type must be application/json.",
        ));
    }
    let body = respond::read_body(session, BODY_LIMIT).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::invalid("The request body must be a JSON object.")),
        Err(e) => Err(ApiError::invalid(format!(
            "The request body is not valid JSON: {e}"
        ))),
    }
}

/// Refreshes every identity's token now and reports each (also `POST /refresh-token`).
async fn refresh_all(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let mut results = Vec::new();
    for id in gw.pool.all().iter() {
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
    reply(session, ctx, 200, &json!({"ok": ok, "results": results})).await
}

pub async fn refresh_tokens(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    require_admin(gw, session, ctx).await?;
    refresh_all(gw, session, ctx).await
}
