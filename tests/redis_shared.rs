//! Several gateway instances sharing state through a real Redis (`REDIS_URL`): rests and
//! breakers, per-key limits, in-flight leases of a killed instance, usage, keys, the data
//! document (`DATA_SAVE_MODE=redis`) and the upload cache. Each test starts its own
//! `redis-server` (which must be installed), one simulated upstream and two gateways.

mod common;

use std::time::{Duration, Instant};

use common::admin::{add_key, admin, ask, chat_as, sigterm_and_wait};
use common::redis::{gateway_on, kill_hard, Redis};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

const A: (&str, &str) = ("alice@example.com", "pw-alice");
const B: (&str, &str) = ("bob@example.com", "pw-bob");
const KEYS: &str = "sk-test-admin-0123456789,sk-test-user-0123456789";

/// Two gateways on one Redis in front of one sim with accounts A and B.
async fn two(redis: &Redis, sim: &Proc, extra: &[(&str, &str)]) -> (Proc, Proc) {
    let base = format!("http://127.0.0.1:{}", sim.port);
    let accts = format!("{}:{},{}:{}", A.0, A.1, B.0, B.1);
    let mut env = vec![
        ("QWEN_BASE_URL", base.as_str()),
        ("ACCOUNTS", accts.as_str()),
        ("API_KEY", KEYS),
    ];
    env.extend_from_slice(extra);
    let (ga, gb) = (gateway_on(redis, &env), gateway_on(redis, &env));
    wait_tokens(&ga, 2).await;
    wait_tokens(&gb, 2).await;
    (ga, gb)
}

async fn get(gw: &Proc, path: &str) -> Value {
    admin(gw, "GET", path, None).await.1
}

async fn wait_tokens(gw: &Proc, n: u64) {
    for _ in 0..200 {
        let h = get(gw, "/health").await;
        if h["identity_pool"]["with_valid_token"].as_u64().unwrap_or(0) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("identities never got tokens");
}

/// Polls `f` until it holds (up to `secs`), panicking with `what` otherwise.
async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("never happened: {what}");
}

async fn identity_state(gw: &Proc, email_prefix: &str) -> Value {
    let h = get(gw, "/health").await;
    h["identity_pool"]["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"].as_str().unwrap().contains(email_prefix))
        .cloned()
        .unwrap()
}

fn completions(sim: &Proc, email: &str) -> u64 {
    sim_state(sim)["completions_by_account"][email]
        .as_u64()
        .unwrap_or(0)
}

/// Sends requests through `gw` until `email`'s identity rests there.
async fn rest_through(gw: &Proc, email_prefix: &str) {
    for i in 0..8 {
        // With the other identity resting already, the 429 itself is the answer.
        let st = chat_as(gw, USER_KEY, ask(&format!("r{i}"))).await.status();
        assert!(st == 200 || st == 429, "{st}");
        if identity_state(gw, email_prefix).await["state"] == "down" {
            return;
        }
    }
    panic!("{email_prefix} never rested on the first instance");
}

#[tokio::test]
async fn a_cooldown_set_through_one_instance_is_honoured_by_the_other() {
    let redis = Redis::start();
    let sim = spawn_sim(&[A, B], &[]);
    let (ga, gb) = two(&redis, &sim, &[]).await;
    // One 429 (with the sim's Retry-After) for A, through the first instance.
    inject(&sim, A.0, "completions", "http429", 1);
    rest_through(&ga, "a***").await;
    eventually(3, "B sees A resting", || async {
        identity_state(&gb, "a***").await["state"] == "down"
    })
    .await;
    let a = identity_state(&gb, "a***").await;
    assert!(a["available_in_secs"].as_u64().unwrap() > 30, "{a}");
    // The second instance sends nothing to A (whose next answer would be fine).
    let before = completions(&sim, A.0);
    for i in 0..6 {
        assert_eq!(
            chat_as(&gb, USER_KEY, ask(&format!("b{i}"))).await.status(),
            200
        );
    }
    assert_eq!(completions(&sim, A.0), before, "B used a resting identity");

    // B rests too (through the first instance): the other answers per the all-down rule,
    // at once, without an upstream attempt.
    inject(&sim, B.0, "completions", "http429", 1);
    rest_through(&ga, "b***").await;
    eventually(3, "B sees B resting", || async {
        identity_state(&gb, "b***").await["state"] == "down"
    })
    .await;
    let attempts = sim_state(&sim)["completions"].as_u64().unwrap();
    let r = chat_as(&gb, USER_KEY, ask("all down")).await;
    assert_eq!(r.status(), 503);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 30, "{wait}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "all_identities_down");
    assert_eq!(sim_state(&sim)["completions"].as_u64().unwrap(), attempts);
}

#[tokio::test]
async fn an_open_breaker_is_shared() {
    let redis = Redis::start();
    let sim = spawn_sim(&[A, B], &[]);
    let (ga, gb) = two(
        &redis,
        &sim,
        &[
            ("BREAKER_DEGRADED_AFTER", "1"),
            ("BREAKER_OPEN_AFTER", "1"),
            ("BREAKER_COOLDOWN_MS", "60000"),
        ],
    )
    .await;
    inject(&sim, A.0, "completions", "http500", 1);
    rest_through(&ga, "a***").await;
    eventually(3, "B sees A's breaker open", || async {
        identity_state(&gb, "a***").await["state"] == "down"
    })
    .await;
    let before = completions(&sim, A.0);
    for i in 0..4 {
        assert_eq!(
            chat_as(&gb, USER_KEY, ask(&format!("b{i}"))).await.status(),
            200
        );
    }
    assert_eq!(completions(&sim, A.0), before);
}

async fn usage_row(gw: &Proc, id: &str) -> Value {
    let u = get(gw, "/admin/usage").await;
    u["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{u}"))
        .iter()
        .find(|r| r["key_id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn keys_rpm_limits_and_usage_hold_across_instances() {
    let redis = Redis::start();
    let sim = spawn_sim(&[A, B], &[]);
    let (ga, gb) = two(&redis, &sim, &[]).await;
    // Added through one instance, usable at once through the other.
    let (id, key) = add_key(&ga, json!({"name": "shared", "rpm_limit": 3})).await;
    assert_eq!(chat_as(&gb, &key, ask("first on B")).await.status(), 200);
    for i in 0..2 {
        assert_eq!(
            chat_as(&ga, &key, ask(&format!("a{i}"))).await.status(),
            200
        );
    }
    let r = chat_as(&gb, &key, ask("fourth")).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(chat_as(&ga, &key, ask("fifth")).await.status(), 429);

    // Either instance shows the sum of both.
    for gw in [&ga, &gb] {
        eventually(3, "usage sums both instances", || async {
            let row = usage_row(gw, &id).await;
            row["requests"] == 5 && row["rate_limited"] == 2 && row["errors"] == 2
        })
        .await;
    }
    let row = usage_row(&gb, &id).await;
    assert!(row["prompt_tokens"].as_u64().unwrap() > 0, "{row}");
    assert_eq!(row["name"], "shared");

    // A limit changed on B applies on A; a key removed on B is refused on A.
    let (st, _) = admin(
        &gb,
        "PATCH",
        &format!("/admin/keys/{id}"),
        Some(json!({"rpm_limit": 0})),
    )
    .await;
    assert_eq!(st, 200);
    eventually(3, "A takes the new limit", || async {
        chat_as(&ga, &key, ask("unlimited now")).await.status() == 200
    })
    .await;
    assert_eq!(
        admin(&gb, "DELETE", &format!("/admin/keys/{id}"), None)
            .await
            .0,
        200
    );
    eventually(3, "A refuses the removed key", || async {
        chat_as(&ga, &key, ask("gone")).await.status() == 401
    })
    .await;
    // Reset on one instance is a reset for all.
    assert_eq!(admin(&ga, "DELETE", "/admin/usage", None).await.0, 200);
    assert_eq!(get(&gb, "/admin/usage").await["totals"]["requests"], 0);
}

#[tokio::test]
async fn concurrency_and_caps_hold_across_instances_and_a_killed_instance_lets_go() {
    let redis = Redis::start();
    let sim = spawn_sim(&[A], &[]);
    let base = format!("http://127.0.0.1:{}", sim.port);
    let accts = format!("{}:{}", A.0, A.1);
    let env = [
        ("QWEN_BASE_URL", base.as_str()),
        ("ACCOUNTS", accts.as_str()),
        ("API_KEY", KEYS),
        ("MAX_IN_FLIGHT_PER_IDENTITY", "1"),
        ("REDIS_LEASE_TTL_MS", "1500"),
    ];
    let mut ga = gateway_on(&redis, &env);
    let gb = gateway_on(&redis, &env);
    wait_tokens(&ga, 1).await;
    wait_tokens(&gb, 1).await;
    let (_, key) = add_key(&ga, json!({"name": "one at a time", "max_concurrent": 1})).await;

    // A slow stream through A holds the key's slot and the account's only slot.
    let slow = json!({"model": "qwen3-max", "stream": true,
        "messages": [{"role": "user", "content": "slow [[sim:delay=150]] [[sim:deltas=60]]"}]});
    let r = chat_as(&ga, &key, slow).await;
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    assert!(!body.next().await.unwrap().unwrap().is_empty());
    // Longer than a lease's life: renewals keep it.
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let r = chat_as(&gb, &key, ask("same key on B")).await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "concurrency_limit_exceeded");
    let keys = get(&gb, "/admin/keys").await;
    let row = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "one at a time")
        .cloned()
        .unwrap();
    assert_eq!(row["in_flight"], 1, "{row}");
    // The admin key has no key limits, but the account is at its cap on A.
    let r = chat_as(&gb, ADMIN_KEY, ask("account busy")).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "all_identities_busy");

    // SIGKILL: no release is ever sent; the leases expire with their TTL.
    kill_hard(&mut ga);
    drop(body);
    let killed = Instant::now();
    eventually(6, "B gets the key's slot back", || async {
        chat_as(&gb, &key, ask("after the kill")).await.status() == 200
    })
    .await;
    let waited = killed.elapsed();
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // (The previous request's own lease is released a round trip after its answer.)
    eventually(2, "the account is free again", || async {
        chat_as(&gb, ADMIN_KEY, ask("account free")).await.status() == 200
    })
    .await;
}

#[tokio::test]
async fn data_save_mode_redis_is_shared_and_survives_a_restart() {
    let redis = Redis::start();
    let sim = spawn_sim(&[A, B], &[]);
    let token = mint(&sim, A.0, 3600);
    let base = format!("http://127.0.0.1:{}", sim.port);
    let env = [
        ("QWEN_BASE_URL", base.as_str()),
        ("QWEN_TOKEN", token.as_str()),
        ("API_KEY", KEYS),
        ("DATA_SAVE_MODE", "redis"),
        ("GRACE_PERIOD_SECS", "0"),
        ("GRACEFUL_SHUTDOWN_TIMEOUT_SECS", "1"),
    ];
    let mut ga = gateway_on(&redis, &env);
    let mut gb = gateway_on(&redis, &env);
    let (kid, key) = add_key(&ga, json!({"name": "kept", "rpm_limit": 7})).await;
    let (st, v) = admin(
        &ga,
        "POST",
        "/admin/identities",
        Some(json!({"email": B.0, "password": B.1})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        admin(&ga, "POST", "/admin/identities/0/disable", None)
            .await
            .0,
        200
    );
    let (st, _) = admin(
        &ga,
        "PATCH",
        "/admin/settings",
        Some(json!({"think_output": "think_tags"})),
    )
    .await;
    assert_eq!(st, 200);

    // The other instance follows: settings, the disabled account, the added one.
    eventually(3, "B takes the settings", || async {
        get(&gb, "/admin/settings").await["settings"]["think_output"] == "think_tags"
    })
    .await;
    let s = get(&gb, "/admin/settings").await;
    assert_eq!(s["data_save_mode"], "redis");
    eventually(5, "B serves from the added account only", || async {
        let before = completions(&sim, B.0);
        chat_as(&gb, USER_KEY, ask("on B")).await.status() == 200
            && completions(&sim, B.0) == before + 1
    })
    .await;
    assert_eq!(chat_as(&gb, &key, ask("key on B")).await.status(), 200);
    let before_a = completions(&sim, A.0);
    for i in 0..3 {
        assert_eq!(
            chat_as(&gb, USER_KEY, ask(&format!("q{i}"))).await.status(),
            200
        );
    }
    assert_eq!(
        completions(&sim, A.0),
        before_a,
        "the disabled account served on B"
    );

    // Both stop; a new instance finds everything in Redis.
    sigterm_and_wait(&mut ga);
    sigterm_and_wait(&mut gb);
    let gc = gateway_on(&redis, &env);
    assert_eq!(chat_as(&gc, &key, ask("after restart")).await.status(), 200);
    let keys = get(&gc, "/admin/keys").await;
    let kept = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == kid.as_str())
        .cloned()
        .unwrap();
    assert_eq!(kept["rpm_limit"], 7);
    let ids = get(&gc, "/admin/identities").await;
    assert_eq!(ids["data"].as_array().unwrap().len(), 2, "{ids}");
    let t = ids["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["label"] == "token-1")
        .cloned()
        .unwrap();
    assert_eq!(t["disabled"], true, "{t}");
    assert_eq!(
        get(&gc, "/admin/settings").await["settings"]["think_output"],
        "think_tags"
    );
    let row = usage_row(&gc, &kid).await;
    assert!(row["requests"].as_u64().unwrap() >= 2, "{row}");
    // What Redis holds of keys is a digest, never the key.
    let dump = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "HGETALL",
            "qwen-gateway:keys",
        ])
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains(&kid) && !dump.contains(&key), "{dump}");
}

/// A 1x1 PNG.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

#[tokio::test]
async fn an_image_sent_through_both_instances_is_uploaded_once() {
    let redis = Redis::start();
    let sim = spawn_sim(&[A, B], &[]);
    let (ga, gb) = two(&redis, &sim, &[("UPLOAD_RETRY_BACKOFF_MS", "10")]).await;
    let msg = json!({"model": "qwen3-max", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_B64}")}}]}]});
    let uploads = || {
        sim_state(&sim)["media"]["uploads_log"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(chat_as(&ga, USER_KEY, msg.clone()).await.status(), 200);
    assert_eq!(uploads(), 1);
    // The entry is written behind the answer; give the writer a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(chat_as(&gb, USER_KEY, msg).await.status(), 200);
    assert_eq!(uploads(), 1, "the second instance uploaded again");
}

#[tokio::test]
async fn redis_failing_at_runtime_degrades_to_local_state_and_recovers() {
    let mut redis = Redis::start();
    let sim = spawn_sim(&[A, B], &[]);
    let (ga, gb) = two(
        &redis,
        &sim,
        &[("KEY_RPM_LIMIT", "2"), ("REDIS_SYNC_INTERVAL_MS", "200")],
    )
    .await;
    redis.kill();
    // Requests still succeed; the limit holds per instance meanwhile.
    for i in 0..2 {
        assert_eq!(
            chat_as(&ga, USER_KEY, ask(&format!("d{i}"))).await.status(),
            200
        );
    }
    assert_eq!(chat_as(&ga, USER_KEY, ask("third")).await.status(), 429);
    let log = ga.log_text();
    assert!(log.contains("Redis call failed"), "{log}");
    assert_eq!(
        get(&ga, "/health").await["shared_state"]["redis"],
        "degraded"
    );
    // Admin changes that cannot be shared are refused, not half made.
    let (st, v) = admin(&ga, "POST", "/admin/keys", Some(json!({"name": "x"}))).await;
    assert_eq!(st, 500, "{v}");

    // Redis comes back (empty): both instances share again, and the usage counted
    // meanwhile is sent.
    let redis = Redis::start_on(redis.port);
    for gw in [&ga, &gb] {
        eventually(5, "Redis is used again", || async {
            get(gw, "/health").await["shared_state"]["redis"] == "up"
        })
        .await;
    }
    assert!(ga.log_text().contains("Redis answers again"));
    assert_eq!(chat_as(&gb, USER_KEY, ask("b")).await.status(), 200);
    assert_eq!(chat_as(&ga, USER_KEY, ask("a")).await.status(), 200);
    assert_eq!(chat_as(&gb, USER_KEY, ask("c")).await.status(), 429);
    eventually(3, "all usage reached Redis", || async {
        usage_row(&gb, "key-1").await["requests"] == 6
    })
    .await;
    drop(redis);
}

#[test]
fn redis_settings_are_checked_at_start_with_exit_2() {
    let run = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(BIN)
            .env_clear()
            .env("SERVER_PORT", free_port().to_string())
            .env("LISTEN_ADDRESS", "127.0.0.1")
            .env("METRICS_LISTEN", "off")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let nobody = format!("redis://:hunter2secret@127.0.0.1:{}", free_port());
    let (code, err) = run(&[("REDIS_URL", &nobody)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("REDIS_URL"), "{err}");
    assert!(!err.contains("hunter2secret"), "the password leaked: {err}");
    let (code, err) = run(&[("DATA_SAVE_MODE", "redis")]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("REDIS_URL") && err.contains("DATA_SAVE_MODE"),
        "{err}"
    );
    let (code, err) = run(&[
        ("DATA_SAVE_MODE", "file"),
        ("REDIS_URL", "redis://127.0.0.1:1"),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("DATA_SAVE_MODE"), "{err}");
    let (code, err) = run(&[
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("REDIS_LEASE_TTL_MS", "0"),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("REDIS_LEASE_TTL_MS"), "{err}");
}
