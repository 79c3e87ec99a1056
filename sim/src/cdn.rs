//! `GET /cdn/...`: the simulated media CDN. It serves what the OSS emulator stored
//! (`/cdn/files/<bucket>/<key>`) and the "generated" images and videos
//! (`/cdn/output/<uid>/<t2i|t2v>/<id>/<ts>.<png|mp4>`), so a gateway can download results
//! (`b64_json`) and fetch uploaded files back. Like the real CDN it wants a `key` parameter.

use bytes::Bytes;
use pingora::protocols::http::ServerSession;

use crate::http::{self, Outcome, Request};
use crate::media_state::MediaState;
use crate::oss_sign::percent_decode;
use crate::Inner;

/// A valid 1x1 RGBA PNG, small enough to inline in tests and `b64_json` answers.
pub const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x48, 0x8c, 0xf9, 0xf6,
    0x1f, 0x00, 0x05, 0x88, 0x02, 0xb3, 0x7d, 0x1d, 0xf2, 0xda, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The start of an MP4 file (an `ftyp` box plus an empty `mdat`): recognisable as video by
/// type sniffers, which is all a "generated video" needs to be here.
pub const TINY_MP4: &[u8] = &[
    0x00, 0x00, 0x00, 0x18, b'f', b't', b'y', b'p', b'i', b's', b'o', b'm', 0x00, 0x00, 0x02, 0x00,
    b'i', b's', b'o', b'm', b'm', b'p', b'4', b'1', 0x00, 0x00, 0x00, 0x08, b'm', b'd', b'a', b't',
];

/// The `http://<host>` the client reached the sim at, so URLs handed out point back here.
pub fn origin(s: &ServerSession) -> String {
    let host = s
        .get_header("host")
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// A random-looking access key for CDN URLs; the CDN only checks that one is present.
pub fn url_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn not_found(s: &mut ServerSession) -> Outcome {
    Outcome::from_write(
        http::respond(
            s,
            404,
            "application/xml",
            &[],
            Bytes::from_static(
                b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
                  <Message>The specified key does not exist.</Message></Error>",
            ),
            false,
        )
        .await,
    )
}

pub async fn get(sim: &Inner, s: &mut ServerSession, req: &Request) -> Outcome {
    MediaState::bump(&sim.state.media.cdn_gets, 1);
    if req.query_param("key").is_none_or(str::is_empty) {
        return Outcome::from_write(
            http::respond(
                s,
                403,
                "application/xml",
                &[],
                Bytes::from_static(
                    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
                      <Message>The key parameter is required.</Message></Error>",
                ),
                false,
            )
            .await,
        );
    }
    let path = percent_decode(&req.path);
    let (ctype, body) = if let Some(rest) = path.strip_prefix("/cdn/files/") {
        let Some((bucket, key)) = rest.split_once('/') else {
            return not_found(s).await;
        };
        match sim.state.media.object(bucket, key) {
            Some(o) => (o.content_type, o.bytes),
            None => return not_found(s).await,
        }
    } else if path.starts_with("/cdn/output/") && path.ends_with(".png") {
        ("image/png".to_string(), Bytes::from_static(TINY_PNG))
    } else if path.starts_with("/cdn/output/") && path.ends_with(".mp4") {
        ("video/mp4".to_string(), Bytes::from_static(TINY_MP4))
    } else {
        return not_found(s).await;
    };
    Outcome::from_write(http::respond(s, 200, &ctype, &[], body, false).await)
}
