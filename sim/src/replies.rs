//! Canned replies: auth failures, business-error envelopes and the fault replies that
//! replace an endpoint's normal answer.

use std::time::Duration;

use bytes::Bytes;
use pingora::protocols::http::ServerSession;

use crate::faults::{EarlyReply, Faults};
use crate::http::{self, Outcome};

pub const SESSION_EXPIRED: &str =
    r#"{"detail":"Your session has expired or the token is invalid. Please sign in again."}"#;
pub const WAF_HTML: &str = concat!(
    "<!doctype html><html><head><meta charset=\"utf-8\">",
    "<meta name=\"aliyun_waf_aa\" content=\"x\"><meta name=\"aliyun_waf_bb\" content=\"y\">",
    "<title>验证</title></head><body><div id=\"nc\">请完成验证后继续访问 (captcha)</div>",
    "<script>/* AWSC baxia punish */</script></body></html>"
);
/// How long a hanging response waits for the client before giving up on its own.
const HANG_LIMIT: Duration = Duration::from_secs(600);

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `{"success":false,"request_id":..,"data":{"code":..,"details":..}}`.
pub fn envelope(code: &str, details: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "success": false, "request_id": request_id(),
            "data": {"code": code, "details": details},
        })
        .to_string(),
    )
}

pub fn rate_limited_envelope() -> Bytes {
    Bytes::from(
        serde_json::json!({
            "success": false, "request_id": request_id(),
            "data": {"code": "RateLimited", "num": 2,
                     "details": "You have reached the upper limit for today's usage"},
        })
        .to_string(),
    )
}

pub async fn unauthorized(session: &mut ServerSession) -> Outcome {
    Outcome::from_write(http::json(session, 401, SESSION_EXPIRED).await)
}

pub async fn bad_json(session: &mut ServerSession) -> Outcome {
    Outcome::from_write(
        http::json(
            session,
            400,
            r#"{"detail":"Request body is not valid JSON"}"#,
        )
        .await,
    )
}

pub async fn early(session: &mut ServerSession, reply: EarlyReply, gzip: bool) -> Outcome {
    use EarlyReply::*;
    let json = "application/json";
    let html = "text/html; charset=utf-8";
    let (status, ctype, extra, body): (u16, &str, &[(&'static str, &str)], Bytes) = match reply {
        Unauthorized => (
            401,
            json,
            &[],
            Bytes::from_static(SESSION_EXPIRED.as_bytes()),
        ),
        UnauthorizedJson => (200, json, &[], envelope("Unauthorized", "token expired")),
        Http429 => (
            429,
            json,
            &[("retry-after", "60"), ("x-actual-status-code", "429")],
            envelope("RateLimited", "Too many requests, please try again later"),
        ),
        RateLimitJson => (200, json, &[], rate_limited_envelope()),
        Transient => (200, json, &[], envelope("Bad_Request", "Internal error")),
        Waf => (403, html, &[], Bytes::from_static(WAF_HTML.as_bytes())),
        Waf200 => (200, html, &[], Bytes::from_static(WAF_HTML.as_bytes())),
        WafSse => (
            200,
            "text/event-stream",
            &[],
            Bytes::from_static(WAF_HTML.as_bytes()),
        ),
        Http500 | ChatsNew500 | Delete500 => (
            500,
            json,
            &[],
            Bytes::from_static(br#"{"detail":"Internal Server Error"}"#),
        ),
        Http502 => (
            502,
            html,
            &[],
            Bytes::from_static(b"<html><body>502 Bad Gateway</body></html>"),
        ),
        ChatsNewFail => (
            200,
            json,
            &[],
            envelope("Bad_Request", "Failed to create chat"),
        ),
        ChatsNewNoId => (
            200,
            json,
            &[],
            Bytes::from(
                serde_json::json!({"success": true, "request_id": request_id(), "data": {}})
                    .to_string(),
            ),
        ),
    };
    Outcome::from_write(http::respond(session, status, ctype, extra, body, gzip).await)
}

/// Blocks until the client closes the connection (or a generous limit passes).
/// Waits, silent, until the client goes away (true) or the hang limit passes (false).
pub async fn hang(session: &mut ServerSession) -> bool {
    session.set_abort_on_close(true);
    loop {
        match tokio::time::timeout(HANG_LIMIT, session.read_body_or_idle(true)).await {
            Err(_) => return false,
            Ok(Ok(Some(_))) => continue,
            Ok(_) => return true,
        }
    }
}

/// Applies the faults that act before a normal response: `no_headers`, `slow_headers` and
/// the canned replies. `Some` means the request has been answered (or abandoned).
pub async fn before_response(session: &mut ServerSession, faults: &Faults) -> Option<Outcome> {
    if faults.no_headers {
        let _ = hang(session).await;
        return Some(Outcome::Close);
    }
    if let Some(ms) = faults.slow_headers_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match faults.early {
        Some(r) => Some(early(session, r, faults.gzip).await),
        None => None,
    }
}
