//! `GET /health`: status, version, a configuration summary without secrets, and token state.

use pingora::proxy::Session;
use serde_json::json;

use crate::context::RequestCtx;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::respond;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn report(gw: &Gateway) -> serde_json::Value {
    let s = &gw.settings;
    let rt = gw.runtime();
    let now = now_secs();
    let instant = std::time::Instant::now();
    let mut counts = [0usize; 3];
    let ids: Vec<serde_json::Value> = gw
        .pool
        .all()
        .iter()
        .map(|id| {
            let exp = id.expires_at();
            let has = id.token().is_some();
            let state = gw.pool.state(id, instant);
            counts[state as usize] += 1;
            let h = id.health();
            json!({
                "id": id.label,
                "state": state.as_str(),
                "available_in_secs": h.until(instant).map(|d| d.as_secs_f64().ceil() as u64),
                "has_token": has,
                "token_valid": has && (exp == 0 || exp > now),
                "expires_at": (exp > 0).then_some(exp),
                "remaining_secs": (exp > 0).then(|| (exp - now).max(0)),
                "in_flight": id.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                "disabled": id.is_disabled(),
                "last_error": h.last_error.map(|c| c.as_str()),
                "successes": h.successes,
                "failures": h.failures,
            })
        })
        .collect();
    let valid = ids.iter().filter(|i| i["token_valid"] == true).count();
    let usable = ids
        .iter()
        .filter(|i| i["token_valid"] == true && i["state"] != "down" && i["disabled"] != true)
        .count();
    let status = if !s.server_mode || usable > 0 {
        "ok"
    } else {
        "degraded"
    };
    let soonest = gw
        .pool
        .all()
        .iter()
        .map(|i| i.expires_at())
        .filter(|e| *e > 0)
        .min();
    json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": gw.started.elapsed().as_secs(),
        "config": {
            "server_mode": s.server_mode,
            "api_key_enabled": !gw.state.keys.is_empty(),
            "data_save_mode": gw.state.backend_name(),
            "debug_mode": s.debug_mode,
            "auto_refresh_token": s.auto_refresh_token,
            "output_think": rt.reasoning_output != crate::config::ReasoningOutput::Hidden,
            "search_info_mode": format!("{:?}", rt.search_info_mode).to_lowercase(),
            "simple_model_map": rt.simple_model_map,
            "pool_strategy": format!("{:?}", s.pool_strategy),
            "chat_cleanup": format!("{:?}", s.chat_cleanup),
            "upstream": gw.upstream.base.origin(),
        },
        // Whether instances share state, and whether Redis answers (never its URL).
        "shared_state": gw.state.shared().map(|sh| json!({
            "redis": if sh.is_degraded() { "degraded" } else { "up" },
            "instance": sh.instance,
        })),
        "token": {
            "valid": valid > 0,
            "expires_at": soonest,
            "remaining_secs": soonest.map(|e| (e - now).max(0)),
        },
        "identity_pool": {
            "total": ids.len(),
            "healthy": counts[0],
            "degraded": counts[1],
            "down": counts[2],
            "with_valid_token": valid,
            "identities": ids,
        },
    })
}

pub async fn handle(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let body = serde_json::to_vec(&report(gw)).expect("json value serialises");
    ctx.status = 200;
    respond::json(session, 200, body, &ctx.request_id)
        .await
        .map_err(|_| ApiError::new(500, "server_error", "write_failed", "write failed"))
}
