//! One content part's media, from whatever the client sent to a file URL in Qwen's storage:
//! a `data:` URI is decoded, an http(s) URL is fetched behind the guard, and either is
//! uploaded through the cache. This is the call the request path makes per image or video.

use crate::qwen::client::UpstreamClient;
use crate::qwen::headers::Credentials;

use super::cache::UploadCache;
use super::data_uri::{self, is_data_uri};
use super::error::MediaError;
use super::fetch::{fetch, FetchOptions};
use super::settings::MediaSettings;
use super::upload::{upload_cached, Uploaded};
use super::MediaKind;

/// Resolves `source` (a `data:` URI or an http(s) URL) of the given kind into an upload.
pub async fn ingest(
    source: &str,
    kind: MediaKind,
    settings: &MediaSettings,
    cache: &UploadCache,
    client: &UpstreamClient,
    creds: &Credentials<'_>,
) -> Result<Uploaded, MediaError> {
    let max = settings.max_bytes(kind);
    let (bytes, mime) = if is_data_uri(source) {
        let d = data_uri::parse(source, kind, max)?;
        (d.bytes, d.mime)
    } else {
        let opts = FetchOptions {
            kind,
            max_bytes: max,
            ..settings.fetch.clone()
        };
        fetch(source, &opts).await?
    };
    Ok(upload_cached(cache, client, creds, bytes, &mime, &settings.upload).await?)
}
