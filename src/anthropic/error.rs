//! Errors in the Anthropic shape `{"type":"error","error":{"type","message"}}`, with the same
//! truthful statuses as the OpenAI routes.

use serde_json::json;

use crate::openai::error::ApiError;

pub fn kind(e: &ApiError) -> &'static str {
    match e.status {
        400 | 405 | 415 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

pub fn body(e: &ApiError) -> serde_json::Value {
    json!({"type": "error", "error": {"type": kind(e), "message": e.message}})
}

pub fn to_json(e: &ApiError) -> Vec<u8> {
    body(e).to_string().into_bytes()
}
