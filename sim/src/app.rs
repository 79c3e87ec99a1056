//! The Pingora application: one request per `process_new_http`, routed by method and path.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use serde_json::json;

use crate::cli;
use crate::http::{self, Outcome, ReadError, Request};
use crate::state::RequestRecord;
use crate::{cdn, completion, control, generation, jwt, routes, uploads, Inner, Sim};

/// Serves the simulated upstream over HTTP/1.1 (see [`Sim::service`]).
pub struct SimApp {
    sim: Sim,
}

impl SimApp {
    pub fn new(sim: Sim) -> SimApp {
        SimApp { sim }
    }
}

#[async_trait]
impl HttpServerApp for SimApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !matches!(session.read_request().await, Ok(true)) {
            return None;
        }
        // Same keep-alive policy as Pingora's own apps: none once shutdown has begun.
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        let req = match http::read_request(&mut session).await {
            Ok(r) => r,
            Err(ReadError::TooLarge) => {
                let _ =
                    http::json(&mut session, 413, r#"{"detail":"Request body too large"}"#).await;
                return None;
            }
            Err(ReadError::Io) => return None,
        };
        let inner = &self.sim.inner;
        if !req.path.starts_with("/__sim/") {
            inner.state.record_request(record_of(&req));
        }
        if route(inner, &mut session, &req).await == Outcome::Close {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(reusable) => reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(_) => None,
        }
    }
}

fn record_of(req: &Request) -> RequestRecord {
    let path = match &req.query {
        Some(q) => format!("{}?{q}", req.path),
        None => req.path.clone(),
    };
    RequestRecord {
        method: req.method.to_string(),
        path,
        authorization: req.authorization.is_some(),
        request_id: req.request_id.clone(),
        source: req.source.clone(),
        version: req.version.clone(),
        bx_v: req.bx_v.clone(),
        cookie_token: req.cookie_token().is_some(),
        // OSS PUT bodies are file bytes: keep them out of the JSON request log.
        body: if req.method == ::http::Method::PUT {
            bytes::Bytes::new()
        } else {
            req.body.clone()
        },
        at: jwt::now_secs(),
    }
}

async fn route(sim: &Inner, s: &mut ServerSession, req: &Request) -> Outcome {
    use ::http::Method;
    let path = req.path.as_str();
    let m = &req.method;
    match (m, path) {
        (&Method::POST, "/api/v2/chat/completions") => completion::handle(sim, s, req).await,
        (&Method::POST, "/api/v2/chats/new") => routes::chats_new(sim, s, req).await,
        (&Method::POST, "/api/v1/oauth2/device/code") => cli::device_code(sim, s, req).await,
        (&Method::POST, "/api/v2/oauth2/authorize") => cli::authorize(sim, s, req).await,
        (&Method::POST, "/api/v1/oauth2/token") => cli::token(sim, s, req).await,
        (&Method::POST, "/v1/chat/completions") => cli::completions(sim, s, req).await,
        (&Method::POST, "/api/v1/auths/signin") => routes::signin(sim, s, req).await,
        (&Method::GET, "/api/v1/auths/" | "/api/v1/auths") => {
            routes::session_user(sim, s, req).await
        }
        (&Method::GET, "/api/v2/user/info") => routes::user_info(sim, s, req).await,
        (&Method::GET, "/api/models") => routes::models(sim, s, req, false).await,
        (&Method::GET, "/api/v2/models/" | "/api/v2/models") => {
            routes::models(sim, s, req, true).await
        }
        (&Method::GET, "/api/v2/chats/" | "/api/v2/chats") => routes::chats_list(sim, s, req).await,
        (&Method::POST, "/api/v1/files/getstsToken") => uploads::sts(sim, s, req, false).await,
        (&Method::POST, "/api/v2/files/getstsToken") => uploads::sts(sim, s, req, true).await,
        (&Method::GET, p) if p.starts_with("/api/v1/tasks/status/") => {
            generation::task_status(sim, s, req, &p["/api/v1/tasks/status/".len()..]).await
        }
        (&Method::GET, p) if p.starts_with("/cdn/") => cdn::get(sim, s, req).await,
        // The OSS emulator, path-style: `PUT /<bucket>/<key>`.
        (&Method::PUT, p) if !p.starts_with("/api/") && !p.starts_with("/__sim/") => {
            uploads::oss_put(sim, s, req).await
        }
        (_, p) if p.starts_with("/__sim/") => control::handle(sim, s, req, &p[7..]).await,
        (_, p) if p.starts_with("/api/v2/chats/") && p.len() > 14 => {
            let id = p[14..].trim_end_matches('/');
            match *m {
                Method::GET => routes::chat_detail(sim, s, req, id).await,
                Method::DELETE => routes::chat_delete(sim, s, req, id).await,
                _ => not_allowed(s).await,
            }
        }
        _ => {
            let body = json!({"detail": "Not Found", "path": path}).to_string();
            Outcome::from_write(http::json(s, 404, body).await)
        }
    }
}

async fn not_allowed(s: &mut ServerSession) -> Outcome {
    Outcome::from_write(http::json(s, 405, r#"{"detail":"Method Not Allowed"}"#).await)
}
