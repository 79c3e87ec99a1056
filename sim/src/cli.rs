//! The Qwen Code ("CLI") path (protocol §10): the OAuth device flow with PKCE on the web host,
//! approved with the account's web token, and an OpenAI-compatible completion endpoint that
//! takes the resulting access token. Refresh tokens rotate on use.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::http::{self, Outcome, Request};
use crate::Inner;

#[derive(Default)]
pub struct CliState {
    inner: Mutex<CliInner>,
}

#[derive(Default)]
struct CliInner {
    /// device_code -> (code_challenge, user_code, approved by account email)
    pending: HashMap<String, (String, String, Option<String>)>,
    /// access token -> email
    access: HashMap<String, String>,
    /// refresh token -> email
    refresh: HashMap<String, String>,
    completions: u64,
    refreshes: u64,
    last_body: Option<Value>,
}

impl CliState {
    pub fn to_json(&self) -> Value {
        let g = self.inner.lock().expect("cli lock");
        json!({"completions": g.completions, "refreshes": g.refreshes, "last_body": g.last_body,
               "live_access_tokens": g.access.len()})
    }
}

fn form(body: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn random(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

async fn reply(s: &mut ServerSession, status: u16, v: Value) -> Outcome {
    Outcome::from_write(http::json(s, status, v.to_string()).await)
}

pub async fn device_code(sim: &Inner, s: &mut ServerSession, req: &Request) -> Outcome {
    let f = form(&req.body);
    let (Some(challenge), Some("S256")) = (
        f.get("code_challenge"),
        f.get("code_challenge_method").map(String::as_str),
    ) else {
        return reply(
            s,
            400,
            json!({"error": "invalid_request", "error_description": "PKCE S256 required"}),
        )
        .await;
    };
    let device = random("dev-");
    let user_code = uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase();
    sim.cli
        .inner
        .lock()
        .expect("cli lock")
        .pending
        .insert(device.clone(), (challenge.clone(), user_code.clone(), None));
    reply(s, 200, json!({"device_code": device, "user_code": user_code,
        "verification_uri": "/authorize", "verification_uri_complete": format!("/authorize?user_code={user_code}"),
        "expires_in": 600, "interval": 1})).await
}

pub async fn authorize(sim: &Inner, s: &mut ServerSession, req: &Request) -> Outcome {
    let Some((acc, _)) = sim.authenticate(req) else {
        return reply(s, 401, json!({"detail": "Your session has expired"})).await;
    };
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let code = body.get("user_code").and_then(Value::as_str).unwrap_or("");
    let approved = {
        let mut g = sim.cli.inner.lock().expect("cli lock");
        match g.pending.values_mut().find(|p| p.1 == code) {
            Some(p) if body.get("approved") == Some(&Value::Bool(true)) => {
                p.2 = Some(acc.email.clone());
                true
            }
            _ => false,
        }
    };
    if approved {
        reply(s, 200, json!({"success": true})).await
    } else {
        reply(
            s,
            400,
            json!({"success": false, "detail": "unknown user_code"}),
        )
        .await
    }
}

fn issue(g: &mut CliInner, email: &str) -> Value {
    let access = random("cli-at-");
    let refresh = random("cli-rt-");
    g.access.insert(access.clone(), email.to_string());
    g.refresh.insert(refresh.clone(), email.to_string());
    json!({"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": 7200})
}

pub async fn token(sim: &Inner, s: &mut ServerSession, req: &Request) -> Outcome {
    let f = form(&req.body);
    let out = {
        let mut g = sim.cli.inner.lock().expect("cli lock");
        match f.get("grant_type").map(String::as_str) {
            Some("urn:ietf:params:oauth:grant-type:device_code") => {
                let device = f.get("device_code").cloned().unwrap_or_default();
                let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                match g.pending.get(&device).cloned() {
                    None => Err((400, "invalid_grant")),
                    Some((_, _, None)) => Err((400, "authorization_pending")),
                    Some((challenge, _, Some(email))) => {
                        let digest = Sha256::digest(verifier.as_bytes());
                        let want = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
                        if want != challenge {
                            Err((400, "invalid_grant"))
                        } else {
                            g.pending.remove(&device);
                            Ok(issue(&mut g, &email))
                        }
                    }
                }
            }
            Some("refresh_token") => {
                let rt = f.get("refresh_token").cloned().unwrap_or_default();
                match g.refresh.remove(&rt) {
                    Some(email) => {
                        g.refreshes += 1;
                        Ok(issue(&mut g, &email))
                    }
                    None => Err((400, "invalid_grant")),
                }
            }
            _ => Err((400, "unsupported_grant_type")),
        }
    };
    match out {
        Ok(v) => reply(s, 200, v).await,
        Err((status, e)) => reply(s, status, json!({"error": e})).await,
    }
}

/// OpenAI-compatible completion: echoes the last user message; with `[[sim:cli_tool]]` in it
/// and tools offered, answers with a native tool call instead.
pub async fn completions(sim: &Inner, s: &mut ServerSession, req: &Request) -> Outcome {
    let bearer = req.token().unwrap_or("");
    let known = sim
        .cli
        .inner
        .lock()
        .expect("cli lock")
        .access
        .contains_key(bearer);
    if !known {
        return reply(s, 401, json!({"error": {"message": "invalid access token or token expired", "type": "invalid_request_error"}})).await;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return reply(s, 400, json!({"error": {"message": "bad json"}})).await;
    };
    {
        let mut g = sim.cli.inner.lock().expect("cli lock");
        g.completions += 1;
        g.last_body = Some(body.clone());
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("coder-model")
        .to_string();
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|x| x["role"] == "user"))
        .and_then(|m| m.get("content").and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    let tool = last
        .contains("[[sim:cli_tool]]")
        .then(|| {
            body.pointer("/tools/0/function/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .flatten();
    let answer = format!("Coder echo: {last}");
    let usage = json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17});
    if body.get("stream") != Some(&Value::Bool(true)) {
        let message = match &tool {
            Some(name) => {
                json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_cli1", "type": "function", "function": {"name": name, "arguments": "{\"path\":\"a.txt\"}"}}]})
            }
            None => json!({"role": "assistant", "content": answer}),
        };
        let finish = if tool.is_some() { "tool_calls" } else { "stop" };
        return reply(s, 200, json!({"id": "chatcmpl-cli", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})).await;
    }
    if !http::start_sse(s, false).await {
        return Outcome::Close;
    }
    let chunk = |delta: Value, finish: Value| {
        Bytes::from(format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-cli", "object": "chat.completion.chunk", "created": 1, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        ))
    };
    let mut frames = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    match &tool {
        Some(name) => {
            frames.push(chunk(json!({"tool_calls": [{"index": 0, "id": "call_cli1", "type": "function", "function": {"name": name, "arguments": ""}}]}), Value::Null));
            frames.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"path\":\"a.txt\"}"}}]}), Value::Null));
            frames.push(chunk(json!({}), json!("tool_calls")));
        }
        None => {
            for w in answer.split_inclusive(' ') {
                frames.push(chunk(json!({"content": w}), Value::Null));
            }
            frames.push(chunk(json!({}), json!("stop")));
        }
    }
    frames.push(Bytes::from(format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"id": "chatcmpl-cli", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": usage})
    )));
    for f in frames {
        if s.write_response_body(f, false).await.is_err() {
            return Outcome::Close;
        }
    }
    Outcome::from_write(s.write_response_body(Bytes::new(), true).await.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let f = form(b"a=1&scope=openid+profile&c=%2Fx%3D");
        assert_eq!(f["a"], "1");
        assert_eq!(f["scope"], "openid profile");
        assert_eq!(f["c"], "/x=");
    }
}
