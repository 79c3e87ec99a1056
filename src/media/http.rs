//! One HTTP/1.1 exchange with an arbitrary host, through Pingora's connector like the
//! upstream client (`qwen::client`), for the two calls that do not go to the Qwen base URL:
//! the OSS PUT and remote media fetches. The caller resolves the address itself, so a
//! fetch connects to exactly the address the guard approved (no second DNS lookup).
//!
//! Connections are never returned to the pool: these hosts are arbitrary and rarely
//! reused, and a pooled connection would outlive the runtime that opened it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use once_cell::sync::Lazy;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;

/// Loading the TLS roots is costly, so one connector serves every media call.
static CONNECTOR: Lazy<Connector> = Lazy::new(|| Connector::new(None));

/// Where a request goes: the resolved address plus the name for SNI and `Host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub addr: SocketAddr,
}

impl Target {
    /// The `Host` header value: brackets for IPv6 literals, the port when not the default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect: Duration,
    /// Longest silence while sending or receiving.
    pub io: Duration,
    pub max_body: usize,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: ::http::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    Connect(String),
    Timeout(String),
    Io(String),
    /// The body (announced or received) is larger than the limit.
    TooLarge {
        limit: usize,
    },
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Connect(m) | HttpError::Timeout(m) | HttpError::Io(m) => f.write_str(m),
            HttpError::TooLarge { limit } => write!(f, "the body exceeds {limit} bytes"),
        }
    }
}

fn io_error(e: &pingora::Error, during: &str) -> HttpError {
    use pingora::ErrorType::*;
    let msg = format!("{during}: {}", e.etype().as_str());
    match e.etype() {
        ConnectTimedout | ReadTimedout | WriteTimedout => HttpError::Timeout(msg),
        _ => HttpError::Io(msg),
    }
}

/// A request header for `path` with `Host` set.
pub fn request(method: &str, target: &Target, path: &str) -> Result<RequestHeader, HttpError> {
    let mut req = RequestHeader::build(method, path.as_bytes(), None)
        .map_err(|e| HttpError::Io(format!("invalid request path: {}", e.etype().as_str())))?;
    let _ = req.insert_header("host", target.authority());
    Ok(req)
}

/// Sends `req` with `body` and reads the whole response, refusing bodies over the limit
/// (by `Content-Length` before reading, and while reading).
pub async fn send(
    target: &Target,
    mut req: RequestHeader,
    body: Bytes,
    limits: &Limits,
) -> Result<Response, HttpError> {
    let mut peer = HttpPeer::new(target.addr, target.tls, target.host.clone());
    peer.options.connection_timeout = Some(limits.connect);
    peer.options.total_connection_timeout = Some(limits.connect * 2);
    peer.options.read_timeout = Some(limits.io);
    peer.options.write_timeout = Some(limits.io);
    let (mut s, _) = CONNECTOR.get_http_session(&peer).await.map_err(|e| {
        let msg = format!(
            "connecting to {}: {}",
            target.authority(),
            e.etype().as_str()
        );
        match e.etype() {
            pingora::ErrorType::ConnectTimedout => HttpError::Timeout(msg),
            _ => HttpError::Connect(msg),
        }
    })?;
    let _ = req.insert_header("content-length", body.len().to_string());
    let result = async {
        s.write_request_header(Box::new(req))
            .await
            .map_err(|e| io_error(&e, "sending the request"))?;
        if !body.is_empty() {
            s.write_request_body(body, true)
                .await
                .map_err(|e| io_error(&e, "sending the body"))?;
        }
        s.finish_request_body()
            .await
            .map_err(|e| io_error(&e, "sending the body"))?;
        s.read_response_header()
            .await
            .map_err(|e| io_error(&e, "waiting for the response"))?;
        let (status, headers) = match s.response_header() {
            Some(h) => (h.status.as_u16(), h.headers.clone()),
            None => return Err(HttpError::Io("no response header".into())),
        };
        let announced = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        if announced.is_some_and(|n| n > limits.max_body) {
            return Err(HttpError::TooLarge {
                limit: limits.max_body,
            });
        }
        let mut buf = BytesMut::with_capacity(announced.unwrap_or(8192).min(limits.max_body));
        while let Some(chunk) = s
            .read_response_body()
            .await
            .map_err(|e| io_error(&e, "reading the response"))?
        {
            if buf.len() + chunk.len() > limits.max_body {
                return Err(HttpError::TooLarge {
                    limit: limits.max_body,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body: buf.freeze(),
        })
    }
    .await;
    s.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority() {
        let t = |tls, host: &str, port| Target {
            tls,
            host: host.into(),
            port,
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        assert_eq!(t(true, "oss.example", 443).authority(), "oss.example");
        assert_eq!(t(false, "127.0.0.1", 8080).authority(), "127.0.0.1:8080");
        assert_eq!(t(false, "::1", 80).authority(), "[::1]");
        assert_eq!(t(true, "::1", 8443).authority(), "[::1]:8443");
    }
}
