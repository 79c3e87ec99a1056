//! Upstream side calls: create a chat, derive a token from a browser cookie, list models.

use bytes::Bytes;
use serde::Deserialize;

use crate::convert::classify::{
    classify_html, classify_json_error, classify_status, looks_like_html, Failure, FailureClass,
};

use super::client::UpstreamClient;
use super::headers::{self, Credentials};

const SMALL_BODY: usize = 1 << 20;
const MODELS_BODY: usize = 8 << 20;

/// Reads a JSON reply; any non-200, HTML or error envelope becomes a classified failure.
async fn json_call(
    client: &UpstreamClient,
    req: pingora::http::RequestHeader,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, Failure> {
    let mut ex = client.send(req, body).await?;
    let status = ex.status;
    let retry_after = ex.retry_after();
    let text = match ex.read_to_end(limit).await {
        Ok(t) => t,
        Err(f) => {
            client.abort(ex).await;
            return Err(f);
        }
    };
    client.release(ex).await;
    if status != 200 {
        return Err(classify_status(status, retry_after, &text));
    }
    if looks_like_html(&text) {
        return Err(classify_html(200, &text));
    }
    if let Some(f) = classify_json_error(&text) {
        return Err(f);
    }
    Ok(text)
}

#[derive(Deserialize)]
struct NewChatReply {
    data: Option<NewChatData>,
}

#[derive(Deserialize)]
struct NewChatData {
    id: Option<String>,
}

/// `POST /api/v2/chats/new` -> the new chat's id.
pub async fn new_chat(
    client: &UpstreamClient,
    creds: &Credentials<'_>,
    body: Vec<u8>,
) -> Result<String, Failure> {
    let mut req = client.request("POST", "/api/v2/chats/new");
    headers::apply(&mut req, &client.base, creds, "application/json");
    let text = json_call(client, req, Bytes::from(body), SMALL_BODY).await?;
    let reply: NewChatReply = serde_json::from_slice(&text).map_err(|_| {
        Failure::new(
            FailureClass::Transient,
            "chats/new returned unreadable JSON",
        )
    })?;
    reply
        .data
        .and_then(|d| d.id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Failure::new(FailureClass::Transient, "chats/new returned no chat id"))
}

#[derive(Deserialize)]
struct AuthReply {
    token: Option<String>,
    access_token: Option<String>,
    data: Option<AuthData>,
}

#[derive(Deserialize)]
struct AuthData {
    token: Option<String>,
}

/// `GET /api/v1/auths/` with the browser cookie -> a token (protocol §2.3).
pub async fn token_from_cookie(client: &UpstreamClient, cookie: &str) -> Result<String, Failure> {
    let mut req = client.request("GET", "/api/v1/auths/");
    headers::apply_cookie_only(&mut req, &client.base, cookie);
    let text = json_call(client, req, Bytes::new(), SMALL_BODY).await?;
    token_in(&text)
        .ok_or_else(|| Failure::new(FailureClass::Auth, "the cookie did not yield a token"))
}

/// `GET /api/models` (falling back to `/api/v2/models/`) -> the raw model objects.
pub async fn list_models(
    client: &UpstreamClient,
    creds: &Credentials<'_>,
) -> Result<Vec<serde_json::Value>, Failure> {
    let mut last = None;
    for path in ["/api/models", "/api/v2/models/"] {
        let mut req = client.request("GET", path);
        headers::apply(&mut req, &client.base, creds, "application/json");
        match json_call(client, req, Bytes::new(), MODELS_BODY).await {
            Ok(text) => {
                let v: serde_json::Value = serde_json::from_slice(&text).map_err(|_| {
                    Failure::new(FailureClass::Transient, "models returned unreadable JSON")
                })?;
                let list = v.get("data").and_then(|d| {
                    d.as_array()
                        .or_else(|| d.get("data").and_then(|x| x.as_array()))
                });
                if let Some(list) = list {
                    return Ok(list.clone());
                }
                last = Some(Failure::new(
                    FailureClass::Transient,
                    "models reply has no list",
                ));
            }
            Err(f) => last = Some(f),
        }
    }
    Err(last.unwrap_or_else(|| Failure::new(FailureClass::Transient, "no models")))
}

/// `POST /api/v1/auths/signin` with the SHA-256 password form (protocol §2.2) -> a token.
pub async fn sign_in(
    client: &UpstreamClient,
    email: &str,
    password: &str,
) -> Result<String, Failure> {
    use sha2::{Digest, Sha256};
    let hashed: String = Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({"email": email, "password": hashed}))
        .expect("json value serialises");
    let mut req = client.request("POST", "/api/v1/auths/signin");
    headers::apply_anonymous(&mut req, &client.base);
    let text = match json_call(client, req, Bytes::from(body), SMALL_BODY).await {
        // Wrong credentials come back as 400 with a `detail`; that is an auth failure.
        Err(f) if f.status == Some(400) => {
            return Err(Failure::new(
                FailureClass::Auth,
                "sign-in refused (check the email and password)",
            ))
        }
        other => other?,
    };
    token_in(&text).ok_or_else(|| Failure::new(FailureClass::Auth, "sign-in returned no token"))
}

fn token_in(text: &[u8]) -> Option<String> {
    let reply: AuthReply = serde_json::from_slice(text).ok()?;
    reply
        .token
        .or(reply.access_token)
        .or(reply.data.and_then(|d| d.token))
        .filter(|t| !t.is_empty())
}

/// `GET /api/v1/auths/` with the current token -> a fresh one while it is still valid.
pub async fn token_from_bearer(client: &UpstreamClient, token: &str) -> Result<String, Failure> {
    let mut req = client.request("GET", "/api/v1/auths/");
    headers::apply(
        &mut req,
        &client.base,
        &Credentials {
            token,
            cookie: None,
        },
        "application/json",
    );
    let text = json_call(client, req, Bytes::new(), SMALL_BODY).await?;
    token_in(&text)
        .ok_or_else(|| Failure::new(FailureClass::Auth, "the token check returned no token"))
}

/// `DELETE /api/v2/chats/<id>`; an already deleted chat (404) counts as deleted.
pub async fn delete_chat(
    client: &UpstreamClient,
    creds: &Credentials<'_>,
    chat_id: &str,
) -> Result<(), Failure> {
    let mut req = client.request("DELETE", &format!("/api/v2/chats/{chat_id}"));
    headers::apply(&mut req, &client.base, creds, "application/json");
    match json_call(client, req, Bytes::new(), SMALL_BODY).await {
        Ok(_) => Ok(()),
        Err(f) if f.status == Some(404) => Ok(()),
        Err(f) => Err(f),
    }
}

#[derive(Deserialize)]
struct ChatList {
    #[serde(default)]
    data: Vec<ChatItem>,
}

#[derive(Deserialize)]
struct ChatItem {
    id: String,
}

/// `GET /api/v2/chats/?page=N` -> the chat ids on that page (empty past the end).
pub async fn list_chats(
    client: &UpstreamClient,
    creds: &Credentials<'_>,
    page: u32,
) -> Result<Vec<String>, Failure> {
    let mut req = client.request(
        "GET",
        &format!("/api/v2/chats/?page={page}&exclude_project=true"),
    );
    headers::apply(&mut req, &client.base, creds, "application/json");
    let text = json_call(client, req, Bytes::new(), MODELS_BODY).await?;
    let list: ChatList = serde_json::from_slice(&text)
        .map_err(|_| Failure::new(FailureClass::Transient, "the chat list was unreadable"))?;
    Ok(list.data.into_iter().map(|c| c.id).collect())
}

/// A form-encoded POST on the web host (the OAuth device flow), optionally with a bearer
/// token; JSON replies only.
pub async fn post_form(client: &UpstreamClient, path: &str, form: &str) -> Result<Bytes, Failure> {
    let mut req = client.request("POST", path);
    headers::apply_anonymous(&mut req, &client.base);
    let _ = req.insert_header("content-type", "application/x-www-form-urlencoded");
    json_call(client, req, Bytes::from(form.to_string()), SMALL_BODY).await
}

/// A JSON POST on the web host with the account's token (device flow approval).
pub async fn post_json(
    client: &UpstreamClient,
    creds: &Credentials<'_>,
    path: &str,
    body: &serde_json::Value,
) -> Result<Bytes, Failure> {
    let mut req = client.request("POST", path);
    headers::apply(&mut req, &client.base, creds, "application/json");
    json_call(client, req, Bytes::from(body.to_string()), SMALL_BODY).await
}

/// A GET on the web host with the account's token (chat detail, video task status).
pub async fn get_json(
    client: &UpstreamClient,
    creds: &Credentials<'_>,
    path: &str,
) -> Result<Bytes, Failure> {
    let mut req = client.request("GET", path);
    headers::apply(&mut req, &client.base, creds, "application/json");
    json_call(client, req, Bytes::new(), SMALL_BODY).await
}
