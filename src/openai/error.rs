//! Errors in the OpenAI shape `{"error":{"message","type","param","code"}}`, each with the HTTP
//! status that truthfully describes it.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
    /// Seconds a client should wait before retrying; becomes a `Retry-After` header.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

impl ApiError {
    pub fn new(
        status: u16,
        kind: &'static str,
        code: &'static str,
        msg: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            kind,
            code,
            message: msg.into(),
            param: None,
            retry_after: None,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", "invalid_request", msg)
    }

    pub fn invalid_param(param: &'static str, msg: impl Into<String>) -> Self {
        ApiError {
            param: Some(param),
            ..Self::invalid(msg)
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            401,
            "invalid_request_error",
            "invalid_api_key",
            "Incorrect or missing API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key'.",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            403,
            "invalid_request_error",
            "insufficient_permissions",
            "This endpoint needs the admin key.",
        )
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(404, "invalid_request_error", "not_found", msg)
    }

    pub fn model_not_found(model: &str) -> Self {
        ApiError {
            param: Some("model"),
            ..Self::new(
                404,
                "invalid_request_error",
                "model_not_found",
                format!(
                    "The model '{model}' does not exist or is not available. See GET /v1/models."
                ),
            )
        }
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            "request_too_large",
            format!("The request body is larger than the limit of {limit} bytes."),
        )
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
            },
        })
        .unwrap_or_default()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let e = ApiError::invalid_param("messages", "messages must not be empty");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["code"], "invalid_request");
        assert_eq!(e.status, 400);
    }
}
