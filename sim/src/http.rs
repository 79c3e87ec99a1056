//! Thin helpers over Pingora's `ServerSession`: read a whole request, write a whole response.

use std::io::Write;

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;

/// Request bodies beyond this are refused; the gateway's largest test bodies are a few MB.
const MAX_BODY: usize = 32 << 20;

/// The parts of a request the handlers use, copied out so the session can be written to.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: ::http::Method,
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub cookie: Option<String>,
    pub request_id: Option<String>,
    pub source: Option<String>,
    pub version: Option<String>,
    pub bx_v: Option<String>,
    pub body: Bytes,
}

#[derive(Debug)]
pub enum ReadError {
    TooLarge,
    Io,
}

/// What to do with the connection once a handler is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The exchange completed cleanly: finish and offer the stream for keep-alive.
    Done,
    /// Drop the connection as is (fault injection, or a write failed).
    Close,
}

impl Outcome {
    pub fn from_write(ok: bool) -> Outcome {
        if ok {
            Outcome::Done
        } else {
            Outcome::Close
        }
    }
}

fn header(session: &ServerSession, name: &str) -> Option<String> {
    session
        .get_header(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Reads the header fields of interest and the complete body (drained even if unused).
pub async fn read_request(session: &mut ServerSession) -> Result<Request, ReadError> {
    let req = session.req_header();
    let method = req.method.clone();
    let path = req.uri.path().to_string();
    let query = req.uri.query().map(str::to_string);
    let expect_continue = session
        .get_header("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut r = Request {
        method,
        path,
        query,
        authorization: header(session, "authorization"),
        cookie: header(session, "cookie"),
        request_id: header(session, "x-request-id"),
        source: header(session, "source"),
        version: header(session, "version"),
        bx_v: header(session, "bx-v"),
        body: Bytes::new(),
    };
    if expect_continue {
        // Writing the interim 100 would otherwise disable keep-alive (body not read yet).
        session.set_close_on_response_before_downstream_finish(false);
        let sent = session.write_continue_response().await;
        session.set_close_on_response_before_downstream_finish(true);
        sent.map_err(|_| ReadError::Io)?;
    }
    let mut buf: Option<BytesMut> = None;
    let mut first: Option<Bytes> = None;
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|_| ReadError::Io)?
    {
        // The common single-chunk body is kept without copying.
        match (&mut first, &mut buf) {
            (None, None) => first = Some(chunk),
            (Some(f), None) => {
                let mut b = BytesMut::with_capacity(f.len() + chunk.len() * 2);
                b.extend_from_slice(f);
                b.extend_from_slice(&chunk);
                first = None;
                buf = Some(b);
            }
            (_, Some(b)) => b.extend_from_slice(&chunk),
        }
        let len = first.as_ref().map_or(0, Bytes::len) + buf.as_ref().map_or(0, BytesMut::len);
        if len > MAX_BODY {
            return Err(ReadError::TooLarge);
        }
    }
    r.body = match (first, buf) {
        (Some(f), _) => f,
        (None, Some(b)) => b.freeze(),
        (None, None) => Bytes::new(),
    };
    Ok(r)
}

impl Request {
    /// The JWT from `Authorization: Bearer` or, failing that, a `token=` cookie.
    pub fn token(&self) -> Option<&str> {
        if let Some(a) = self.authorization.as_deref() {
            let a = a.trim();
            if a.len() > 7 && a[..7].eq_ignore_ascii_case("bearer ") {
                return Some(a[7..].trim());
            }
        }
        self.cookie_token()
    }

    pub fn cookie_token(&self) -> Option<&str> {
        self.cookie.as_deref()?.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k.trim() == "token" && !v.trim().is_empty()).then(|| v.trim())
        })
    }

    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
    }
}

pub fn gzip(data: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    Bytes::from(enc.finish().unwrap_or_default())
}

/// Writes a complete response with `Content-Length`. Returns false if the client is gone.
pub async fn respond(
    session: &mut ServerSession,
    status: u16,
    content_type: &str,
    extra: &[(&'static str, &str)],
    body: Bytes,
    compress: bool,
) -> bool {
    let body = if compress { gzip(&body) } else { body };
    let Ok(mut h) = ResponseHeader::build(status, Some(4 + extra.len())) else {
        return false;
    };
    let mut ok = h.insert_header("content-type", content_type).is_ok()
        && h.insert_header("content-length", body.len().to_string())
            .is_ok();
    if compress {
        ok &= h.insert_header("content-encoding", "gzip").is_ok();
    }
    for (k, v) in extra {
        ok &= h.insert_header(*k, *v).is_ok();
    }
    if !ok || session.write_response_header(Box::new(h)).await.is_err() {
        return false;
    }
    session.write_response_body(body, true).await.is_ok()
}

pub async fn json(session: &mut ServerSession, status: u16, body: impl Into<Bytes>) -> bool {
    respond(session, status, "application/json", &[], body.into(), false).await
}

/// Starts a chunked `text/event-stream` response.
pub async fn start_sse(session: &mut ServerSession, compress: bool) -> bool {
    let Ok(mut h) = ResponseHeader::build(200, Some(5)) else {
        return false;
    };
    let mut ok = h
        .insert_header("content-type", "text/event-stream; charset=utf-8")
        .is_ok()
        && h.insert_header("transfer-encoding", "chunked").is_ok()
        && h.insert_header("cache-control", "no-cache").is_ok()
        && h.insert_header("x-accel-buffering", "no").is_ok();
    if compress {
        ok &= h.insert_header("content-encoding", "gzip").is_ok();
    }
    ok && session.write_response_header(Box::new(h)).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>, cookie: Option<&str>) -> Request {
        Request {
            method: ::http::Method::GET,
            path: "/".into(),
            query: Some("page=2&exclude_project=true&flag".into()),
            authorization: auth.map(String::from),
            cookie: cookie.map(String::from),
            request_id: None,
            source: None,
            version: None,
            bx_v: None,
            body: Bytes::new(),
        }
    }

    #[test]
    fn token_sources() {
        assert_eq!(req(Some("Bearer abc"), None).token(), Some("abc"));
        assert_eq!(req(Some("bearer  abc "), None).token(), Some("abc"));
        assert_eq!(
            req(None, Some("cna=x;token=t1; ssxmod_itna=y")).token(),
            Some("t1")
        );
        assert_eq!(req(Some("Basic zzz"), Some("a=b")).token(), None);
        assert_eq!(req(None, Some("xtoken=1")).token(), None);
    }

    #[test]
    fn query_params() {
        let r = req(None, None);
        assert_eq!(r.query_param("page"), Some("2"));
        assert_eq!(r.query_param("flag"), Some(""));
        assert_eq!(r.query_param("limit"), None);
    }
}
