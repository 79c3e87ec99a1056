//! When a streamed answer's 200 goes out (`STREAM_COMMIT`) and the keep-alive comments that
//! hold an open stream while nothing else is sent (`SSE_KEEPALIVE_SECS`).

mod common;

use common::admin::{per_account, run_to_exit};
use common::*;
use serde_json::{json, Value};

const KEEPALIVE: &str = ": keep-alive\n\n";
const BOB: (&str, &str) = ("bob@example.com", "pw-bob");

fn body(prompt: &str) -> Value {
    json!({"model": "qwen3-max", "stream": true,
           "messages": [{"role": "user", "content": prompt}]})
}

/// Two accounts that never rest, so a fault on one is retried on the other.
fn two_accounts(extra: &[(&str, &str)]) -> (Proc, Proc) {
    let sim = spawn_sim(&[DEMO, BOB], &[]);
    let settings = [
        (
            "API_KEY",
            "sk-test-admin-0123456789,sk-test-user-0123456789",
        ),
        ("RATE_LIMIT_COOLDOWN_MS", "0"),
        ("BREAKER_OPEN_AFTER", "1000"),
    ];
    let gw = accounts_gateway(&sim, &[DEMO, BOB], &[&settings[..], extra].concat());
    (sim, gw)
}

/// A streamed request to `path` with a user key, as the SSE text and its status.
async fn stream_text_of(gw: &Proc, path: &str, body: Value) -> (u16, String) {
    let r = client()
        .post(gw.url(path))
        .header("x-api-key", USER_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

fn completions(sim: &Proc) -> u64 {
    per_account(sim)
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn accepted_sends_the_200_and_a_comment_before_the_first_token() {
    let (sim, gw) = two_accounts(&[("STREAM_COMMIT", "accepted")]);
    let mut r = chat(&gw, body("[[sim:slow_first_event=1500]] hi")).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // The answer is 1.5 s away; the comment is what arrives first, on its own.
    let first = r.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], KEEPALIVE.as_bytes());
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    let events = sse_events(&String::from_utf8(rest).unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let (content, _, chunks) = stream_text(&events);
    assert_eq!(content, sim_state(&sim)["last_completion"]["answer"]);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
}

#[tokio::test]
async fn accepted_still_fails_over_unseen_before_the_first_token() {
    let (sim, gw) = two_accounts(&[("STREAM_COMMIT", "accepted")]);
    // The first completion anywhere is an empty stream; the retry answers.
    inject(&sim, "*", "completions", "empty", 1);
    let r = chat(&gw, body("hello")).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.starts_with(KEEPALIVE), "{text}");
    assert!(!text.contains("error"), "{text}");
    let events = sse_events(&text);
    let (content, _, chunks) = stream_text(&events);
    assert_eq!(content, sim_state(&sim)["last_completion"]["answer"]);
    let roles = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["role"] == "assistant")
        .count();
    assert_eq!(roles, 1, "one answer, from the second attempt: {text}");
    assert_eq!(completions(&sim), 2);
}

#[tokio::test]
async fn accepted_reports_a_total_failure_as_an_error_event_in_each_api() {
    let (sim, gw) = two_accounts(&[("STREAM_COMMIT", "accepted"), ("UPSTREAM_RETRIES", "1")]);
    inject(&sim, "*", "completions", "empty", 0);
    let r = chat(&gw, body("hello")).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 2, "{text}");
    let err: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(err["error"]["code"], "upstream_empty_response", "{text}");
    assert_eq!(events[1], "[DONE]");
    assert_eq!(completions(&sim), 2);

    let req = json!({"model": "qwen3-max", "max_tokens": 64, "stream": true,
                      "messages": [{"role": "user", "content": "hello"}]});
    let (status, text) = stream_text_of(&gw, "/v1/messages", req).await;
    assert_eq!(status, 200);
    assert!(text.starts_with(KEEPALIVE), "{text}");
    assert!(text.contains("event: error\n"), "{text}");
    assert!(text.contains("\"type\":\"error\""), "{text}");

    let req = json!({"model": "qwen3-max", "stream": true, "input": "hello"});
    let (status, text) = stream_text_of(&gw, "/v1/responses", req).await;
    assert_eq!(status, 200);
    assert!(text.starts_with(KEEPALIVE), "{text}");
    assert!(text.contains("event: response.failed\n"), "{text}");
    assert!(text.contains("upstream_empty_response"), "{text}");

    // The same failure with the default commit point keeps its status.
    let (sim, gw) = two_accounts(&[("UPSTREAM_RETRIES", "1")]);
    inject(&sim, "*", "completions", "empty", 0);
    let r = chat(&gw, body("hello")).await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_empty_response");
}

#[tokio::test]
async fn keep_alive_comments_fill_long_silences_in_an_open_stream() {
    let (sim, gw) = pair(&[("SSE_KEEPALIVE_SECS", "1")]);
    // Thinking commits the stream; then the upstream is silent for 2.5 s.
    let r = chat(
        &gw,
        json!({"model": "qwen3-max-thinking", "stream": true,
               "messages": [{"role": "user", "content": "[[sim:idle_gap=2500]] think"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let at = text.find(KEEPALIVE).expect("a keep-alive comment");
    assert!(text[..at].contains("reasoning_content"), "{text}");
    let events = sse_events(&text);
    let (content, _, _) = stream_text(&events);
    assert_eq!(content, sim_state(&sim)["last_completion"]["answer"]);

    // Off: the same silence carries no comment.
    let (_sim, gw) = pair(&[("SSE_KEEPALIVE_SECS", "0")]);
    let r = chat(
        &gw,
        json!({"model": "qwen3-max-thinking", "stream": true,
               "messages": [{"role": "user", "content": "[[sim:idle_gap=2500]] think"}]}),
    )
    .await;
    assert!(!r.text().await.unwrap().contains(KEEPALIVE));
}

#[tokio::test]
async fn keep_alive_comments_do_not_hide_a_silent_upstream() {
    // Comments every second must not restart the 2.5 s limit on upstream silence.
    let (_sim, gw) = pair(&[
        ("SSE_KEEPALIVE_SECS", "1"),
        ("UPSTREAM_IDLE_TIMEOUT_MS", "2500"),
        ("BREAKER_OPEN_AFTER", "1000"),
    ]);
    let started = std::time::Instant::now();
    let r = chat(&gw, body("[[sim:never_end]]")).await;
    assert_eq!(r.status(), 200);
    let text = tokio::time::timeout(std::time::Duration::from_secs(20), r.text())
        .await
        .expect("the stream ends on the idle limit, not the total one")
        .unwrap();
    assert!(text.matches(KEEPALIVE).count() >= 2, "{text}");
    let events = sse_events(&text);
    let err: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], "upstream_timeout", "{text}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(2500));
}

#[test]
fn an_unknown_commit_point_stops_the_gateway_with_exit_2() {
    let (code, err) = run_to_exit(&[("STREAM_COMMIT", "eventually")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("STREAM_COMMIT"), "{err}");
}

/// The first read a client makes of a streamed answer, on a fresh connection: everything the
/// gateway released at once (the client is already waiting when the upstream answers).
fn first_read(gw: &Proc, prompt: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let b = body(prompt).to_string();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {USER_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    )
    .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_header_leaves_together_with_the_first_chunk() {
    // The first output comes 300 ms after the request; a header sent on its own would be
    // all that the waiting client reads first.
    let (_sim, gw) = pair(&[]);
    for _ in 0..5 {
        let text = first_read(&gw, "[[sim:slow_first_event=300]] hi");
        let (head, body) = text.split_once("\r\n\r\n").expect("a whole header");
        assert!(head.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            body.contains(r#""role":"assistant""#),
            "header alone: {text}"
        );
    }
    // Committed when the upstream accepts: the header and the comment.
    let (_sim, gw) = pair(&[("STREAM_COMMIT", "accepted")]);
    for _ in 0..5 {
        let text = first_read(&gw, "[[sim:slow_first_event=300]] hi");
        let (head, body) = text.split_once("\r\n\r\n").expect("a whole header");
        assert!(head.starts_with("HTTP/1.1 200"), "{text}");
        assert!(body.contains(KEEPALIVE), "header alone: {text}");
    }
}
