//! The admin API, runtime identities and settings, and secrecy of admin answers, end to end
//! against the real binary. Limits, usage and persistence are in `admin_limits.rs`.

mod common;

use common::admin::*;
use common::*;
use serde_json::{json, Value};

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
