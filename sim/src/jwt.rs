//! HS256 JWTs shaped like the upstream's (`{"id": <user uuid>, "exp": <unix s>}`) and the
//! SHA-256 password digest the sign-in endpoint expects.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// `{"alg":"HS256","typ":"JWT"}`, base64url without padding; constant, so precomputed.
const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub id: String,
    pub exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    Malformed,
    BadSignature,
    Expired,
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn sign(secret: &[u8], signing_input: &[u8]) -> [u8; 32] {
    // new_from_slice only fails for fixed-size keys; HMAC accepts any length.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(signing_input);
    mac.finalize().into_bytes().into()
}

pub fn mint(secret: &str, user_id: &str, exp: i64) -> String {
    let payload = serde_json::json!({ "id": user_id, "exp": exp }).to_string();
    let mut token = String::with_capacity(200);
    token.push_str(HEADER_B64);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload.as_bytes(), &mut token);
    let sig = sign(secret.as_bytes(), token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut token);
    token
}

/// Checks structure, algorithm, signature (constant time via `verify_slice`) and expiry.
pub fn verify(secret: &str, token: &str, now: i64) -> Result<Claims, JwtError> {
    let mut parts = token.trim().splitn(3, '.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let header = URL_SAFE_NO_PAD.decode(h).map_err(|_| JwtError::Malformed)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| JwtError::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(JwtError::Malformed);
    }
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(&token.trim().as_bytes()[..h.len() + 1 + p.len()]);
    mac.verify_slice(&sig).map_err(|_| JwtError::BadSignature)?;

    let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| JwtError::Malformed)?;
    let payload: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)?;
    let id = payload
        .get("id")
        .and_then(|v| v.as_str())
        .ok_or(JwtError::Malformed)?
        .to_string();
    let exp = payload
        .get("exp")
        .and_then(|v| v.as_i64())
        .ok_or(JwtError::Malformed)?;
    if exp <= now {
        return Err(JwtError::Expired);
    }
    Ok(Claims { id, exp })
}

/// Lower-case hex SHA-256, the form peers send as the sign-in "password".
pub fn sha256_hex(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        out.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_constant_matches_json() {
        let decoded = URL_SAFE_NO_PAD.decode(HEADER_B64).unwrap();
        assert_eq!(decoded, br#"{"alg":"HS256","typ":"JWT"}"#);
    }

    #[test]
    fn mint_then_verify_roundtrip() {
        let now = now_secs();
        let t = mint("s3cret", "user-1", now + 100);
        assert_eq!(t.matches('.').count(), 2);
        let c = verify("s3cret", &t, now).unwrap();
        assert_eq!(
            c,
            Claims {
                id: "user-1".into(),
                exp: now + 100
            }
        );
    }

    #[test]
    fn wrong_secret_and_tampering_are_rejected() {
        let now = now_secs();
        let t = mint("s3cret", "user-1", now + 100);
        assert_eq!(verify("other", &t, now), Err(JwtError::BadSignature));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(format!(r#"{{"id":"user-2","exp":{}}}"#, now + 100));
        parts[1] = &forged;
        assert_eq!(
            verify("s3cret", &parts.join("."), now),
            Err(JwtError::BadSignature)
        );
        assert_eq!(verify("s3cret", "abc", now), Err(JwtError::Malformed));
        assert_eq!(verify("s3cret", "a.b.c", now), Err(JwtError::Malformed));
    }

    #[test]
    fn expiry_is_enforced() {
        let now = now_secs();
        let t = mint("k", "u", now - 1);
        assert_eq!(verify("k", &t, now), Err(JwtError::Expired));
        let t = mint("k", "u", now + 1);
        assert!(verify("k", &t, now).is_ok());
        assert_eq!(verify("k", &t, now + 1), Err(JwtError::Expired));
    }

    #[test]
    fn sha256_hex_known_vector() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
