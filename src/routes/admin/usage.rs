//! `/admin/usage`: per-key counters (requests, prompt and completion tokens, errors, limit
//! refusals), with each key's name and masked form. `DELETE` resets them.

use std::collections::BTreeMap;

use pingora::proxy::Session;
use serde_json::{json, Value};

use super::{reply, save_failed};
use crate::context::RequestCtx;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::store::usage::Counters;

async fn row(key_id: &str, c: &Counters, gw: &Gateway) -> Value {
    let key = gw.state.keys.get(key_id);
    let in_flight = gw.state.in_flight(key_id).await;
    json!({
        "key_id": key_id,
        "name": key.as_ref().map(|k| k.name.clone()),
        "masked": key.as_ref().map(|k| k.masked.clone()),
        "exists": key.is_some() || key_id == "open",
        "requests": c.requests,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "total_tokens": c.prompt_tokens.saturating_add(c.completion_tokens),
        "errors": c.errors,
        "rate_limited": c.rate_limited,
        "in_flight": in_flight,
        "last_used_at": (c.last_used_at > 0).then_some(c.last_used_at),
    })
}

/// The shared counters could not be read (Redis is not answering).
fn unavailable(e: &crate::store::StoreError) -> ApiError {
    ApiError::new(
        503,
        "server_error",
        "shared_state_unavailable",
        e.to_string(),
    )
    .with_retry_after(1)
}

pub async fn list(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let mut by_key: BTreeMap<String, Counters> = gw
        .state
        .usage_snapshot()
        .await
        .map_err(|e| unavailable(&e))?;
    // Every current key has a row, used or not.
    let order: Vec<String> = gw.state.keys.list().iter().map(|k| k.id.clone()).collect();
    for id in &order {
        by_key.entry(id.clone()).or_default();
    }
    let mut data: Vec<Value> = Vec::new();
    for id in &order {
        data.push(row(id, &by_key[id], gw).await);
    }
    for (id, c) in &by_key {
        if !order.contains(id) {
            data.push(row(id, c, gw).await);
        }
    }
    let sum = |f: fn(&Counters) -> u64| by_key.values().map(f).fold(0u64, u64::saturating_add);
    let totals = json!({
        "requests": sum(|c| c.requests),
        "prompt_tokens": sum(|c| c.prompt_tokens),
        "completion_tokens": sum(|c| c.completion_tokens),
        "errors": sum(|c| c.errors),
        "rate_limited": sum(|c| c.rate_limited),
    });
    reply(
        session,
        ctx,
        200,
        &json!({"object": "list", "data": data, "totals": totals}),
    )
    .await
}

pub async fn reset(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    key: Option<&str>,
) -> Result<(), ApiError> {
    gw.state
        .reset_usage(key)
        .await
        .map_err(|e| save_failed(&e))?;
    reply(
        session,
        ctx,
        200,
        &json!({"object": "usage", "reset": key.unwrap_or("all")}),
    )
    .await
}
