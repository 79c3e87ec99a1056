//! The coder endpoint (the seed's "CLI" path, protocol §10): `POST /cli/v1/chat/completions`
//! and `GET /cli/v1/models`, an OpenAI-compatible pass-through to the Qwen Code upstream
//! (`QWEN_CLI_BASE_URL`). Each account gets its own OAuth access token through the device flow
//! with PKCE, approved with its web token; refresh tokens rotate. Native tools pass through and
//! the upstream's SSE is relayed byte for byte.
//!
//! Alibaba ended the free tier behind this upstream on 2026-04-15, so this stays small: no
//! translation, fail-over on refusals, and a truthful error when nothing works.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::context::RequestCtx;
use crate::convert::classify::{Failure, FailureClass};
use crate::gateway::Gateway;
use crate::openai::error::ApiError;
use crate::pool::Identity;
use crate::qwen::api;
use crate::qwen::client::{BaseUrl, Timeouts, UpstreamClient};
use crate::qwen::headers::Credentials;
use crate::respond;

const CLIENT_ID: &str = "f0304373b74a44d2b584a3fb70ca9e56";
const MODELS: &[&str] = &["coder-model", "qwen3-coder-plus", "qwen3-coder-flash"];
/// Sampling and bookkeeping fields the coder upstream rejects.
const DROPPED: &[&str] = &[
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "n",
    "seed",
    "service_tier",
    "user",
];

#[derive(Clone)]
struct CliToken {
    access: String,
    refresh: String,
    expires_at: std::time::Instant,
}

#[derive(Default)]
pub struct Coder {
    client: OnceLock<Result<UpstreamClient, String>>,
    tokens: Mutex<HashMap<usize, CliToken>>,
}

fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parse_token(body: &[u8]) -> Result<CliToken, Failure> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| Failure::new(FailureClass::Transient, "unreadable token reply"))?;
    let access = v["access_token"]
        .as_str()
        .ok_or_else(|| Failure::new(FailureClass::Auth, "no access token"))?;
    Ok(CliToken {
        access: access.into(),
        refresh: v["refresh_token"].as_str().unwrap_or("").into(),
        expires_at: std::time::Instant::now()
            + Duration::from_secs(v["expires_in"].as_u64().unwrap_or(3600).saturating_sub(60)),
    })
}

/// The request as the coder upstream accepts it: unsupported fields, nulls and empty values
/// removed, and every system message merged into one leading cached system message.
pub fn preprocess(mut body: Value) -> Value {
    let Some(obj) = body.as_object_mut() else {
        return body;
    };
    for k in DROPPED {
        obj.remove(*k);
    }
    obj.retain(|k, v| {
        !(v.is_null()
            || (v.as_array().is_some_and(|a| a.is_empty()) && k != "messages")
            || v.as_object().is_some_and(|o| o.is_empty()))
    });
    if let Some(Value::Array(msgs)) = obj.get_mut("messages") {
        let mut system = Vec::new();
        msgs.retain(|m| {
            if m["role"] == "system" {
                match &m["content"] {
                    Value::String(s) => system.push(s.clone()),
                    Value::Array(parts) => system.extend(
                        parts
                            .iter()
                            .filter_map(|p| p["text"].as_str().map(str::to_string)),
                    ),
                    _ => {}
                }
                false
            } else {
                true
            }
        });
        if !system.is_empty() {
            msgs.insert(
                0,
                json!({"role": "system", "content": [
                {"type": "text", "text": "", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": system.join("\n\n")}]}),
            );
        }
    }
    body
}

impl Coder {
    fn client(&self, gw: &Gateway) -> Result<&UpstreamClient, ApiError> {
        let c = self.client.get_or_init(|| {
            let base = BaseUrl::parse(&gw.settings.cli_base_url)?;
            UpstreamClient::new(
                base,
                Timeouts {
                    connect: gw.settings.connect_timeout,
                    first_byte: gw.settings.first_byte_timeout,
                    idle: gw.settings.idle_timeout,
                },
                64,
            )
        });
        c.as_ref().map_err(|e| {
            ApiError::new(
                503,
                "upstream_error",
                "connection_error",
                format!("The coder upstream is unreachable: {e}"),
            )
        })
    }

    /// The account's access token: cached, refreshed with its (rotating) refresh token, or
    /// obtained through the device flow approved with the account's web token.
    async fn token(&self, gw: &Gateway, id: &Identity) -> Result<String, Failure> {
        let cached = self.tokens.lock().expect("cli tokens").get(&id.id).cloned();
        if let Some(t) = &cached {
            if t.expires_at > std::time::Instant::now() {
                return Ok(t.access.clone());
            }
            let form = format!(
                "grant_type=refresh_token&refresh_token={}&client_id={CLIENT_ID}",
                enc(&t.refresh)
            );
            if let Ok(body) = api::post_form(&gw.upstream, "/api/v1/oauth2/token", &form).await {
                if let Ok(t) = parse_token(&body) {
                    let access = t.access.clone();
                    self.tokens.lock().expect("cli tokens").insert(id.id, t);
                    return Ok(access);
                }
            }
        }
        let web = id
            .token()
            .ok_or_else(|| Failure::new(FailureClass::Auth, "the account has no web token"))?;
        let (verifier, challenge) = pkce();
        let form = format!(
            "client_id={CLIENT_ID}&scope={}&code_challenge={challenge}&code_challenge_method=S256",
            enc("openid profile email model.completion")
        );
        let dev: Value = serde_json::from_slice(
            &api::post_form(&gw.upstream, "/api/v1/oauth2/device/code", &form).await?,
        )
        .map_err(|_| Failure::new(FailureClass::Transient, "unreadable device code"))?;
        let (Some(device), Some(user_code)) =
            (dev["device_code"].as_str(), dev["user_code"].as_str())
        else {
            return Err(Failure::new(
                FailureClass::Transient,
                "the device flow gave no codes",
            ));
        };
        let creds = Credentials {
            token: &web,
            cookie: id.cookie(),
        };
        api::post_json(
            &gw.upstream,
            &creds,
            "/api/v2/oauth2/authorize",
            &json!({"approved": true, "user_code": user_code}),
        )
        .await?;
        let form = format!(
            "grant_type={}&client_id={CLIENT_ID}&device_code={}&code_verifier={verifier}",
            enc("urn:ietf:params:oauth:grant-type:device_code"),
            enc(device)
        );
        let mut last = Failure::new(FailureClass::Auth, "the device flow was not approved");
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            match api::post_form(&gw.upstream, "/api/v1/oauth2/token", &form)
                .await
                .and_then(|b| parse_token(&b))
            {
                Ok(t) => {
                    let access = t.access.clone();
                    self.tokens.lock().expect("cli tokens").insert(id.id, t);
                    return Ok(access);
                }
                Err(f) => last = f,
            }
        }
        Err(last)
    }
}

pub async fn models(session: &mut Session, ctx: &mut RequestCtx) -> Result<(), ApiError> {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "qwen"}))
        .collect();
    ctx.status = 200;
    respond::json(
        session,
        200,
        json!({"object": "list", "data": data})
            .to_string()
            .into_bytes(),
        &ctx.request_id,
    )
    .await
    .map_err(|_| ApiError::new(500, "server_error", "write_failed", "write failed"))
}

fn api_error(status: u16, details: &str) -> ApiError {
    let kind = if status == 429 {
        "rate_limit_error"
    } else {
        "api_error"
    };
    ApiError::new(
        status,
        kind,
        "api_error",
        format!("The coder upstream answered {status}: {details}"),
    )
}

pub async fn completions(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), ApiError> {
    let (_, body) = crate::routes::chat::read_json(gw, session, ctx).await?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("The request body is not valid JSON: {e}")))?;
    if v["messages"].as_array().is_none_or(|m| m.is_empty()) {
        return Err(ApiError::invalid_param(
            "messages",
            "'messages' must contain at least one message.",
        ));
    }
    ctx.model = v["model"].as_str().map(str::to_string);
    let stream = v["stream"] == Value::Bool(true);
    let payload = Bytes::from(preprocess(v).to_string());
    let client = gw.coder.client(gw)?;
    session.downstream_session.set_abort_on_close(true);
    let mut tried = Vec::new();
    let mut last = ApiError::new(
        503,
        "upstream_error",
        "no_upstream_identity",
        "No account could use the coder upstream.",
    );
    for _ in 0..=gw.runtime().upstream_retries {
        let Ok(id) = gw.pool.pick(&tried) else { break };
        tried.push(id.id);
        ctx.identity = Some(id.label.clone());
        let access = match gw.coder.token(gw, &id).await {
            Ok(t) => t,
            Err(f) => {
                last = ApiError::new(
                    502,
                    "upstream_error",
                    "cli_unsupported",
                    format!("The account could not get a coder token: {}", f.detail),
                );
                continue;
            }
        };
        let mut req = client.request("POST", "/v1/chat/completions");
        for (k, val) in [
            ("authorization", format!("Bearer {access}")),
            ("content-type", "application/json".into()),
            (
                "accept",
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                }
                .into(),
            ),
            ("user-agent", "QwenCode/0.10.3 (linux; x64)".into()),
            (
                "x-dashscope-useragent",
                "QwenCode/0.10.3 (linux; x64)".into(),
            ),
            ("x-dashscope-authtype", "qwen-oauth".into()),
            ("x-dashscope-cachecontrol", "enable".into()),
        ] {
            let _ = req.insert_header(k, val);
        }
        let mut ex = match client.send(req, payload.clone()).await {
            Ok(ex) => ex,
            Err(f) => {
                last = ApiError::new(
                    503,
                    "upstream_error",
                    "connection_error",
                    format!("The coder upstream failed: {}", f.detail),
                );
                continue;
            }
        };
        if !(200..300).contains(&ex.status) {
            let status = ex.status;
            let text = ex.read_to_end(64 * 1024).await.unwrap_or_default();
            client.abort(ex).await;
            if status == 401 {
                gw.coder.tokens.lock().expect("cli tokens").remove(&id.id);
            }
            last = api_error(status, String::from_utf8_lossy(&text).trim());
            continue;
        }
        // Relay the upstream's answer as it is.
        let mut resp = ResponseHeader::build(ex.status, Some(4)).map_err(|_| last.clone())?;
        let ct = ex
            .header("content-type")
            .unwrap_or("application/json")
            .to_string();
        let _ = resp.insert_header("content-type", ct);
        let _ = resp.insert_header("transfer-encoding", "chunked");
        let _ = resp.insert_header("x-request-id", ctx.request_id.as_str());
        ctx.status = ex.status;
        if session
            .write_response_header(Box::new(resp), false)
            .await
            .is_err()
        {
            client.abort(ex).await;
            return Ok(());
        }
        ctx.mark_first_token();
        loop {
            let chunk = tokio::select! {
                c = ex.read() => c,
                _ = closed(session) => { client.abort(ex).await; return Ok(()); }
            };
            match chunk {
                Ok(Some(b)) => {
                    if session.write_response_body(Some(b), false).await.is_err() {
                        client.abort(ex).await;
                        return Ok(());
                    }
                }
                Ok(None) => {
                    let _ = session.write_response_body(None, true).await;
                    client.release(ex).await;
                    return Ok(());
                }
                Err(_) => {
                    // Mid-stream failure: the chunked body ends without its terminator.
                    client.abort(ex).await;
                    return Ok(());
                }
            }
        }
    }
    Err(last)
}

async fn closed(session: &mut Session) {
    while let Ok(Some(_)) = session.downstream_session.read_body_or_idle(true).await {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocessing() {
        let v = preprocess(
            json!({"model": "m", "n": 1, "seed": 3, "user": "u", "top_p": null, "tools": [],
            "stream_options": {}, "temperature": 0.2,
            "messages": [{"role": "system", "content": "A"}, {"role": "user", "content": "hi"},
                         {"role": "system", "content": [{"type": "text", "text": "B"}]}]}),
        );
        assert_eq!(
            v,
            json!({"model": "m", "temperature": 0.2, "messages": [
            {"role": "system", "content": [{"type": "text", "text": "", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "A\n\nB"}]},
            {"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn pkce_and_form_encoding() {
        let (v, c) = pkce();
        assert_eq!(
            c,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()))
        );
        assert_eq!(enc("a b/c:d"), "a%20b%2Fc%3Ad");
    }
}
