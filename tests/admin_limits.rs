//! Per-key limits and usage counters, and persistence (`DATA_SAVE_MODE=file` across a
//! restart, invalid data settings), end to end against the real binary.

mod common;

use std::time::Duration;

use common::admin::*;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

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
    let usage = settled_usage(&gw).await;
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

    let u = settled_usage(&gw).await;
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

/// A sim, and the settings of gateways that save to a data file in a fresh directory.
struct FileSetup {
    sim: Proc,
    dir: std::path::PathBuf,
    file: std::path::PathBuf,
    vars: Vec<(&'static str, String)>,
}

impl FileSetup {
    fn new(accounts: &[(&str, &str)], name: &str, file_in_dir: &str) -> FileSetup {
        let sim = spawn_sim(accounts, &[]);
        let dir = std::env::temp_dir().join(format!("{name}-{}", sim.port));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join(file_in_dir);
        let vars = vec![
            ("QWEN_BASE_URL", format!("http://127.0.0.1:{}", sim.port)),
            ("QWEN_TOKEN", mint(&sim, DEMO.0, 3600)),
            ("API_KEY", format!("{ADMIN_KEY},{USER_KEY}")),
            ("DATA_SAVE_MODE", "file".into()),
            ("DATA_FILE", file.to_string_lossy().into_owned()),
            ("GRACE_PERIOD_SECS", "0".into()),
            ("GRACEFUL_SHUTDOWN_TIMEOUT_SECS", "1".into()),
        ];
        FileSetup {
            sim,
            dir,
            file,
            vars,
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
}

#[tokio::test]
async fn file_persistence_survives_a_restart() {
    let setup = FileSetup::new(&[DEMO, B], "qg-admin-data", "state/data.json");
    let (sim, dir, file) = (&setup.sim, &setup.dir, &setup.file);
    let env = setup.env();
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
    settled_usage(&gw).await;
    sigterm_and_wait(&mut gw);

    // The file: private, replaced atomically, without the key itself.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert_eq!(
        leftovers(&dir.join("state")),
        0,
        "no temporary file is left"
    );
    let saved = std::fs::read_to_string(file).unwrap();
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
    let u = settled_usage(&gw).await;
    let row = u["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key_id"] == kid.as_str())
        .unwrap();
    assert_eq!(row["requests"], 2, "usage was saved at shutdown: {row}");
    // The restored identity serves (the configured one is still disabled).
    let before = count(&per_account(sim), B.0);
    for i in 0..2 {
        assert_eq!(chat(&gw, ask(&format!("{i}"))).await.status(), 200);
    }
    assert_eq!(count(&per_account(sim), B.0) - before, 2);

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
    std::fs::remove_dir_all(dir).unwrap();
}

fn leftovers(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("data.json.tmp")
        })
        .count()
}

fn requests_of(usage: &Value, kid: &str) -> u64 {
    usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key_id"] == kid)
        .map_or(0, |r| r["requests"].as_u64().unwrap())
}

/// Two processes on one data file, as the old and the new one of a graceful reload: each takes
/// in what the other saved, so neither overwrites the other's usage or admin changes.
#[tokio::test]
async fn two_processes_on_one_data_file_lose_nothing() {
    let setup = FileSetup::new(&[DEMO], "qg-admin-two", "data.json");
    let dir = &setup.dir;
    let env = setup.env();
    let mut old = spawn_gateway(&env);
    let (kid, key) = add_key(&old, json!({"name": "before the reload"})).await;
    let mut new = spawn_gateway(&env);
    for i in 0..2 {
        let r = chat_as(&old, &key, ask(&format!("old {i}"))).await;
        assert_eq!(r.status(), 200);
    }
    for i in 0..3 {
        let r = chat_as(&new, &key, ask(&format!("new {i}"))).await;
        assert_eq!(r.status(), 200);
    }
    settled_usage(&old).await;
    settled_usage(&new).await;

    // A key added through the new process while the old one still serves: the old one takes
    // it in from the file (within its 2-second flush interval) and accepts it.
    let (kid2, key2) = add_key(&new, json!({"name": "during the reload"})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        let st = chat_as(&old, &key2, ask("old, new key")).await.status();
        if st == 200 {
            break;
        }
        assert_eq!(st, 401);
        assert!(std::time::Instant::now() < deadline, "never taken in");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    settled_usage(&old).await;
    sigterm_and_wait(&mut old);
    assert_eq!(chat_as(&new, &key, ask("new, after")).await.status(), 200);
    settled_usage(&new).await;
    sigterm_and_wait(&mut new);

    let gw = spawn_gateway(&env);
    let u = settled_usage(&gw).await;
    assert_eq!(requests_of(&u, &kid), 2 + 3 + 1, "{u}");
    assert_eq!(requests_of(&u, &kid2), 1, "{u}");
    assert_eq!(chat_as(&gw, &key2, ask("restarted")).await.status(), 200);
    assert_eq!(leftovers(dir), 0);
    drop(gw);
    std::fs::remove_dir_all(dir).unwrap();
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
