//! The upload and generation endpoints of the `qwen-sim` binary over loopback: STS in both
//! shapes, the OSS emulator's token and signature checks (V4 and V1), the CDN, image
//! streams, video tasks and their faults.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

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
        .args(["--listen", &addr, "--threads", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn qwen-sim");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "{line}");
    (SimProcess(child), addr)
}

struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 4 + n..];
    }
}

/// One request on a fresh connection (`Connection: close`), body as raw bytes.
fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Resp {
        status: head[9..12].parse().unwrap(),
        head,
        body,
    }
}

fn json_req(addr: &str, method: &str, path: &str, token: Option<&str>, body: &Value) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut h = vec![("content-type", "application/json")];
    if let Some(a) = auth.as_deref() {
        h.push(("authorization", a));
    }
    send(addr, method, path, &h, body.to_string().as_bytes())
}

fn token(addr: &str) -> String {
    let r = json_req(
        addr,
        "POST",
        "/__sim/mint",
        None,
        &json!({"email": "demo@example.com", "ttl_secs": 3600}),
    );
    r.json()["token"].as_str().unwrap().to_string()
}

fn inject(addr: &str, endpoint: &str, mode: &str, count: u32) {
    let r = json_req(
        addr,
        "POST",
        "/__sim/inject",
        None,
        &json!({"email": "*", "endpoint": endpoint, "mode": mode, "count": count}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["known"], true, "{mode}");
}

fn state(addr: &str) -> Value {
    send(addr, "GET", "/__sim/state", &[], b"").json()["media"].clone()
}

fn hmac256(key: &[u8], msg: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A minimal V4 signer for the header set of protocol §7.2 (the gateway has the real one).
fn sign_v4(sts: &Value, ctype: &str, date: &str) -> String {
    let region = sts["region"].as_str().unwrap().trim_start_matches("oss-");
    let canonical = format!(
        "PUT\n/{}/{}\n\ncontent-type:{ctype}\nx-oss-content-sha256:UNSIGNED-PAYLOAD\n\
         x-oss-date:{date}\nx-oss-security-token:{}\n\n\nUNSIGNED-PAYLOAD",
        sts["bucketname"].as_str().unwrap(),
        sts["file_path"].as_str().unwrap(),
        sts["security_token"].as_str().unwrap()
    );
    let scope = format!("{}/{region}/oss/aliyun_v4_request", &date[..8]);
    let to_sign = format!(
        "OSS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let secret = sts["access_key_secret"].as_str().unwrap();
    let mut k = hmac256(format!("aliyun_v4{secret}").as_bytes(), &date[..8]);
    for part in [region, "oss", "aliyun_v4_request"] {
        k = hmac256(&k, part);
    }
    format!(
        "OSS4-HMAC-SHA256 Credential={}/{scope},Signature={}",
        sts["access_key_id"].as_str().unwrap(),
        hex(&hmac256(&k, &to_sign))
    )
}

fn now_oss_date() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y%m%dT%H%M%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn put_v4(addr: &str, sts: &Value, bytes: &[u8], auth_override: Option<&str>) -> Resp {
    let date = now_oss_date();
    let auth = auth_override
        .map(str::to_string)
        .unwrap_or_else(|| sign_v4(sts, "image/png", &date));
    let path = format!(
        "/{}/{}",
        sts["bucketname"].as_str().unwrap(),
        sts["file_path"].as_str().unwrap()
    );
    send(
        addr,
        "PUT",
        &path,
        &[
            ("content-type", "image/png"),
            ("x-oss-date", &date),
            ("x-oss-content-sha256", "UNSIGNED-PAYLOAD"),
            (
                "x-oss-security-token",
                sts["security_token"].as_str().unwrap(),
            ),
            ("authorization", &auth),
        ],
        bytes,
    )
}

fn sts(addr: &str, tok: &str, version: u8) -> Resp {
    json_req(
        addr,
        "POST",
        &format!("/api/v{version}/files/getstsToken"),
        Some(tok),
        &json!({"filename": "cat.png", "filesize": 4, "filetype": "image"}),
    )
}

#[test]
fn sts_shapes_oss_put_and_cdn() {
    let (_sim, addr) = start();
    let tok = token(&addr);

    assert_eq!(sts(&addr, "bad", 1).status, 401);
    let v1 = sts(&addr, &tok, 1).json();
    for k in [
        "access_key_id",
        "access_key_secret",
        "security_token",
        "file_url",
        "file_path",
        "file_id",
        "bucketname",
        "region",
    ] {
        assert!(v1[k].is_string(), "v1 lacks {k}: {v1}");
    }
    assert!(v1.get("endpoint").is_none() && v1.get("success").is_none());
    assert!(v1["file_path"].as_str().unwrap().ends_with("_cat.png"));
    let v2 = sts(&addr, &tok, 2).json();
    assert_eq!(v2["success"], true);
    let d2 = &v2["data"];
    assert_eq!(d2["endpoint"], format!("http://{addr}"));
    assert!(d2["file_url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("http://{addr}/cdn/files/")));

    // A correctly signed V4 PUT is stored and served back by the CDN.
    let r = put_v4(&addr, &v1, b"\x89PNG", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("etag").unwrap().starts_with('"'));
    let file_url = v1["file_url"].as_str().unwrap();
    let cdn_path = &file_url[file_url.find("/cdn/").unwrap()..];
    let r = send(&addr, "GET", cdn_path, &[], b"");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"\x89PNG"[..]));
    assert_eq!(r.header("content-type").as_deref(), Some("image/png"));
    let no_key = cdn_path.split('?').next().unwrap();
    assert_eq!(send(&addr, "GET", no_key, &[], b"").status, 403);

    // A wrong signature, an unknown token and another object are all refused.
    let bad = sign_v4(d2, "image/jpeg", &now_oss_date());
    let r = put_v4(&addr, &d2.clone(), b"x", Some(&bad));
    assert_eq!(r.status, 403);
    assert!(
        r.text().contains("<Code>SignatureDoesNotMatch</Code>"),
        "{}",
        r.text()
    );
    let mut forged = d2.clone();
    forged["security_token"] = json!("CAIS-forged");
    let r = put_v4(&addr, &forged, b"x", None);
    assert!(r.text().contains("InvalidSecurityToken"), "{}", r.text());
    let mut other = d2.clone();
    other["file_path"] = json!("someone-else/x.png");
    let r = put_v4(&addr, &other, b"x", None);
    assert!(r.text().contains("AccessDenied"), "{}", r.text());

    // V1 (HMAC-SHA1) is verified too.
    let date = "Mon, 06 Jul 2026 08:43:58 GMT";
    let token2 = d2["security_token"].as_str().unwrap();
    let resource = format!(
        "/{}/{}",
        d2["bucketname"].as_str().unwrap(),
        d2["file_path"].as_str().unwrap()
    );
    let to_sign = format!("PUT\n\nimage/png\n{date}\nx-oss-security-token:{token2}\n{resource}");
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(d2["access_key_secret"].as_str().unwrap().as_bytes())
            .unwrap();
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let auth = format!("OSS {}:{sig}", d2["access_key_id"].as_str().unwrap());
    let v1_put = |auth: &str| {
        send(
            &addr,
            "PUT",
            &resource,
            &[
                ("content-type", "image/png"),
                ("date", date),
                ("x-oss-security-token", token2),
                ("authorization", auth),
            ],
            b"v1-bytes",
        )
    };
    assert_eq!(v1_put(&auth.replace(":", ":x")).status, 403);
    assert_eq!(v1_put(&auth).status, 200);

    let m = state(&addr);
    assert_eq!(
        (m["sts_v1"].as_u64(), m["sts_v2"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(m["uploads"], 2);
    assert_eq!(m["upload_bytes"], 4 + 8);
    assert_eq!(m["uploads_log"][0]["auth"], "v4");
    assert_eq!(m["uploads_log"][1]["auth"], "v1");
    assert_eq!(m["uploads_log"][0]["size"], 4);
    assert_eq!(m["oss_rejected"], 4);
}

#[test]
fn upload_faults() {
    let (_sim, addr) = start();
    let tok = token(&addr);
    inject(&addr, "sts", "sts_403", 1);
    let r = sts(&addr, &tok, 2);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["data"]["code"], "Forbidden");

    inject(&addr, "sts", "sts_500", 2);
    assert_eq!(sts(&addr, &tok, 1).status, 500);
    assert_eq!(sts(&addr, &tok, 1).status, 500);
    assert_eq!(sts(&addr, &tok, 1).status, 200);

    inject(&addr, "sts", "sts_missing_fields", 1);
    let d = sts(&addr, &tok, 2).json();
    assert!(d["data"].get("security_token").is_none());
    assert!(d["data"]["file_url"].is_string());

    let d = sts(&addr, &tok, 1).json();
    inject(&addr, "oss", "oss_signature_mismatch", 1);
    let r = put_v4(&addr, &d, b"x", None);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("SignatureDoesNotMatch"));
    // One use only: the same request then passes.
    assert_eq!(put_v4(&addr, &d, b"x", None).status, 200);
}

fn new_chat(addr: &str, tok: &str) -> String {
    let r = json_req(addr, "POST", "/api/v2/chats/new", Some(tok), &json!({}));
    r.json()["data"]["id"].as_str().unwrap().to_string()
}

fn media_completion(addr: &str, tok: &str, chat_type: &str, stream: bool, extra: Value) -> Resp {
    let chat = new_chat(addr, tok);
    let mut msg = json!({"role": "user", "content": "a red fox", "chat_type": chat_type,
                         "feature_config": {"output_schema": "phase"}, "files": []});
    if let (Some(m), Some(e)) = (msg.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    let body = json!({"stream": stream, "model": "qwen3-max", "chat_id": chat, "size": "16:9",
                      "messages": [msg]});
    json_req(
        addr,
        "POST",
        &format!("/api/v2/chat/completions?chat_id={chat}"),
        Some(tok),
        &body,
    )
}

fn events(r: &Resp) -> Vec<Value> {
    r.text()
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

#[test]
fn image_streams_and_video_tasks() {
    let (_sim, addr) = start();
    let tok = token(&addr);

    let r = media_completion(&addr, &tok, "t2i", true, json!({}));
    assert_eq!(r.status, 200);
    let evs = events(&r);
    let img = evs
        .iter()
        .find(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| c.starts_with("http"))
        })
        .expect("an image_gen event");
    let d = &img["choices"][0]["delta"];
    assert_eq!(d["phase"], "image_gen");
    assert_eq!(d["extra"]["output_image_hw"], json!([[1152, 2048]]));
    let url = d["content"].as_str().unwrap();
    assert!(
        url.contains("/cdn/output/") && url.contains("?key="),
        "{url}"
    );
    let r2 = send(&addr, "GET", &url[url.find("/cdn/").unwrap()..], &[], b"");
    assert_eq!(r2.header("content-type").as_deref(), Some("image/png"));
    assert!(r2.body.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(
        evs.last().unwrap()["choices"][0]["delta"]["status"],
        "finished"
    );

    // image_edit with an image referenced by URL; without one it falls back to t2i.
    let files = json!({"files": [{"type": "image", "url": "http://img.example/cat.png"}]});
    media_completion(&addr, &tok, "image_edit", true, files);
    media_completion(&addr, &tok, "image_edit", true, json!({}));
    let g = &state(&addr)["generations"];
    assert_eq!(
        (g[0]["chat_type"].as_str(), g[0]["size"].as_str()),
        (Some("t2i"), Some("16:9"))
    );
    assert_eq!(g[1]["chat_type"], "image_edit");
    assert_eq!(g[1]["files"], json!(["http://img.example/cat.png"]));
    assert_eq!(g[1]["known_uploads"], json!([false]));
    assert_eq!(
        (g[2]["requested"].as_str(), g[2]["chat_type"].as_str()),
        (Some("image_edit"), Some("t2i"))
    );

    // t2v: a task id, then pending -> running -> success over task_polls polls.
    json_req(
        &addr,
        "POST",
        "/__sim/config",
        None,
        &json!({"task_polls": 3}),
    );
    let r = media_completion(&addr, &tok, "t2v", false, json!({}));
    let task = r.json()["data"]["messages"][0]["extra"]["wanx"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let poll = |id: &str| {
        json_req(
            &addr,
            "GET",
            &format!("/api/v1/tasks/status/{id}"),
            Some(&tok),
            &json!({}),
        )
        .json()
    };
    assert_eq!(poll(&task)["task_status"], "pending");
    assert_eq!(poll(&task)["task_status"], "running");
    let done = poll(&task);
    assert_eq!(done["task_status"], "success");
    let video = done["content"].as_str().unwrap();
    let r = send(
        &addr,
        "GET",
        &video[video.find("/cdn/").unwrap()..],
        &[],
        b"",
    );
    assert_eq!(r.header("content-type").as_deref(), Some("video/mp4"));
    assert_eq!(&r.body[4..8], b"ftyp");

    // Faults: by directive and by injection at poll time.
    let r = media_completion(
        &addr,
        &tok,
        "t2v",
        false,
        json!({"content": "x [[sim:task_no_id]]"}),
    );
    assert_eq!(
        r.json()["data"]["messages"][0]["extra"],
        json!({"wanx": {}})
    );
    let r = media_completion(
        &addr,
        &tok,
        "t2v",
        false,
        json!({"content": "x [[sim:task_never_ends]]"}),
    );
    let never = r.json()["data"]["messages"][0]["extra"]["wanx"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let seen: Vec<Value> = (0..5)
        .map(|_| poll(&never)["task_status"].clone())
        .collect();
    assert_eq!(seen[4], "running");
    let r = media_completion(&addr, &tok, "t2v", false, json!({}));
    let failing = r.json()["data"]["messages"][0]["extra"]["wanx"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    inject(&addr, "tasks", "task_failed", 1);
    // The injected fate sticks; the task still takes task_polls polls to end.
    let seen: Vec<Value> = (0..3).map(|_| poll(&failing)).collect();
    assert_eq!(seen[0]["task_status"], "pending");
    let f = &seen[2];
    assert_eq!(f["task_status"], "failed");
    assert!(f["message"].as_str().unwrap().contains("failed"));
    assert_eq!(poll("no-such-task")["data"]["code"], "Not_Found");
}
