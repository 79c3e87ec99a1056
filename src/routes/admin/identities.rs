//! `/admin/identities`: the upstream accounts and their state (never a cookie, token or
//! password), add one (cookie, or email and password) at runtime, remove, disable, enable,
//! refresh. Changes take effect on the next selection; requests already using an identity
//! finish on it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pingora::proxy::Session;
use serde_json::{json, Value};

use super::{read_object, reply, save_failed};
use crate::context::RequestCtx;
use crate::convert::classify::FailureClass;
use crate::gateway::{identity_from_record, Gateway};
use crate::openai::error::ApiError;
use crate::pool::tokens::refresh_identity;
use crate::pool::Identity;
use crate::store::keys::{now_secs, short_id};
use crate::store::{Credential, IdentityRecord};

/// How long adding or refreshing one identity may wait on the upstream.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn identity_json(gw: &Gateway, id: &Identity) -> Value {
    let now = now_secs();
    let instant = std::time::Instant::now();
    let exp = id.expires_at();
    let has = id.token().is_some();
    let h = id.health();
    let state = if id.is_disabled() {
        "disabled"
    } else {
        gw.pool.state(id, instant).as_str()
    };
    json!({
        "id": id.id,
        "object": "identity",
        "label": id.label,
        "kind": id.kind(),
        "origin": if id.uid.is_some() { "admin" } else { "config" },
        "state": state,
        "health": gw.pool.state(id, instant).as_str(),
        "disabled": id.is_disabled(),
        "has_token": has,
        "token_valid": has && (exp == 0 || exp > now),
        "expires_at": (exp > 0).then_some(exp),
        "remaining_secs": (exp > 0).then(|| (exp - now).max(0)),
        "in_flight": id.in_flight.load(Ordering::Relaxed),
        "available_in_secs": h.until(instant).map(|d| d.as_secs_f64().ceil() as u64),
        "last_error": h.last_error.map(|c| c.as_str()),
        "successes": h.successes,
        "failures": h.failures,
        "refreshing": id.refreshing.load(Ordering::Relaxed),
        "refresh_failures": id.refresh_failures.load(Ordering::Relaxed),
    })
}

pub async fn list(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let all = gw.pool.all();
    let data: Vec<Value> = all.iter().map(|i| identity_json(gw, i)).collect();
    let count = |s: &str| data.iter().filter(|d| d["state"] == s).count();
    let summary = json!({
        "total": data.len(),
        "healthy": count("healthy"),
        "degraded": count("degraded"),
        "down": count("down"),
        "disabled": count("disabled"),
        "with_valid_token": data.iter().filter(|d| d["token_valid"] == true).count(),
    });
    reply(
        session,
        ctx,
        200,
        &json!({"object": "list", "data": data, "summary": summary}),
    )
    .await
}

fn credential(body: &serde_json::Map<String, Value>) -> Result<Credential, ApiError> {
    if let Some(k) = body
        .keys()
        .find(|k| !["cookie", "email", "password"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid(format!(
            "Unknown field '{k}'; send 'cookie', or 'email' and 'password'."
        )));
    }
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::trim);
    match (
        s("cookie"),
        s("email"),
        body.get("password").and_then(Value::as_str),
    ) {
        (Some(c), None, None) => {
            let mut cookies = crate::config::split_cookies(c);
            if cookies.len() != 1 {
                return Err(ApiError::invalid_param(
                    "cookie",
                    "'cookie' must hold exactly one browser cookie string.",
                ));
            }
            Ok(Credential::Cookie {
                cookie: cookies.remove(0),
            })
        }
        (None, Some(e), Some(p)) => {
            let valid = e.len() <= 254
                && e.split_once('@')
                    .is_some_and(|(u, d)| !u.is_empty() && d.contains('.'))
                && !e.contains(char::is_whitespace);
            if !valid {
                return Err(ApiError::invalid_param(
                    "email",
                    "'email' is not an email address.",
                ));
            }
            if p.is_empty() || p.len() > 1024 {
                return Err(ApiError::invalid_param(
                    "password",
                    "'password' must not be empty.",
                ));
            }
            Ok(Credential::Account {
                email: e.to_string(),
                password: p.to_string(),
            })
        }
        _ => Err(ApiError::invalid(
            "Send either 'cookie' (a browser cookie string), or 'email' and 'password'.",
        )),
    }
}

fn exists() -> ApiError {
    ApiError::new(
        409,
        "invalid_request_error",
        "identity_exists",
        "That account is already in the pool.",
    )
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "invalid_request_error",
        "identity_not_found",
        format!("No identity with id '{id}'."),
    )
}

fn find(gw: &Gateway, id: &str) -> Result<Arc<Identity>, ApiError> {
    id.parse::<usize>()
        .ok()
        .and_then(|n| gw.pool.get(n))
        .ok_or_else(|| not_found(id))
}

/// Gets a token now; `Err` is the failure's class and detail.
async fn sign_in(gw: &Gateway, id: &Identity) -> Result<(), (FailureClass, String)> {
    match tokio::time::timeout(SIGN_IN_TIMEOUT, refresh_identity(gw, id)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(f)) => Err((f.class, f.detail)),
        Err(_) => Err((
            FailureClass::Timeout,
            "the upstream did not answer in time".into(),
        )),
    }
}

pub async fn add(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let body = read_object(session).await?;
    if !gw.settings.server_mode {
        return Err(ApiError::new(
            409,
            "invalid_request_error",
            "server_mode_off",
            "SERVER_MODE=false: clients bring their own credentials, so the gateway uses no accounts.",
        ));
    }
    let record = IdentityRecord {
        uid: short_id("id-"),
        credential: credential(&body)?,
        disabled: false,
        added_at: now_secs(),
    };
    let ident = identity_from_record(gw.pool.next_id(), &record);
    if gw
        .pool
        .all()
        .iter()
        .any(|i| i.fingerprint == ident.fingerprint)
    {
        return Err(exists());
    }
    // A token first: wrong credentials are the caller's error and nothing is added. Other
    // failures (the upstream is down, slow, or shows a WAF page) say nothing about the
    // credentials: the identity is added and the token service keeps trying.
    let signed_in = sign_in(gw, &ident).await;
    if let Err((FailureClass::Auth, detail)) = &signed_in {
        return Err(ApiError::new(
            422,
            "invalid_request_error",
            "identity_rejected",
            format!("The upstream did not accept these credentials: {detail}"),
        ));
    }
    let ident = gw.pool.add_unique(ident).map_err(|_| exists())?;
    let rec = record.clone();
    if let Err(e) = gw
        .state
        .change_identities(|records, _| records.push(rec))
        .await
    {
        gw.pool.remove(ident.id);
        return Err(save_failed(&e));
    }
    log::info!("admin: added identity {}", ident.label);
    let mut v = identity_json(gw, &ident);
    v["token_ok"] = Value::Bool(signed_in.is_ok());
    if let Err((class, detail)) = signed_in {
        v["error"] = json!({"class": class.as_str(), "detail": detail});
    }
    reply(session, ctx, 201, &v).await
}

pub async fn remove(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    id: &str,
) -> Result<(), ApiError> {
    let ident = find(gw, id)?;
    let removed = gw.pool.remove(ident.id).ok_or_else(|| not_found(id))?;
    let uid = removed.uid.clone();
    let fp = removed.fingerprint.clone();
    let saved = gw
        .state
        .change_identities(|records, configured| match &uid {
            Some(uid) => records.retain(|r| &r.uid != uid),
            // A configured identity would come back at the next start: remember the removal.
            None => configured.entry(fp).or_default().removed = true,
        })
        .await;
    if let Err(e) = saved {
        gw.pool.restore(removed);
        return Err(save_failed(&e));
    }
    log::info!("admin: removed identity {}", removed.label);
    reply(
        session,
        ctx,
        200,
        &json!({"id": removed.id, "object": "identity", "label": removed.label, "deleted": true,
                "in_flight": removed.in_flight.load(Ordering::Relaxed)}),
    )
    .await
}

pub async fn action(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    id: &str,
    action: &str,
) -> Result<(), ApiError> {
    let ident = find(gw, id)?;
    if action == "refresh" {
        let r = sign_in(gw, &ident).await;
        let mut v = identity_json(gw, &ident);
        v["token_ok"] = Value::Bool(r.is_ok());
        if let Err((class, detail)) = r {
            v["error"] = json!({"class": class.as_str(), "detail": detail});
        }
        return reply(session, ctx, 200, &v).await;
    }
    let disable = action == "disable";
    let was = ident.disabled.swap(disable, Ordering::Relaxed);
    let uid = ident.uid.clone();
    let fp = ident.fingerprint.clone();
    let saved = gw
        .state
        .change_identities(|records, configured| match &uid {
            Some(uid) => {
                for r in records.iter_mut().filter(|r| &r.uid == uid) {
                    r.disabled = disable;
                }
            }
            None => {
                if disable {
                    configured.entry(fp).or_default().disabled = true;
                } else {
                    configured.remove(&fp);
                }
            }
        })
        .await;
    if let Err(e) = saved {
        ident.disabled.store(was, Ordering::Relaxed);
        return Err(save_failed(&e));
    }
    log::info!("admin: {action}d identity {}", ident.label);
    reply(session, ctx, 200, &identity_json(gw, &ident)).await
}
