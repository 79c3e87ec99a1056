//! Operations: Prometheus metrics on their own listener, rotated file logs, and no secret in
//! any log line, response or metric.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn metrics_logs_and_no_secrets_anywhere() {
    let sim = spawn_sim(&[DEMO, ("second@example.com", "pw-second-secret")], &[]);
    let token = mint(&sim, DEMO.0, 3600);
    let cookie = http(
        sim.port,
        "POST",
        "/__sim/mint",
        Some(&json!({"email": DEMO.0, "ttl_secs": 3600})),
    )
    .1["cookie"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("http://127.0.0.1:{}", sim.port);
    let metrics_port = free_port().to_string();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let log_dir = std::env::temp_dir().join(format!("qg-ops-{}", sim.port));
    let _ = std::fs::remove_dir_all(&log_dir);
    let log_dir_s = log_dir.to_string_lossy().to_string();
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("COOKIE", cookie.as_str()),
        ("ACCOUNTS", "second@example.com:pw-second-secret"),
        (
            "API_KEY",
            "sk-test-admin-0123456789,sk-test-user-0123456789",
        ),
        ("METRICS_LISTEN", metrics_addr.as_str()),
        ("ENABLE_FILE_LOG", "true"),
        ("LOG_DIR", log_dir_s.as_str()),
        ("MAX_LOG_FILE_SIZE", "1"),
        ("DEBUG_MODE", "true"),
        ("LOG_LEVEL", "trace"),
    ]);
    let c = client();
    for i in 0..4 {
        chat(&gw, json!({"model": "qwen3-max", "stream": i % 2 == 0, "messages": [{"role": "user", "content": format!("what is {i}?")}]}))
            .await
            .text()
            .await
            .unwrap();
    }
    chat(&gw, json!({"model": "qwen3-max", "messages": [{"role": "user", "content": "[[sim:transient]]"}]})).await;
    chat(
        &gw,
        json!({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    c.post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-wrong-key-999")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    c.post(gw.url("/refresh-token"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let health = c
        .get(gw.url("/health"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"qwen_gateway_requests_total{model="qwen3-max",route="chat",status="200"} 4"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"qwen_gateway_requests_total{model="-",route="chat",status="404"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("qwen_gateway_time_to_first_token_seconds_bucket"));
    assert!(metrics.contains(r#"qwen_gateway_upstream_attempts_total{outcome="ok"}"#));
    assert!(metrics.contains(r#"qwen_gateway_upstream_attempts_total{outcome="transient"}"#));
    assert!(metrics.contains(r#"qwen_gateway_token_refreshes_total{outcome="ok"}"#));
    assert!(metrics.contains(r#"qwen_gateway_identities{state="healthy"}"#));
    assert!(!metrics.contains("no-such-model"));

    let log = std::fs::read_to_string(log_dir.join("qwen-gateway.log")).unwrap();
    assert!(
        log.contains("access") && log.contains("request_id="),
        "{log}"
    );
    assert!(
        log.contains("question: \"what is 3?\""),
        "debug mode logs the question"
    );

    // Nothing secret in logs (file and stderr), responses or metrics.
    let stderr = gw.log_text();
    let jwt_sig = token.rsplit('.').next().unwrap().to_string();
    let secrets = [
        token.as_str(),
        jwt_sig.as_str(),
        "pw-second-secret",
        ADMIN_KEY,
        USER_KEY,
        "sk-wrong-key-999",
        cookie
            .split("cna=")
            .nth(1)
            .unwrap_or("cna-missing")
            .split(';')
            .next()
            .unwrap(),
    ];
    for (name, text) in [
        ("file log", &log),
        ("stderr", &stderr),
        ("metrics", &metrics),
        ("health", &health),
    ] {
        for s in secrets {
            assert!(
                !text.contains(s),
                "{name} contains a secret ({})",
                &s[..s.len().min(6)]
            );
        }
    }
    std::fs::remove_dir_all(&log_dir).unwrap();
}
