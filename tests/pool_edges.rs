//! The identity pool around its edges: requests that arrive before the first sign-in, and a
//! failure after the answer started, which cannot be retried but still counts.

mod common;

use std::time::{Duration, Instant};

use common::admin::per_account;
use common::*;
use serde_json::{json, Value};

const A: (&str, &str) = ("alice@example.com", "pw-alice");
const B: (&str, &str) = ("bob@example.com", "pw-bob");

fn ask(i: usize) -> Value {
    json!({"model": "qwen3-max", "messages": [{"role": "user", "content": format!("question {i}")}]})
}

/// Requests that arrive while the only account is still on its first sign-in wait for it
/// (a restart must not turn its first requests into 503s); a first sign-in that fails ends
/// the wait with the truthful 503 rather than after the whole wait.
#[tokio::test]
async fn first_requests_wait_for_the_first_sign_in() {
    let sim = spawn_sim(&[A], &[]);
    let slow = json!({"email": A.0, "endpoint": "signin", "mode": "slow_headers", "arg": 1500, "count": 2});
    assert_eq!(http(sim.port, "POST", "/__sim/inject", Some(&slow)).0, 200);
    let base = format!("http://127.0.0.1:{}", sim.port);
    let accts = accounts(&[A]);
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("ACCOUNTS", accts.as_str()),
    ]);
    assert_eq!(
        health(&gw).await["identity_pool"]["with_valid_token"],
        0,
        "the sign-in is still running"
    );
    let r = chat(&gw, ask(0)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(per_account(&sim)[A.0], 1);
    drop(gw);

    let wrong = format!("{}:wrong-password", A.0);
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("ACCOUNTS", wrong.as_str()),
    ]);
    let t = Instant::now();
    let r = chat(&gw, ask(1)).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "no_upstream_identity");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the failed sign-in ended the wait"
    );
    assert_eq!(sim_state(&sim)["signins"], 2);
}

/// A stream that fails after its first output cannot be retried, but the failure still counts
/// against the account: a quota hit mid-answer rests it like any other rate limit.
#[tokio::test]
async fn a_failure_after_the_answer_started_still_rests_the_account() {
    let sim = spawn_sim(&[A, B], &[]);
    let gw = accounts_gateway(&sim, &[A, B], &[]);
    wait_tokens(&gw, 2).await;
    let quota = json!({"email": A.0, "endpoint": "completions", "mode": "midstream_quota", "arg": 2, "count": 1});
    assert_eq!(http(sim.port, "POST", "/__sim/inject", Some(&quota)).0, 200);
    let mut broken = 0;
    for i in 0..6 {
        let r = chat(&gw, json!({"model": "qwen3-max", "stream": true,
                                 "messages": [{"role": "user", "content": format!("q{i} [[sim:delay=20]]")}]}))
            .await;
        assert_eq!(r.status(), 200);
        if r.text().await.unwrap().contains("\"error\"") {
            broken += 1;
        }
    }
    assert_eq!(broken, 1, "one answer broke mid-stream");
    let per = per_account(&sim);
    assert_eq!(
        per[A.0], 1,
        "A rests after its mid-answer quota error: {per}"
    );
    assert_eq!(per[B.0], 5);
    let h = health(&gw).await;
    let a = h["identity_pool"]["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"].as_str().unwrap().contains("a***@"))
        .cloned()
        .unwrap();
    assert_eq!(a["last_error"], "rate_limit", "{h}");
}
