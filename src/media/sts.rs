//! The STS grant (protocol §7.1): `POST /api/v{1,2}/files/getstsToken` on the Qwen base URL
//! returns a temporary OSS key pair for one object. Both reply shapes are in use in 2026
//! (v1 flat, v2 wrapped in `{success,data}` with an `endpoint`), so the reply is read by its
//! shape, not by the path that produced it; `Auto` asks v2 first and falls back to v1 when
//! v2 does not exist (404/405).

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::convert::classify::{
    classify_html, classify_json_error, classify_status, looks_like_html, Failure, FailureClass,
};
use crate::qwen::client::UpstreamClient;
use crate::qwen::headers::{self, Credentials};

use super::oss::OssCredentials;
use super::retry::{Backoff, Step};

const REPLY_LIMIT: usize = 256 * 1024;
/// Upstream reasons are quoted to the client; long bodies are cut.
const REASON_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StsVersion {
    #[default]
    Auto,
    V1,
    V2,
}

impl StsVersion {
    pub fn parse(s: &str) -> Result<StsVersion, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(StsVersion::Auto),
            "v1" | "1" => Ok(StsVersion::V1),
            "v2" | "2" => Ok(StsVersion::V2),
            other => Err(format!(
                "the STS version must be auto, v1 or v2, not {other:?}"
            )),
        }
    }

    fn path(v2: bool) -> &'static str {
        if v2 {
            "/api/v2/files/getstsToken"
        } else {
            "/api/v1/files/getstsToken"
        }
    }
}

/// What is about to be uploaded, as the STS request describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsRequest {
    pub filename: String,
    pub filesize: usize,
    /// `image`, `video`, `audio`, `document` or `file` (protocol §7.1).
    pub filetype: &'static str,
}

/// The `filetype` field for a MIME type.
pub fn filetype_for(mime: &str) -> &'static str {
    match mime.split('/').next().unwrap_or("") {
        "image" => "image",
        "video" => "video",
        "audio" => "audio",
        "application" | "text" => "document",
        _ => "file",
    }
}

/// One STS grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsGrant {
    pub credentials: OssCredentials,
    pub bucket: String,
    pub file_path: String,
    /// The URL later given to the model.
    pub file_url: String,
    pub file_id: Option<String>,
    /// v2 only: the OSS host, maybe with a scheme.
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StsOptions {
    pub version: StsVersion,
    pub backoff: Backoff,
    /// Per attempt.
    pub timeout: Duration,
}

impl Default for StsOptions {
    fn default() -> Self {
        StsOptions {
            version: StsVersion::Auto,
            backoff: Backoff::default(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// A short, printable reason from an error body (`detail`, `message`, `data.details`, ...).
pub fn reason(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        [
            "/detail",
            "/message",
            "/msg",
            "/error/message",
            "/data/details",
            "/data/code",
        ]
        .iter()
        .find_map(|p| v.pointer(p).and_then(Value::as_str).map(str::to_string))
    });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let one_line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(REASON_CHARS)
        .collect();
    one_line
}

fn field(o: &Value, k: &str) -> Option<String> {
    o.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Reads either reply shape. A `success:false` envelope is classified like any upstream
/// error; a reply missing fields names them, since that means the protocol drifted.
pub fn parse_reply(body: &[u8]) -> Result<StsGrant, Failure> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| Failure::new(FailureClass::Transient, "the STS reply is not JSON"))?;
    if let Some(f) = classify_json_error(body) {
        return Err(Failure {
            detail: format!("the STS request was refused: {}", f.detail),
            ..f
        });
    }
    let data = match v.get("data") {
        Some(d) if d.is_object() && v.get("access_key_id").is_none() => d,
        _ => &v,
    };
    let required = [
        "access_key_id",
        "access_key_secret",
        "security_token",
        "file_url",
        "file_path",
        "bucketname",
    ];
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|k| field(data, k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(Failure::new(
            FailureClass::Transient,
            format!("the STS reply lacks {}", missing.join(", ")),
        ));
    }
    let endpoint = field(data, "endpoint");
    let region = field(data, "region")
        .or_else(|| {
            // `oss-ap-southeast-1.aliyuncs.com` names its region in its first label.
            let e = endpoint.as_deref()?;
            let host = e.rsplit("://").next()?;
            let first = host.split('.').next()?;
            first.starts_with("oss-").then(|| first.to_string())
        })
        .ok_or_else(|| Failure::new(FailureClass::Transient, "the STS reply names no region"))?;
    let get = |k| field(data, k).unwrap_or_default();
    Ok(StsGrant {
        credentials: OssCredentials {
            access_key_id: get("access_key_id"),
            access_key_secret: get("access_key_secret"),
            security_token: get("security_token"),
            region,
        },
        bucket: get("bucketname"),
        file_path: get("file_path"),
        file_url: get("file_url"),
        file_id: field(data, "file_id"),
        endpoint,
    })
}

/// One STS call. 5xx, transport errors and timeouts are worth retrying; everything else
/// (403 permission errors included) is final.
async fn attempt(
    client: &UpstreamClient,
    creds: &Credentials<'_>,
    v2: bool,
    body: Bytes,
    timeout: Duration,
) -> Result<StsGrant, Step> {
    let mut req = client.request("POST", StsVersion::path(v2));
    headers::apply(&mut req, &client.base, creds, "application/json");
    let call = async {
        let mut ex = client.send(req, body).await.map_err(Step::Retry)?;
        let status = ex.status;
        let retry_after = ex.retry_after();
        let text = match ex.read_to_end(REPLY_LIMIT).await {
            Ok(t) => t,
            Err(f) => {
                client.abort(ex).await;
                return Err(Step::Retry(f));
            }
        };
        client.release(ex).await;
        if status != 200 {
            let f = classify_status(status, retry_after, &text);
            let f = Failure {
                detail: format!(
                    "the STS token request failed with HTTP {status}: {}",
                    reason(&text)
                ),
                ..f
            };
            return Err(if status >= 500 {
                Step::Retry(f)
            } else {
                Step::Fatal(f)
            });
        }
        if looks_like_html(&text) {
            return Err(Step::Fatal(classify_html(200, &text)));
        }
        parse_reply(&text).map_err(Step::Fatal)
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(Step::Retry(Failure::new(
            FailureClass::Timeout,
            format!("the STS token request took longer than {timeout:?}"),
        ))),
    }
}

fn is_missing_endpoint(step: &Step) -> bool {
    matches!(step.failure().status, Some(404 | 405))
}

/// Asks for a grant with retries, in the configured version (Auto: v2, then v1 if v2 is
/// not there).
pub async fn request_grant(
    client: &UpstreamClient,
    creds: &Credentials<'_>,
    req: &StsRequest,
    opts: &StsOptions,
) -> Result<StsGrant, Failure> {
    let body = Bytes::from(
        serde_json::json!({
            "filename": req.filename, "filesize": req.filesize, "filetype": req.filetype,
        })
        .to_string(),
    );
    let run = |v2: bool| {
        let body = body.clone();
        opts.backoff
            .run(if v2 { "STS v2" } else { "STS v1" }, move || {
                attempt(client, creds, v2, body.clone(), opts.timeout)
            })
    };
    let result = match opts.version {
        StsVersion::V1 => run(false).await,
        StsVersion::V2 => run(true).await,
        StsVersion::Auto => match run(true).await {
            Err(step) if is_missing_endpoint(&step) => run(false).await,
            other => other,
        },
    };
    result.map_err(Step::into_failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"access_key_id":"STS.a","access_key_secret":"s","security_token":"t",
        "file_url":"https://cdn/x?key=1","file_path":"uid/f.png","file_id":"fid",
        "bucketname":"qwen-webui-prod","region":"oss-ap-southeast-1"}"#;

    #[test]
    fn both_shapes() {
        let g = parse_reply(V1.as_bytes()).unwrap();
        assert_eq!(g.credentials.access_key_id, "STS.a");
        assert_eq!(g.credentials.region, "oss-ap-southeast-1");
        assert_eq!(
            (g.bucket.as_str(), g.file_path.as_str()),
            ("qwen-webui-prod", "uid/f.png")
        );
        assert_eq!(g.file_id.as_deref(), Some("fid"));
        assert_eq!(g.endpoint, None);

        let v2 = format!(
            r#"{{"success":true,"request_id":"r","data":{}}}"#,
            V1.replace(
                r#""region":"oss-ap-southeast-1""#,
                r#""endpoint":"oss-eu-central-1.aliyuncs.com""#
            )
        );
        let g = parse_reply(v2.as_bytes()).unwrap();
        assert_eq!(g.endpoint.as_deref(), Some("oss-eu-central-1.aliyuncs.com"));
        // No region field: derived from the endpoint's first label.
        assert_eq!(g.credentials.region, "oss-eu-central-1");
    }

    #[test]
    fn refusals_and_drift() {
        let f = parse_reply(
            br#"{"success":false,"data":{"code":"Unauthorized","details":"token expired"}}"#,
        )
        .unwrap_err();
        assert_eq!(f.class, FailureClass::Auth);
        assert!(f.detail.contains("token expired"), "{}", f.detail);
        let f = parse_reply(
            br#"{"success":true,"data":{"access_key_id":"a","file_url":"u","file_path":"p","bucketname":"b","region":"r"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            f.detail,
            "the STS reply lacks access_key_secret, security_token"
        );
        assert!(parse_reply(b"<html>").is_err());
        let no_region = V1.replace(r#","region":"oss-ap-southeast-1""#, "");
        assert!(parse_reply(no_region.as_bytes())
            .unwrap_err()
            .detail
            .contains("region"));
    }

    #[test]
    fn reasons_and_types() {
        assert_eq!(
            reason(br#"{"detail":"Internal   Server\nError"}"#),
            "Internal Server Error"
        );
        assert_eq!(
            reason(br#"{"success":false,"data":{"code":"Forbidden","details":"no permission"}}"#),
            "no permission"
        );
        assert_eq!(reason(&[b'x'; 500]).len(), 200);
        assert_eq!(filetype_for("image/png"), "image");
        assert_eq!(filetype_for("application/pdf"), "document");
        assert_eq!(filetype_for("font/woff"), "file");
        assert_eq!(StsVersion::parse("V2"), Ok(StsVersion::V2));
        assert!(StsVersion::parse("v3").is_err());
    }
}
