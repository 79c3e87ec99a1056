//! The browser-like header set the web app sends (protocol §1.1). Only `authorization` is
//! known to matter; the rest is cheap camouflage that keeps requests looking ordinary.
//!
//! Every request carries about sixteen of these, so they are built without parsing: names and
//! fixed values are constants, the URL-derived ones are rendered once at start
//! ([`UrlHeaders`]), and they go straight into the header map. Inserting them one by one through
//! `RequestHeader::insert_header` parses each name and copies each value, which measured as
//! roughly a quarter of the gateway's own allocations per chat request.

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, AUTHORIZATION,
    CONTENT_TYPE, COOKIE, ORIGIN, REFERER, USER_AGENT,
};
use pingora::http::RequestHeader;

use super::client::BaseUrl;

pub const BROWSER_USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/149.0.0.0 Safari/537.36";

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const SOURCE: HeaderName = HeaderName::from_static("source");
const VERSION: HeaderName = HeaderName::from_static("version");
const BX_V: HeaderName = HeaderName::from_static("bx-v");
const SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

const fn fixed(v: &'static str) -> HeaderValue {
    HeaderValue::from_static(v)
}

const JSON: HeaderValue = fixed("application/json");
const IDENTITY: HeaderValue = fixed("identity");

/// The URL-derived header values, rendered once when the base URL is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlHeaders {
    pub host: HeaderValue,
    pub origin: HeaderValue,
    pub referer: HeaderValue,
}

impl UrlHeaders {
    pub fn new(authority: &str, origin: &str) -> Result<UrlHeaders, String> {
        let value = |s: String| {
            HeaderValue::from_maybe_shared(Bytes::from(s))
                .map_err(|_| format!("{authority:?} cannot be sent in a header"))
        };
        Ok(UrlHeaders {
            host: value(authority.to_string())?,
            origin: value(origin.to_string())?,
            referer: value(format!("{origin}/"))?,
        })
    }
}

/// Credentials of one upstream account for one call.
pub struct Credentials<'a> {
    pub token: &'a str,
    /// The account's browser cookie, when it came from one.
    pub cookie: Option<&'a str>,
}

/// Runs `f` on the header map of `req`. Pingora's `RequestHeader` offers no mutable access to
/// its map, but converts to and from `http` parts for free; the case-preserving name map is
/// dropped, so names go out in lower case (Pingora title-cases a few standard ones).
pub fn edit(req: &mut RequestHeader, f: impl FnOnce(&mut HeaderMap)) {
    let empty = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts: http::request::Parts = std::mem::replace(req, empty).into();
    f(&mut parts.headers);
    *req = RequestHeader::from(parts);
}

/// A value built at run time; tokens, cookies and ids are plain visible ASCII, and anything
/// else is dropped rather than sent malformed.
fn dynamic(v: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from(v)).ok()
}

fn request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("a uuid is a valid header value")
}

fn browser_common(h: &mut HeaderMap, base: &BaseUrl) {
    h.insert(X_REQUEST_ID, request_id());
    h.insert(USER_AGENT, fixed(BROWSER_USER_AGENT));
    // Compressed bodies would have to be inflated before SSE parsing; ask for none.
    h.insert(ACCEPT_ENCODING, IDENTITY);
    h.insert(SOURCE, fixed("web"));
    h.insert(ORIGIN, base.headers.origin.clone());
    h.insert(REFERER, base.headers.referer.clone());
}

pub fn apply(
    req: &mut RequestHeader,
    base: &BaseUrl,
    creds: &Credentials<'_>,
    accept: &'static str,
) {
    let cookie = match creds.cookie {
        Some(c) if c.contains("token=") => c.to_string(),
        Some(c) => format!("{c}; token={}", creds.token),
        None => format!("token={}", creds.token),
    };
    edit(req, |h| {
        if let Some(v) = dynamic(format!("Bearer {}", creds.token)) {
            h.insert(AUTHORIZATION, v);
        }
        if let Some(v) = dynamic(cookie) {
            h.insert(COOKIE, v);
        }
        browser_common(h, base);
        h.insert(ACCEPT, fixed(accept));
        h.insert(ACCEPT_LANGUAGE, fixed("en-US,en;q=0.9"));
        h.insert(CONTENT_TYPE, JSON);
        h.insert(VERSION, fixed("0.2.68"));
        h.insert(BX_V, fixed("2.5.36"));
        h.insert(SEC_FETCH_DEST, fixed("empty"));
        h.insert(SEC_FETCH_MODE, fixed("cors"));
        h.insert(SEC_FETCH_SITE, fixed("same-origin"));
    });
}

/// Header set for `GET /api/v1/auths/` with only the browser cookie (token from cookie, §2.3).
pub fn apply_cookie_only(req: &mut RequestHeader, base: &BaseUrl, cookie: &str) {
    let cookie = dynamic(cookie.to_string());
    edit(req, |h| {
        if let Some(v) = cookie {
            h.insert(COOKIE, v);
        }
        browser_common(h, base);
        h.insert(ACCEPT, JSON);
    });
}

/// Header set for sign-in, which carries no credentials yet.
pub fn apply_anonymous(req: &mut RequestHeader, base: &BaseUrl) {
    edit(req, |h| {
        browser_common(h, base);
        h.insert(ACCEPT, JSON);
        h.insert(CONTENT_TYPE, JSON);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> BaseUrl {
        BaseUrl::parse("http://127.0.0.1:8080/qwen").unwrap()
    }

    fn wire(req: &RequestHeader) -> String {
        let mut buf = Vec::new();
        req.header_to_h1_wire(&mut buf);
        // Pingora title-cases a few standard names on the wire; case does not matter in HTTP.
        String::from_utf8(buf).unwrap().to_ascii_lowercase()
    }

    #[test]
    fn browser_headers_reach_the_wire() {
        let mut req = RequestHeader::build_no_case("POST", b"/api/v2/chats/new", None).unwrap();
        let creds = Credentials {
            token: "tok",
            cookie: Some("a=b"),
        };
        apply(&mut req, &base(), &creds, "text/event-stream");
        let w = wire(&req);
        for line in [
            "authorization: bearer tok\r\n",
            "cookie: a=b; token=tok\r\n",
            "accept: text/event-stream\r\n",
            "accept-encoding: identity\r\n",
            "origin: http://127.0.0.1:8080\r\n",
            "referer: http://127.0.0.1:8080/\r\n",
            "content-type: application/json\r\n",
            "sec-fetch-site: same-origin\r\n",
        ] {
            assert!(w.contains(line), "{line:?} missing from {w}");
        }
        assert_eq!(req.uri.path(), "/api/v2/chats/new");
        assert_eq!(req.method, "POST");
        let id = req.headers.get("x-request-id").unwrap().to_str().unwrap();
        assert_eq!(id.len(), 36);
    }

    #[test]
    fn a_cookie_with_its_own_token_is_sent_as_is_and_bad_values_are_dropped() {
        let mut req = RequestHeader::build_no_case("GET", b"/", None).unwrap();
        let creds = Credentials {
            token: "tok",
            cookie: Some("token=own; x=y"),
        };
        apply(&mut req, &base(), &creds, "application/json");
        assert_eq!(req.headers.get("cookie").unwrap(), "token=own; x=y");
        let mut req = RequestHeader::build_no_case("GET", b"/", None).unwrap();
        apply_cookie_only(&mut req, &base(), "bad\r\nvalue");
        assert!(req.headers.get("cookie").is_none());
        assert_eq!(req.headers.get("accept").unwrap(), "application/json");
    }

    #[test]
    fn edit_keeps_the_request_line_and_earlier_headers() {
        let mut req = RequestHeader::build("DELETE", b"/api/v2/chats/x?y=1", None).unwrap();
        req.insert_header("host", "example.test").unwrap();
        apply_anonymous(&mut req, &base());
        let w = wire(&req);
        assert!(w.contains("host: example.test\r\n"), "{w}");
        assert_eq!(req.uri.to_string(), "/api/v2/chats/x?y=1");
        assert_eq!(req.method, "DELETE");
    }
}
