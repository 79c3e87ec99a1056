//! Each upstream fault of the protocol reference (§16.3) gets a truthful answer: a status that
//! says what happened before anything was sent, or an error event inside a committed stream.

mod common;

use common::*;
use serde_json::{json, Value};

fn body(directive: &str, stream: bool) -> Value {
    json!({"model": "qwen3-max", "stream": stream,
           "messages": [{"role": "user", "content": format!("hello {directive}")}]})
}

/// One account that does not rest after failures, so each case sees the upstream's answer
/// rather than the pool's cooldown (the pool tests cover that).
const NO_REST: &[(&str, &str)] = &[
    ("RATE_LIMIT_COOLDOWN_MS", "0"),
    ("BREAKER_OPEN_AFTER", "1000"),
    ("UPSTREAM_FIRST_BYTE_TIMEOUT_MS", "700"),
];

#[tokio::test]
async fn failures_before_any_answer_get_truthful_statuses() {
    let cases: &[(&str, u16, &str)] = &[
        ("[[sim:unauthorized]]", 502, "upstream_auth_failed"),
        ("[[sim:http429]]", 429, "upstream_rate_limited"),
        ("[[sim:ratelimit_json]]", 429, "upstream_rate_limited"),
        ("[[sim:ratelimit_sse]]", 429, "upstream_rate_limited"),
        ("[[sim:empty]]", 429, "upstream_empty_response"),
        ("[[sim:moderation]]", 400, "content_filter"),
        ("[[sim:transient]]", 502, "upstream_error"),
        ("[[sim:http500]]", 502, "upstream_error"),
        ("[[sim:http502]]", 502, "upstream_error"),
        ("[[sim:waf]]", 503, "upstream_verification_required"),
        ("[[sim:waf200]]", 503, "upstream_verification_required"),
        ("[[sim:waf_sse]]", 503, "upstream_verification_required"),
        ("[[sim:disconnect=0]]", 502, "upstream_error"),
        ("[[sim:slow_headers=3000]]", 504, "upstream_timeout"),
    ];
    for stream in [false, true] {
        for (directive, status, code) in cases {
            // A fresh account per case: some faults (rightly) make the account rest for hours.
            let (_sim, gw) = pair(NO_REST);
            let r = chat(&gw, body(directive, stream)).await;
            let got = r.status().as_u16();
            let retry_after = r.headers().get("retry-after").cloned();
            let text = r.text().await.unwrap();
            assert_eq!(got, *status, "{directive} stream={stream}: {text}");
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{directive}: {text}"));
            assert_eq!(v["error"]["code"], *code, "{directive}: {text}");
            if *status == 429 || *status == 503 {
                assert!(retry_after.is_some(), "{directive} needs Retry-After");
            }
        }
    }
    let (_sim, gw) = pair(NO_REST);
    // Thinking is streamed as soon as it comes, so a stream that dies after thinking has
    // already committed its 200 and ends with an error event; unstreamed, it is a 502.
    let r = chat(&gw, body("[[sim:disconnect_after_thinking]]", false)).await;
    assert_eq!(r.status(), 502);
    let r = chat(
        &gw,
        body("[[sim:disconnect_after_thinking]] [[sim:delay=30]]", true),
    )
    .await;
    assert_eq!(r.status(), 200);
    let events = sse_events(&r.text().await.unwrap());
    let (content, reasoning, _) = stream_text(&events[..events.len() - 2]);
    assert!(content.is_empty() && !reasoning.is_empty());
    let err: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], "upstream_error");
    // The rate-limit header value from the upstream is passed on, and the account rests for it.
    let (_sim, gw) = pair(&[]);
    let r = chat(&gw, body("[[sim:http429]]", false)).await;
    assert_eq!(r.headers()["retry-after"], "60");
    let r = chat(&gw, body("", false)).await;
    assert_eq!(r.status(), 503);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((55..=61).contains(&wait), "{wait}");
}

#[tokio::test]
async fn chats_new_failures_are_upstream_errors() {
    let (sim, gw) = pair(NO_REST);
    for mode in ["chats_new_500", "chats_new_fail", "chats_new_noid"] {
        inject(&sim, DEMO.0, "chats_new", mode, 1);
        let r = chat(&gw, body("", false)).await;
        assert_eq!(r.status(), 502, "{mode}");
    }
    // And the next request works again.
    assert_eq!(chat(&gw, body("", false)).await.status(), 200);
}

#[tokio::test]
async fn failures_after_the_answer_started_end_the_stream_with_an_error_event() {
    let (sim, gw) = pair(NO_REST);
    // Paced, so that the fault arrives after the first output was sent: events that are
    // already buffered when the first output is ready are converted before anything is sent.
    let r = chat(
        &gw,
        body("[[sim:midstream_quota=3]] [[sim:delay=30]]", true),
    )
    .await;
    assert_eq!(r.status(), 200);
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let err: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], "upstream_rate_limited", "{err}");
    let (content, _, _) = stream_text(&events[..events.len() - 2]);
    assert!(!content.is_empty());

    // The same fault on a non-streamed request is a 429, not a truncated 200.
    let r = chat(&gw, body("[[sim:midstream_quota=3]]", false)).await;
    assert_eq!(r.status(), 429);

    let r = chat(&gw, body("[[sim:disconnect=3]] [[sim:delay=30]]", true)).await;
    let text = r.text().await.unwrap();
    let events = sse_events(&text);
    assert!(events.len() >= 2, "{text}");
    let err: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], "upstream_error");

    // Output moderation after some text is a content_filter finish, as OpenAI reports it.
    let r = chat(&gw, body("[[sim:moderation_output=2]]", false)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    let _ = sim;
}

#[tokio::test]
async fn odd_but_valid_streams_still_deliver_the_whole_answer() {
    let (sim, gw) = pair(&[]);
    for directive in [
        "[[sim:malformed]]",
        "[[sim:noncanonical]]",
        "[[sim:split]]",
        "[[sim:split_utf8]]",
        "[[sim:done]]",
        "[[sim:prompt_usage]]",
        "[[sim:no_usage]]",
        "[[sim:after_finished]]",
    ] {
        for stream in [false, true] {
            let r = chat(&gw, body(directive, stream)).await;
            assert_eq!(r.status(), 200, "{directive}");
            let text = r.text().await.unwrap();
            let content = if stream {
                stream_text(&sse_events(&text)).0
            } else {
                let v: Value = serde_json::from_str(&text).unwrap();
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            };
            let expected = sim_state(&sim)["last_completion"]["answer"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(content, expected, "{directive} stream={stream}");
        }
    }
    // Usage falls back to prompt_tokens/completion_tokens, then to an estimate.
    let v: Value = chat(&gw, body("[[sim:prompt_usage]]", false))
        .await
        .json()
        .await
        .unwrap();
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let v: Value = chat(&gw, body("[[sim:no_usage]]", false))
        .await
        .json()
        .await
        .unwrap();
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn a_stream_that_goes_silent_times_out() {
    let (_sim, gw) = pair(&[
        ("UPSTREAM_IDLE_TIMEOUT_MS", "800"),
        ("BREAKER_OPEN_AFTER", "1000"),
    ]);
    let r = chat(&gw, body("[[sim:never_end]]", false)).await;
    assert_eq!(r.status(), 504);
    let r = chat(&gw, body("[[sim:never_end]]", true)).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(&r.text().await.unwrap());
    let err: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], "upstream_timeout");
}

#[tokio::test]
async fn an_oversized_event_line_is_an_error_not_unbounded_buffering() {
    let (_sim, gw) = pair(&[
        ("MAX_SSE_LINE_BYTES", "65536"),
        ("BREAKER_OPEN_AFTER", "1000"),
    ]);
    let r = chat(&gw, body("[[sim:huge_line=200000]]", false)).await;
    assert_eq!(r.status(), 502);
    let r = chat(&gw, body("[[sim:huge_line=30000]]", false)).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_compressed_reply_nobody_asked_for_is_decoded() {
    let (sim, gw) = pair(NO_REST);
    for stream in [false, true] {
        let r = chat(&gw, body("[[sim:gzip]]", stream)).await;
        assert_eq!(r.status(), 200, "stream={stream}");
        let text = r.text().await.unwrap();
        let content = if stream {
            let events = sse_events(&text);
            assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
            stream_text(&events[..events.len() - 1]).0
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let want = sim_state(&sim)["last_completion"]["answer"].clone();
        assert_eq!(Some(content.as_str()), want.as_str(), "stream={stream}");
    }
}

#[tokio::test]
async fn a_reset_connection_is_a_truthful_error() {
    let (_sim, gw) = pair(NO_REST);
    // Before any answer: nothing was sent, so the client gets an honest 502.
    for stream in [false, true] {
        let r = chat(&gw, body("[[sim:reset=0]]", stream)).await;
        assert_eq!(r.status(), 502, "stream={stream}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "upstream_error");
    }
    // After the answer started: the stream ends with an error event, not a silent stop.
    let r = chat(&gw, body("[[sim:reset=3]] [[sim:delay=30]]", true)).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(&r.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let err: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], "upstream_error", "{err}");
    assert_eq!(chat(&gw, body("", false)).await.status(), 200);
}

#[tokio::test]
async fn a_failed_tls_handshake_is_a_truthful_error() {
    // The sim speaks plain HTTP, so a TLS client hello to it fails.
    let sim = spawn_sim(&[DEMO], &[]);
    let token = mint(&sim, DEMO.0, 3600);
    let base = format!("https://127.0.0.1:{}", sim.port);
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("QWEN_TOKEN", token.as_str()),
        (
            "API_KEY",
            "sk-test-admin-0123456789,sk-test-user-0123456789",
        ),
        ("UPSTREAM_CONNECT_TIMEOUT_MS", "2000"),
    ]);
    for stream in [false, true] {
        let r = chat(&gw, body("", stream)).await;
        assert_eq!(r.status(), 502, "stream={stream}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "upstream_error", "{v}");
    }
    let (status, _) = http(gw.port, "GET", "/health", None);
    assert!(status == 200 || status == 503, "{status}");
}

#[tokio::test]
async fn a_refused_connection_is_a_truthful_error() {
    let sim = spawn_sim(&[DEMO], &[]);
    let token = mint(&sim, DEMO.0, 3600);
    // A port nobody listens on.
    let base = format!("http://127.0.0.1:{}", free_port());
    let gw = spawn_gateway(&[
        ("QWEN_BASE_URL", base.as_str()),
        ("QWEN_TOKEN", token.as_str()),
        (
            "API_KEY",
            "sk-test-admin-0123456789,sk-test-user-0123456789",
        ),
    ]);
    for stream in [false, true] {
        let r = chat(&gw, body("", stream)).await;
        assert_eq!(r.status(), 502, "stream={stream}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "upstream_error", "{v}");
    }
    let (status, _) = http(gw.port, "GET", "/health", None);
    assert!(status == 200 || status == 503, "{status}");
}
