//! The media settings, read from the same key/value source as the rest of the configuration
//! (the environment, optionally over a file), with an error naming the setting at fault.
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `QWEN_OSS_ENDPOINT` | what the STS reply names | OSS host for uploads (`[http://]host[:port]`) |
//! | `UPLOAD_STS_VERSION` | `auto` | `auto` (v2, then v1), `v1` or `v2` |
//! | `UPLOAD_RETRY_BACKOFF_MS` | `1000` | first pause between upload retries (doubles; 3 retries) |
//! | `ALLOW_PRIVATE_IMAGE_URLS` | `false` | fetch media URLs on private/loopback/link-local addresses |
//! | `MAX_IMAGE_BYTES` / `MAX_VIDEO_BYTES` | 10 MiB / 100 MiB | per file, inline or fetched |
//! | `MEDIA_FETCH_TIMEOUT_MS` | `30000` | whole download of a media URL |
//! | `CACHE_MODE` / `CACHE_DIR` | `default` / `./caches` | upload cache: memory, `file` or `off` |
//! | `CACHE_CAPACITY` / `CACHE_TTL_SECS` | `1024` / `0` (no expiry) | memory entries / entry lifetime |

use std::time::Duration;

use super::cache::{UploadCache, DEFAULT_CAPACITY, DEFAULT_DIR};
use super::fetch::{FetchOptions, DEFAULT_MAX_FETCH};
use super::sts::StsVersion;
use super::upload::{UploadOptions, DEFAULT_MAX_UPLOAD};
use super::MediaKind;

#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub upload: UploadOptions,
    /// `kind` and `max_bytes` are set per call.
    pub fetch: FetchOptions,
    pub max_image_bytes: usize,
    pub max_video_bytes: usize,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            upload: UploadOptions::default(),
            fetch: FetchOptions::default(),
            max_image_bytes: DEFAULT_MAX_FETCH,
            max_video_bytes: DEFAULT_MAX_UPLOAD,
        }
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, v: Option<String>, default: T) -> Result<T, String> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| format!("{key} must be a non-negative number, not {s:?}")),
    }
}

fn parse_bool(key: &str, v: Option<String>) -> Result<bool, String> {
    match v
        .as_deref()
        .map(|s| s.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(format!("{key} must be true or false, not {other:?}")),
    }
}

impl MediaSettings {
    /// The per-file cap for a kind.
    pub fn max_bytes(&self, kind: MediaKind) -> usize {
        match kind {
            MediaKind::Image => self.max_image_bytes,
            MediaKind::Video => self.max_video_bytes,
            MediaKind::ImageOrVideo => self.max_image_bytes.max(self.max_video_bytes),
        }
    }

    /// Reads the settings through `get` (a setting's value, if set) and builds the cache.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(MediaSettings, UploadCache), String> {
        let mut s = MediaSettings::default();
        s.upload.oss_endpoint = get("QWEN_OSS_ENDPOINT").filter(|v| !v.trim().is_empty());
        if let Some(e) = &s.upload.oss_endpoint {
            super::endpoint::OssEndpoint::parse(e)
                .map_err(|m| format!("QWEN_OSS_ENDPOINT: {m}"))?;
        }
        s.upload.sts_version = StsVersion::parse(&get("UPLOAD_STS_VERSION").unwrap_or_default())
            .map_err(|m| format!("UPLOAD_STS_VERSION: {m}"))?;
        s.upload.backoff_unit = Duration::from_millis(parse_num(
            "UPLOAD_RETRY_BACKOFF_MS",
            get("UPLOAD_RETRY_BACKOFF_MS"),
            1000,
        )?);
        s.fetch.allow_private =
            parse_bool("ALLOW_PRIVATE_IMAGE_URLS", get("ALLOW_PRIVATE_IMAGE_URLS"))?;
        s.max_image_bytes =
            parse_num("MAX_IMAGE_BYTES", get("MAX_IMAGE_BYTES"), DEFAULT_MAX_FETCH)?;
        s.max_video_bytes = parse_num(
            "MAX_VIDEO_BYTES",
            get("MAX_VIDEO_BYTES"),
            DEFAULT_MAX_UPLOAD,
        )?;
        s.upload.max_bytes = s.max_image_bytes.max(s.max_video_bytes);
        s.fetch.timeout = Duration::from_millis(parse_num(
            "MEDIA_FETCH_TIMEOUT_MS",
            get("MEDIA_FETCH_TIMEOUT_MS"),
            30_000,
        )?);
        let capacity = parse_num("CACHE_CAPACITY", get("CACHE_CAPACITY"), DEFAULT_CAPACITY)?;
        let ttl: u64 = parse_num("CACHE_TTL_SECS", get("CACHE_TTL_SECS"), 0)?;
        let cache = UploadCache::from_settings(
            &get("CACHE_MODE").unwrap_or_default(),
            &get("CACHE_DIR").unwrap_or_else(|| DEFAULT_DIR.to_string()),
            capacity,
        )?
        .with_ttl((ttl > 0).then(|| Duration::from_secs(ttl)));
        Ok((s, cache))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<(MediaSettings, UploadCache), String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        MediaSettings::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let (s, c) = load(&[]).unwrap();
        assert_eq!(s.upload.oss_endpoint, None);
        assert_eq!(s.upload.sts_version, StsVersion::Auto);
        assert_eq!(s.upload.backoff_unit, Duration::from_secs(1));
        assert!(!s.fetch.allow_private);
        assert_eq!(s.max_bytes(MediaKind::Image), 10 << 20);
        assert_eq!(c.mode(), "default");
    }

    #[test]
    fn values_and_errors() {
        let (s, _) = load(&[
            ("QWEN_OSS_ENDPOINT", "http://127.0.0.1:9000"),
            ("UPLOAD_STS_VERSION", "v1"),
            ("UPLOAD_RETRY_BACKOFF_MS", "5"),
            ("ALLOW_PRIVATE_IMAGE_URLS", "true"),
            ("MAX_IMAGE_BYTES", "1000"),
            ("CACHE_MODE", "off"),
        ])
        .unwrap();
        assert_eq!(
            s.upload.oss_endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(s.upload.sts_version, StsVersion::V1);
        assert_eq!(s.upload.backoff_unit, Duration::from_millis(5));
        assert!(s.fetch.allow_private);
        assert_eq!(s.max_bytes(MediaKind::Image), 1000);
        for (k, v) in [
            ("ALLOW_PRIVATE_IMAGE_URLS", "maybe"),
            ("MAX_IMAGE_BYTES", "-1"),
            ("CACHE_MODE", "redis"),
            ("UPLOAD_STS_VERSION", "v9"),
            ("QWEN_OSS_ENDPOINT", "ftp://x"),
        ] {
            let e = load(&[(k, v)]).unwrap_err();
            assert!(e.contains(k.split('_').next().unwrap()), "{k}: {e}");
        }
    }
}
