//! The upstream endpoints other than completions: sign-in, session, models and chats.

use std::sync::Arc;

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use crate::accounts::{Account, SigninError};
use crate::chats::PAGE_SIZE;
use crate::faults::{Endpoint, Faults};
use crate::http::{self, Outcome, Request};
use crate::jwt::{self, Claims};
use crate::replies;
use crate::state::Counters;
use crate::Inner;

impl Inner {
    /// Verifies the JWT (signature and expiry) and maps it to a configured account.
    pub(crate) fn authenticate(&self, req: &Request) -> Option<(Arc<Account>, Claims)> {
        let claims = jwt::verify(&self.secret, req.token()?, jwt::now_secs()).ok()?;
        let acc = self.accounts.by_id(&claims.id)?.clone();
        Some((acc, claims))
    }

    pub(crate) fn faults_for(&self, email: &str, ep: Endpoint) -> Faults {
        let mut f = Faults::default();
        self.state.faults.take(email, ep, &mut f);
        f
    }
}

/// Parses a JSON body; an empty body counts as `{}` because some clients send none.
pub fn parse_body(req: &Request) -> Option<Value> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Some(json!({}));
    }
    serde_json::from_slice(&req.body).ok()
}

fn user_json(acc: &Account, token: &str, exp: i64) -> Bytes {
    Bytes::from(
        json!({
            "id": acc.id, "email": acc.email, "name": acc.name, "role": "user",
            "profile_image_url": "/user.png", "token": token, "token_type": "Bearer",
            "expires_at": exp, "permissions": {"chat": {"file_upload": true}},
        })
        .to_string(),
    )
}

pub async fn signin(sim: &Inner, s: &mut ServerSession, req: &Request) -> Outcome {
    Counters::bump(&sim.state.counters.signins);
    let Some(body) = parse_body(req) else {
        return replies::bad_json(s).await;
    };
    let email = body.get("email").and_then(Value::as_str).unwrap_or("");
    let password = body.get("password").and_then(Value::as_str).unwrap_or("");
    let faults = sim.faults_for(email, Endpoint::Signin);
    if let Some(o) = replies::before_response(s, &faults).await {
        return o;
    }
    match sim.accounts.check_signin(email, password) {
        Ok(acc) => {
            let exp = jwt::now_secs() + sim.runtime.token_ttl_secs();
            let token = jwt::mint(&sim.secret, &acc.id, exp);
            Outcome::from_write(http::json(s, 200, user_json(acc, &token, exp)).await)
        }
        Err(SigninError::WrongPassword) => Outcome::from_write(
            http::json(
                s,
                400,
                r#"{"detail":"The email or password provided is incorrect."}"#,
            )
            .await,
        ),
        Err(SigninError::NotRegistered) => Outcome::from_write(
            http::json(
                s,
                400,
                r#"{"detail":"This email is not registered. Please sign up first."}"#,
            )
            .await,
        ),
    }
}

/// `GET /api/v1/auths/`: validity probe and cookie-to-token exchange; issues a fresh token.
pub async fn session_user(sim: &Inner, s: &mut ServerSession, req: &Request) -> Outcome {
    Counters::bump(&sim.state.counters.auth_checks);
    let Some((acc, claims)) = sim.authenticate(req) else {
        return replies::unauthorized(s).await;
    };
    let faults = sim.faults_for(&acc.email, Endpoint::Auth);
    if let Some(o) = replies::before_response(s, &faults).await {
        return o;
    }
    // Strictly later than the presented token, so "fresh" holds even within one second.
    let exp = (jwt::now_secs() + sim.runtime.token_ttl_secs()).max(claims.exp + 1);
    let token = jwt::mint(&sim.secret, &acc.id, exp);
    Outcome::from_write(http::json(s, 200, user_json(&acc, &token, exp)).await)
}

pub async fn user_info(sim: &Inner, s: &mut ServerSession, req: &Request) -> Outcome {
    let Some((acc, claims)) = sim.authenticate(req) else {
        return replies::unauthorized(s).await;
    };
    let body = json!({"success": true, "data": {
        "id": acc.id, "email": acc.email, "name": acc.name, "role": "user",
        "expires_at": claims.exp}});
    Outcome::from_write(http::json(s, 200, body.to_string()).await)
}

pub async fn models(sim: &Inner, s: &mut ServerSession, req: &Request, v2: bool) -> Outcome {
    Counters::bump(&sim.state.counters.models_calls);
    let Some((acc, _)) = sim.authenticate(req) else {
        return replies::unauthorized(s).await;
    };
    let faults = sim.faults_for(&acc.email, Endpoint::Models);
    if let Some(o) = replies::before_response(s, &faults).await {
        return o;
    }
    let body = if v2 {
        crate::models::MODELS_V2.clone()
    } else {
        crate::models::MODELS_V1.clone()
    };
    Outcome::from_write(http::respond(s, 200, "application/json", &[], body, faults.gzip).await)
}

pub async fn chats_new(sim: &Inner, s: &mut ServerSession, req: &Request) -> Outcome {
    let Some((acc, _)) = sim.authenticate(req) else {
        return replies::unauthorized(s).await;
    };
    let Some(body) = parse_body(req) else {
        return replies::bad_json(s).await;
    };
    let faults = sim.faults_for(&acc.email, Endpoint::ChatsNew);
    if let Some(o) = replies::before_response(s, &faults).await {
        return o;
    }
    let str_of = |k: &str| body.get(k).and_then(Value::as_str);
    let model = body
        .get("models")
        .and_then(|m| m.get(0))
        .and_then(Value::as_str)
        .or_else(|| str_of("model"))
        .unwrap_or("qwen3-max");
    let id = sim.state.chats.create(
        &acc.email,
        str_of("title").unwrap_or("New Chat"),
        str_of("chat_type").unwrap_or("t2t"),
        model,
        jwt::now_secs(),
    );
    Counters::bump(&sim.state.counters.chats_created);
    let out = json!({"success": true, "request_id": uuid::Uuid::new_v4().to_string(),
                     "data": {"id": id}});
    Outcome::from_write(
        http::respond(
            s,
            200,
            "application/json",
            &[],
            out.to_string().into(),
            faults.gzip,
        )
        .await,
    )
}

pub async fn chats_list(sim: &Inner, s: &mut ServerSession, req: &Request) -> Outcome {
    let Some((acc, _)) = sim.authenticate(req) else {
        return replies::unauthorized(s).await;
    };
    let num = |k| req.query_param(k).and_then(|v| v.parse::<usize>().ok());
    let (skip, take) = match num("limit") {
        Some(limit) => (0, limit),
        None => (
            num("page").unwrap_or(1).max(1).saturating_sub(1) * PAGE_SIZE,
            PAGE_SIZE,
        ),
    };
    let data = sim.state.chats.list(&acc.email, skip, take);
    let out = json!({"success": true, "data": data});
    Outcome::from_write(http::json(s, 200, out.to_string()).await)
}

pub async fn chat_detail(sim: &Inner, s: &mut ServerSession, req: &Request, id: &str) -> Outcome {
    let Some((acc, _)) = sim.authenticate(req) else {
        return replies::unauthorized(s).await;
    };
    match sim.state.chats.detail(id, &acc.email) {
        Some(d) => {
            let out = json!({"success": true, "request_id": uuid::Uuid::new_v4().to_string(),
                             "data": d});
            Outcome::from_write(http::json(s, 200, out.to_string()).await)
        }
        None => Outcome::from_write(
            http::json(s, 404, replies::envelope("Not_Found", "chat not found")).await,
        ),
    }
}

pub async fn chat_delete(sim: &Inner, s: &mut ServerSession, req: &Request, id: &str) -> Outcome {
    let Some((acc, _)) = sim.authenticate(req) else {
        return replies::unauthorized(s).await;
    };
    let faults = sim.faults_for(&acc.email, Endpoint::Delete);
    if let Some(o) = replies::before_response(s, &faults).await {
        return o;
    }
    if sim.state.chats.delete(id, &acc.email) {
        Counters::bump(&sim.state.counters.chats_deleted);
        Outcome::from_write(http::json(s, 200, r#"{"success":true,"data":{"status":true}}"#).await)
    } else {
        Outcome::from_write(
            http::json(s, 404, replies::envelope("Not_Found", "chat not found")).await,
        )
    }
}
