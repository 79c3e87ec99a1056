//! Uploading one file to Qwen's storage (protocol §7): an STS grant from the Qwen base URL,
//! then a V4-signed PUT of the raw bytes to OSS, which may live on another host. The
//! resulting `file_url` is what a completion references; the bytes are never sent inline.
//! A failure at either step is returned with the upstream's reason so the client sees why.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::convert::classify::{Failure, FailureClass};
use crate::qwen::client::UpstreamClient;
use crate::qwen::headers::Credentials;

use super::cache::{content_key, UploadCache};
use super::endpoint::OssEndpoint;
use super::flight::{self, Flight};
use super::http::{self, HttpError, Limits, Target};
use super::oss::{self, PutObject};
use super::retry::{Backoff, Step};
use super::sts::{self, StsGrant, StsOptions, StsRequest, StsVersion};

/// The upstream's documented file limit (§7.1).
pub const DEFAULT_MAX_UPLOAD: usize = 100 << 20;
/// OSS answers a PUT with a short XML document at most.
const OSS_REPLY_LIMIT: usize = 64 * 1024;
const USER_AGENT: &str = "qwen-gateway/0.1 (media upload)";

#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// `QWEN_OSS_ENDPOINT`: where to PUT instead of the host the STS reply names.
    pub oss_endpoint: Option<String>,
    pub sts_version: StsVersion,
    /// Retries after the first attempt, for STS and OSS each (5xx, transport, timeouts).
    pub retries: u32,
    /// First back-off pause (doubling): 1 s in production, milliseconds in tests.
    pub backoff_unit: Duration,
    pub sts_timeout: Duration,
    /// Per OSS attempt, connect to last byte.
    pub oss_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_bytes: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            oss_endpoint: None,
            sts_version: StsVersion::Auto,
            retries: 3,
            backoff_unit: Duration::from_secs(1),
            sts_timeout: Duration::from_secs(30),
            oss_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            max_bytes: DEFAULT_MAX_UPLOAD,
        }
    }
}

impl UploadOptions {
    fn backoff(&self) -> Backoff {
        Backoff {
            retries: self.retries,
            unit: self.backoff_unit,
        }
    }
}

/// An uploaded file, with what a `files[]` item (§7.4) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The URL to give the model.
    pub file_url: String,
    /// `None` when the URL came from the cache.
    pub file_id: Option<String>,
    /// `<user_id>/...`; `None` when the URL came from the cache.
    pub file_path: Option<String>,
    pub filename: String,
    pub mime: String,
    pub size: usize,
    /// Hex SHA-256 of the bytes (the cache key).
    pub sha256: String,
    /// True when no upload happened because the cache knew the file.
    pub cached: bool,
}

impl Uploaded {
    /// The account's user id: the first segment of `file_path` (§7.1).
    pub fn user_id(&self) -> Option<&str> {
        self.file_path.as_deref()?.split('/').next()
    }
}

/// The file extension Qwen's web client would give this type.
pub fn extension_for(mime: &str) -> &'static str {
    match mime {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/bmp" => "bmp",
        "image/svg+xml" => "svg",
        "image/tiff" => "tiff",
        "image/heic" => "heic",
        "image/avif" => "avif",
        "video/mp4" => "mp4",
        "video/webm" => "webm",
        "video/quicktime" => "mov",
        "video/x-msvideo" => "avi",
        "video/x-matroska" => "mkv",
        "audio/mpeg" => "mp3",
        "audio/wav" | "audio/x-wav" => "wav",
        "application/pdf" => "pdf",
        _ => "bin",
    }
}

/// Uploads with default options and an optional OSS endpoint override.
pub async fn upload(
    client: &UpstreamClient,
    creds: &Credentials<'_>,
    bytes: Bytes,
    mime: &str,
    oss_endpoint_override: Option<&str>,
) -> Result<Uploaded, Failure> {
    let opts = UploadOptions {
        oss_endpoint: oss_endpoint_override.map(str::to_string),
        ..UploadOptions::default()
    };
    upload_with(client, creds, bytes, mime, &opts).await
}

/// Uploads unless the cache already holds this content's URL; remembers new uploads.
pub async fn upload_cached(
    cache: &UploadCache,
    client: &UpstreamClient,
    creds: &Credentials<'_>,
    bytes: Bytes,
    mime: &str,
    opts: &UploadOptions,
) -> Result<Uploaded, Failure> {
    let key = content_key(&bytes);
    if let Some(url) = cache.lookup(&key).await {
        return Ok(from_cache(url, key, mime, bytes.len()));
    }
    // Held until the URL is remembered: the same content arriving meanwhile waits for it.
    let _lead = match cache.flight(&key) {
        Some(Flight::Follow(rx)) => {
            flight::wait(rx).await;
            if let Some(url) = cache.lookup(&key).await {
                return Ok(from_cache(url, key, mime, bytes.len()));
            }
            None
        }
        lead => lead,
    };
    let up = upload_with(client, creds, bytes, mime, opts).await?;
    cache.remember(&key, &up.file_url);
    Ok(up)
}

fn from_cache(url: String, key: String, mime: &str, size: usize) -> Uploaded {
    Uploaded {
        file_url: url,
        file_id: None,
        file_path: None,
        filename: String::new(),
        mime: mime.to_string(),
        size,
        sha256: key,
        cached: true,
    }
}

/// STS grant, then the signed OSS PUT, each with retries.
pub async fn upload_with(
    client: &UpstreamClient,
    creds: &Credentials<'_>,
    bytes: Bytes,
    mime: &str,
    opts: &UploadOptions,
) -> Result<Uploaded, Failure> {
    if bytes.is_empty() {
        return Err(Failure::new(FailureClass::Transient, "the file is empty"));
    }
    if bytes.len() > opts.max_bytes {
        return Err(Failure {
            status: Some(413),
            ..Failure::new(
                FailureClass::Transient,
                format!(
                    "the file is larger than the upload limit of {} bytes",
                    opts.max_bytes
                ),
            )
        });
    }
    let mime = mime.trim().to_ascii_lowercase();
    let filename = format!("{}.{}", uuid::Uuid::new_v4(), extension_for(&mime));
    let sts_opts = StsOptions {
        version: opts.sts_version,
        backoff: opts.backoff(),
        timeout: opts.sts_timeout,
    };
    let req = StsRequest {
        filename: filename.clone(),
        filesize: bytes.len(),
        filetype: sts::filetype_for(&mime),
    };
    let grant = sts::request_grant(client, creds, &req, &sts_opts).await?;
    put(&grant, &bytes, &mime, opts).await?;
    Ok(Uploaded {
        file_url: grant.file_url,
        file_id: grant.file_id,
        file_path: Some(grant.file_path),
        filename,
        mime,
        size: bytes.len(),
        sha256: content_key(&bytes),
        cached: false,
    })
}

fn oss_failure(detail: String, status: Option<u16>, class: FailureClass) -> Failure {
    Failure {
        status,
        ..Failure::new(class, detail)
    }
}

/// `<Code>` and `<Message>` of an OSS error document.
fn oss_error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].trim().to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => sts::reason(body),
    }
}

async fn put(
    grant: &StsGrant,
    bytes: &Bytes,
    mime: &str,
    opts: &UploadOptions,
) -> Result<(), Failure> {
    let endpoint = OssEndpoint::choose(
        opts.oss_endpoint.as_deref(),
        grant.endpoint.as_deref(),
        &grant.credentials.region,
    )
    .map_err(|e| Failure::new(FailureClass::Transient, e))?;
    let target = endpoint
        .target(&grant.bucket)
        .await
        .map_err(|e| Failure::new(FailureClass::Transient, e))?;
    let path = endpoint.request_path(&grant.bucket, &grant.file_path);
    let obj = PutObject {
        bucket: &grant.bucket,
        key: &grant.file_path,
        content_type: mime,
    };
    opts.backoff()
        .run("OSS PUT", || {
            put_once(&target, &path, &obj, grant, bytes, opts)
        })
        .await
        .map_err(Step::into_failure)
}

async fn put_once(
    target: &Target,
    path: &str,
    obj: &PutObject<'_>,
    grant: &StsGrant,
    bytes: &Bytes,
    opts: &UploadOptions,
) -> Result<(), Step> {
    let mut req = http::request("PUT", target, path).map_err(|e| {
        Step::Fatal(Failure::new(
            FailureClass::Transient,
            format!("OSS PUT: {e}"),
        ))
    })?;
    // Signed per attempt: the signature covers the time, which OSS checks for skew.
    for (k, v) in oss::sign_put(obj, &grant.credentials, SystemTime::now()) {
        let _ = req.insert_header(k, v);
    }
    let _ = req.insert_header("user-agent", USER_AGENT);
    let limits = Limits {
        connect: opts.connect_timeout,
        io: opts.oss_timeout,
        max_body: OSS_REPLY_LIMIT,
    };
    let host = target.authority();
    let sent = tokio::time::timeout(
        opts.oss_timeout,
        http::send(target, req, bytes.clone(), &limits),
    )
    .await;
    let resp = match sent {
        Err(_) => {
            return Err(Step::Retry(oss_failure(
                format!(
                    "the OSS PUT to {host} took longer than {:?}",
                    opts.oss_timeout
                ),
                None,
                FailureClass::Timeout,
            )))
        }
        Ok(Err(HttpError::Timeout(m))) => {
            return Err(Step::Retry(oss_failure(
                format!("OSS PUT: {m}"),
                None,
                FailureClass::Timeout,
            )))
        }
        Ok(Err(e @ (HttpError::Connect(_) | HttpError::Io(_)))) => {
            return Err(Step::Retry(oss_failure(
                format!("OSS PUT: {e}"),
                None,
                FailureClass::Transient,
            )))
        }
        Ok(Err(e @ HttpError::TooLarge { .. })) => {
            return Err(Step::Fatal(oss_failure(
                format!("OSS PUT reply: {e}"),
                None,
                FailureClass::Transient,
            )))
        }
        Ok(Ok(r)) => r,
    };
    if (200..300).contains(&resp.status) {
        return Ok(());
    }
    let f = oss_failure(
        format!(
            "the OSS PUT to {host} was refused with HTTP {}: {}",
            resp.status,
            oss_error_text(&resp.body)
        ),
        Some(resp.status),
        FailureClass::Transient,
    );
    Err(if resp.status >= 500 {
        Step::Retry(f)
    } else {
        Step::Fatal(f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oss_errors_are_readable() {
        let xml = b"<?xml version=\"1.0\"?>\n<Error>\n  <Code>SignatureDoesNotMatch</Code>\n  \
                    <Message>The request signature we calculated does not match.</Message>\n</Error>";
        assert_eq!(
            oss_error_text(xml),
            "SignatureDoesNotMatch: The request signature we calculated does not match."
        );
        assert_eq!(
            oss_error_text(b"<Error><Code>AccessDenied</Code></Error>"),
            "AccessDenied"
        );
        assert_eq!(oss_error_text(b"plain text"), "plain text");
    }

    #[test]
    fn names() {
        assert_eq!(extension_for("image/jpeg"), "jpg");
        assert_eq!(extension_for("video/quicktime"), "mov");
        assert_eq!(extension_for("x/y"), "bin");
        let u = Uploaded {
            file_url: "u".into(),
            file_id: None,
            file_path: Some("uid-1/f.png".into()),
            filename: "f.png".into(),
            mime: "image/png".into(),
            size: 1,
            sha256: String::new(),
            cached: false,
        };
        assert_eq!(u.user_id(), Some("uid-1"));
    }
}
