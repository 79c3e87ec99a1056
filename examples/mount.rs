//! Mounting the gateway inside your own Pingora application, next to your own routes.
//!
//! `cargo run --release --example mount` serves, on 127.0.0.1:8080:
//!   * `/hello` from this application's own code, and
//!   * everything else (`/v1/chat/completions`, `/v1/models`, `/health`, ...) from the gateway,
//!
//! with the upstream and credentials read from the usual environment variables
//! (`QWEN_BASE_URL`, `QWEN_TOKEN`, `COOKIE`, `API_KEY`, ...).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use qwen_gateway::config::Settings;
use qwen_gateway::context::RequestCtx;
use qwen_gateway::gateway::Gateway;
use qwen_gateway::proxy::QwenProxy;

/// Your application: answers its own routes and hands the rest to the gateway.
struct MyApp {
    gateway: QwenProxy,
}

#[async_trait]
impl ProxyHttp for MyApp {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        self.gateway.new_ctx()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.gateway.early_request_filter(session, ctx).await
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if session.req_header().uri.path() == "/hello" {
            let body = Bytes::from_static(b"hello from my own route\n");
            let mut resp = pingora::http::ResponseHeader::build(200, None)?;
            resp.insert_header("content-length", body.len().to_string())?;
            session.write_response_header(Box::new(resp), false).await?;
            session.write_response_body(Some(body), true).await?;
            return Ok(true);
        }
        self.gateway.request_filter(session, ctx).await
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        self.gateway.upstream_peer(session, ctx).await
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        self.gateway.logging(session, e, ctx).await
    }
}

fn main() {
    env_logger::init();
    let settings =
        Settings::load(&Default::default(), &|k| std::env::var(k).ok()).expect("valid settings");
    let gw: Arc<Gateway> = Gateway::new(settings).expect("gateway");
    let mut server = Server::new(None).expect("server");
    server.bootstrap();
    let mut svc = pingora::proxy::http_proxy_service(
        &server.configuration,
        MyApp {
            gateway: QwenProxy::new(gw),
        },
    );
    svc.add_tcp("127.0.0.1:8080");
    server.add_service(svc);
    server.run_forever();
}
