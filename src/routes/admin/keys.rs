//! `/admin/keys`: list (masked), add (the full key is in this one answer only), change limits
//! or name, remove. Keys from `API_KEY` are listed but changed in the configuration.

use pingora::proxy::Session;
use serde_json::{json, Map, Value};

use super::{read_object, reply, save_failed};
use crate::context::RequestCtx;
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::store::keys::{self, KeyEntry, Origin};

pub(super) async fn key_json(gw: &Gateway, k: &KeyEntry) -> Value {
    let lim = gw.state.limits_for(k);
    let in_flight = gw.state.in_flight(&k.id).await;
    json!({
        "id": k.id,
        "object": "api_key",
        "name": k.name,
        "masked": k.masked,
        "origin": k.origin,
        "admin": k.admin,
        "rpm_limit": k.rpm_limit,
        "max_concurrent": k.max_concurrent,
        // What applies now: the key's own limit or the default; the admin key has none.
        "effective_rpm_limit": if k.admin { 0 } else { lim.rpm },
        "effective_max_concurrent": if k.admin { 0 } else { lim.concurrent },
        "in_flight": in_flight,
        "created_at": (k.created_at > 0).then_some(k.created_at),
    })
}

pub async fn list(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let mut data: Vec<Value> = Vec::new();
    for k in gw.state.keys.list() {
        data.push(key_json(gw, &k).await);
    }
    reply(session, ctx, 200, &json!({"object": "list", "data": data})).await
}

/// A limit field: absent = unchanged (`None`), `null` = the default (`Some(None)`), a number.
fn limit_field(
    body: &Map<String, Value>,
    name: &'static str,
    max: u64,
) -> Result<Option<Option<u32>>, ApiError> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => match v.as_u64().filter(|n| *n <= max) {
            Some(n) => Ok(Some(Some(n as u32))),
            None => Err(ApiError::invalid_param(
                name,
                format!("'{name}' must be a whole number from 0 (no limit) to {max}, or null for the default."),
            )),
        },
    }
}

fn name_field(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match body.get("name") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 64 => {
            Ok(Some(s.trim().to_string()))
        }
        Some(_) => Err(ApiError::invalid_param(
            "name",
            "'name' must be a string of 1 to 64 characters.",
        )),
    }
}

fn check_fields(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid(format!(
            "Unknown field '{k}'; expected {}.",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

pub async fn add(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let body = read_object(session).await?;
    check_fields(&body, &["name", "key", "rpm_limit", "max_concurrent"])?;
    let name = name_field(&body)?.unwrap_or_else(|| "key".into());
    let rpm = limit_field(&body, "rpm_limit", 1_000_000)?.flatten();
    let conc = limit_field(&body, "max_concurrent", 100_000)?.flatten();
    let secret = match body.get("key") {
        None | Some(Value::Null) => keys::generate(),
        Some(Value::String(k)) => {
            keys::validate_key(k).map_err(|m| ApiError::invalid_param("key", m))?;
            k.clone()
        }
        Some(_) => return Err(ApiError::invalid_param("key", "'key' must be a string.")),
    };
    let entry = KeyEntry {
        id: keys::short_id("k-"),
        name,
        sha256: keys::digest_hex(&secret),
        masked: keys::mask(&secret),
        origin: Origin::Admin,
        admin: false,
        rpm_limit: rpm,
        max_concurrent: conc,
        created_at: keys::now_secs(),
    };
    let added = gw.state.keys.add(entry).map_err(|_| {
        ApiError::new(
            409,
            "invalid_request_error",
            "key_exists",
            "That key is already in use.",
        )
    })?;
    if let Err(e) = gw.state.persist().await {
        gw.state.keys.remove(&added.id);
        return Err(save_failed(&e));
    }
    log::info!("admin: added API key {} ({})", added.id, added.masked);
    let mut v = key_json(gw, &added).await;
    // The only time the key itself is shown.
    v["key"] = Value::String(secret);
    reply(session, ctx, 201, &v).await
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "invalid_request_error",
        "key_not_found",
        format!("No API key with id '{id}'."),
    )
}

fn configured(id: &str) -> ApiError {
    ApiError::new(
        409,
        "invalid_request_error",
        "configured_key",
        format!("Key '{id}' comes from API_KEY; change it in the configuration."),
    )
}

pub async fn update(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    id: &str,
) -> Result<(), ApiError> {
    let body = read_object(session).await?;
    check_fields(&body, &["name", "rpm_limit", "max_concurrent"])?;
    let name = name_field(&body)?;
    let rpm = limit_field(&body, "rpm_limit", 1_000_000)?;
    let conc = limit_field(&body, "max_concurrent", 100_000)?;
    let mut old = None;
    let updated = gw
        .state
        .keys
        .update(id, |k| {
            if k.origin != Origin::Admin {
                return Err(configured(id));
            }
            old = Some(k.clone());
            let mut n = k.clone();
            if let Some(name) = name {
                n.name = name;
            }
            if let Some(r) = rpm {
                n.rpm_limit = r;
            }
            if let Some(c) = conc {
                n.max_concurrent = c;
            }
            Ok(n)
        })
        .ok_or_else(|| not_found(id))??;
    if let Err(e) = gw.state.persist().await {
        if let Some(old) = old {
            let _ = gw.state.keys.update(id, |_| Ok::<_, ()>(old));
        }
        return Err(save_failed(&e));
    }
    reply(session, ctx, 200, &key_json(gw, &updated).await).await
}

pub async fn remove(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    id: &str,
) -> Result<(), ApiError> {
    let k = gw.state.keys.get(id).ok_or_else(|| not_found(id))?;
    if k.origin != Origin::Admin {
        return Err(configured(id));
    }
    let removed = gw.state.keys.remove(id).ok_or_else(|| not_found(id))?;
    if let Err(e) = gw.state.persist().await {
        let _ = gw.state.keys.add((*removed).clone());
        return Err(save_failed(&e));
    }
    gw.state.forget_key(id);
    log::info!("admin: removed API key {id}");
    reply(
        session,
        ctx,
        200,
        &json!({"id": id, "object": "api_key", "deleted": true}),
    )
    .await
}
