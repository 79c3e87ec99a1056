//! Starts the `qwen-sim` binary on a free loopback port and talks raw HTTP/1.1 to it over a
//! single kept-alive connection, checking the exact framing the gateway will see.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

struct SimProcess(Child);

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> (SimProcess, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwen-sim"))
        .args([
            "--listen",
            &addr,
            "--account",
            "e2e@example.com:pw-1",
            "--threads",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn qwen-sim");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), format!("qwen-sim listening on {addr}"));
    (SimProcess(child), addr)
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    /// Body chunks as framed on the wire (one entry for a Content-Length body).
    chunks: Vec<Vec<u8>>,
    /// The chunked body ended with its zero-length chunk.
    terminated: bool,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body()).unwrap()
    }
}

struct Client {
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            r: BufReader::new(s),
        }
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: sim\r\ncontent-length: {}\r\n\
             x-request-id: 0b6f3a52-7d1e-4c8a-9f00-2f4a5c6b7d8e\r\nsource: web\r\n",
            body.len()
        );
        if let Some(t) = token {
            req.push_str(&format!("authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        self.r.get_mut().write_all(req.as_bytes()).unwrap();
        self.read_response()
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l.trim_end_matches("\r\n").to_string()
    }

    fn read_response(&mut self) -> Response {
        let status_line = self.line();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            status,
            headers,
            chunks: Vec::new(),
            terminated: false,
        };
        if let Some(len) = resp.header("content-length") {
            let mut buf = vec![0; len.parse().unwrap()];
            self.r.read_exact(&mut buf).unwrap();
            resp.chunks.push(buf);
            return resp;
        }
        assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
        loop {
            let size_line = self.line();
            if size_line.is_empty() {
                return resp; // connection closed without the last chunk
            }
            let size = usize::from_str_radix(size_line.trim(), 16).unwrap();
            let mut buf = vec![0; size + 2];
            self.r.read_exact(&mut buf).unwrap();
            if size == 0 {
                resp.terminated = true;
                return resp;
            }
            buf.truncate(size);
            resp.chunks.push(buf);
        }
    }
}

fn completion_body(prompt: &str) -> Value {
    json!({"stream": true, "incremental_output": true, "model": "qwen3-max",
           "messages": [{"role": "user", "content": prompt, "chat_type": "t2t",
                         "feature_config": {"output_schema": "phase", "thinking_enabled": false}}]})
}

#[test]
fn signin_chat_stream_delete_over_one_connection() {
    let (_sim, addr) = start();
    let mut c = Client::connect(&addr);

    // Sign-in wants the hex SHA-256 of the password.
    let r = c.send(
        "POST",
        "/api/v1/auths/signin",
        None,
        Some(&json!({"email": "e2e@example.com", "password": "pw-1"})),
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["detail"].as_str().unwrap().contains("incorrect"));
    let hashed = sha256_hex("pw-1");
    let r = c.send(
        "POST",
        "/api/v1/auths/signin",
        None,
        Some(&json!({"email": "e2e@example.com", "password": hashed})),
    );
    assert_eq!(r.status, 200);
    let user = r.json();
    assert_eq!(user["role"], "user");
    let token = user["token"].as_str().unwrap().to_string();

    let r = c.send(
        "POST",
        "/api/v2/chats/new",
        Some(&token),
        Some(
            &json!({"title": "New Chat", "models": ["qwen3-max"], "chat_mode": "local",
                     "chat_type": "t2i", "timestamp": 1783327438000u64}),
        ),
    );
    assert_eq!(r.status, 200);
    let chat_id = r.json()["data"]["id"].as_str().unwrap().to_string();

    let path = format!("/api/v2/chat/completions?chat_id={chat_id}");
    let r = c.send(
        "POST",
        &path,
        Some(&token),
        Some(&completion_body("ping pong")),
    );
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(r.terminated);
    // Every chunk is exactly one `data: {json}\n\n` event.
    let mut answer = String::new();
    let events: Vec<Value> = r
        .chunks
        .iter()
        .map(|ch| {
            let s = std::str::from_utf8(ch).unwrap();
            assert!(s.starts_with("data: ") && s.ends_with("\n\n"), "{s:?}");
            serde_json::from_str(&s[6..s.len() - 2]).unwrap()
        })
        .collect();
    assert!(events[0].get("response.created").is_some());
    for e in &events[1..events.len() - 1] {
        let d = &e["choices"][0]["delta"];
        assert_eq!(d["status"], "typing");
        assert!(e["usage"]["output_tokens"].is_u64());
        answer.push_str(d["content"].as_str().unwrap());
    }
    assert_eq!(answer, "Echo: ping pong ");
    assert_eq!(
        events.last().unwrap()["choices"][0]["delta"]["status"],
        "finished"
    );

    // A multibyte character split across two writes still arrives intact.
    let r = c.send(
        "POST",
        &path,
        Some(&token),
        Some(&completion_body("u [[sim:split_utf8]]")),
    );
    assert!(r.terminated);
    assert!(r.chunks.iter().any(|ch| std::str::from_utf8(ch).is_err()));
    assert!(String::from_utf8(r.body()).unwrap().contains("你好"));

    let r = c.send(
        "DELETE",
        &format!("/api/v2/chats/{chat_id}"),
        Some(&token),
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"success": true, "data": {"status": true}}));
    let r = c.send(
        "DELETE",
        &format!("/api/v2/chats/{chat_id}"),
        Some(&token),
        None,
    );
    assert_eq!(r.status, 404);

    let state = c.send("GET", "/__sim/state", None, None).json();
    assert_eq!(state["counters"]["completions"], 2);
    assert_eq!(state["counters"]["live_chats"], 0);
    assert_eq!(state["completions_by_account"]["e2e@example.com"], 2);
    let req = &state["requests"][2];
    assert_eq!(req["path"], "/api/v2/chats/new");
    assert_eq!(req["x_request_id_is_uuid"], true);
    assert_eq!(req["source"], "web");

    // A mid-stream disconnect ends the chunked body without its last chunk.
    let r = c.send("POST", "/api/v2/chats/new", Some(&token), Some(&json!({})));
    let chat_id = r.json()["data"]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v2/chat/completions?chat_id={chat_id}");
    let r = c.send(
        "POST",
        &path,
        Some(&token),
        Some(&completion_body("a b c [[sim:disconnect=2]]")),
    );
    assert!(!r.terminated);
    assert_eq!(r.chunks.len(), 3);
}

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
