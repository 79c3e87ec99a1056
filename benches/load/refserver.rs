//! The two reference servers the gateway is compared with, each a real Pingora server run by
//! re-executing this benchmark with a hidden flag:
//! * pass-through: forwards the completion request unchanged (the cheapest possible proxy);
//! * protocol floor: the same, after creating a chat with `POST /api/v2/chats/new` through
//!   Pingora's own connector, and forwarding to that chat. Any gateway for this protocol has
//!   to do at least this per request, so it is the fair yardstick for the gateway.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;

const NEW_CHAT_BODY: &[u8] = br#"{"title":"New Chat","models":["qwen3-max"],"chat_mode":"normal","chat_type":"t2t","timestamp":0}"#;

struct Floor {
    connector: Connector,
    peer: HttpPeer,
    host: String,
}

pub struct RefProxy {
    upstream: SocketAddr,
    floor: Option<Floor>,
}

#[derive(Default)]
pub struct Ctx {
    chat_id: Option<String>,
}

#[derive(serde::Deserialize)]
struct NewChat {
    data: Option<NewChatData>,
}

#[derive(serde::Deserialize)]
struct NewChatData {
    id: String,
}

fn bad_gateway(why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(502), why)
}

impl Floor {
    /// One `chats/new` exchange on a pooled connection, the way the gateway makes its side
    /// call: read to the end so the connection can return to the pool.
    async fn exchange(&self, s: &mut HttpSession, auth: &str) -> Result<Option<String>> {
        let mut req = RequestHeader::build("POST", b"/api/v2/chats/new", None)?;
        req.insert_header("host", &self.host)?;
        req.insert_header("authorization", auth)?;
        req.insert_header("content-type", "application/json")?;
        req.insert_header("content-length", NEW_CHAT_BODY.len().to_string())?;
        s.write_request_header(Box::new(req)).await?;
        s.write_request_body(Bytes::from_static(NEW_CHAT_BODY), true)
            .await?;
        s.finish_request_body().await?;
        s.read_response_header().await?;
        let mut body = Vec::new();
        while let Some(b) = s.read_response_body().await? {
            body.extend_from_slice(&b);
        }
        let ok = s.response_header().is_some_and(|h| h.status == 200);
        let id = serde_json::from_slice::<NewChat>(&body)
            .ok()
            .and_then(|r| r.data)
            .map(|d| d.id);
        Ok(if ok { id } else { None })
    }

    async fn new_chat(&self, auth: &str) -> Result<String> {
        // A pooled connection the server already closed fails before any answer; the request
        // never reached the server, so one retry on a fresh connection is safe.
        for _ in 0..2 {
            let (mut s, reused) = self.connector.get_http_session(&self.peer).await?;
            match self.exchange(&mut s, auth).await {
                Ok(Some(id)) => {
                    self.connector
                        .release_http_session(s, &self.peer, Some(Duration::from_secs(60)))
                        .await;
                    return Ok(id);
                }
                Ok(None) => return Err(bad_gateway("chats/new gave no chat id")),
                Err(_) if reused => continue,
                Err(e) => return Err(e),
            }
        }
        Err(bad_gateway("chats/new failed on two connections"))
    }
}

#[async_trait]
impl ProxyHttp for RefProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if let Some(floor) = &self.floor {
            let auth = session
                .req_header()
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            ctx.chat_id = Some(floor.new_chat(&auth).await?);
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _: &mut Session, _: &mut Ctx) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(id) = &ctx.chat_id {
            let uri = format!("/api/v2/chat/completions?chat_id={id}");
            req.set_uri(uri.parse().map_err(|_| bad_gateway("bad chat id"))?);
        }
        Ok(())
    }
}

/// Runs a reference server until killed. `floor` adds the `chats/new` side call.
pub fn serve(port: &str, upstream: &str, floor: bool) -> ! {
    let upstream: SocketAddr = upstream.parse().expect("upstream is host:port");
    // The benchmark kills its servers itself; this covers the benchmark being killed.
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(500));
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(0);
        }
    });
    let floor = floor.then(|| Floor {
        // About twice the expected concurrency, as the gateway's client is sized.
        connector: Connector::new(Some(ConnectorOptions::new(256))),
        peer: HttpPeer::new(upstream, false, String::new()),
        host: upstream.to_string(),
    });
    let conf = ServerConf {
        threads: 2,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc =
        pingora::proxy::http_proxy_service(&server.configuration, RefProxy { upstream, floor });
    svc.add_tcp(&format!("127.0.0.1:{port}"));
    server.add_service(svc);
    server.run_forever()
}
