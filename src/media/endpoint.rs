//! Where the OSS PUT goes (protocol §7.2). The STS reply names the storage: v2 gives an
//! `endpoint` (a host, maybe with a scheme), v1 only a `region` from which the Alibaba host
//! `<region>.aliyuncs.com` follows. `QWEN_OSS_ENDPOINT` overrides both, so private
//! deployments and tests can point uploads elsewhere. Real OSS wants the bucket in the host
//! name (`<bucket>.<endpoint>`); an IP address or `localhost` cannot carry it, so those are
//! addressed path-style (`/<bucket>/<key>`). The V4 signature covers `/<bucket>/<key>`
//! either way.

use std::net::{IpAddr, SocketAddr};

use super::http::Target;
use super::oss::uri_encode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OssEndpoint {
    pub tls: bool,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    pub path_style: bool,
}

impl OssEndpoint {
    /// `[http://|https://]host[:port][/]`; no scheme means https.
    pub fn parse(s: &str) -> Result<OssEndpoint, String> {
        let s = s.trim();
        let with_scheme = if s.contains("://") {
            s.to_string()
        } else {
            format!("https://{s}")
        };
        let url = url::Url::parse(&with_scheme)
            .map_err(|e| format!("the OSS endpoint {s:?} is not a valid host or URL: {e}"))?;
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(format!("the OSS endpoint {s:?} has scheme {other}")),
        };
        let (host, path_style) = match url.host() {
            Some(url::Host::Domain(d)) => {
                let d = d.to_ascii_lowercase();
                let local = d == "localhost" || d.ends_with(".localhost");
                (d, local)
            }
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), true),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), true),
            None => return Err(format!("the OSS endpoint {s:?} has no host")),
        };
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        Ok(OssEndpoint {
            tls,
            host,
            port,
            path_style,
        })
    }

    /// The override if set, else the STS `endpoint`, else `<region>.aliyuncs.com`.
    pub fn choose(
        override_: Option<&str>,
        sts_endpoint: Option<&str>,
        region: &str,
    ) -> Result<OssEndpoint, String> {
        let pick = override_
            .filter(|s| !s.trim().is_empty())
            .or(sts_endpoint.filter(|s| !s.trim().is_empty()));
        match pick {
            Some(e) => OssEndpoint::parse(e),
            None if !region.trim().is_empty() => {
                OssEndpoint::parse(&format!("{}.aliyuncs.com", region.trim()))
            }
            None => Err("the STS reply names neither an endpoint nor a region".to_string()),
        }
    }

    /// The host name the request is sent to (SNI and `Host`).
    pub fn request_host(&self, bucket: &str) -> String {
        let prefixed = self
            .host
            .strip_prefix(bucket)
            .is_some_and(|r| r.starts_with('.'));
        if self.path_style || prefixed {
            self.host.clone()
        } else {
            format!("{bucket}.{}", self.host)
        }
    }

    /// The request path: `/<bucket>/<key>` path-style, else `/<key>`, percent-encoded with
    /// `/` kept, as in the canonical URI.
    pub fn request_path(&self, bucket: &str, key: &str) -> String {
        if self.path_style {
            uri_encode(&format!("/{bucket}/{key}"), true)
        } else {
            uri_encode(&format!("/{key}"), true)
        }
    }

    /// Resolves the request host (DNS when it is a name) into a connection target.
    pub async fn target(&self, bucket: &str) -> Result<Target, String> {
        let host = self.request_host(bucket);
        let addr = match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.port),
            Err(_) => tokio::net::lookup_host((host.as_str(), self.port))
                .await
                .map_err(|e| format!("cannot resolve the OSS host {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("the OSS host {host} resolves to no address"))?,
        };
        Ok(Target {
            tls: self.tls,
            host,
            port: self.port,
            addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        let e = OssEndpoint::parse("oss-ap-southeast-1.aliyuncs.com").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.path_style),
            (true, "oss-ap-southeast-1.aliyuncs.com", 443, false)
        );
        let e = OssEndpoint::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.path_style),
            (false, "127.0.0.1", 9000, true)
        );
        let e = OssEndpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!((e.host.as_str(), e.path_style), ("::1", true));
        assert!(OssEndpoint::parse("localhost:9000").unwrap().path_style);
        assert!(OssEndpoint::parse("ftp://x").is_err());
        assert!(OssEndpoint::parse("http://").is_err());
    }

    #[test]
    fn choice_and_addressing() {
        let e = OssEndpoint::choose(None, None, "oss-ap-southeast-1").unwrap();
        assert_eq!(
            e.request_host("qwen-webui-prod"),
            "qwen-webui-prod.oss-ap-southeast-1.aliyuncs.com"
        );
        assert_eq!(
            e.request_path("qwen-webui-prod", "u/a b.png"),
            "/u/a%20b.png"
        );
        let e = OssEndpoint::choose(
            None,
            Some("https://qwen-webui-prod.oss-x.aliyuncs.com"),
            "r",
        )
        .unwrap();
        assert_eq!(
            e.request_host("qwen-webui-prod"),
            "qwen-webui-prod.oss-x.aliyuncs.com"
        );
        let e =
            OssEndpoint::choose(Some("http://127.0.0.1:1"), Some("https://ignored"), "r").unwrap();
        assert_eq!(e.request_host("b"), "127.0.0.1");
        assert_eq!(e.request_path("b", "u/k.png"), "/b/u/k.png");
        assert!(OssEndpoint::choose(Some(" "), None, "").is_err());
    }

    #[tokio::test]
    async fn targets() {
        let e = OssEndpoint::parse("http://127.0.0.1:9000").unwrap();
        let t = e.target("b").await.unwrap();
        assert_eq!(t.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(t.authority(), "127.0.0.1:9000");
    }
}
