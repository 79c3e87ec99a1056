//! Hostile and malformed client input: each case in docs/bad-input.md gets its answer here, and
//! the gateway keeps serving afterwards.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn raw(port: u16, bytes: &[u8]) -> (u16, String) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut w = s.try_clone().unwrap();
    let _ = w.write_all(bytes);
    let mut r = BufReader::new(s);
    let mut head = Vec::new();
    let _ = r.read_to_end(&mut head);
    let text = String::from_utf8_lossy(&head).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

fn post(body: &[u8], ct: &str) -> Vec<u8> {
    let mut req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {USER_KEY}\r\nContent-Type: {ct}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

async fn still_serving(gw: &Proc) {
    let r = chat(
        gw,
        json!({"model": "qwen3-max", "messages": [{"role": "user", "content": "still there?"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn malformed_bodies_get_400s() {
    let (_sim, gw) = pair(&[("CLIENT_BODY_TIMEOUT_MS", "500")]);
    // Invalid UTF-8 inside a JSON string.
    let mut bad = br#"{"model":"qwen3-max","messages":[{"role":"user","content":""#.to_vec();
    bad.extend_from_slice(&[0xff, 0xfe, 0x80]);
    bad.extend_from_slice(br#""}]}"#);
    let (status, text) = raw(gw.port, &post(&bad, "application/json"));
    assert_eq!(status, 400, "{text}");
    // Deeply nested JSON where a value is read: refused (the parser's depth limit), no crash.
    let deep = |inner: &str| format!("{}{inner}{}", "[".repeat(100_000), "]".repeat(100_000));
    let nested = format!(
        r#"{{"model":"qwen3-max","messages":[{{"role":"user","content":{}}}]}}"#,
        deep("\"x\"")
    );
    let (status, text) = raw(gw.port, &post(nested.as_bytes(), "application/json"));
    assert_eq!(status, 400, "{}", &text[..text.len().min(300)]);
    // In a field the gateway does not read, it is skipped without recursion: answered.
    let ignored = format!(
        r#"{{"model":"qwen3-max","messages":[{{"role":"user","content":"x"}}],"x":{}}}"#,
        deep("")
    );
    let (status, _) = raw(gw.port, &post(ignored.as_bytes(), "application/json"));
    assert_eq!(status, 200);
    // Wrong types.
    for body in [
        r#"{"model":"qwen3-max","messages":[{"role":"user","content":42}]}"#,
        r#"{"model":"qwen3-max","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
        r#"{"model":"qwen3-max","messages":[{"role":"user","content":"x"}],"max_tokens":1e309}"#,
        r#"[1,2,3]"#,
    ] {
        let (status, text) = raw(gw.port, &post(body.as_bytes(), "application/json"));
        assert_eq!(status, 400, "{body}: {text}");
        let json = text.split("\r\n\r\n").nth(1).unwrap_or("");
        let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        assert_eq!(v["error"]["type"], "invalid_request_error", "{text}");
    }
    still_serving(&gw).await;
}

#[tokio::test]
async fn oversized_and_slow_requests() {
    let (_sim, gw) = pair(&[
        ("MAX_BODY_BYTES", "100000"),
        ("CLIENT_BODY_TIMEOUT_MS", "500"),
    ]);
    // Over the limit, declared up front: 413 without reading it.
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {USER_KEY}\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n");
    let (status, _) = raw(gw.port, head.as_bytes());
    assert_eq!(status, 413);
    // Over the limit, chunked (no length known in advance).
    let mut chunked = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {USER_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    for _ in 0..30 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 10_000, "x".repeat(10_000)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, _) = raw(gw.port, &chunked);
    assert_eq!(status, 413);
    // A huge string under the limit is fine.
    let big = json!({"model": "qwen3-max", "messages": [{"role": "user", "content": "y".repeat(90_000)}]});
    assert_eq!(chat(&gw, big).await.status(), 200);
    // A body that never finishes arriving: 408 after CLIENT_BODY_TIMEOUT_MS.
    let partial = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {USER_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model\":");
    let s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    w.write_all(partial.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let (status, _, _) = read_response(&mut r);
    assert_eq!(status, 408);
    still_serving(&gw).await;
}

#[tokio::test]
async fn idle_and_slow_header_keepalive_connections_are_closed() {
    let (_sim, gw) = pair(&[("CLIENT_KEEPALIVE_SECS", "1")]);
    let get =
        format!("GET /v1/models HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {USER_KEY}\r\n\r\n");
    for stall in [&b""[..], b"GET /v1/models HTTP/1.1\r\nHost:"] {
        let s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        w.write_all(get.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let (status, _, _) = read_response(&mut r);
        assert_eq!(status, 200);
        // Then idle, or start a header and stall: the gateway closes within the limit.
        w.write_all(stall).unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let n = r.read_to_end(&mut rest).unwrap_or(0);
        let waited = started.elapsed();
        assert_eq!(n, 0, "nothing is sent on a stalled connection");
        assert!(
            waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
            "closed after {waited:?}"
        );
    }
    still_serving(&gw).await;
}

#[tokio::test]
async fn header_floods_are_refused_and_do_not_hurt_others() {
    let (_sim, gw) = pair(&[]);
    let mut flood = String::from("GET /v1/models HTTP/1.1\r\nHost: t\r\n");
    for i in 0..2000 {
        flood.push_str(&format!("X-Flood-{i}: {}\r\n", "v".repeat(20)));
    }
    flood.push_str("\r\n");
    let (status, _) = raw(gw.port, flood.as_bytes());
    assert!(
        status == 0 || status >= 400,
        "a flood is not served: {status}"
    );
    let mut huge = String::from("GET /v1/models HTTP/1.1\r\nHost: t\r\nX-Big: ");
    huge.push_str(&"a".repeat(2 * 1024 * 1024));
    huge.push_str("\r\n\r\n");
    let (status, _) = raw(gw.port, huge.as_bytes());
    assert!(
        status == 0 || status >= 400,
        "an oversized header is not served: {status}"
    );
    still_serving(&gw).await;
}
