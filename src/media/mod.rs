//! Images and videos in requests: turning a client's `data:` URI or http(s) URL into a file
//! in Qwen's storage that a completion can reference by URL (protocol §7), never inline.
//!
//! * [`data_uri`] parses inline base64 media; [`fetch`] downloads a remote URL behind the
//!   private-address [`guard`], with a size cap, a timeout and a content-type check.
//! * [`upload`] asks the upstream for an STS grant ([`sts`]) and PUTs the bytes to OSS,
//!   signed with [`oss`] V4, on a host that may differ from the Qwen base URL ([`endpoint`]).
//! * [`cache`] remembers uploads by content hash, and [`flight`] makes simultaneous requests
//!   with the same content share one upload; [`ingest`] chains all of it for one
//!   content part, and [`settings`] reads the environment for it.
//! * Every failure is a [`MediaError`] with a truthful status, never a silent text-only
//!   fall-back.

pub mod cache;
pub mod data_uri;
pub mod endpoint;
pub mod error;
pub mod fetch;
pub mod flight;
pub mod guard;
pub mod http;
pub mod ingest;
pub mod oss;
pub mod retry;
pub mod settings;
pub mod sts;
pub mod upload;

pub use cache::UploadCache;
pub use error::MediaError;
pub use fetch::{fetch, FetchOptions};
pub use ingest::ingest;
pub use settings::MediaSettings;
pub use upload::{upload, upload_cached, upload_with, UploadOptions, Uploaded};

/// Which media a content part may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Video,
    ImageOrVideo,
}

impl MediaKind {
    /// Whether a lower-case `type/subtype` (parameters removed) is acceptable.
    pub fn accepts(self, mime: &str) -> bool {
        let image = mime.starts_with("image/") && mime.len() > 6;
        let video = mime.starts_with("video/") && mime.len() > 6;
        match self {
            MediaKind::Image => image,
            MediaKind::Video => video,
            MediaKind::ImageOrVideo => image || video,
        }
    }

    pub fn expected(self) -> &'static str {
        match self {
            MediaKind::Image => "an image (image/*)",
            MediaKind::Video => "a video (video/*)",
            MediaKind::ImageOrVideo => "an image or a video (image/* or video/*)",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::ImageOrVideo => "media file",
        }
    }

    /// The `Accept` header for fetching this kind.
    pub fn accept_header(self) -> &'static str {
        match self {
            MediaKind::Image => "image/*",
            MediaKind::Video => "video/*",
            MediaKind::ImageOrVideo => "image/*, video/*",
        }
    }
}

/// `Content-Type` value -> lower-case `type/subtype` without parameters.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert!(MediaKind::Image.accepts("image/png"));
        assert!(!MediaKind::Image.accepts("image/"));
        assert!(!MediaKind::Image.accepts("video/mp4"));
        assert!(MediaKind::Video.accepts("video/mp4"));
        assert!(MediaKind::ImageOrVideo.accepts("video/webm"));
        assert!(!MediaKind::ImageOrVideo.accepts("text/html"));
        assert_eq!(essence("Image/PNG; charset=binary"), "image/png");
        assert_eq!(essence(""), "");
    }
}
