//! Downstream authentication: API keys (the first is the admin key), accepted as
//! `Authorization: Bearer` or `x-api-key`, compared in constant time
//! (`store::keys::KeyRegistry::identify`, which also knows the keys added through the admin
//! API). In client mode the bearer value also carries the caller's own upstream credentials:
//! `api_key;qwen_token;cookie`.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::keys::KeyEntry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No keys are configured: the gateway is open (the seeds' default).
    Open,
    Admin,
    /// A user key: configured (`key-1`..) or added through the admin API.
    User(Arc<KeyEntry>),
}

impl Caller {
    /// A name for logs that reveals nothing about the key: its id.
    pub fn name(&self) -> String {
        match self {
            Caller::Open => "open".into(),
            Caller::Admin => "admin".into(),
            Caller::User(k) => k.id.clone(),
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

/// Compares two secrets in constant time (through their digests, so length does not leak).
pub fn secret_eq(a: &str, b: &str) -> bool {
    let da = Sha256::digest(a.as_bytes());
    let db = Sha256::digest(b.as_bytes());
    bool::from(da.ct_eq(&db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare() {
        assert!(secret_eq("sk-admin", "sk-admin"));
        assert!(!secret_eq("sk-admin", "sk-admin2"));
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
