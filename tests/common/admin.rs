//! Helpers shared by the admin API tests.

use std::process::Command;
use std::time::{Duration, Instant};

use super::*;
use serde_json::{json, Value};

pub const B: (&str, &str) = ("bob@example.com", "pw-bob-secret-1");
pub const C: (&str, &str) = ("carol@example.com", "pw-carol-secret-2");

pub async fn admin(gw: &Proc, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    as_key(gw, ADMIN_KEY, method, path, body).await
}

pub async fn as_key(
    gw: &Proc,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method.parse().unwrap(), gw.url(path))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn ask(text: &str) -> Value {
    json!({"model": "qwen3-max", "messages": [{"role": "user", "content": text}]})
}

pub async fn chat_as(gw: &Proc, key: &str, body: Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn add_key(gw: &Proc, body: Value) -> (String, String) {
    let (st, v) = admin(gw, "POST", "/admin/keys", Some(body)).await;
    assert_eq!(st, 201, "{v}");
    (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

pub fn per_account(sim: &Proc) -> Value {
    sim_state(sim)["completions_by_account"].clone()
}

pub fn count(v: &Value, email: &str) -> u64 {
    v[email].as_u64().unwrap_or(0)
}

pub fn identity<'a>(list: &'a Value, label_part: &str) -> &'a Value {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["label"].as_str().unwrap().contains(label_part))
        .unwrap_or_else(|| panic!("no identity like {label_part}: {list}"))
}

pub async fn stream_text_of(r: reqwest::Response) -> (String, String) {
    let text = r.text().await.unwrap();
    let (content, reasoning, _) = stream_text(&sse_events(&text));
    (content, reasoning)
}

pub fn sigterm_and_wait(p: &mut Proc) {
    Command::new("kill")
        .arg("-TERM")
        .arg(p.child.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if p.child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the gateway did not stop after SIGTERM");
}

pub fn run_to_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let port = free_port().to_string();
    let out = Command::new(BIN)
        .env_clear()
        .env("SERVER_PORT", &port)
        .env("LISTEN_ADDRESS", "127.0.0.1")
        .env("METRICS_LISTEN", "off")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Usage is counted when a request's task finishes, just after its last byte reaches the client,
/// so a client that asks at once can be a moment early: wait until nothing is in flight.
pub async fn settled_usage(gw: &Proc) -> Value {
    for _ in 0..100 {
        let (st, u) = admin(gw, "GET", "/admin/usage", None).await;
        assert_eq!(st, 200, "{u}");
        let busy = u["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["in_flight"].as_u64().unwrap_or(0) > 0);
        if !busy {
            return u;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("requests stayed in flight");
}
