//! Downloading a client's http(s) media URL so it can be uploaded like inline data. The URL
//! comes from the client, so this is the gateway's SSRF surface: the host is resolved here,
//! every address it resolves to must pass the [`guard`](super::guard) (unless private
//! addresses are allowed), the connection goes to the address that was checked (no second
//! DNS lookup that could answer differently), and each redirect target is checked the same
//! way. A size cap (a distinct error, so the caller can answer 413), a total timeout and a
//! content-type check bound the rest.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;

use super::error::MediaError;
use super::guard::non_public_kind;
use super::http::{self, HttpError, Limits, Target};
use super::{essence, MediaKind};

pub const DEFAULT_MAX_FETCH: usize = 10 << 20;
const USER_AGENT: &str = "Mozilla/5.0 (compatible; qwen-gateway/0.1; media fetch)";

#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// `ALLOW_PRIVATE_IMAGE_URLS`: fetch from private, loopback and link-local addresses too.
    pub allow_private: bool,
    /// Exact addresses exempt from the guard (one trusted internal host, or a test server)
    /// without opening every private address.
    pub allowed_addrs: Vec<IpAddr>,
    pub max_bytes: usize,
    /// For the whole fetch: DNS, redirects and body.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_redirects: usize,
    pub kind: MediaKind,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            allow_private: false,
            allowed_addrs: Vec::new(),
            max_bytes: DEFAULT_MAX_FETCH,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_redirects: 3,
            kind: MediaKind::Image,
        }
    }
}

fn fetch_err(status: u16, detail: impl Into<String>) -> MediaError {
    MediaError::Fetch {
        status,
        detail: detail.into(),
    }
}

/// Parses and vets a URL: http or https, a host, no credentials in it.
pub fn parse_url(s: &str) -> Result<url::Url, MediaError> {
    let url = url::Url::parse(s.trim())
        .map_err(|e| MediaError::BadInput(format!("the media URL is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(MediaError::BadInput(format!(
            "the media URL scheme {:?} is not supported (use http, https or a data: URI)",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(MediaError::BadInput("the media URL has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(MediaError::BadInput(
            "the media URL must not carry credentials".into(),
        ));
    }
    Ok(url)
}

/// The address to connect to, after checking every address the host resolves to.
async fn checked_target(url: &url::Url, opts: &FetchOptions) -> Result<Target, MediaError> {
    let tls = url.scheme() == "https";
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let (host, addrs): (String, Vec<IpAddr>) = match url.host() {
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), vec![IpAddr::V4(ip)]),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), vec![IpAddr::V6(ip)]),
        Some(url::Host::Domain(d)) => {
            let found = tokio::net::lookup_host((d, port))
                .await
                .map_err(|e| fetch_err(400, format!("cannot resolve {d}: {e}")))?;
            (d.to_string(), found.map(|a| a.ip()).collect())
        }
        None => return Err(MediaError::BadInput("the media URL has no host".into())),
    };
    let Some(first) = addrs.first().copied() else {
        return Err(fetch_err(400, format!("{host} resolves to no address")));
    };
    if !opts.allow_private {
        // Any internal address refuses the host: with several records, which one a client
        // library would pick is not something to bet the internal network on.
        for ip in &addrs {
            if opts.allowed_addrs.contains(ip) {
                continue;
            }
            if let Some(kind) = non_public_kind(*ip) {
                let named = if host == ip.to_string() {
                    format!("{ip}")
                } else {
                    format!("{host} ({ip})")
                };
                return Err(MediaError::Refused(format!(
                    "{named} is a {kind} address; media URLs must point to public hosts \
                     (ALLOW_PRIVATE_IMAGE_URLS=true lifts this)"
                )));
            }
        }
    }
    Ok(Target {
        tls,
        host,
        port,
        addr: SocketAddr::new(first, port),
    })
}

/// Fetches `url`, returning the body and its lower-case media type.
pub async fn fetch(url: &str, opts: &FetchOptions) -> Result<(Bytes, String), MediaError> {
    let url = parse_url(url)?;
    match tokio::time::timeout(opts.timeout, fetch_inner(url, opts)).await {
        Ok(r) => r,
        Err(_) => Err(fetch_err(
            504,
            format!("the download took longer than {:?}", opts.timeout),
        )),
    }
}

async fn fetch_inner(
    mut url: url::Url,
    opts: &FetchOptions,
) -> Result<(Bytes, String), MediaError> {
    let mut hops = 0;
    loop {
        let target = checked_target(&url, opts).await?;
        let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let mut req = http::request("GET", &target, path).map_err(|e| {
            MediaError::BadInput(format!("the media URL cannot be requested ({e})"))
        })?;
        for (k, v) in [
            ("user-agent", USER_AGENT),
            ("accept", opts.kind.accept_header()),
            ("accept-encoding", "identity"),
        ] {
            let _ = req.insert_header(k, v);
        }
        let limits = Limits {
            connect: opts.connect_timeout,
            io: opts.timeout,
            max_body: opts.max_bytes,
        };
        let host = target.authority();
        let resp = match http::send(&target, req, Bytes::new(), &limits).await {
            Ok(r) => r,
            Err(HttpError::TooLarge { limit }) => {
                return Err(MediaError::TooLarge {
                    limit,
                    what: format!("{} at the URL", opts.kind.noun()),
                })
            }
            Err(HttpError::Timeout(m)) => return Err(fetch_err(504, format!("{host}: {m}"))),
            Err(e) => return Err(fetch_err(502, format!("{host}: {e}"))),
        };
        match resp.status {
            301 | 302 | 303 | 307 | 308 => {
                if hops >= opts.max_redirects {
                    return Err(fetch_err(
                        400,
                        format!("more than {} redirects", opts.max_redirects),
                    ));
                }
                let location = resp.header("location").ok_or_else(|| {
                    fetch_err(502, format!("{host} redirected without a Location"))
                })?;
                let next = url.join(location).map_err(|e| {
                    fetch_err(400, format!("{host} redirected to an invalid URL ({e})"))
                })?;
                // Checked again from the top: scheme, credentials, then the address guard.
                url = parse_url(next.as_str())?;
                hops += 1;
            }
            200..=299 => {
                let mime = essence(resp.header("content-type").unwrap_or(""));
                if !opts.kind.accepts(&mime) {
                    let got = if mime.is_empty() {
                        "no content type"
                    } else {
                        &mime
                    };
                    return Err(fetch_err(
                        400,
                        format!("{host} served {got}, expected {}", opts.kind.expected()),
                    ));
                }
                if resp.body.is_empty() {
                    return Err(fetch_err(400, format!("{host} served an empty body")));
                }
                return Ok((resp.body, mime));
            }
            s @ 400..=499 => return Err(fetch_err(400, format!("{host} answered HTTP {s}"))),
            s => return Err(fetch_err(502, format!("{host} answered HTTP {s}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<Target, MediaError>) -> String {
        match r {
            Err(MediaError::Refused(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn urls() {
        assert!(parse_url("https://example.com/a.png").is_ok());
        for bad in [
            "ftp://example.com/a.png",
            "file:///etc/passwd",
            "https://user:pw@example.com/a.png",
            "not a url",
            "http://",
        ] {
            assert!(
                matches!(parse_url(bad), Err(MediaError::BadInput(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn guard_without_connecting() {
        let opts = FetchOptions::default();
        for (u, kind) in [
            ("http://127.0.0.1/x", "loopback"),
            ("http://10.0.0.5/x", "private"),
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://[::1]/x", "loopback"),
            ("http://[::ffff:10.0.0.1]/x", "private"),
            // Alternative spellings normalised by the URL parser.
            ("http://0x7f.1/x", "loopback"),
            ("http://2130706433/x", "loopback"),
            ("http://localhost/x", "loopback"),
        ] {
            let m = refused(checked_target(&parse_url(u).unwrap(), &opts).await);
            assert!(m.contains(kind), "{u}: {m}");
        }
        let open = FetchOptions {
            allow_private: true,
            ..FetchOptions::default()
        };
        let t = checked_target(&parse_url("https://127.0.0.1:8443/x").unwrap(), &open)
            .await
            .unwrap();
        assert_eq!((t.tls, t.addr), (true, "127.0.0.1:8443".parse().unwrap()));
        let exempt = FetchOptions {
            allowed_addrs: vec!["127.0.0.1".parse().unwrap()],
            ..FetchOptions::default()
        };
        assert!(
            checked_target(&parse_url("http://127.0.0.1/x").unwrap(), &exempt)
                .await
                .is_ok()
        );
        assert!(
            checked_target(&parse_url("http://127.0.0.2/x").unwrap(), &exempt)
                .await
                .is_err()
        );
    }
}
