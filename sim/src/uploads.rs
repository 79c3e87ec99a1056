//! File upload (protocol §7): `POST /api/v{1,2}/files/getstsToken` grants a temporary key
//! pair for one object, and the OSS emulator (`PUT /<bucket>/<key>`, path-style on the sim's
//! own address) stores it after checking the security token and the V4 or V1 signature.

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cdn;
use crate::faults::Endpoint;
use crate::http::{self, Outcome, Request};
use crate::jwt;
use crate::media_state::{Issued, MediaState, StoredObject, UploadRecord};
use crate::oss_sign::{self, percent_decode, uri_encode, SignedRequest, Verdict};
use crate::replies;
use crate::routes::parse_body;
use crate::Inner;

pub const BUCKET: &str = "qwen-webui-sim";
pub const REGION: &str = "oss-ap-southeast-1";
/// The upstream's documented upload limit (§7.1).
const MAX_FILE: u64 = 100 << 20;
/// OSS refuses V4 requests whose `x-oss-date` is further than this from its clock.
const MAX_SKEW_SECS: i64 = 15 * 60;

/// Keeps a client-chosen file name safe to embed in an object key and a URL.
fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if cleaned.trim_matches('.').is_empty() {
        "file".to_string()
    } else {
        cleaned
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn filesize(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        // The Android app sends it as a string.
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub async fn sts(sim: &Inner, s: &mut ServerSession, req: &Request, v2: bool) -> Outcome {
    let media = &sim.state.media;
    MediaState::bump(if v2 { &media.sts_v2 } else { &media.sts_v1 }, 1);
    let Some((acc, _)) = sim.authenticate(req) else {
        return replies::unauthorized(s).await;
    };
    let faults = sim.faults_for(&acc.email, Endpoint::Sts);
    if let Some(o) = replies::before_response(s, &faults).await {
        return o;
    }
    if faults.media.sts_403 {
        let out = replies::envelope("Forbidden", "You do not have permission to upload files.");
        return Outcome::from_write(http::json(s, 403, out).await);
    }
    if faults.media.sts_500 {
        return Outcome::from_write(
            http::json(s, 500, r#"{"detail":"Internal Server Error"}"#).await,
        );
    }
    let Some(body) = parse_body(req) else {
        return replies::bad_json(s).await;
    };
    if filesize(body.get("filesize")).is_some_and(|n| n > MAX_FILE) {
        let out = replies::envelope("Bad_Request", "File size exceeds the 100MB limit");
        return Outcome::from_write(http::json(s, 200, out).await);
    }
    let filename = safe_name(body.get("filename").and_then(Value::as_str).unwrap_or(""));
    let file_id = uuid::Uuid::new_v4().to_string();
    let file_path = format!("{}/{file_id}_{filename}", acc.id);
    let origin = cdn::origin(s);
    let grant = Issued {
        email: acc.email.clone(),
        access_key_id: format!(
            "STS.sim{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        ),
        secret: uuid::Uuid::new_v4().simple().to_string(),
        token: format!(
            "CAIS{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ),
        bucket: BUCKET.to_string(),
        file_path: file_path.clone(),
        region: REGION.to_string(),
    };
    let file_url = format!(
        "{origin}/cdn/files/{BUCKET}/{}?key={}",
        uri_encode(&file_path, true),
        cdn::url_key()
    );
    let mut data = json!({
        "access_key_id": grant.access_key_id, "access_key_secret": grant.secret,
        "security_token": grant.token, "file_url": file_url, "file_path": file_path,
        "file_id": file_id, "bucketname": BUCKET, "region": REGION,
    });
    media.issue(grant);
    if faults.media.sts_missing_fields {
        if let Some(o) = data.as_object_mut() {
            o.remove("security_token");
            o.remove("access_key_secret");
        }
    }
    let out = if v2 {
        data["endpoint"] = json!(origin);
        json!({"success": true, "request_id": uuid::Uuid::new_v4().to_string(), "data": data})
    } else {
        data
    };
    Outcome::from_write(http::json(s, 200, out.to_string()).await)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An OSS error document, the shape real OSS answers with.
async fn oss_error(
    sim: &Inner,
    s: &mut ServerSession,
    status: u16,
    code: &str,
    message: &str,
    string_to_sign: Option<&str>,
) -> Outcome {
    MediaState::bump(&sim.state.media.oss_rejected, 1);
    let request_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    let extra = string_to_sign
        .map(|t| format!("\n  <StringToSign>{}</StringToSign>", xml_escape(t)))
        .unwrap_or_default();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>{code}</Code>\n  \
         <Message>{}</Message>\n  <RequestId>{request_id}</RequestId>\n  \
         <HostId>qwen-sim</HostId>{extra}\n</Error>\n",
        xml_escape(message)
    );
    Outcome::from_write(
        http::respond(
            s,
            status,
            "application/xml",
            &[("x-oss-request-id", &request_id)],
            Bytes::from(body),
            false,
        )
        .await,
    )
}

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYYMMDDTHHMMSSZ` -> Unix seconds.
pub fn parse_oss_date(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| v.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, s) = (n(9..11)?, n(11..13)?, n(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

pub async fn oss_put(sim: &Inner, s: &mut ServerSession, req: &Request) -> Outcome {
    let Some((bucket, raw_key)) = req.path.trim_start_matches('/').split_once('/') else {
        return oss_error(sim, s, 400, "InvalidObjectName", "No object key.", None).await;
    };
    let (bucket, key) = (bucket.to_string(), percent_decode(raw_key));
    let headers: Vec<(String, String)> = s
        .req_header()
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let signed = SignedRequest {
        method: "PUT",
        bucket: &bucket,
        key: &key,
        query: req.query.as_deref(),
        headers: &headers,
    };
    let token = signed.header("x-oss-security-token").unwrap_or("");
    let Some(grant) = sim.state.media.grant(token) else {
        let msg = "The security token you provided is invalid.";
        return oss_error(sim, s, 403, "InvalidSecurityToken", msg, None).await;
    };
    let faults = sim.faults_for(&grant.email, Endpoint::Oss);
    if let Some(o) = replies::before_response(s, &faults).await {
        return o;
    }
    let auth = req.authorization.as_deref().unwrap_or("");
    let verdict = if faults.media.oss_signature_mismatch {
        Verdict::Mismatch {
            string_to_sign: "(forced by the oss_signature_mismatch fault)".to_string(),
        }
    } else if auth.starts_with(oss_sign::V4_PREFIX) {
        let skewed = signed
            .header("x-oss-date")
            .and_then(parse_oss_date)
            .is_some_and(|t| (t - jwt::now_secs()).abs() > MAX_SKEW_SECS);
        if skewed {
            let msg = "The difference between the request time and the current time is too large.";
            return oss_error(sim, s, 403, "RequestTimeTooSkewed", msg, None).await;
        }
        oss_sign::verify_v4(
            &signed,
            auth,
            &grant.access_key_id,
            &grant.secret,
            &grant.region,
        )
    } else if auth.starts_with(oss_sign::V1_PREFIX) {
        oss_sign::verify_v1(&signed, auth, &grant.access_key_id, &grant.secret)
    } else {
        Verdict::Malformed("Authorization must be OSS4-HMAC-SHA256 or OSS")
    };
    let auth_kind = if auth.starts_with(oss_sign::V4_PREFIX) {
        "v4"
    } else {
        "v1"
    };
    match verdict {
        Verdict::Valid => {}
        Verdict::Mismatch { string_to_sign } => {
            let msg = "The request signature we calculated does not match the signature you \
                       provided. Check your key and signing method.";
            return oss_error(
                sim,
                s,
                403,
                "SignatureDoesNotMatch",
                msg,
                Some(&string_to_sign),
            )
            .await;
        }
        Verdict::WrongAccessKey => {
            let msg = "The OSS Access Key Id you provided does not exist in our records.";
            return oss_error(sim, s, 403, "InvalidAccessKeyId", msg, None).await;
        }
        Verdict::Malformed(m) => {
            return oss_error(sim, s, 400, "InvalidArgument", m, None).await;
        }
    }
    if bucket != grant.bucket || key != grant.file_path {
        let msg = "The security token does not permit writing this object.";
        return oss_error(sim, s, 403, "AccessDenied", msg, None).await;
    }
    let content_type = signed
        .header("content-type")
        .unwrap_or("application/octet-stream")
        .to_string();
    let digest = Sha256::digest(&req.body);
    let etag = format!("\"{}\"", hex(&digest[..16]).to_uppercase());
    let size = req.body.len();
    let media = &sim.state.media;
    media.store(
        &bucket,
        &key,
        StoredObject {
            bytes: req.body.clone(),
            content_type: content_type.clone(),
        },
        UploadRecord {
            email: grant.email.clone(),
            bucket: bucket.clone(),
            key: key.clone(),
            size,
            content_type,
            auth: auth_kind,
            sha256: hex(&digest),
        },
    );
    MediaState::bump(&media.uploads, 1);
    MediaState::bump(&media.upload_bytes, size as u64);
    let request_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    Outcome::from_write(
        http::respond(
            s,
            200,
            "application/xml",
            &[("etag", &etag), ("x-oss-request-id", &request_id)],
            Bytes::new(),
            false,
        )
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dates() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("a b?.png"), "a_b_.png");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(safe_name(""), "file");
        assert_eq!(parse_oss_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_oss_date("20260706T084358Z"), Some(1_783_327_438));
        assert_eq!(parse_oss_date("20000229T235959Z"), Some(951_868_799));
        assert_eq!(parse_oss_date("2026-07-06T08:43"), None);
        assert_eq!(parse_oss_date("20261306T084358Z"), None);
        assert_eq!(filesize(Some(&json!("12"))), Some(12));
        assert_eq!(filesize(Some(&json!(12))), Some(12));
        assert_eq!(filesize(None), None);
    }
}
