//! `/__sim/*`: test control. No authentication; never exposed by the real upstream.

use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use crate::answer::Script;
use crate::faults::{Endpoint, Faults};
use crate::http::{self, Outcome, Request};
use crate::routes::parse_body;
use crate::{cookie_with, replies, Inner};

async fn reply(s: &mut ServerSession, status: u16, v: Value) -> Outcome {
    Outcome::from_write(http::json(s, status, v.to_string()).await)
}

fn arg_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

pub async fn handle(sim: &Inner, s: &mut ServerSession, req: &Request, what: &str) -> Outcome {
    let is_get = req.method == ::http::Method::GET;
    if what == "state" && is_get {
        return reply(s, 200, sim.state_json()).await;
    }
    if req.method != ::http::Method::POST {
        return reply(s, 405, json!({"detail": "Method Not Allowed"})).await;
    }
    let Some(body) = parse_body(req) else {
        return replies::bad_json(s).await;
    };
    match what {
        "reset" => {
            sim.state.reset();
            reply(s, 200, json!({"ok": true})).await
        }
        "mint" => {
            let email = body
                .get("email")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let ttl = body
                .get("ttl_secs")
                .and_then(Value::as_i64)
                .unwrap_or_else(|| sim.runtime.token_ttl_secs());
            let token = sim.mint_for(email, ttl);
            let known = sim.accounts.by_email(email).is_some();
            reply(
                s,
                200,
                json!({"token": token, "cookie": cookie_with(&token), "known": known}),
            )
            .await
        }
        "inject" => inject(sim, s, &body).await,
        "script" => match serde_json::from_value::<Script>(body) {
            Ok(script) => {
                sim.state.push_script(script);
                reply(s, 200, json!({"ok": true})).await
            }
            Err(e) => reply(s, 400, json!({"detail": e.to_string()})).await,
        },
        "config" => {
            if let Some(v) = body.get("token_ttl_secs").and_then(Value::as_i64) {
                sim.runtime.set_token_ttl_secs(v);
            }
            if let Some(v) = body.get("delta_delay_ms").and_then(Value::as_u64) {
                sim.runtime.set_delta_delay_ms(v);
            }
            if let Some(v) = body.get("answer_deltas") {
                sim.runtime
                    .set_answer_deltas(v.as_u64().map(|n| n as usize));
            }
            if let Some(v) = body.get("task_polls").and_then(Value::as_u64) {
                sim.state.media.set_task_polls(v);
            }
            let mut out = sim.runtime.to_json();
            out["task_polls"] = json!(sim.state.media.task_polls());
            reply(s, 200, out).await
        }
        _ => reply(s, 404, json!({"detail": "unknown control endpoint"})).await,
    }
}

async fn inject(sim: &Inner, s: &mut ServerSession, body: &Value) -> Outcome {
    let email = body.get("email").and_then(Value::as_str).unwrap_or("*");
    let ep_name = body
        .get("endpoint")
        .and_then(Value::as_str)
        .unwrap_or("completions");
    let Some(endpoint) = Endpoint::parse(ep_name) else {
        return reply(
            s,
            400,
            json!({"detail": format!("unknown endpoint {ep_name}")}),
        )
        .await;
    };
    let Some(mode) = body.get("mode").and_then(Value::as_str) else {
        return reply(s, 400, json!({"detail": "mode is required"})).await;
    };
    let arg = arg_string(body.get("arg"));
    let count = body.get("count").and_then(Value::as_u64).unwrap_or(1) as u32;
    // Unknown modes are queued anyway (and ignored when applied), but reported.
    let known = Faults::default().apply(mode, arg.as_deref());
    sim.state.faults.push(email, endpoint, mode, arg, count);
    reply(s, 200, json!({"ok": true, "known": known})).await
}
