//! Reads a JWT's `exp` without verifying it: the gateway is not the token's audience, it only
//! needs to know when to refresh.

use base64::Engine;

pub fn expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("exp")?.as_f64().map(|f| f as i64)
}

/// The token found in a browser cookie string (`...; token=<jwt>; ...`).
pub fn token_from_cookie(cookie: &str) -> Option<&str> {
    cookie
        .split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix("token="))
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exp() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"id":"u","exp":1900000000}"#);
        assert_eq!(expiry(&format!("h.{payload}.s")), Some(1_900_000_000));
        assert_eq!(expiry("garbage"), None);
        assert_eq!(expiry("a.b.c"), None);
    }

    #[test]
    fn cookie_token() {
        assert_eq!(token_from_cookie("a=1; token=abc; b=2"), Some("abc"));
        assert_eq!(token_from_cookie("a=1"), None);
    }
}
