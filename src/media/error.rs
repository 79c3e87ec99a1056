//! What can go wrong with a client's image or video, and the truthful status for each: the
//! client's input (400), its size (413), a refused address (400), a remote fetch (400 when
//! the remote side refused or sent something else, 502/504 when it could not be reached),
//! and the upload to Qwen (502 with the upstream's reason). A failed upload is always an
//! error the client sees, never a silent fall-back to text only.

use crate::convert::classify::{Failure, FailureClass};
use crate::openai::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaError {
    /// Malformed input: a bad `data:` URI, invalid base64, an unsupported URL or type.
    BadInput(String),
    /// The media is larger than `limit` bytes.
    TooLarge { limit: usize, what: String },
    /// The URL resolves to a private, loopback, link-local or otherwise internal address.
    Refused(String),
    /// The remote URL could not be fetched. `status` is what the client gets: 400 when the
    /// remote side answered with an error or the wrong type, 502 when it was unreachable,
    /// 504 when it was too slow.
    Fetch { status: u16, detail: String },
    /// The STS or OSS step of the upload to Qwen failed.
    Upload(Failure),
}

impl MediaError {
    pub fn status(&self) -> u16 {
        self.to_api_error().status
    }

    pub fn to_api_error(&self) -> ApiError {
        match self {
            MediaError::BadInput(m) => ApiError::new(
                400,
                "invalid_request_error",
                "invalid_media",
                format!("Invalid image or video: {m}"),
            ),
            MediaError::TooLarge { limit, what } => ApiError::new(
                413,
                "invalid_request_error",
                "media_too_large",
                format!("The {what} is larger than the limit of {limit} bytes."),
            ),
            MediaError::Refused(m) => ApiError::new(
                400,
                "invalid_request_error",
                "media_url_refused",
                format!("The media URL was refused: {m}"),
            ),
            MediaError::Fetch { status, detail } => {
                let kind = if *status < 500 {
                    "invalid_request_error"
                } else {
                    "upstream_error"
                };
                ApiError::new(
                    *status,
                    kind,
                    "media_fetch_failed",
                    format!("The media URL could not be fetched: {detail}"),
                )
            }
            MediaError::Upload(f) => {
                let msg = format!("Uploading the media to Qwen failed: {}", f.detail);
                match f.class {
                    FailureClass::RateLimit => {
                        ApiError::new(429, "rate_limit_error", "media_upload_failed", msg)
                            .with_retry_after(f.retry_after.unwrap_or(30))
                    }
                    FailureClass::Timeout => {
                        ApiError::new(504, "upstream_error", "media_upload_failed", msg)
                    }
                    _ => ApiError::new(502, "upstream_error", "media_upload_failed", msg),
                }
            }
        }
    }
}

impl From<Failure> for MediaError {
    fn from(f: Failure) -> Self {
        MediaError::Upload(f)
    }
}

impl std::fmt::Display for MediaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_api_error().message)
    }
}

impl std::error::Error for MediaError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let cases = [
            (MediaError::BadInput("x".into()), 400, "invalid_media"),
            (
                MediaError::TooLarge {
                    limit: 10,
                    what: "image".into(),
                },
                413,
                "media_too_large",
            ),
            (MediaError::Refused("x".into()), 400, "media_url_refused"),
            (
                MediaError::Fetch {
                    status: 502,
                    detail: "x".into(),
                },
                502,
                "media_fetch_failed",
            ),
            (
                MediaError::Upload(Failure::new(FailureClass::Transient, "OSS said no")),
                502,
                "media_upload_failed",
            ),
            (
                MediaError::Upload(Failure::new(FailureClass::Timeout, "slow")),
                504,
                "media_upload_failed",
            ),
        ];
        for (e, status, code) in cases {
            let api = e.to_api_error();
            assert_eq!((api.status, api.code), (status, code), "{e:?}");
        }
        let api = MediaError::Upload(Failure::new(FailureClass::Auth, "HTTP 403")).to_api_error();
        assert!(api.message.contains("HTTP 403"), "{}", api.message);
        let api = MediaError::Upload(Failure::new(FailureClass::RateLimit, "x")).to_api_error();
        assert_eq!((api.status, api.retry_after), (429, Some(30)));
    }
}
