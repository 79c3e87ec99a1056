//! The coder (Qwen Code) endpoint: device-flow tokens per account and a byte-for-byte relay.

mod common;

use common::*;
use serde_json::{json, Value};

async fn post(gw: &Proc, body: Value) -> reqwest::Response {
    client()
        .post(gw.url("/cli/v1/chat/completions"))
        .bearer_auth(USER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn coder_endpoint_relays_with_per_account_oauth_tokens() {
    let sim = spawn_sim(&[DEMO], &[]);
    let token = mint(&sim, DEMO.0, 3600);
    let base = format!("http://127.0.0.1:{}", sim.port);
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("QWEN_CLI_BASE_URL", base.as_str()),
        ("QWEN_TOKEN", token.as_str()),
        (
            "API_KEY",
            "sk-test-admin-0123456789,sk-test-user-0123456789",
        ),
    ]);
    let c = client();
    let models: Value = c
        .get(gw.url("/cli/v1/models"))
        .bearer_auth(USER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(models["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "qwen3-coder-plus"));
    assert_eq!(
        c.get(gw.url("/cli/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let v: Value = post(&gw, json!({"model": "qwen3-coder-plus", "seed": 7, "n": 1, "user": "x", "temperature": 0.1,
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]}))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Coder echo: hi");
    let cli = &sim_state(&sim)["cli"];
    let sent = &cli["last_body"];
    assert!(
        sent.get("seed").is_none() && sent.get("n").is_none() && sent.get("user").is_none(),
        "{sent}"
    );
    assert_eq!(
        sent["messages"][0]["content"][0]["cache_control"]["type"],
        "ephemeral"
    );
    assert_eq!(sent["messages"][0]["content"][1]["text"], "Be terse.");

    // Streamed, the upstream's SSE comes through unchanged, [DONE] and usage included.
    let r = post(&gw, json!({"model": "qwen3-coder-plus", "stream": true, "messages": [{"role": "user", "content": "stream me"}]})).await;
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let (content, _, chunks) = stream_text(&sse_events(&text));
    assert_eq!(content, "Coder echo: stream me");
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 17);

    // Native tools pass through.
    let v: Value = post(&gw, json!({"model": "qwen3-coder-plus", "tools": [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}],
        "messages": [{"role": "user", "content": "[[sim:cli_tool]]"}]}))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "read_file"
    );

    // One device flow for all of these: the access token is reused.
    let cli = &sim_state(&sim)["cli"];
    assert_eq!(cli["completions"], 3);
    assert_eq!(cli["live_access_tokens"], 1);

    let r = post(&gw, json!({"model": "m", "messages": []})).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn an_unusable_coder_upstream_is_a_truthful_error() {
    let sim = spawn_sim(&[DEMO], &[]);
    let token = mint(&sim, DEMO.0, 3600);
    let base = format!("http://127.0.0.1:{}", sim.port);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("QWEN_CLI_BASE_URL", dead.as_str()),
        ("QWEN_TOKEN", token.as_str()),
    ]);
    let r = client()
        .post(gw.url("/cli/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "connection_error");
}
