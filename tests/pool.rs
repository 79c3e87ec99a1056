//! The identity pool end to end: several simulated accounts behind one gateway.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const A: (&str, &str) = ("alice@example.com", "pw-alice");
const B: (&str, &str) = ("bob@example.com", "pw-bob");
const C: (&str, &str) = ("carol@example.com", "pw-carol");

/// A sim with accounts A, B, C and a gateway signing in to all three.
async fn pool3(extra: &[(&str, &str)]) -> (Proc, Proc) {
    let sim = spawn_sim(&[A, B, C], &[]);
    let keys = [(
        "API_KEY",
        "sk-test-admin-0123456789,sk-test-user-0123456789",
    )];
    let gw = accounts_gateway(&sim, &[A, B, C], &[&keys[..], extra].concat());
    wait_tokens(&gw, 3).await;
    (sim, gw)
}

fn ask(i: usize) -> Value {
    json!({"model": "qwen3-max", "messages": [{"role": "user", "content": format!("question {i}")}]})
}

fn per_account(sim: &Proc) -> Value {
    sim_state(sim)["completions_by_account"].clone()
}

fn identity<'a>(h: &'a Value, prefix: &str) -> &'a Value {
    h["identity_pool"]["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"].as_str().unwrap().contains(prefix))
        .unwrap()
}

#[tokio::test]
async fn round_robin_spreads_requests_evenly() {
    let (sim, gw) = pool3(&[]).await;
    for i in 0..30 {
        assert_eq!(chat(&gw, ask(i)).await.status(), 200);
    }
    let per = per_account(&sim);
    for (email, _) in [A, B, C] {
        assert_eq!(per[email], 10, "{per}");
    }
    // Sign-in used the SHA-256 password form (the sim accepts nothing else).
    assert_eq!(sim_state(&sim)["signins"], 3);
}

#[tokio::test]
async fn a_rate_limited_and_a_rejected_account_never_fail_a_request() {
    let (sim, gw) = pool3(&[]).await;
    inject(&sim, B.0, "completions", "http429", 0);
    inject(&sim, C.0, "completions", "unauthorized", 0);
    for i in 0..20 {
        let r = chat(&gw, ask(i)).await;
        assert_eq!(r.status(), 200, "request {i}");
    }
    let h = health(&gw).await;
    let b = identity(&h, "b***");
    assert_eq!(b["last_error"], "rate_limit", "{b}");
    assert!(
        b["available_in_secs"].as_u64().unwrap() > 30,
        "B rests for Retry-After: {b}"
    );
    let c = identity(&h, "c***");
    assert_eq!(c["last_error"], "auth", "{c}");
    // A refused token triggers a fresh sign-in for that account (in the background).
    let mut signins = 0;
    for _ in 0..100 {
        signins = sim_state(&sim)["signins"].as_u64().unwrap();
        if signins > 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(signins > 3, "signins={signins}");
}

#[tokio::test]
async fn a_request_over_64_kib_fails_over_too() {
    let (sim, gw) = pool3(&[]).await;
    inject(&sim, A.0, "completions", "http429", 0);
    inject(&sim, B.0, "completions", "http502", 0);
    let big = "x".repeat(150 * 1024);
    for _ in 0..3 {
        let r = chat(
            &gw,
            json!({"model": "qwen3-max", "messages": [{"role": "user", "content": big}]}),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let last = &sim_state(&sim)["last_completion"];
    assert_eq!(last["email"], C.0);
    assert!(last["prompt"].as_str().unwrap().len() >= 150 * 1024);
}

#[tokio::test]
async fn the_breaker_opens_after_the_threshold_and_closes_after_the_cooldown() {
    let (sim, gw) = pool3(&[
        ("BREAKER_DEGRADED_AFTER", "1"),
        ("BREAKER_OPEN_AFTER", "2"),
        ("BREAKER_COOLDOWN_MS", "1500"),
    ])
    .await;
    inject(&sim, A.0, "completions", "http500", 2);
    let mut seen_degraded = false;
    let mut i = 0;
    loop {
        assert_eq!(chat(&gw, ask(i)).await.status(), 200);
        i += 1;
        let h = health(&gw).await;
        let state = identity(&h, "a***")["state"].as_str().unwrap().to_string();
        seen_degraded |= state == "degraded";
        if state == "down" {
            break;
        }
        assert!(i < 20, "A never went down: {h}");
    }
    assert!(seen_degraded);
    let h = health(&gw).await;
    assert_eq!(h["identity_pool"]["down"], 1);
    // While down, A gets nothing.
    let before = per_account(&sim)[A.0].as_u64().unwrap_or(0);
    for j in 0..6 {
        assert_eq!(chat(&gw, ask(100 + j)).await.status(), 200);
    }
    assert_eq!(per_account(&sim)[A.0].as_u64().unwrap_or(0), before);
    // After the cooldown one trial request goes to A; it succeeds and A is healthy again.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    for j in 0..6 {
        assert_eq!(chat(&gw, ask(200 + j)).await.status(), 200);
    }
    assert!(per_account(&sim)[A.0].as_u64().unwrap() > before);
    let h = health(&gw).await;
    assert_eq!(identity(&h, "a***")["state"], "healthy", "{h}");
}

#[tokio::test]
async fn when_every_account_is_down_clients_get_503_with_retry_after() {
    let sim = spawn_sim(&[A, B], &[]);
    let gw = accounts_gateway(&sim, &[A, B], &[]);
    wait_tokens(&gw, 2).await;
    inject(&sim, "*", "completions", "http429", 0);
    let r = chat(&gw, ask(0)).await;
    assert_eq!(r.status(), 429);
    let started = Instant::now();
    let r = chat(&gw, ask(1)).await;
    assert!(started.elapsed() < Duration::from_secs(2), "no hang");
    assert_eq!(r.status(), 503);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=61).contains(&wait), "{wait}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "all_identities_down");
}

#[tokio::test]
async fn short_lived_tokens_are_refreshed_before_expiry_without_failed_requests() {
    let sim = spawn_sim(&[A, B], &[]);
    assert_eq!(
        http(
            sim.port,
            "POST",
            "/__sim/config",
            Some(&json!({"token_ttl_secs": 4}))
        )
        .0,
        200
    );
    let base = format!("http://127.0.0.1:{}", sim.port);
    let accts = accounts(&[A, B]);
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("ACCOUNTS", accts.as_str()),
        ("TOKEN_REFRESH_AHEAD_SECS", "2"),
    ]);
    wait_tokens(&gw, 2).await;
    let until = Instant::now() + Duration::from_secs(9);
    let mut n = 0;
    while Instant::now() < until {
        let r = chat(&gw, ask(n)).await;
        assert_eq!(
            r.status(),
            200,
            "request {n} failed after {:?}",
            until - Instant::now()
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each 4 s token was replaced about every 2 s, per account.
    let signins = sim_state(&sim)["signins"].as_u64().unwrap();
    assert!(signins >= 8, "signins={signins}");
    let h = health(&gw).await;
    for i in h["identity_pool"]["identities"].as_array().unwrap() {
        assert!(i["remaining_secs"].as_i64().unwrap() >= 1, "{i}");
    }
}

#[tokio::test]
async fn a_token_from_the_settings_file_is_written_back_with_a_backup() {
    let sim = spawn_sim(&[A], &[]);
    let base = format!("http://127.0.0.1:{}", sim.port);
    // Long enough that the refresh, due 2 s before expiry, is never late (expiry has 1 s steps).
    let old = mint(&sim, A.0, 5);
    let dir = std::env::temp_dir().join(format!("qg-writeback-{}", sim.port));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.env");
    std::fs::write(
        &file,
        format!("# settings\nQWEN_BASE_URL={base}\nQWEN_TOKEN={old}\nOUTPUT_THINK=true\n"),
    )
    .unwrap();
    let port = free_port();
    let log = dir.join("gw.log");
    let mut child = std::process::Command::new(BIN)
        .arg("--env-file")
        .arg(&file)
        .env_clear()
        .env("SERVER_PORT", port.to_string())
        .env("LISTEN_ADDRESS", "127.0.0.1")
        .env("TOKEN_REFRESH_AHEAD_SECS", "2")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let backup = dir.join("gateway.env.bak");
    let mut written = false;
    for _ in 0..100 {
        if backup.exists() {
            written = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        written,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let now = std::fs::read_to_string(&file).unwrap();
    let before = std::fs::read_to_string(&backup).unwrap();
    assert!(before.contains(&format!("QWEN_TOKEN={old}")));
    assert!(
        !now.contains(&old) && now.contains("QWEN_TOKEN=ey"),
        "{now}"
    );
    assert!(now.starts_with("# settings\n") && now.contains("OUTPUT_THINK=true"));
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn live_chats_drop_to_zero(sim: &Proc) -> Value {
    for _ in 0..100 {
        let st = sim_state(sim);
        if st["live_chats"] == 0 {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("chats left undeleted: {}", sim_state(sim));
}

#[tokio::test]
async fn every_created_chat_is_deleted_even_after_a_disconnect() {
    let (sim, gw) = pool3(&[("RATE_LIMIT_COOLDOWN_MS", "0")]).await;
    inject(&sim, "*", "delete", "delete_500", 1);
    for i in 0..4 {
        chat(&gw, ask(i)).await;
        chat(&gw, json!({"model": "qwen3-max", "stream": true, "messages": [{"role": "user", "content": format!("s{i}")}]})).await.text().await.unwrap();
    }
    chat(
        &gw,
        json!({"model": "qwen3-max", "messages": [{"role": "user", "content": "[[sim:empty]]"}]}),
    )
    .await;
    let mut r = chat(&gw, json!({"model": "qwen3-max", "stream": true, "messages": [{"role": "user", "content": "[[sim:never_end]]"}]})).await;
    r.chunk().await.unwrap();
    drop(r);
    let st = live_chats_drop_to_zero(&sim).await;
    assert!(st["chats_created"].as_u64().unwrap() >= 10);
    assert_eq!(st["chats_created"], st["chats_deleted"]);
}

#[tokio::test]
async fn hundreds_of_parallel_streams_lose_or_mix_nothing() {
    let sim = spawn_sim(&[A, B, C], &["--sim-delta-delay-ms", "3"]);
    let base = format!("http://127.0.0.1:{}", sim.port);
    let accts = accounts(&[A, B, C]);
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("ACCOUNTS", accts.as_str()),
    ]);
    wait_tokens(&gw, 3).await;
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let c = c.clone();
        let url = gw.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": "qwen3-max", "stream": i % 2 == 0,
                              "messages": [{"role": "user", "content": format!("unique-{i}")}]});
            let r = c.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let text = r.text().await.unwrap();
            let content = if i % 2 == 0 {
                stream_text(&sse_events(&text)).0
            } else {
                let v: Value = serde_json::from_str(&text).unwrap();
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            };
            assert_eq!(content, format!("Echo: unique-{i} "), "request {i}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let per = per_account(&sim);
    let total: u64 = [A, B, C]
        .iter()
        .map(|(e, _)| per[*e].as_u64().unwrap())
        .sum();
    assert_eq!(total, 300);
    live_chats_drop_to_zero(&sim).await;
}

#[tokio::test]
async fn refresh_token_route_is_admin_only_and_reports_each_identity() {
    let (sim, gw) = pool3(&[]).await;
    let c = client();
    let r = c.post(gw.url("/refresh-token")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(gw.url("/refresh-token"))
        .bearer_auth(USER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let before = sim_state(&sim)["signins"].as_u64().unwrap();
    let r = c
        .post(gw.url("/refresh-token"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
    assert_eq!(sim_state(&sim)["signins"].as_u64().unwrap(), before + 3);
    assert!(!v.to_string().contains("pw-"), "no secrets in the report");
}

#[tokio::test]
async fn cookies_and_a_failing_account_at_start() {
    let sim = spawn_sim(&[A, B, C], &[]);
    let base = format!("http://127.0.0.1:{}", sim.port);
    let cookie = |e: &str| {
        http(
            sim.port,
            "POST",
            "/__sim/mint",
            Some(&json!({"email": e, "ttl_secs": 3600})),
        )
        .1["cookie"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let cookies = format!("{} ||| {}", cookie(A.0), cookie(B.0));
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("COOKIE", cookies.as_str()),
        ("ACCOUNTS", "carol@example.com:wrong-password"),
    ]);
    let h = wait_tokens(&gw, 2).await;
    assert_eq!(h["identity_pool"]["total"], 3);
    for i in 0..6 {
        assert_eq!(chat(&gw, ask(i)).await.status(), 200);
    }
    let per = per_account(&sim);
    assert_eq!(per[A.0], 3);
    assert_eq!(per[B.0], 3);
    let text = client()
        .get(gw.url("/health"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("token=") && !text.contains("wrong-password"));
}

#[tokio::test]
async fn per_identity_in_flight_cap() {
    let sim = spawn_sim(&[A], &[]);
    let base = format!("http://127.0.0.1:{}", sim.port);
    let token = mint(&sim, A.0, 3600);
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("QWEN_TOKEN", token.as_str()),
        ("MAX_IN_FLIGHT_PER_IDENTITY", "1"),
    ]);
    let mut first = chat(&gw, json!({"model": "qwen3-max", "stream": true, "messages": [{"role": "user", "content": "[[sim:never_end]]"}]})).await;
    first.chunk().await.unwrap();
    let r = chat(&gw, ask(1)).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "all_identities_busy");
    drop(first);
}

#[test]
fn the_drift_probe_reports_each_step_and_fails_loudly() {
    let sim = spawn_sim(&[A, B], &[]);
    let base = format!("http://127.0.0.1:{}", sim.port);
    let run = |accts: &str| {
        std::process::Command::new(BIN)
            .arg("--probe")
            .env_clear()
            .env("QWEN_BASE_URL", &base)
            .env("ACCOUNTS", accts)
            .env("LOG_LEVEL", "error")
            .output()
            .unwrap()
    };
    let ok = run(&accounts(&[A, B]));
    let out = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{out}");
    for step in [
        "token_check",
        "models",
        "chats_new",
        "completion_stream",
        "delete_chat",
    ] {
        assert_eq!(
            out.matches(&format!("{step:<18} ok")).count(),
            2,
            "{step}: {out}"
        );
    }
    assert!(!out.contains("pw-alice"));
    let bad = run("alice@example.com:pw-alice,bob@example.com:nope");
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(out.contains("FAILED"));
}

#[tokio::test]
async fn sweep_mode_keeps_the_first_page_and_off_keeps_everything() {
    for (mode, expect_live) in [("sweep", 60u64), ("off", 70)] {
        let sim = spawn_sim(&[A], &[]);
        let base = format!("http://127.0.0.1:{}", sim.port);
        let token = mint(&sim, A.0, 3600);
        let gw = spawn_gateway(&[
            ("QWEN_BASE_URL", base.as_str()),
            ("QWEN_TOKEN", token.as_str()),
            ("CHAT_CLEANUP", mode),
            ("CHAT_SWEEP_INTERVAL_MS", "400"),
        ]);
        for i in 0..70 {
            assert_eq!(chat(&gw, ask(i)).await.status(), 200);
        }
        let mut live = 0;
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            live = sim_state(&sim)["live_chats"].as_u64().unwrap();
            if live == expect_live {
                break;
            }
        }
        assert_eq!(live, expect_live, "CHAT_CLEANUP={mode}");
    }
}

#[test]
fn pingora_test_flag_checks_the_server_config() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/pingora.yaml");
    let out = std::process::Command::new(BIN)
        .args(["-t", "-c", conf])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
