//! The browser-like header set the web app sends (protocol §1.1). Only `authorization` is
//! known to matter; the rest is cheap camouflage that keeps requests looking ordinary.

use pingora::http::RequestHeader;

use super::client::BaseUrl;

const USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/149.0.0.0 Safari/537.36";

/// Credentials of one upstream account for one call.
pub struct Credentials<'a> {
    pub token: &'a str,
    /// The account's browser cookie, when it came from one.
    pub cookie: Option<&'a str>,
}

pub fn apply(req: &mut RequestHeader, base: &BaseUrl, creds: &Credentials<'_>, accept: &str) {
    let origin = base.origin();
    let cookie = match creds.cookie {
        Some(c) if c.contains("token=") => c.to_string(),
        Some(c) => format!("{c}; token={}", creds.token),
        None => format!("token={}", creds.token),
    };
    for (k, v) in [
        ("authorization", format!("Bearer {}", creds.token)),
        ("cookie", cookie),
        ("x-request-id", uuid::Uuid::new_v4().to_string()),
        ("user-agent", USER_AGENT.to_string()),
        ("accept", accept.to_string()),
        ("accept-language", "en-US,en;q=0.9".to_string()),
        // Compressed bodies would have to be inflated before SSE parsing; ask for none.
        ("accept-encoding", "identity".to_string()),
        ("content-type", "application/json".to_string()),
        ("source", "web".to_string()),
        ("version", "0.2.68".to_string()),
        ("bx-v", "2.5.36".to_string()),
        ("origin", origin.clone()),
        ("referer", format!("{origin}/")),
        ("sec-fetch-dest", "empty".to_string()),
        ("sec-fetch-mode", "cors".to_string()),
        ("sec-fetch-site", "same-origin".to_string()),
    ] {
        let _ = req.insert_header(k, v);
    }
}

/// Header set for `GET /api/v1/auths/` with only the browser cookie (token from cookie, §2.3).
pub fn apply_cookie_only(req: &mut RequestHeader, base: &BaseUrl, cookie: &str) {
    let origin = base.origin();
    for (k, v) in [
        ("cookie", cookie.to_string()),
        ("x-request-id", uuid::Uuid::new_v4().to_string()),
        ("user-agent", USER_AGENT.to_string()),
        ("accept", "application/json".to_string()),
        ("accept-encoding", "identity".to_string()),
        ("source", "web".to_string()),
        ("origin", origin.clone()),
        ("referer", format!("{origin}/")),
    ] {
        let _ = req.insert_header(k, v);
    }
}

/// Header set for sign-in, which carries no credentials yet.
pub fn apply_anonymous(req: &mut RequestHeader, base: &BaseUrl) {
    let origin = base.origin();
    for (k, v) in [
        ("x-request-id", uuid::Uuid::new_v4().to_string()),
        ("user-agent", USER_AGENT.to_string()),
        ("accept", "application/json".to_string()),
        ("accept-encoding", "identity".to_string()),
        ("content-type", "application/json".to_string()),
        ("source", "web".to_string()),
        ("origin", origin.clone()),
        ("referer", format!("{origin}/")),
    ] {
        let _ = req.insert_header(k, v);
    }
}
