//! Writing local answers downstream and reading request bodies with limits.

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::openai::error::ApiError;
use crate::relay::render::Dialect;

pub type Result<T> = pingora::Result<T>;

pub async fn json(
    session: &mut Session,
    status: u16,
    body: Vec<u8>,
    request_id: &str,
) -> Result<()> {
    send(
        session,
        status,
        "application/json",
        Bytes::from(body),
        request_id,
        &[],
    )
    .await
}

pub async fn send(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
    request_id: &str,
    extra: &[(&'static str, String)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4 + extra.len()))?;
    resp.insert_header("content-type", content_type)?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("x-request-id", request_id)?;
    for (k, v) in extra {
        resp.insert_header(*k, v.as_str())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

pub async fn error(session: &mut Session, e: &ApiError, request_id: &str) -> Result<()> {
    error_as(session, Dialect::OpenAi, e, request_id).await
}

/// An error in the shape of the client API that asked.
pub async fn error_as(
    session: &mut Session,
    dialect: Dialect,
    e: &ApiError,
    request_id: &str,
) -> Result<()> {
    let mut extra = Vec::new();
    if let Some(s) = e.retry_after {
        extra.push(("retry-after", s.to_string()));
    }
    let body = Bytes::from(dialect.error_body(e));
    send(
        session,
        e.status,
        "application/json",
        body,
        request_id,
        &extra,
    )
    .await
}

/// The response header that starts an SSE stream.
pub fn sse_header(
    request_id: &str,
    extra: &[(&'static str, String)],
) -> Result<Box<ResponseHeader>> {
    let mut resp = ResponseHeader::build(200, Some(6 + extra.len()))?;
    for (k, v) in extra {
        resp.insert_header(*k, v.as_str())?;
    }
    resp.insert_header("content-type", "text/event-stream; charset=utf-8")?;
    resp.insert_header("cache-control", "no-cache")?;
    resp.insert_header("x-accel-buffering", "no")?;
    resp.insert_header("transfer-encoding", "chunked")?;
    resp.insert_header("x-request-id", request_id)?;
    Ok(Box::new(resp))
}

/// Reads the whole request body, enforcing `limit` from `Content-Length` up front and while
/// reading chunked bodies. `Expect: 100-continue` is answered here because the body is read
/// here; keep-alive is kept through it (pingora-notes §13 pitfall).
pub async fn read_body(
    session: &mut Session,
    limit: usize,
) -> std::result::Result<Bytes, ApiError> {
    let declared = session
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let expects_continue = session
        .req_header()
        .headers
        .get("expect")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue {
        let ds = &mut session.downstream_session;
        ds.set_close_on_response_before_downstream_finish(false);
        let r = ds.write_continue_response().await;
        if r.is_err() {
            return Err(ApiError::invalid("could not answer Expect: 100-continue"));
        }
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    loop {
        match session.downstream_session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return Err(ApiError::too_large(limit));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if matches!(e.etype(), pingora::ErrorType::ReadTimedout) => {
                return Err(ApiError::new(
                    408,
                    "invalid_request_error",
                    "request_timeout",
                    "The request body did not arrive in time.",
                ))
            }
            Err(e) => {
                return Err(ApiError::new(
                    400,
                    "invalid_request_error",
                    "body_read_failed",
                    format!("The request body could not be read: {}", e.etype().as_str()),
                ))
            }
        }
    }
    if expects_continue {
        session
            .downstream_session
            .set_close_on_response_before_downstream_finish(true);
    }
    Ok(buf.freeze())
}
