//! Connection-level behaviour: keep-alive across local, proxied and error answers,
//! `Expect: 100-continue`, client disconnects, and start-up validation.

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::json;

fn request(method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {USER_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn one_connection_serves_local_proxied_and_error_answers() {
    let (_sim, gw) = pair(&[]);
    let s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let chat =
        json!({"model": "qwen3-max", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let stream = json!({"model": "qwen3-max", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let steps: Vec<(String, u16)> = vec![
        (request("GET", "/v1/models", ""), 200),
        (request("POST", "/v1/chat/completions", &chat), 200),
        (request("POST", "/v1/chat/completions", "{bad json"), 400),
        (request("POST", "/v1/chat/completions", &stream), 200),
        (request("GET", "/nope", ""), 404),
        (request("POST", "/v1/chat/completions", &chat), 200),
    ];
    for (req, want) in steps {
        w.write_all(req.as_bytes()).unwrap();
        let (status, head, body) = read_response(&mut r);
        assert_eq!(status, want, "{req}\n{head}\n{body}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
    }
}

#[test]
fn pipelined_requests_after_an_error_are_answered() {
    let (_sim, gw) = pair(&[]);
    let s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let both = format!(
        "{}{}",
        request("POST", "/v1/chat/completions", "{oops"),
        request("GET", "/v1/models", "")
    );
    w.write_all(both.as_bytes()).unwrap();
    assert_eq!(read_response(&mut r).0, 400);
    assert_eq!(read_response(&mut r).0, 200);
}

#[test]
fn expect_100_continue_is_answered_and_keeps_the_connection() {
    let (_sim, gw) = pair(&[]);
    let s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let body =
        json!({"model": "qwen3-max", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    write!(
        w,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {USER_KEY}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut r, &mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line}");
    let mut blank = String::new();
    std::io::BufRead::read_line(&mut r, &mut blank).unwrap();
    w.write_all(body.as_bytes()).unwrap();
    assert_eq!(read_response(&mut r).0, 200);
    w.write_all(request("GET", "/v1/models", "").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut r).0, 200);
}

#[test]
fn chunked_request_bodies_are_read() {
    let (_sim, gw) = pair(&[]);
    let s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let body = json!({"model": "qwen3-max", "messages": [{"role": "user", "content": "chunked"}]})
        .to_string();
    let (a, b) = body.split_at(10);
    write!(
        w,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {USER_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    )
    .unwrap();
    assert_eq!(read_response(&mut r).0, 200);
}

#[tokio::test]
async fn a_client_that_disconnects_stops_the_upstream_request() {
    let (sim, gw) = pair(&[]);
    let r = chat(
        &gw,
        json!({"model": "qwen3-max", "stream": true, "messages": [{"role": "user", "content": "[[sim:never_end]]"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut r = r;
    let first = r.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(r);
    // The gateway notices at once and closes the upstream stream: nothing stays in flight.
    let mut in_flight = 1;
    for _ in 0..100 {
        let h = health(&gw).await;
        in_flight = h["identity_pool"]["identities"][0]["in_flight"]
            .as_u64()
            .unwrap();
        if in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(in_flight, 0);
    let st = sim_state(&sim);
    assert!(
        st["streams_aborted_by_client"].as_u64().unwrap_or(0) >= 1,
        "{st}"
    );
    // And the gateway keeps serving.
    let r = chat(
        &gw,
        json!({"model": "qwen3-max", "messages": [{"role": "user", "content": "again"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[test]
fn invalid_configuration_fails_at_start_naming_the_setting() {
    for (k, v) in [
        ("SERVER_PORT", "eighty"),
        ("SEARCH_INFO_MODE", "html"),
        ("QWEN_BASE_URL", "gopher://x"),
    ] {
        let out = std::process::Command::new(BIN).env(k, v).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{k}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(k), "{k}: {err}");
    }
}
