//! The admin web page: one HTML file, one script, one stylesheet, embedded in the binary (no
//! build step). The page and its assets are served without a key; the script asks for the
//! admin key, keeps it in `sessionStorage` and sends it as a Bearer token on every data call.
//! Strict headers: a CSP allowing only this origin's script, style and fetches (no inline
//! script), no framing, no caching, no sniffing, no referrer.

use bytes::Bytes;
use pingora::proxy::Session;

use crate::context::RequestCtx;
use crate::openai::error::ApiError;
use crate::respond;

pub struct Asset {
    content_type: &'static str,
    body: &'static str,
}

const PAGE: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("ui/index.html"),
};
const SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("ui/app.js"),
};
const STYLE: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_str!("ui/app.css"),
};

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

pub fn asset(path: &str) -> Option<&'static Asset> {
    match path {
        "/admin" | "/admin/" | "/admin/ui" => Some(&PAGE),
        "/admin/assets/app.js" => Some(&SCRIPT),
        "/admin/assets/app.css" => Some(&STYLE),
        _ => None,
    }
}

pub async fn serve(
    session: &mut Session,
    ctx: &mut RequestCtx,
    asset: &'static Asset,
) -> Result<(), ApiError> {
    let headers: Vec<(&'static str, String)> = vec![
        ("content-security-policy", CSP.into()),
        ("cache-control", "no-store".into()),
        ("x-frame-options", "DENY".into()),
        ("x-content-type-options", "nosniff".into()),
        ("referrer-policy", "no-referrer".into()),
        ("cross-origin-opener-policy", "same-origin".into()),
    ];
    ctx.status = 200;
    respond::send(
        session,
        200,
        asset.content_type,
        Bytes::from_static(asset.body.as_bytes()),
        &ctx.request_id,
        &headers,
    )
    .await
    .map_err(|_| ApiError::new(500, "server_error", "write_failed", "write failed"))
}
