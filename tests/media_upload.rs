//! `media::upload` against the simulated upstream (`qwen-gateway --sim-only`): both STS
//! shapes, the bytes arriving intact at the sim's OSS (which verifies the gateway's V4
//! signature with its own implementation), the upload faults, the retry schedule and the
//! upload cache.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{inject, mint, sim_state, spawn_sim, Proc, DEMO};
use qwen_gateway::convert::classify::FailureClass;
use qwen_gateway::media::cache::{content_key, UploadCache};
use qwen_gateway::media::sts::StsVersion;
use qwen_gateway::media::{
    ingest, upload, upload_cached, upload_with, FetchOptions, MediaError, MediaKind, MediaSettings,
    UploadOptions,
};
use qwen_gateway::qwen::client::{BaseUrl, Timeouts, UpstreamClient};
use qwen_gateway::qwen::headers::Credentials;

/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x48, 0x8c, 0xf9, 0xf6,
    0x1f, 0x00, 0x05, 0x88, 0x02, 0xb3, 0x7d, 0x1d, 0xf2, 0xda, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

struct Env {
    sim: Proc,
    client: UpstreamClient,
    token: String,
}

impl Env {
    fn new() -> Env {
        let sim = spawn_sim(&[DEMO], &[]);
        let token = mint(&sim, DEMO.0, 3600);
        let base = BaseUrl::parse(&format!("http://127.0.0.1:{}", sim.port)).unwrap();
        let t = Duration::from_secs(10);
        let timeouts = Timeouts {
            connect: t,
            first_byte: t,
            idle: t,
        };
        let client = UpstreamClient::new(base, timeouts, 4).unwrap();
        Env { sim, client, token }
    }

    fn creds(&self) -> Credentials<'_> {
        Credentials {
            token: &self.token,
            cookie: None,
        }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.sim.port)
    }

    /// Fast back-off so retry tests take milliseconds.
    fn opts(&self) -> UploadOptions {
        UploadOptions {
            backoff_unit: Duration::from_millis(5),
            ..UploadOptions::default()
        }
    }

    fn media(&self) -> serde_json::Value {
        sim_state(&self.sim)["media"].clone()
    }
}

fn image(seed: u8) -> Bytes {
    let mut v = PNG.to_vec();
    v.push(seed);
    Bytes::from(v)
}

async fn get(url: &str) -> (u16, Option<String>, Bytes) {
    let r = reqwest::get(url).await.unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), ct, r.bytes().await.unwrap())
}

#[tokio::test]
async fn v2_upload_by_default_arrives_intact() {
    let env = Env::new();
    let bytes = image(1);
    let up = upload(&env.client, &env.creds(), bytes.clone(), "image/png", None)
        .await
        .unwrap();
    assert!(!up.cached);
    assert!(up
        .file_url
        .starts_with(&format!("{}/cdn/files/", env.origin())));
    assert!(up.filename.ends_with(".png"));
    assert_eq!(
        (up.size, up.sha256.as_str()),
        (bytes.len(), content_key(&bytes).as_str())
    );
    assert!(up.file_id.is_some());
    assert!(up.user_id().is_some_and(|u| !u.is_empty()));

    let m = env.media();
    assert_eq!(
        (m["sts_v2"].as_u64(), m["sts_v1"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(m["uploads"], 1);
    let log = &m["uploads_log"][0];
    // The sim checked the gateway's V4 signature with its own verifier.
    assert_eq!(log["auth"], "v4");
    assert_eq!(log["size"], bytes.len());
    assert_eq!(log["sha256"], content_key(&bytes));
    assert_eq!(log["content_type"], "image/png");
    assert_eq!(log["key"].as_str(), up.file_path.as_deref());

    // The file URL serves the same bytes back.
    let (status, ct, body) = get(&up.file_url).await;
    assert_eq!((status, ct.as_deref()), (200, Some("image/png")));
    assert_eq!(body, bytes);
}

#[tokio::test]
async fn v1_flat_reply_with_endpoint_override() {
    let env = Env::new();
    let opts = UploadOptions {
        sts_version: StsVersion::V1,
        // The v1 reply names no endpoint (only a region on aliyuncs.com): the override
        // points the PUT at the sim.
        oss_endpoint: Some(env.origin()),
        ..env.opts()
    };
    let bytes = image(2);
    let up = upload_with(&env.client, &env.creds(), bytes.clone(), "image/png", &opts)
        .await
        .unwrap();
    let m = env.media();
    assert_eq!(
        (m["sts_v1"].as_u64(), m["sts_v2"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(m["uploads_log"][0]["sha256"], content_key(&bytes));
    assert_eq!(get(&up.file_url).await.2, bytes);

    // The short form of `upload()` takes the same override.
    let up = upload(
        &env.client,
        &env.creds(),
        image(3),
        "image/png",
        Some(&env.origin()),
    )
    .await
    .unwrap();
    assert!(up.file_url.contains("/cdn/files/"));
}

#[tokio::test]
async fn oss_signature_mismatch_is_a_clear_error() {
    let env = Env::new();
    inject(&env.sim, "*", "oss", "oss_signature_mismatch", 1);
    let f = upload_with(
        &env.client,
        &env.creds(),
        image(4),
        "image/png",
        &env.opts(),
    )
    .await
    .unwrap_err();
    assert_eq!(f.status, Some(403));
    assert!(f.detail.contains("SignatureDoesNotMatch"), "{}", f.detail);
    let api = MediaError::Upload(f).to_api_error();
    assert_eq!((api.status, api.code), (502, "media_upload_failed"));
    assert!(
        api.message.contains("SignatureDoesNotMatch"),
        "{}",
        api.message
    );
    // A 403 is not retried.
    let m = env.media();
    assert_eq!(
        (m["oss_rejected"].as_u64(), m["uploads"].as_u64()),
        (Some(1), Some(0))
    );
}

#[tokio::test]
async fn sts_403_fails_at_once() {
    let env = Env::new();
    inject(&env.sim, "*", "sts", "sts_403", 1);
    let f = upload_with(
        &env.client,
        &env.creds(),
        image(5),
        "image/png",
        &env.opts(),
    )
    .await
    .unwrap_err();
    assert_eq!(f.status, Some(403));
    assert_eq!(f.class, FailureClass::Auth);
    assert!(f.detail.contains("HTTP 403"), "{}", f.detail);
    assert!(f.detail.contains("permission"), "{}", f.detail);
    // No retry and no fall-back to v1 for a permission error.
    let m = env.media();
    assert_eq!(
        (m["sts_v2"].as_u64(), m["sts_v1"].as_u64()),
        (Some(1), Some(0))
    );
    let api = MediaError::Upload(f).to_api_error();
    assert_eq!(api.status, 502);
    assert!(api.message.contains("permission"), "{}", api.message);
}

#[tokio::test]
async fn sts_5xx_is_retried_with_back_off() {
    let env = Env::new();
    inject(&env.sim, "*", "sts", "sts_500", 2);
    let started = std::time::Instant::now();
    let up = upload_with(
        &env.client,
        &env.creds(),
        image(6),
        "image/png",
        &env.opts(),
    )
    .await
    .unwrap();
    // Two pauses: 5 ms then 10 ms.
    assert!(started.elapsed() >= Duration::from_millis(15));
    assert!(!up.file_url.is_empty());
    let m = env.media();
    assert_eq!(
        (m["sts_v2"].as_u64(), m["uploads"].as_u64()),
        (Some(3), Some(1))
    );

    // More failures than retries: the last one is reported, with the attempt count.
    inject(&env.sim, "*", "sts", "sts_500", 10);
    let f = upload_with(
        &env.client,
        &env.creds(),
        image(7),
        "image/png",
        &env.opts(),
    )
    .await
    .unwrap_err();
    assert_eq!(f.status, Some(500));
    assert!(f.detail.contains("after 4 attempts"), "{}", f.detail);
    assert_eq!(env.media()["sts_v2"], 3 + 4);
}

#[tokio::test]
async fn sts_missing_fields_are_named() {
    let env = Env::new();
    inject(&env.sim, "*", "sts", "sts_missing_fields", 1);
    let f = upload_with(
        &env.client,
        &env.creds(),
        image(8),
        "image/png",
        &env.opts(),
    )
    .await
    .unwrap_err();
    assert!(f.detail.contains("security_token"), "{}", f.detail);
    assert!(f.detail.contains("access_key_secret"), "{}", f.detail);
    assert_eq!(env.media()["uploads"], 0);
}

#[tokio::test]
async fn too_large_for_the_upload_limit() {
    let env = Env::new();
    let opts = UploadOptions {
        max_bytes: 10,
        ..env.opts()
    };
    let f = upload_with(&env.client, &env.creds(), image(9), "image/png", &opts)
        .await
        .unwrap_err();
    assert_eq!(f.status, Some(413));
    assert_eq!(env.media()["sts_v2"], 0);
}

#[tokio::test]
async fn cache_avoids_a_second_upload() {
    let env = Env::new();
    let cache = UploadCache::memory(16);
    let bytes = image(10);
    let first = upload_cached(
        &cache,
        &env.client,
        &env.creds(),
        bytes.clone(),
        "image/png",
        &env.opts(),
    )
    .await
    .unwrap();
    let second = upload_cached(
        &cache,
        &env.client,
        &env.creds(),
        bytes.clone(),
        "image/png",
        &env.opts(),
    )
    .await
    .unwrap();
    assert!(!first.cached && second.cached);
    assert_eq!(first.file_url, second.file_url);
    assert_eq!(env.media()["uploads"], 1);

    // A directory cache is shared between instances (processes) using the same directory.
    let dir = std::env::temp_dir().join(format!("qwen-media-cache-{}", env.sim.port));
    let a = UploadCache::dir(&dir).unwrap();
    let b = UploadCache::dir(&dir).unwrap();
    let other = image(11);
    let up_a = upload_cached(
        &a,
        &env.client,
        &env.creds(),
        other.clone(),
        "image/png",
        &env.opts(),
    )
    .await
    .unwrap();
    let up_b = upload_cached(
        &b,
        &env.client,
        &env.creds(),
        other,
        "image/png",
        &env.opts(),
    )
    .await
    .unwrap();
    assert!(up_b.cached);
    assert_eq!(up_a.file_url, up_b.file_url);
    assert_eq!(env.media()["uploads"], 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn simultaneous_uploads_of_the_same_content_share_one() {
    let env = Env::new();
    let cache = UploadCache::memory(16);
    let (creds, opts) = (env.creds(), env.opts());
    let many = |bytes: Bytes| {
        futures_util::future::join_all((0..4).map(|_| {
            upload_cached(
                &cache,
                &env.client,
                &creds,
                bytes.clone(),
                "image/png",
                &opts,
            )
        }))
    };
    let ups: Vec<_> = many(image(12))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ups.iter().filter(|u| !u.cached).count(), 1);
    assert!(ups.iter().all(|u| u.file_url == ups[0].file_url));
    assert_eq!(env.media()["uploads"], 1);

    // The leader fails (every STS attempt): the three that waited upload for themselves.
    inject(&env.sim, "*", "sts", "sts_500", 4);
    let ups = many(image(13)).await;
    assert!(ups[0].as_ref().is_err_and(|f| f.status == Some(500)));
    assert!(ups[1..].iter().all(|u| u.as_ref().is_ok_and(|u| !u.cached)));
    assert_eq!(env.media()["uploads"], 1 + 3);
}

async fn ingest_one(
    env: &Env,
    settings: &MediaSettings,
    cache: &UploadCache,
    src: String,
) -> Result<qwen_gateway::media::Uploaded, MediaError> {
    let creds = env.creds();
    ingest(&src, MediaKind::Image, settings, cache, &env.client, &creds).await
}

#[tokio::test]
async fn ingest_data_uris_and_urls() {
    use base64::Engine;
    let env = Env::new();
    // The "remote" image is the sim's own CDN on loopback.
    let fetch = FetchOptions {
        allow_private: true,
        ..FetchOptions::default()
    };
    let mut settings = MediaSettings {
        upload: env.opts(),
        fetch,
        ..MediaSettings::default()
    };
    let cache = UploadCache::memory(16);
    let bytes = image(12);
    let uri = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    );
    let up = ingest_one(&env, &settings, &cache, uri.clone())
        .await
        .unwrap();
    assert_eq!(get(&up.file_url).await.2, bytes);
    // The same image again, inline or by URL, is served from the cache.
    assert!(
        ingest_one(&env, &settings, &cache, uri)
            .await
            .unwrap()
            .cached
    );
    let by_url = ingest_one(&env, &settings, &cache, up.file_url.clone())
        .await
        .unwrap();
    assert!(by_url.cached);
    assert_eq!(env.media()["uploads"], 1);

    // Failures are errors with their status, never a silent fall-back.
    let e = ingest_one(&env, &settings, &cache, "data:image/png;base64,%%%".into())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    let e = ingest_one(
        &env,
        &settings,
        &cache,
        "data:text/html;base64,PGgxPg==".into(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), 400);
    settings.max_image_bytes = 8;
    let big = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    );
    let e = ingest_one(&env, &settings, &cache, big).await.unwrap_err();
    assert!(matches!(e, MediaError::TooLarge { limit: 8, .. }), "{e:?}");
    assert_eq!(e.status(), 413);
    settings.max_image_bytes = 1 << 20;
    inject(&env.sim, "*", "sts", "sts_403", 1);
    let e = ingest_one(
        &env,
        &settings,
        &cache,
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(image(13))
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), 502);
    assert!(e.to_string().contains("permission"), "{e}");
}

/// A fake upstream without the v2 STS path: records each request line and answers v1 STS
/// and the OSS PUT.
fn fake_v1_only_upstream() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let mut len = 0;
            let mut auth = String::new();
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap(),
                    "authorization" => auth = v.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let request_line = line.trim().to_string();
            let (status, reply) = if request_line.starts_with("POST /api/v2/files/getstsToken") {
                (404, r#"{"detail":"Not Found"}"#.to_string())
            } else if request_line.starts_with("POST /api/v1/files/getstsToken") {
                let v = serde_json::json!({
                    "access_key_id": "STS.fake", "access_key_secret": "secret",
                    "security_token": "tok", "file_path": "uid/f.png", "file_id": "fid",
                    "file_url": format!("http://127.0.0.1:{port}/cdn/f.png?key=k"),
                    "bucketname": "b", "region": "oss-test-1"});
                (200, v.to_string())
            } else if request_line.starts_with("PUT /b/uid/f.png")
                && auth.starts_with("OSS4-HMAC-SHA256 Credential=STS.fake/")
            {
                (200, String::new())
            } else {
                (400, String::new())
            };
            log.lock().unwrap().push(request_line);
            let mut w = conn;
            let _ = write!(
                w,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (port, seen)
}

#[tokio::test]
async fn auto_falls_back_to_v1_when_v2_is_missing() {
    let (port, seen) = fake_v1_only_upstream();
    let origin = format!("http://127.0.0.1:{port}");
    let t = Duration::from_secs(5);
    let timeouts = Timeouts {
        connect: t,
        first_byte: t,
        idle: t,
    };
    let client = UpstreamClient::new(BaseUrl::parse(&origin).unwrap(), timeouts, 2).unwrap();
    let creds = Credentials {
        token: "t",
        cookie: None,
    };
    let up = upload(&client, &creds, image(20), "image/png", Some(&origin))
        .await
        .unwrap();
    assert_eq!(up.file_url, format!("{origin}/cdn/f.png?key=k"));
    let seen = seen.lock().unwrap().clone();
    let paths: Vec<&str> = seen.iter().map(|l| l.rsplit_once(' ').unwrap().0).collect();
    assert_eq!(
        paths,
        [
            "POST /api/v2/files/getstsToken",
            "POST /api/v1/files/getstsToken",
            "PUT /b/uid/f.png"
        ]
    );
}
