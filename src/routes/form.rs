//! Request bodies of the media endpoints: JSON, or `multipart/form-data` as the OpenAI SDKs
//! send requests that carry files (image edits, videos). Both are read into one view so
//! each endpoint validates its fields once.

use pingora::proxy::Session;
use serde_json::{Map, Value};

use crate::auth::ClientCredentials;
use crate::context::RequestCtx;
use crate::gateway::Gateway;
use crate::generate::multipart::{self, Part};
use crate::openai::error::ApiError;
use crate::respond;

pub enum Fields {
    Json(Map<String, Value>),
    Form(Vec<Part>),
}

/// Authenticates, then reads and parses the body by its content type.
pub async fn read(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(Option<ClientCredentials>, Fields), ApiError> {
    let (caller, creds) = super::authenticate(gw, session).await?;
    ctx.caller = caller.name();
    let ct = session
        .req_header()
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let form = multipart::boundary(&ct);
    if form.is_none() && !ct.is_empty() && !ct.to_ascii_lowercase().contains("json") {
        return Err(ApiError::new(
            415,
            "invalid_request_error",
            "unsupported_media_type",
            format!("Content-Type must be application/json or multipart/form-data, got '{ct}'."),
        ));
    }
    let body = respond::read_body(session, gw.settings.max_body_bytes).await?;
    let fields = match form {
        Some(boundary) => Fields::Form(
            multipart::parse(&body, &boundary)
                .map_err(|m| ApiError::invalid(format!("Invalid multipart body: {m}")))?,
        ),
        None => match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => Fields::Json(o),
            Ok(_) => return Err(ApiError::invalid("The request body must be a JSON object.")),
            Err(e) => {
                return Err(ApiError::invalid(format!(
                    "The request body is not valid JSON: {e}"
                )))
            }
        },
    };
    Ok((creds, fields))
}

impl Fields {
    /// A scalar field as text; absent, null and empty are `None`.
    pub fn text(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        let s = match self {
            Fields::Json(o) => match o.get(name) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.trim().to_string()),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
                Some(_) => {
                    return Err(ApiError::invalid_param(
                        name,
                        format!("'{name}' must be a string or a number."),
                    ))
                }
            },
            Fields::Form(parts) => parts
                .iter()
                .find(|p| p.name == name && p.filename.is_none())
                .map(Part::text),
        };
        Ok(s.filter(|s| !s.is_empty()))
    }

    /// A JSON field as sent (JSON bodies only).
    pub fn json(&self, name: &str) -> Option<&Value> {
        match self {
            Fields::Json(o) => o.get(name).filter(|v| !v.is_null()),
            Fields::Form(_) => None,
        }
    }

    /// Form parts with one of these names (form bodies only), files and text alike.
    pub fn parts<'a>(&'a self, names: &'a [&str]) -> impl Iterator<Item = &'a Part> + 'a {
        let parts: &[Part] = match self {
            Fields::Form(p) => p,
            Fields::Json(_) => &[],
        };
        parts
            .iter()
            .filter(move |p| names.contains(&p.name.as_str()))
    }

    /// Every field name present, for reporting the ones an endpoint ignores.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = match self {
            Fields::Json(o) => o.keys().cloned().collect(),
            Fields::Form(p) => p.iter().map(|p| p.name.clone()).collect(),
        };
        names.sort();
        names.dedup();
        names
    }

    /// The names present that are not in `used`, comma-separated (`None` when all were used).
    pub fn ignored(&self, used: &[&str]) -> Option<String> {
        let ignored: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| !used.contains(&n.as_str()))
            .collect();
        (!ignored.is_empty()).then(|| ignored.join(", "))
    }
}

/// Sends a generation result as a 200 JSON answer, naming the ignored request fields in a header.
/// A client gone by then is recorded as 499; there is nobody left to tell.
pub async fn answer(
    session: &mut pingora::proxy::Session,
    ctx: &mut crate::context::RequestCtx,
    body: &serde_json::Value,
    ignored: Option<String>,
) {
    let headers: Vec<(&'static str, String)> = ignored
        .into_iter()
        .map(|i| (super::messages::IGNORED_HEADER, i))
        .collect();
    ctx.status = 200;
    ctx.mark_first_token();
    let body = bytes::Bytes::from(body.to_string());
    let sent = crate::respond::send(
        session,
        200,
        "application/json",
        body,
        &ctx.request_id,
        &headers,
    )
    .await;
    if sent.is_err() {
        ctx.status = 499;
    }
}
