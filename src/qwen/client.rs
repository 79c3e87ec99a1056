//! Calls to the Qwen upstream through Pingora's own connector, so side calls and completions
//! share one TLS stack and one connection pool model with the proxy (pingora-notes §13).

use std::future::Future;
use std::net::ToSocketAddrs;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::compression::ResponseCompressionCtx;
use pingora::upstreams::peer::HttpPeer;

use crate::convert::classify::{Failure, FailureClass};

use super::headers::{self as browser, UrlHeaders};

/// `scheme://host[:port][/prefix]`, parsed once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub prefix: String,
    /// `Host`, `Origin` and `Referer` for this URL, rendered once.
    pub headers: UrlHeaders,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?} must start with http:// or https://"));
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("{url:?} has an invalid port"))?;
                (h.trim_start_matches('[').trim_end_matches(']'), port)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let authority = if port == (if tls { 443 } else { 80 }) {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        let origin = format!("{}://{authority}", if tls { "https" } else { "http" });
        Ok(BaseUrl {
            tls,
            host: host.to_string(),
            port,
            prefix: prefix.to_string(),
            headers: UrlHeaders::new(&authority, &origin)?,
        })
    }

    /// The `Host` header value.
    pub fn authority(&self) -> String {
        String::from_utf8_lossy(self.headers.host.as_bytes()).into_owned()
    }

    /// `scheme://authority` for Origin/Referer headers.
    pub fn origin(&self) -> String {
        String::from_utf8_lossy(self.headers.origin.as_bytes()).into_owned()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
}

pub struct UpstreamClient {
    connector: Connector,
    peer: HttpPeer,
    pub base: BaseUrl,
    timeouts: Timeouts,
}

/// One request in flight: the response header has been read, the body may be streamed.
pub struct Exchange {
    session: HttpSession,
    pub status: u16,
    /// Set when the upstream compressed a body it was asked not to (gzip, br, zstd): the body
    /// is decoded here so that everything above sees plain bytes.
    decoder: Option<Box<ResponseCompressionCtx>>,
}

/// A decoder for a compressed response body, or `None` for a plain one.
fn body_decoder(session: &HttpSession) -> Option<Box<ResponseCompressionCtx>> {
    let header = session.response_header()?;
    header.headers.get("content-encoding")?;
    let mut ctx = ResponseCompressionCtx::new(0, true, false);
    let mut header = header.clone();
    ctx.response_header_filter(&mut header, false);
    Some(Box::new(ctx))
}

fn io_failure(e: &pingora::Error, during: &str) -> Failure {
    use pingora::ErrorType::*;
    let class = match e.etype() {
        ConnectTimedout | ReadTimedout | WriteTimedout => FailureClass::Timeout,
        _ => FailureClass::Transient,
    };
    Failure::new(class, format!("{during}: {}", e.etype().as_str()))
}

impl UpstreamClient {
    pub fn new(base: BaseUrl, timeouts: Timeouts, pool_size: usize) -> Result<Self, String> {
        let addr = (base.host.as_str(), base.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", base.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", base.host))?;
        let mut peer = HttpPeer::new(addr, base.tls, base.host.clone());
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.total_connection_timeout = Some(timeouts.connect * 2);
        peer.options.read_timeout = Some(timeouts.idle);
        peer.options.write_timeout = Some(timeouts.idle);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        let connector = Connector::new(Some(pingora::connectors::ConnectorOptions::new(pool_size)));
        Ok(UpstreamClient {
            connector,
            peer,
            base,
            timeouts,
        })
    }

    /// Builds a request header for `path` (relative to the base URL's prefix).
    pub fn request(&self, method: &str, path: &str) -> RequestHeader {
        let full = format!("{}{}", self.base.prefix, path);
        // No case map: every header this client sends is lower case (see `headers::edit`).
        let mut req = RequestHeader::build_no_case(method, full.as_bytes(), Some(20))
            .expect("method and path are valid");
        let host = self.base.headers.host.clone();
        browser::edit(&mut req, |h| {
            h.insert(http::header::HOST, host);
        });
        req
    }

    /// Sends a request and reads the response header. A pooled connection that turns out to be
    /// dead before answering is retried once on a fresh one, which is safe because the upstream
    /// never saw the request.
    pub async fn send(&self, mut req: RequestHeader, body: Bytes) -> Result<Exchange, Failure> {
        browser::edit(&mut req, |h| {
            h.insert(http::header::CONTENT_LENGTH, body.len().into());
        });
        let mut last = None;
        for _ in 0..2 {
            // Boxed: the connector's future (TLS handshake included) is several KiB, and inline
            // it would stay reserved in every open stream's future long after connecting.
            let (mut session, reused) = Box::pin(self.connector.get_http_session(&self.peer))
                .await
                .map_err(|e| io_failure(&e, "connecting to the upstream"))?;
            match self.exchange(&mut session, req.clone(), body.clone()).await {
                Ok(status) => {
                    let decoder = body_decoder(&session);
                    return Ok(Exchange {
                        session,
                        status,
                        decoder,
                    });
                }
                Err(e) => {
                    session.shutdown().await;
                    if reused && e.class != FailureClass::Timeout {
                        last = Some(e);
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Failure::new(FailureClass::Transient, "no connection")))
    }

    async fn exchange(
        &self,
        s: &mut HttpSession,
        req: RequestHeader,
        body: Bytes,
    ) -> Result<u16, Failure> {
        s.write_request_header(Box::new(req))
            .await
            .map_err(|e| io_failure(&e, "sending the request"))?;
        if !body.is_empty() {
            s.write_request_body(body, true)
                .await
                .map_err(|e| io_failure(&e, "sending the request body"))?;
        }
        s.finish_request_body()
            .await
            .map_err(|e| io_failure(&e, "sending the request body"))?;
        s.set_read_timeout(Some(self.timeouts.first_byte));
        s.read_response_header()
            .await
            .map_err(|e| io_failure(&e, "waiting for the response header"))?;
        s.set_read_timeout(Some(self.timeouts.idle));
        Ok(s.response_header().map_or(0, |h| h.status.as_u16()))
    }

    /// How long an upstream body may stay silent before the read fails.
    pub fn idle_timeout(&self) -> Duration {
        self.timeouts.idle
    }

    /// Returns a fully read connection to the pool, or closes one that is not reusable.
    pub async fn release(&self, mut ex: Exchange) {
        if ex.session.response_done() {
            // Boxed for the same reason as the connect in `send`.
            Box::pin(self.connector.release_http_session(
                ex.session,
                &self.peer,
                Some(Duration::from_secs(60)),
            ))
            .await;
        } else {
            ex.session.shutdown().await;
        }
    }

    /// Closes a connection whose body will not be read to the end. Boxed: every open stream's
    /// state machine would otherwise reserve room for it at each of its many call sites.
    pub fn abort(&self, mut ex: Exchange) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move { ex.session.shutdown().await })
    }
}

impl Exchange {
    /// Stops Pingora timing each body read: a caller that bounds upstream silence with its own
    /// timer saves a timer registration and two allocations per read (see `relay`).
    pub fn untimed_reads(&mut self) {
        self.session.set_read_timeout(None);
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.session
            .response_header()
            .and_then(|h| h.headers.get(name))
            .and_then(|v| v.to_str().ok())
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
    }

    pub fn is_event_stream(&self) -> bool {
        self.header("content-type")
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/event-stream"))
    }

    /// The next piece of the body; `None` at its end. Idle longer than the idle timeout fails.
    pub async fn read(&mut self) -> Result<Option<Bytes>, Failure> {
        loop {
            let chunk = self
                .session
                .read_response_body()
                .await
                .map_err(|e| io_failure(&e, "reading the upstream stream"))?;
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(chunk);
            };
            let Some(chunk) = chunk else {
                // The decoder may still hold the end of the body.
                let rest = decoder.response_body_filter(None, true);
                self.decoder = None;
                return Ok(rest.filter(|b| !b.is_empty()));
            };
            match decoder.response_body_filter(Some(&chunk), false) {
                // A compressed chunk can decode to nothing yet; callers want data or the end.
                Some(plain) if plain.is_empty() => continue,
                Some(plain) => return Ok(Some(plain)),
                None => return Ok(Some(chunk)),
            }
        }
    }

    /// Reads the whole body, failing past `limit` bytes rather than buffering without bound.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Bytes, Failure> {
        let mut buf = BytesMut::new();
        while let Some(b) = self.read().await? {
            if buf.len() + b.len() > limit {
                return Err(Failure::new(
                    FailureClass::Transient,
                    format!("the upstream reply exceeded {limit} bytes"),
                ));
            }
            buf.extend_from_slice(&b);
        }
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let b = BaseUrl::parse("https://chat.qwen.ai").unwrap();
        assert_eq!(
            (b.tls, b.host.as_str(), b.port, b.prefix.as_str()),
            (true, "chat.qwen.ai", 443, "")
        );
        assert_eq!(b.authority(), "chat.qwen.ai");
        let b = BaseUrl::parse("http://127.0.0.1:8080/qwen/").unwrap();
        assert_eq!(
            (b.tls, b.host.as_str(), b.port, b.prefix.as_str()),
            (false, "127.0.0.1", 8080, "/qwen")
        );
        assert_eq!(b.origin(), "http://127.0.0.1:8080");
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("http://").is_err());
        assert!(BaseUrl::parse("http://h:notaport").is_err());
    }
}
