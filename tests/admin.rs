//! The admin API, per-key limits and usage, runtime identities and settings, and persistence
//! (`DATA_SAVE_MODE=file` across a restart), end to end against the real binary.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

const B: (&str, &str) = ("bob@example.com", "pw-bob-secret-1");
const C: (&str, &str) = ("carol@example.com", "pw-carol-secret-2");

async fn admin(gw: &Proc, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    as_key(gw, ADMIN_KEY, method, path, body).await
}

async fn as_key(
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

fn ask(text: &str) -> Value {
    json!({"model": "qwen3-max", "messages": [{"role": "user", "content": text}]})
}

async fn chat_as(gw: &Proc, key: &str, body: Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn add_key(gw: &Proc, body: Value) -> (String, String) {
    let (st, v) = admin(gw, "POST", "/admin/keys", Some(body)).await;
    assert_eq!(st, 201, "{v}");
    (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

fn per_account(sim: &Proc) -> Value {
    sim_state(sim)["completions_by_account"].clone()
}

fn count(v: &Value, email: &str) -> u64 {
    v[email].as_u64().unwrap_or(0)
}

fn identity<'a>(list: &'a Value, label_part: &str) -> &'a Value {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["label"].as_str().unwrap().contains(label_part))
        .unwrap_or_else(|| panic!("no identity like {label_part}: {list}"))
}

#[tokio::test]
async fn every_admin_route_needs_the_admin_key() {
    let (_sim, gw) = pair(&[]);
    let routes = [
        ("GET", "/admin/keys"),
        ("POST", "/admin/keys"),
        ("PATCH", "/admin/keys/k-1"),
        ("DELETE", "/admin/keys/k-1"),
        ("GET", "/admin/identities"),
        ("POST", "/admin/identities"),
        ("POST", "/admin/identities/refresh"),
        ("DELETE", "/admin/identities/0"),
        ("POST", "/admin/identities/0/disable"),
        ("POST", "/admin/identities/0/enable"),
        ("POST", "/admin/identities/0/refresh"),
        ("GET", "/admin/settings"),
        ("PATCH", "/admin/settings"),
        ("PUT", "/admin/settings"),
        ("GET", "/admin/usage"),
        ("DELETE", "/admin/usage"),
        ("DELETE", "/admin/usage/key-1"),
        ("GET", "/admin/unknown"),
        ("POST", "/refresh-token"),
    ];
    let c = client();
    for (method, path) in routes {
        let r = c
            .request(method.parse().unwrap(), gw.url(path))
            .json(&json!({"think_output": "hidden"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path} without a key");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key", "{method} {path}");
        for (key, status) in [(USER_KEY, 403), ("sk-wrong-key-000000", 401)] {
            let (st, v) = as_key(
                &gw,
                key,
                method,
                path,
                Some(json!({"think_output": "hidden"})),
            )
            .await;
            assert_eq!(st, status, "{method} {path} with {key}: {v}");
            assert!(v["error"]["message"].is_string(), "OpenAI error shape: {v}");
        }
    }
    // Nothing above changed anything.
    let (st, v) = admin(&gw, "GET", "/admin/settings", None).await;
    assert_eq!(st, 200);
    assert_eq!(v["settings"]["think_output"], "reasoning_content");
    // With the key: unknown routes and wrong methods are truthful.
    assert_eq!(admin(&gw, "GET", "/admin/unknown", None).await.0, 404);
    assert_eq!(admin(&gw, "PUT", "/admin/keys", None).await.0, 405);

    // The page and its assets are served without a key, with strict headers.
    for (path, ct) in [
        ("/admin", "text/html"),
        ("/admin/", "text/html"),
        ("/admin/assets/app.js", "text/javascript"),
        ("/admin/assets/app.css", "text/css"),
    ] {
        let r = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(ct),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    // Admin API answers are not cacheable either.
    let r = c
        .get(gw.url("/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");

    // With no key configured at all the admin API is closed, not open.
    let (_sim2, open) = pair(&[("API_KEY", "")]);
    let r = c.get(open.url("/admin/keys")).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn keys_are_added_used_changed_and_removed() {
    let (_sim, gw) = pair(&[]);
    let (id, key) = add_key(&gw, json!({"name": "ci bot", "rpm_limit": 100})).await;
    assert!(key.starts_with("sk-qg-") && key.len() >= 40, "{key}");
    assert_eq!(chat_as(&gw, &key, ask("hi")).await.status(), 200);
    // x-api-key works for added keys too.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", &key)
        .json(&ask("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (st, list) = admin(&gw, "GET", "/admin/keys", None).await;
    assert_eq!(st, 200);
    let text = list.to_string();
    assert!(!text.contains(&key) && !text.contains(USER_KEY) && !text.contains(ADMIN_KEY));
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["admin", "key-1", id.as_str()]);
    let added = &list["data"][2];
    assert_eq!(added["name"], "ci bot");
    assert_eq!(added["origin"], "admin");
    assert_eq!(added["rpm_limit"], 100);
    assert_eq!(
        added["masked"],
        format!("sk-…{}", &key[key.len() - 4..]).as_str()
    );

    // A key of the caller's choosing; duplicates and bad input are refused.
    let (st, v) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "mine", "key": "sk-my-own-key-0000001"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["key"], "sk-my-own-key-0000001");
    let mine = v["id"].as_str().unwrap().to_string();
    for (body, status) in [
        (json!({"name": "dup", "key": "sk-my-own-key-0000001"}), 409),
        (json!({"name": "dup", "key": USER_KEY}), 409),
        (json!({"name": "short", "key": "sk-1"}), 400),
        (json!({"name": "x", "rpm_limit": -1}), 400),
        (json!({"name": "x", "colour": "red"}), 400),
        (json!({"name": ""}), 400),
    ] {
        let (st, v) = admin(&gw, "POST", "/admin/keys", Some(body.clone())).await;
        assert_eq!(st, status, "{body}: {v}");
    }

    // Changing a key's name and limits.
    let (st, v) = admin(
        &gw,
        "PATCH",
        &format!("/admin/keys/{mine}"),
        Some(json!({"name": "renamed", "max_concurrent": 3, "rpm_limit": null})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["name"], "renamed");
    assert_eq!(v["max_concurrent"], 3);
    assert!(v["rpm_limit"].is_null());

    // Removing: the key stops working at once; configured keys stay.
    let (st, _) = admin(&gw, "DELETE", &format!("/admin/keys/{id}"), None).await;
    assert_eq!(st, 200);
    let r = chat_as(&gw, &key, ask("hi")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        admin(&gw, "DELETE", &format!("/admin/keys/{id}"), None)
            .await
            .0,
        404
    );
    assert_eq!(admin(&gw, "DELETE", "/admin/keys/key-1", None).await.0, 409);
    assert_eq!(admin(&gw, "DELETE", "/admin/keys/admin", None).await.0, 409);
    assert_eq!(chat(&gw, ask("still here")).await.status(), 200);
}

#[tokio::test]
async fn identities_added_at_runtime_serve_and_disabled_ones_do_not() {
    let sim = spawn_sim(&[DEMO, B, C], &[]);
    let token = mint(&sim, DEMO.0, 3600);
    let base = format!("http://127.0.0.1:{}", sim.port);
    let keys = format!("{ADMIN_KEY},{USER_KEY}");
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("QWEN_TOKEN", token.as_str()),
        ("API_KEY", keys.as_str()),
    ]);

    // Wrong credentials are refused and nothing is added.
    let (st, v) = admin(
        &gw,
        "POST",
        "/admin/identities",
        Some(json!({"email": B.0, "password": "wrong"})),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["code"], "identity_rejected");
    for body in [json!({}), json!({"email": "x"}), json!({"cookie": ""})] {
        assert_eq!(
            admin(&gw, "POST", "/admin/identities", Some(body)).await.0,
            400
        );
    }

    // An account added at runtime takes requests at once.
    let (st, v) = admin(
        &gw,
        "POST",
        "/admin/identities",
        Some(json!({"email": B.0, "password": B.1})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["token_ok"], true);
    assert_eq!(v["origin"], "admin");
    assert_eq!(v["kind"], "account");
    let b_id = v["id"].as_u64().unwrap();
    for i in 0..6 {
        assert_eq!(chat(&gw, ask(&format!("q{i}"))).await.status(), 200);
    }
    let per = per_account(&sim);
    assert_eq!(count(&per, DEMO.0), 3, "{per}");
    assert_eq!(count(&per, B.0), 3, "{per}");
    // The same account twice is a conflict.
    let (st, _) = admin(
        &gw,
        "POST",
        "/admin/identities",
        Some(json!({"email": B.0, "password": B.1})),
    )
    .await;
    assert_eq!(st, 409);

    // A cookie identity too.
    let cookie = http(
        sim.port,
        "POST",
        "/__sim/mint",
        Some(&json!({"email": C.0, "ttl_secs": 3600})),
    )
    .1["cookie"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v) = admin(
        &gw,
        "POST",
        "/admin/identities",
        Some(json!({ "cookie": cookie })),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let c_id = v["id"].as_u64().unwrap();

    // Disabled: never picked; the others share the load.
    let (st, v) = admin(&gw, "POST", "/admin/identities/0/disable", None).await;
    assert_eq!(st, 200);
    assert_eq!(v["state"], "disabled");
    let before = per_account(&sim);
    for i in 0..6 {
        assert_eq!(chat(&gw, ask(&format!("d{i}"))).await.status(), 200);
    }
    let after = per_account(&sim);
    assert_eq!(count(&after, DEMO.0), count(&before, DEMO.0), "{after}");
    assert_eq!(count(&after, B.0) - count(&before, B.0), 3, "{after}");
    assert_eq!(count(&after, C.0) - count(&before, C.0), 3, "{after}");
    let (_, list) = admin(&gw, "GET", "/admin/identities", None).await;
    assert_eq!(list["summary"]["disabled"], 1);
    assert_eq!(identity(&list, "token-1")["disabled"], true);

    // Removed: gone from the list and from selection.
    let (st, _) = admin(&gw, "DELETE", &format!("/admin/identities/{b_id}"), None).await;
    assert_eq!(st, 200);
    let before = per_account(&sim);
    for i in 0..3 {
        assert_eq!(chat(&gw, ask(&format!("r{i}"))).await.status(), 200);
    }
    let after = per_account(&sim);
    assert_eq!(count(&after, B.0), count(&before, B.0));
    assert_eq!(count(&after, C.0) - count(&before, C.0), 3);
    assert_eq!(
        admin(&gw, "DELETE", &format!("/admin/identities/{b_id}"), None)
            .await
            .0,
        404
    );

    // Enable again; a refresh on demand reports the token.
    assert_eq!(
        admin(&gw, "POST", "/admin/identities/0/enable", None)
            .await
            .0,
        200
    );
    let (st, v) = admin(
        &gw,
        "POST",
        &format!("/admin/identities/{c_id}/refresh"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["token_ok"], true, "{v}");
    let before = per_account(&sim);
    for i in 0..4 {
        assert_eq!(chat(&gw, ask(&format!("e{i}"))).await.status(), 200);
    }
    let after = per_account(&sim);
    assert_eq!(count(&after, DEMO.0) - count(&before, DEMO.0), 2, "{after}");

    // With every identity disabled, requests get the pool's truthful 503.
    assert_eq!(
        admin(&gw, "POST", "/admin/identities/0/disable", None)
            .await
            .0,
        200
    );
    let path = format!("/admin/identities/{c_id}/disable");
    assert_eq!(admin(&gw, "POST", &path, None).await.0, 200);
    let r = chat(&gw, ask("nobody")).await;
    assert_eq!(r.status(), 503);
}

async fn stream_text_of(r: reqwest::Response) -> (String, String) {
    let text = r.text().await.unwrap();
    let (content, reasoning, _) = stream_text(&sse_events(&text));
    (content, reasoning)
}

#[tokio::test]
async fn settings_changes_apply_to_the_next_request() {
    let (_sim, gw) = pair(&[]);
    let thinking =
        json!({"model": "qwen3-max-thinking", "messages": [{"role": "user", "content": "Think"}]});
    let v: Value = chat(&gw, thinking.clone()).await.json().await.unwrap();
    let reasoning = v["choices"][0]["message"]["reasoning_content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!reasoning.is_empty());

    let (st, v) = admin(
        &gw,
        "PATCH",
        "/admin/settings",
        Some(json!({"think_output": "think_tags"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["settings"]["think_output"], "think_tags");
    assert_eq!(v["configured"]["think_output"], "reasoning_content");
    assert_eq!(v["overrides"]["think_output"], "think_tags");
    let v: Value = chat(&gw, thinking.clone()).await.json().await.unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.starts_with(&format!("<think>\n{reasoning}\n</think>")),
        "{content}"
    );

    // The stream changes too: hidden thinking sends no reasoning at all.
    admin(
        &gw,
        "PATCH",
        "/admin/settings",
        Some(json!({"think_output": "hidden"})),
    )
    .await;
    let mut s = thinking.clone();
    s["stream"] = json!(true);
    let (content, reasoning) = stream_text_of(chat(&gw, s.clone()).await).await;
    assert!(reasoning.is_empty() && !content.contains("<think>") && !content.is_empty());
    // null returns to the configured value.
    let (_, v) = admin(
        &gw,
        "PATCH",
        "/admin/settings",
        Some(json!({"think_output": null})),
    )
    .await;
    assert!(v["overrides"].as_object().unwrap().is_empty());
    let (_, reasoning) = stream_text_of(chat(&gw, s).await).await;
    assert!(!reasoning.is_empty());

    // The model map is read per request too.
    let models = |gw: &Proc| {
        let url = gw.url("/v1/models");
        async move {
            let v: Value = client()
                .get(url)
                .bearer_auth(USER_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["id"].as_str().unwrap().ends_with("-thinking"))
        }
    };
    assert!(models(&gw).await);
    admin(
        &gw,
        "PUT",
        "/admin/settings",
        Some(json!({"settings": {"simple_model_map": true}})),
    )
    .await;
    assert!(!models(&gw).await);

    // Invalid values change nothing and name the setting.
    for body in [
        json!({"think_output": "loud", "upstream_retries": 1}),
        json!({"upstream_retries": 1000}),
        json!({"bogus": true}),
    ] {
        let (st, v) = admin(&gw, "PATCH", "/admin/settings", Some(body.clone())).await;
        assert_eq!(st, 400, "{body}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            body.as_object()
                .unwrap()
                .keys()
                .any(|k| msg.contains(k.as_str())),
            "{msg}"
        );
    }
    let (_, v) = admin(&gw, "GET", "/admin/settings", None).await;
    assert_eq!(v["settings"]["upstream_retries"], 2);
    assert_eq!(v["settings"]["simple_model_map"], true);
}

#[tokio::test]
async fn per_key_rpm_limit_answers_429_with_retry_after() {
    let (_sim, gw) = pair(&[("KEY_RPM_LIMIT", "1")]);
    let (_, key) = add_key(&gw, json!({"name": "limited", "rpm_limit": 2})).await;
    for i in 0..2 {
        assert_eq!(chat_as(&gw, &key, ask(&format!("{i}"))).await.status(), 200);
    }
    let r = chat_as(&gw, &key, ask("one too many")).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "requests");
    // The Anthropic route answers in its own shape.
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &key)
        .json(&json!({"model": "qwen3-max", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");

    // The default (KEY_RPM_LIMIT=1) applies to a configured user key; the admin key is free.
    assert_eq!(chat(&gw, ask("a")).await.status(), 200);
    assert_eq!(chat(&gw, ask("b")).await.status(), 429);
    for i in 0..3 {
        assert_eq!(
            chat_as(&gw, ADMIN_KEY, ask(&format!("{i}"))).await.status(),
            200
        );
    }
    // Raising the default at runtime applies at once.
    admin(
        &gw,
        "PATCH",
        "/admin/settings",
        Some(json!({"key_rpm_limit": 0})),
    )
    .await;
    assert_eq!(chat(&gw, ask("c")).await.status(), 200);
    let (_, usage) = admin(&gw, "GET", "/admin/usage", None).await;
    let row = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key_id"] == "key-1")
        .unwrap();
    assert_eq!(row["rate_limited"], 1, "{row}");
}

#[tokio::test]
async fn concurrency_limit_refuses_while_a_slow_stream_is_open() {
    let (_sim, gw) = pair(&[("KEY_MAX_CONCURRENT", "1")]);
    let (_, key) = add_key(&gw, json!({"name": "one at a time", "max_concurrent": 1})).await;
    let slow = json!({"model": "qwen3-max", "stream": true,
        "messages": [{"role": "user", "content": "slow [[sim:delay=150]] [[sim:deltas=12]]"}]});
    let r = chat_as(&gw, &key, slow.clone()).await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    // While it streams, a second request from the same key is refused...
    let r2 = chat_as(&gw, &key, ask("meanwhile")).await;
    assert_eq!(r2.status(), 429);
    assert_eq!(r2.headers()["retry-after"], "1");
    let v: Value = r2.json().await.unwrap();
    assert_eq!(v["error"]["code"], "concurrency_limit_exceeded");
    let (_, keys) = admin(&gw, "GET", "/admin/keys", None).await;
    let row = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "one at a time")
        .unwrap()
        .clone();
    assert_eq!(row["in_flight"], 1);
    // ...other keys are not affected...
    assert_eq!(chat(&gw, ask("other key")).await.status(), 200);
    // ...and once the stream ends the slot is free again.
    while let Some(chunk) = body.next().await {
        chunk.unwrap();
    }
    let mut ok = false;
    for _ in 0..20 {
        if chat_as(&gw, &key, ask("after")).await.status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the slot was never released");
    // The default from KEY_MAX_CONCURRENT applies to configured user keys.
    let r = chat(&gw, slow).await;
    let mut body = r.bytes_stream();
    body.next().await.unwrap().unwrap();
    assert_eq!(chat(&gw, ask("second")).await.status(), 429);
    drop(body);
}

#[tokio::test]
async fn usage_counts_requests_tokens_and_errors() {
    let (_sim, gw) = pair(&[]);
    let (id, key) = add_key(&gw, json!({"name": "metered"})).await;
    let v: Value = chat_as(&gw, &key, ask("count me"))
        .await
        .json()
        .await
        .unwrap();
    let (p1, c1) = (
        v["usage"]["prompt_tokens"].as_u64().unwrap(),
        v["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    let mut s = ask("stream me");
    s["stream"] = json!(true);
    s["stream_options"] = json!({"include_usage": true});
    let text = chat_as(&gw, &key, s).await.text().await.unwrap();
    let last: Value = sse_events(&text)
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .next_back()
        .unwrap();
    let (p2, c2) = (
        last["usage"]["prompt_tokens"].as_u64().unwrap(),
        last["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    let mut bad = ask("x");
    bad["model"] = json!("no-such-model");
    assert_eq!(chat_as(&gw, &key, bad).await.status(), 404);

    let (st, u) = admin(&gw, "GET", "/admin/usage", None).await;
    assert_eq!(st, 200);
    let row = u["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key_id"] == id.as_str())
        .unwrap();
    assert_eq!(row["name"], "metered");
    assert_eq!(row["requests"], 3, "{row}");
    assert_eq!(row["prompt_tokens"], p1 + p2, "{row}");
    assert_eq!(row["completion_tokens"], c1 + c2, "{row}");
    assert_eq!(row["errors"], 1);
    assert!(row["last_used_at"].as_i64().unwrap() > 0);
    assert_eq!(u["totals"]["requests"], 3);
    // Admin API calls are not usage.
    let admin_row = u["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key_id"] == "admin")
        .unwrap();
    assert_eq!(admin_row["requests"], 0);

    let (st, _) = admin(&gw, "DELETE", &format!("/admin/usage/{id}"), None).await;
    assert_eq!(st, 200);
    let (_, u) = admin(&gw, "GET", "/admin/usage", None).await;
    assert_eq!(u["totals"]["requests"], 0);
}

fn sigterm_and_wait(p: &mut Proc) {
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

#[tokio::test]
async fn file_persistence_survives_a_restart() {
    let sim = spawn_sim(&[DEMO, B], &[]);
    let token = mint(&sim, DEMO.0, 3600);
    let base = format!("http://127.0.0.1:{}", sim.port);
    let dir = std::env::temp_dir().join(format!("qg-admin-data-{}", sim.port));
    let _ = std::fs::remove_dir_all(&dir);
    let file = dir.join("state").join("data.json");
    let file_s = file.to_string_lossy().to_string();
    let keys = format!("{ADMIN_KEY},{USER_KEY}");
    let env = [
        ("QWEN_BASE_URL", base.as_str()),
        ("QWEN_TOKEN", token.as_str()),
        ("API_KEY", keys.as_str()),
        ("DATA_SAVE_MODE", "file"),
        ("DATA_FILE", file_s.as_str()),
        ("GRACE_PERIOD_SECS", "0"),
        ("GRACEFUL_SHUTDOWN_TIMEOUT_SECS", "1"),
    ];
    let mut gw = spawn_gateway(&env);
    let (kid, key) = add_key(&gw, json!({"name": "kept", "rpm_limit": 7})).await;
    let (st, v) = admin(
        &gw,
        "POST",
        "/admin/identities",
        Some(json!({"email": B.0, "password": B.1})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        admin(&gw, "POST", "/admin/identities/0/disable", None)
            .await
            .0,
        200
    );
    admin(
        &gw,
        "PATCH",
        "/admin/settings",
        Some(json!({"think_output": "think_tags", "upstream_retries": 1})),
    )
    .await;
    assert_eq!(
        chat_as(&gw, &key, ask("before restart")).await.status(),
        200
    );
    sigterm_and_wait(&mut gw);

    // The file: private, replaced atomically, without the key itself.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(!dir.join("state").join("data.json.tmp").exists());
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(!saved.contains(&key), "the data file holds only a digest");

    let gw = spawn_gateway(&env);
    assert_eq!(chat_as(&gw, &key, ask("after restart")).await.status(), 200);
    let (_, list) = admin(&gw, "GET", "/admin/keys", None).await;
    let kept = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == kid.as_str())
        .unwrap();
    assert_eq!(kept["name"], "kept");
    assert_eq!(kept["rpm_limit"], 7);
    let (_, ids) = admin(&gw, "GET", "/admin/identities", None).await;
    assert_eq!(ids["data"].as_array().unwrap().len(), 2, "{ids}");
    assert_eq!(identity(&ids, "token-1")["disabled"], true);
    let b = identity(&ids, "b***@example.com");
    assert_eq!(b["origin"], "admin");
    let (_, s) = admin(&gw, "GET", "/admin/settings", None).await;
    assert_eq!(s["settings"]["think_output"], "think_tags");
    assert_eq!(s["settings"]["upstream_retries"], 1);
    assert_eq!(s["data_save_mode"], "file");
    let (_, u) = admin(&gw, "GET", "/admin/usage", None).await;
    let row = u["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key_id"] == kid.as_str())
        .unwrap();
    assert_eq!(row["requests"], 2, "usage was saved at shutdown: {row}");
    // The restored identity serves (the configured one is still disabled).
    let before = count(&per_account(&sim), B.0);
    for i in 0..2 {
        assert_eq!(chat(&gw, ask(&format!("{i}"))).await.status(), 200);
    }
    assert_eq!(count(&per_account(&sim), B.0) - before, 2);

    // Removing a configured identity survives a restart too.
    let mut gw = gw;
    assert_eq!(
        admin(&gw, "DELETE", "/admin/identities/0", None).await.0,
        200
    );
    sigterm_and_wait(&mut gw);
    let gw = spawn_gateway(&env);
    let (_, ids) = admin(&gw, "GET", "/admin/identities", None).await;
    assert_eq!(ids["data"].as_array().unwrap().len(), 1, "{ids}");
    drop(gw);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn run_to_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
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

#[test]
fn invalid_data_settings_stop_the_gateway_with_exit_2() {
    for mode in ["redis", "disk"] {
        let (code, err) = run_to_exit(&[("DATA_SAVE_MODE", mode)]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("DATA_SAVE_MODE"), "{err}");
    }
    // A data file that cannot be written is found at start.
    let (code, err) = run_to_exit(&[
        ("DATA_SAVE_MODE", "file"),
        ("DATA_FILE", "/proc/qwen-gateway-cannot-write/data.json"),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("DATA_FILE"), "{err}");
    let (code, err) = run_to_exit(&[("KEY_RPM_LIMIT", "lots")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("KEY_RPM_LIMIT"), "{err}");

    let dir = std::env::temp_dir().join(format!("qg-admin-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("data.json");
    let file_s = file.to_string_lossy().to_string();
    for bad in [
        "{ not json",
        r#"{"version": 1, "settings": {"think_output": "loud"}}"#,
    ] {
        std::fs::write(&file, bad).unwrap();
        let (code, err) = run_to_exit(&[("DATA_SAVE_MODE", "file"), ("DATA_FILE", &file_s)]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("DATA_FILE"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn admin_responses_never_contain_a_secret() {
    let sim = spawn_sim(&[DEMO, B, C], &[]);
    let token = mint(&sim, DEMO.0, 3600);
    let minted = http(
        sim.port,
        "POST",
        "/__sim/mint",
        Some(&json!({"email": C.0, "ttl_secs": 3600})),
    )
    .1;
    let cookie = minted["cookie"].as_str().unwrap().to_string();
    let cookie_token = minted["token"].as_str().unwrap().to_string();
    let base = format!("http://127.0.0.1:{}", sim.port);
    let keys = format!("{ADMIN_KEY},{USER_KEY}");
    let accounts = format!("{}:{}", B.0, B.1);
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("QWEN_TOKEN", token.as_str()),
        ("ACCOUNTS", accounts.as_str()),
        ("API_KEY", keys.as_str()),
    ]);
    let mut texts: Vec<(String, String)> = Vec::new();
    let (st, v) = admin(
        &gw,
        "POST",
        "/admin/identities",
        Some(json!({ "cookie": cookie })),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    texts.push(("add cookie identity".into(), v.to_string()));
    let (st, v) = admin(
        &gw,
        "POST",
        "/admin/identities",
        Some(json!({"email": DEMO.0, "password": "not-the-password-xyz"})),
    )
    .await;
    assert_eq!(st, 422);
    texts.push(("rejected identity".into(), v.to_string()));
    let (_, key) = add_key(&gw, json!({"name": "scan"})).await;
    assert_eq!(chat_as(&gw, &key, ask("hello")).await.status(), 200);
    for (method, path) in [
        ("GET", "/admin/keys"),
        ("GET", "/admin/identities"),
        ("POST", "/admin/identities/refresh"),
        ("POST", "/admin/identities/0/refresh"),
        ("POST", "/admin/identities/1/disable"),
        ("POST", "/admin/identities/1/enable"),
        ("GET", "/admin/settings"),
        ("GET", "/admin/usage"),
        ("POST", "/refresh-token"),
        ("GET", "/health"),
    ] {
        let (st, v) = admin(&gw, method, path, None).await;
        assert_eq!(st, 200, "{method} {path}: {v}");
        texts.push((format!("{method} {path}"), v.to_string()));
    }
    for (who, key_) in [
        ("none", ""),
        ("user", USER_KEY),
        ("wrong", "sk-guess-000000000000"),
    ] {
        let (_, v) = as_key(&gw, key_, "GET", "/admin/keys", None).await;
        texts.push((format!("refused {who}"), v.to_string()));
    }
    texts.push(("log".into(), gw.log_text()));

    let sig = |t: &str| t.rsplit('.').next().unwrap().to_string();
    let secrets = [
        ADMIN_KEY.to_string(),
        USER_KEY.to_string(),
        key.clone(),
        token.clone(),
        sig(&token),
        cookie_token.clone(),
        sig(&cookie_token),
        cookie.clone(),
        B.1.to_string(),
        "not-the-password-xyz".to_string(),
        B.0.to_string(),
    ];
    for (name, text) in &texts {
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{name} contains a secret ({}…)",
                &s[..s.len().min(6)]
            );
        }
    }
}
