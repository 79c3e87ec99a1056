//! Downstream authentication: API keys (the first is the admin key), accepted as
//! `Authorization: Bearer` or `x-api-key`, compared in constant time. In client mode the bearer
//! value also carries the caller's own upstream credentials: `api_key;qwen_token;cookie`.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::openai::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No keys are configured: the gateway is open (the seeds' default).
    Open,
    Admin,
    /// A user key, by its position in `API_KEY` (1-based, the admin key is 0).
    User(usize),
}

impl Caller {
    /// A name for logs that reveals nothing about the key.
    pub fn name(&self) -> String {
        match self {
            Caller::Open => "open".into(),
            Caller::Admin => "admin".into(),
            Caller::User(i) => format!("key-{i}"),
        }
    }
}

/// Upstream credentials a client-mode caller supplied.
#[derive(Default)]
pub struct ClientCredentials {
    pub token: Option<String>,
    pub cookie: Option<String>,
}

/// The presented key, from `Authorization: Bearer` or `x-api-key`.
pub fn presented_key<'a>(
    authorization: Option<&'a str>,
    x_api_key: Option<&'a str>,
) -> Option<&'a str> {
    authorization
        .and_then(|v| {
            let v = v.trim();
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .map(str::trim)
        })
        .or(x_api_key.map(str::trim))
        .filter(|k| !k.is_empty())
}

/// Splits a client-mode bearer value `api_key;qwen_token;cookie` (the cookie may contain `;`).
pub fn split_client_mode(value: &str) -> (&str, ClientCredentials) {
    let mut parts = value.splitn(3, ';');
    let key = parts.next().unwrap_or("").trim();
    let token = parts.next().map(str::trim).filter(|t| !t.is_empty());
    let cookie = parts.next().map(str::trim).filter(|c| !c.is_empty());
    (
        key,
        ClientCredentials {
            token: token.map(str::to_string),
            cookie: cookie.map(str::to_string),
        },
    )
}

/// Compares digests so that neither content nor length leaks through timing, and checks every
/// key so the position of a match does not either.
pub fn identify(keys: &[String], presented: Option<&str>) -> Result<Caller, ApiError> {
    if keys.is_empty() {
        return Ok(Caller::Open);
    }
    let Some(p) = presented else {
        return Err(ApiError::unauthorized());
    };
    let pd = Sha256::digest(p.as_bytes());
    let mut found: Option<usize> = None;
    for (i, k) in keys.iter().enumerate() {
        let kd = Sha256::digest(k.as_bytes());
        if bool::from(pd.ct_eq(&kd)) && found.is_none() {
            found = Some(i);
        }
    }
    match found {
        Some(0) => Ok(Caller::Admin),
        Some(i) => Ok(Caller::User(i)),
        None => Err(ApiError::unauthorized()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let keys = vec!["sk-admin".to_string(), "sk-user".to_string()];
        assert_eq!(identify(&keys, Some("sk-admin")).unwrap(), Caller::Admin);
        assert_eq!(identify(&keys, Some("sk-user")).unwrap(), Caller::User(1));
        assert_eq!(identify(&keys, Some("sk-nope")).unwrap_err().status, 401);
        assert_eq!(identify(&keys, None).unwrap_err().status, 401);
        assert_eq!(identify(&[], None).unwrap(), Caller::Open);
    }

    #[test]
    fn presented_forms() {
        assert_eq!(presented_key(Some("Bearer abc"), None), Some("abc"));
        assert_eq!(presented_key(None, Some(" abc ")), Some("abc"));
        assert_eq!(presented_key(Some("Basic x"), None), None);
        assert_eq!(presented_key(Some("Bearer "), None), None);
    }

    #[test]
    fn client_mode_split() {
        let (k, c) = split_client_mode("sk-1;tok;a=1; token=tok");
        assert_eq!(k, "sk-1");
        assert_eq!(c.token.as_deref(), Some("tok"));
        assert_eq!(c.cookie.as_deref(), Some("a=1; token=tok"));
        let (k, c) = split_client_mode("sk-1");
        assert_eq!(k, "sk-1");
        assert!(c.token.is_none() && c.cookie.is_none());
    }
}
