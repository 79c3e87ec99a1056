//! `/admin/settings`: the runtime settings (effective values, the configured ones, and the
//! overrides made here). `PATCH` (or `PUT`) with some fields sets them, `null` returns a field
//! to its configured value; the next request uses the new values.

use pingora::proxy::Session;
use serde_json::{json, Value};

use super::{read_object, reply, save_failed};
use crate::context::RequestCtx;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::store::settings::FIELDS;
use crate::store::PatchError;

fn view(gw: &Gateway) -> Value {
    let fields: Vec<Value> = FIELDS
        .iter()
        .map(|(name, env, values)| json!({"name": name, "env": env, "values": values}))
        .collect();
    json!({
        "object": "settings",
        "settings": gw.runtime().to_json(),
        "configured": gw.state.base().to_json(),
        "overrides": gw.state.overrides(),
        "fields": fields,
        "data_save_mode": gw.state.backend_name(),
    })
}

pub async fn get(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    reply(session, ctx, 200, &view(gw)).await
}

pub async fn update(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let body = read_object(session).await?;
    // Accept both {"think_output": ..} and {"settings": {"think_output": ..}}.
    let body = match body.get("settings") {
        Some(Value::Object(inner)) if body.len() == 1 => inner.clone(),
        _ => body,
    };
    let rt = gw.state.patch_settings(&body).await.map_err(|e| match e {
        PatchError::Invalid(m) => ApiError::invalid(m),
        PatchError::Save(e) => save_failed(&e),
    })?;
    gw.pool.set_cap(rt.max_in_flight_per_identity);
    log::info!(
        "admin: settings changed ({})",
        body.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    reply(session, ctx, 200, &view(gw)).await
}
