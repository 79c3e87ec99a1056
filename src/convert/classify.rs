//! What went wrong upstream, in the order the protocol reference classifies it (§16.4: WAF,
//! auth, rate limit, transient, moderation), and what the client is told about it.

use crate::openai::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// An anti-bot page: not the account's fault.
    Waf,
    /// The account's token was refused.
    Auth,
    RateLimit,
    /// 5xx, `Bad_Request` internal errors, `internal_error`, broken or truncated streams.
    Transient,
    /// The content was refused by the upstream's input moderation.
    Moderation,
    /// A well-formed answer with no text at all, which in practice means a silent rate limit.
    Empty,
    Timeout,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Waf => "waf",
            FailureClass::Auth => "auth",
            FailureClass::RateLimit => "rate_limit",
            FailureClass::Transient => "transient",
            FailureClass::Moderation => "moderation",
            FailureClass::Empty => "empty",
            FailureClass::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    /// Safe to show a client: built from upstream error text, never from credentials.
    pub detail: String,
    pub retry_after: Option<u64>,
    /// The upstream's HTTP status, when the failure was a non-200 reply.
    pub status: Option<u16>,
}

impl Failure {
    pub fn new(class: FailureClass, detail: impl Into<String>) -> Self {
        Failure {
            class,
            detail: detail.into(),
            retry_after: None,
            status: None,
        }
    }

    /// The client-facing error for this failure once no identity is left to try.
    pub fn to_api_error(&self) -> ApiError {
        let d = &self.detail;
        let e = match self.class {
            FailureClass::Waf => ApiError::new(
                503,
                "upstream_error",
                "upstream_verification_required",
                format!("The Qwen upstream answered with a human-verification (WAF) page instead of a reply: {d}"),
            )
            .with_retry_after(60),
            FailureClass::Auth => ApiError::new(
                502,
                "upstream_error",
                "upstream_auth_failed",
                format!("The Qwen upstream rejected the gateway's account credentials: {d}"),
            ),
            FailureClass::RateLimit => ApiError::new(
                429,
                "rate_limit_error",
                "upstream_rate_limited",
                format!("The Qwen upstream is rate limiting: {d}"),
            )
            .with_retry_after(self.retry_after.unwrap_or(30)),
            FailureClass::Empty => ApiError::new(
                429,
                "rate_limit_error",
                "upstream_empty_response",
                format!("The Qwen upstream returned an empty answer, which usually means the account is rate limited: {d}"),
            )
            .with_retry_after(self.retry_after.unwrap_or(30)),
            FailureClass::Transient => ApiError::new(
                502,
                "upstream_error",
                "upstream_error",
                format!("The Qwen upstream failed: {d}"),
            ),
            FailureClass::Moderation => ApiError::new(
                400,
                "invalid_request_error",
                "content_filter",
                format!("The Qwen upstream's content moderation refused the request: {d}"),
            ),
            FailureClass::Timeout => ApiError::new(
                504,
                "upstream_error",
                "upstream_timeout",
                format!("The Qwen upstream did not answer in time: {d}"),
            ),
        };
        if let (Some(s), None) = (self.retry_after, e.retry_after) {
            return e.with_retry_after(s);
        }
        e
    }
}

/// HTML where JSON or SSE was expected.
pub fn looks_like_html(body: &[u8]) -> bool {
    let t = body.trim_ascii_start();
    t.first() == Some(&b'<')
}

/// Marks of the upstream's anti-bot pages (protocol §1.3), as opposed to any other HTML
/// such as a load balancer's error page.
const WAF_MARKS: &[&str] = &[
    "aliyun_waf",
    "captcha",
    "awsc",
    "x5sec",
    "baxia",
    "punish",
    "verify",
    "验证",
];

/// Classifies an HTML body: a WAF page, or some other page from something in between.
pub fn classify_html(status: u16, body: &[u8]) -> Failure {
    let head = &body[..body.len().min(64 * 1024)];
    let text = String::from_utf8_lossy(head).to_lowercase();
    if WAF_MARKS.iter().any(|m| text.contains(m)) {
        Failure::new(
            FailureClass::Waf,
            format!("HTTP {status} with a verification page"),
        )
    } else {
        Failure::new(
            FailureClass::Transient,
            format!("HTTP {status} with an HTML page"),
        )
    }
}

/// Classifies a business-error code or text from an envelope, error event or status body.
pub fn classify_code(code: &str, text: &str) -> FailureClass {
    let c = code.to_ascii_lowercase();
    let t = text.to_ascii_lowercase();
    if c.contains("unauthor")
        || t.contains("unauthor")
        || t.contains("login")
        || c == "token_expired"
    {
        FailureClass::Auth
    } else if c.contains("ratelimit")
        || c.contains("rate_limit")
        || t.contains("quota")
        || t.contains("upper limit")
        || t.contains("too many")
    {
        FailureClass::RateLimit
    } else if c.contains("data_inspection") || t.contains("内容安全") {
        FailureClass::Moderation
    } else {
        FailureClass::Transient
    }
}

/// Classifies a non-200 upstream reply from its status, headers and (bounded) body.
/// The longest rest an upstream may ask for. Its quota replies name hours (up to a day); an
/// absurd value must not bench an account for ever, nor overflow clock arithmetic (a panic).
pub const MAX_RETRY_AFTER_SECS: u64 = 7 * 24 * 3600;

pub fn classify_status(status: u16, retry_after: Option<u64>, body: &[u8]) -> Failure {
    let retry_after = retry_after.map(|s| s.min(MAX_RETRY_AFTER_SECS));
    Failure {
        status: Some(status),
        ..classify_status_inner(status, retry_after, body)
    }
}

fn classify_status_inner(status: u16, retry_after: Option<u64>, body: &[u8]) -> Failure {
    if looks_like_html(body) {
        let f = classify_html(status, body);
        if f.class == FailureClass::Waf || status == 200 {
            return f;
        }
    }
    let (class, detail) = match status {
        401 | 403 => (FailureClass::Auth, format!("HTTP {status}")),
        429 => (FailureClass::RateLimit, format!("HTTP {status}")),
        408 | 504 => (FailureClass::Timeout, format!("HTTP {status}")),
        _ => {
            if let Some(f) = classify_json_error(body) {
                return Failure { retry_after, ..f };
            }
            (FailureClass::Transient, format!("HTTP {status}"))
        }
    };
    Failure {
        class,
        detail,
        retry_after,
        status: None,
    }
}

/// Classifies a JSON error document (`success:false` envelope or `error` object) if it is one.
pub fn classify_json_error(body: &[u8]) -> Option<Failure> {
    let ev = crate::qwen::events::parse(body).ok()?;
    if let Some(err) = &ev.error {
        return Some(from_error(err));
    }
    if let Some(data) = &ev.data {
        if let Some(err) = &data.error {
            return Some(from_error(err));
        }
        if ev.success == Some(false) {
            let code = data.code.as_deref().unwrap_or("");
            let details = data.details.as_deref().unwrap_or("");
            let class = classify_code(code, details);
            let retry_after = data
                .num
                .as_ref()
                .and_then(|n| n.as_f64())
                .filter(|_| class == FailureClass::RateLimit)
                // `as` saturates (NaN becomes 0); the bound keeps the rest finite.
                .map(|h| ((h * 3600.0) as u64).min(MAX_RETRY_AFTER_SECS));
            return Some(Failure {
                class,
                detail: format!("{code}: {details}"),
                retry_after,
                status: None,
            });
        }
    }
    if ev.success == Some(false) {
        return Some(Failure::new(FailureClass::Transient, "success:false"));
    }
    None
}

pub fn from_error(err: &crate::qwen::events::RawError<'_>) -> Failure {
    let code = err.code.as_deref().unwrap_or("");
    let text = err
        .message
        .as_deref()
        .or(err.details.as_deref())
        .unwrap_or("");
    Failure::new(classify_code(code, text), format!("{code}: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify_status(401, None, b"{}").class, FailureClass::Auth);
        let f = classify_status(429, Some(60), b"{}");
        assert_eq!(
            (f.class, f.retry_after),
            (FailureClass::RateLimit, Some(60))
        );
        assert_eq!(
            classify_status(403, None, b"<!doctype html><meta name=aliyun_waf_aa>").class,
            FailureClass::Waf
        );
        assert_eq!(
            classify_status(502, None, b"<html><body>Bad Gateway</body></html>").class,
            FailureClass::Transient
        );
        assert_eq!(
            classify_status(502, None, b"").class,
            FailureClass::Transient
        );
        assert_eq!(classify_status(504, None, b"").class, FailureClass::Timeout);
        // An absurd Retry-After is bounded (it once could overflow the pool's clock arithmetic).
        let f = classify_status(429, Some(u64::MAX), b"{}");
        assert_eq!(f.retry_after, Some(MAX_RETRY_AFTER_SECS));
    }

    #[test]
    fn envelopes_and_events() {
        let f = classify_json_error(
            br#"{"success":false,"data":{"code":"RateLimited","num":2,"details":"upper limit"}}"#,
        )
        .unwrap();
        assert_eq!(
            (f.class, f.retry_after),
            (FailureClass::RateLimit, Some(7200))
        );
        for (num, want) in [("1e300", MAX_RETRY_AFTER_SECS), ("-3", 0)] {
            let body = format!(
                r#"{{"success":false,"data":{{"code":"RateLimited","num":{num},"details":"x"}}}}"#
            );
            let f = classify_json_error(body.as_bytes()).unwrap();
            assert_eq!(f.retry_after, Some(want), "num {num}");
        }
        let f = classify_json_error(
            br#"{"success":false,"data":{"code":"Bad_Request","details":"Internal error"}}"#,
        )
        .unwrap();
        assert_eq!(f.class, FailureClass::Transient);
        let f = classify_json_error(
            br#"{"error":{"code":"internal_error","message":"Allocated quota exceeded"}}"#,
        )
        .unwrap();
        assert_eq!(f.class, FailureClass::RateLimit);
        let f = classify_json_error(
            r#"{"error":{"code":"data_inspection_failed","details":"内容安全警告"}}"#.as_bytes(),
        )
        .unwrap();
        assert_eq!(f.class, FailureClass::Moderation);
        let f = classify_json_error(
            br#"{"success":false,"data":{"code":"Unauthorized","details":"token expired"}}"#,
        )
        .unwrap();
        assert_eq!(f.class, FailureClass::Auth);
        assert!(classify_json_error(br#"{"choices":[]}"#).is_none());
    }

    #[test]
    fn api_errors_are_truthful() {
        assert_eq!(
            Failure::new(FailureClass::Waf, "x").to_api_error().status,
            503
        );
        let e = Failure::new(FailureClass::RateLimit, "x").to_api_error();
        assert_eq!((e.status, e.retry_after), (429, Some(30)));
        assert_eq!(
            Failure::new(FailureClass::Timeout, "x")
                .to_api_error()
                .status,
            504
        );
    }
}
