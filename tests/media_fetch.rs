//! `media::fetch` against a tiny local HTTP server: the private-address guard on the first
//! hop and on every redirect, the redirect limit, the size cap (a distinct error for 413),
//! the content-type check and the timeout.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::time::Duration;

use qwen_gateway::media::{fetch, FetchOptions, MediaError, MediaKind};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\nnot-really-an-image";

/// Serves a fixed set of paths on 127.0.0.1 until the test process ends.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || handle(conn, port));
        }
    });
    port
}

fn handle(mut s: TcpStream, port: u16) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut h = String::new();
    while r.read_line(&mut h).map(|n| n > 2).unwrap_or(false) {
        h.clear();
    }
    let redirect =
        |to: &str| format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\ncontent-length: 0\r\n\r\n");
    let ok = |ct: &str, body: &[u8]| {
        let mut v = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    };
    let out: Vec<u8> = match path.as_str() {
        "/img.png" => ok("image/png", PNG),
        "/img-params" => ok("Image/PNG; charset=binary", PNG),
        "/video.mp4" => ok("video/mp4", b"\0\0\0\x18ftypisom"),
        "/page" => ok("text/html", b"<html></html>"),
        "/empty" => ok("image/png", b""),
        "/big" => ok("image/png", &[7u8; 4096]),
        "/big-chunked" => {
            let mut v =
                b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ntransfer-encoding: chunked\r\n\r\n"
                    .to_vec();
            for _ in 0..8 {
                v.extend_from_slice(b"200\r\n");
                v.extend_from_slice(&[7u8; 512]);
                v.extend_from_slice(b"\r\n");
            }
            v.extend_from_slice(b"0\r\n\r\n");
            v
        }
        "/missing" => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
        "/broken" => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec(),
        "/to-img" => redirect("/img.png").into_bytes(),
        "/to-to-img" => redirect("/to-img").into_bytes(),
        "/to-meta" => redirect("http://169.254.169.254/latest/meta-data/").into_bytes(),
        "/to-ten" => redirect("http://10.0.0.1/x.png").into_bytes(),
        "/to-other-loopback" => redirect(&format!("http://127.0.0.2:{port}/img.png")).into_bytes(),
        "/to-v6-loopback" => redirect(&format!("http://[::1]:{port}/img.png")).into_bytes(),
        "/to-ftp" => redirect("ftp://example.com/x.png").into_bytes(),
        "/loop" => redirect("/loop").into_bytes(),
        "/slow" => {
            std::thread::sleep(Duration::from_secs(3));
            ok("image/png", PNG)
        }
        _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
    };
    let _ = s.write_all(&out);
}

/// Private addresses refused, except the test server's own 127.0.0.1.
fn exempt_server() -> FetchOptions {
    FetchOptions {
        allowed_addrs: vec![IpAddr::from([127, 0, 0, 1])],
        timeout: Duration::from_secs(5),
        ..FetchOptions::default()
    }
}

fn refused(r: Result<(bytes::Bytes, String), MediaError>) -> String {
    match r {
        Err(e @ MediaError::Refused(_)) => {
            assert_eq!(e.status(), 400);
            e.to_string()
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn fetch_status(r: Result<(bytes::Bytes, String), MediaError>) -> (u16, String) {
    match r {
        Err(e @ MediaError::Fetch { .. }) => (e.status(), e.to_string()),
        other => panic!("expected a fetch error, got {other:?}"),
    }
}

#[tokio::test]
async fn private_addresses_are_refused_by_default() {
    let port = serve();
    let opts = FetchOptions::default();
    for url in [
        format!("http://127.0.0.1:{port}/img.png"),
        "http://10.0.0.1/x.png".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://192.168.1.1/".to_string(),
        "http://[fe80::1]/".to_string(),
        format!("http://localhost:{port}/img.png"),
    ] {
        let started = std::time::Instant::now();
        let m = refused(fetch(&url, &opts).await);
        assert!(m.contains("ALLOW_PRIVATE_IMAGE_URLS"), "{m}");
        // Refused before any connection attempt.
        assert!(started.elapsed() < Duration::from_secs(1), "{url}");
    }
    let m = refused(fetch("http://169.254.169.254/latest/meta-data/", &opts).await);
    assert!(
        m.contains("169.254.169.254") && m.contains("link-local"),
        "{m}"
    );
}

#[tokio::test]
async fn allow_private_lets_them_through() {
    let port = serve();
    let opts = FetchOptions {
        allow_private: true,
        ..FetchOptions::default()
    };
    let (bytes, mime) = fetch(&format!("http://127.0.0.1:{port}/img.png"), &opts)
        .await
        .unwrap();
    assert_eq!((&bytes[..], mime.as_str()), (PNG, "image/png"));
    let (bytes, _) = fetch(&format!("http://127.0.0.1:{port}/to-to-img"), &opts)
        .await
        .unwrap();
    assert_eq!(&bytes[..], PNG);
}

#[tokio::test]
async fn redirects_are_checked_at_every_hop() {
    let port = serve();
    let base = format!("http://127.0.0.1:{port}");
    let opts = exempt_server();
    let (bytes, mime) = fetch(&format!("{base}/img-params"), &opts).await.unwrap();
    assert_eq!((&bytes[..], mime.as_str()), (PNG, "image/png"));
    // Relative redirects on the same (exempt) host are followed.
    assert_eq!(
        &fetch(&format!("{base}/to-to-img"), &opts).await.unwrap().0[..],
        PNG
    );
    // A redirect to the metadata service, a private network or another loopback address is
    // refused, although the first hop was allowed.
    let m = refused(fetch(&format!("{base}/to-meta"), &opts).await);
    assert!(m.contains("169.254.169.254"), "{m}");
    let m = refused(fetch(&format!("{base}/to-ten"), &opts).await);
    assert!(m.contains("10.0.0.1") && m.contains("private"), "{m}");
    let m = refused(fetch(&format!("{base}/to-other-loopback"), &opts).await);
    assert!(m.contains("127.0.0.2") && m.contains("loopback"), "{m}");
    let m = refused(fetch(&format!("{base}/to-v6-loopback"), &opts).await);
    assert!(m.contains("::1"), "{m}");
    // Redirects must stay http(s), and there are at most 3 of them.
    let e = fetch(&format!("{base}/to-ftp"), &opts).await.unwrap_err();
    assert!(matches!(e, MediaError::BadInput(_)), "{e:?}");
    let (status, m) = fetch_status(fetch(&format!("{base}/loop"), &opts).await);
    assert_eq!(status, 400);
    assert!(m.contains("more than 3 redirects"), "{m}");
}

#[tokio::test]
async fn size_type_status_and_time_limits() {
    let port = serve();
    let base = format!("http://127.0.0.1:{port}");
    let small = FetchOptions {
        max_bytes: 1024,
        ..exempt_server()
    };
    for path in ["/big", "/big-chunked"] {
        match fetch(&format!("{base}{path}"), &small).await {
            Err(e @ MediaError::TooLarge { limit: 1024, .. }) => {
                assert_eq!(e.status(), 413);
                assert_eq!(e.to_api_error().code, "media_too_large");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    let opts = exempt_server();
    let (status, m) = fetch_status(fetch(&format!("{base}/page"), &opts).await);
    assert_eq!(status, 400);
    assert!(m.contains("text/html") && m.contains("image"), "{m}");
    let (status, _) = fetch_status(fetch(&format!("{base}/empty"), &opts).await);
    assert_eq!(status, 400);
    let (status, m) = fetch_status(fetch(&format!("{base}/missing"), &opts).await);
    assert_eq!(status, 400);
    assert!(m.contains("404"), "{m}");
    let (status, _) = fetch_status(fetch(&format!("{base}/broken"), &opts).await);
    assert_eq!(status, 502);
    // A video is refused where an image is expected, and accepted where video is.
    let (status, _) = fetch_status(fetch(&format!("{base}/video.mp4"), &opts).await);
    assert_eq!(status, 400);
    let video = FetchOptions {
        kind: MediaKind::Video,
        ..exempt_server()
    };
    assert_eq!(
        fetch(&format!("{base}/video.mp4"), &video).await.unwrap().1,
        "video/mp4"
    );
    let quick = FetchOptions {
        timeout: Duration::from_millis(300),
        ..exempt_server()
    };
    let started = std::time::Instant::now();
    let (status, _) = fetch_status(fetch(&format!("{base}/slow"), &quick).await);
    assert_eq!(status, 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    // Nothing listens on port 1: unreachable is a 502.
    let (status, _) = fetch_status(fetch("http://127.0.0.1:1/x.png", &opts).await);
    assert_eq!(status, 502);
}
