//! The `ProxyHttp` implementation. Every route is answered in `request_filter` (local routes
//! directly, chat completions through `relay`), so the remaining hooks only log.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};

use crate::context::RequestCtx;
use crate::gateway::Gateway;
use crate::metrics;
use crate::routes;

pub struct QwenProxy {
    pub gw: Arc<Gateway>,
}

impl QwenProxy {
    pub fn new(gw: Arc<Gateway>) -> Self {
        QwenProxy { gw }
    }
}

#[async_trait]
impl ProxyHttp for QwenProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn early_request_filter(&self, session: &mut Session, _: &mut RequestCtx) -> Result<()> {
        // Requests pipelined behind this one are answered in order instead of being dropped.
        session.downstream_session.set_pipelining_enabled(true);
        // A client that stalls while sending its body does not hold a task forever.
        session
            .downstream_session
            .set_read_timeout(Some(self.gw.settings.client_body_timeout));
        // Bounds the idle time before the next request and each read of its header; the first
        // request's header reads are bounded by Pingora's fixed 60 s.
        session
            .downstream_session
            .set_keepalive(Some(self.gw.settings.client_keepalive_secs));
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        routes::handle(&self.gw, session, ctx).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _: &mut Session, _: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        // Unreachable: request_filter answers every request.
        Error::e_explain(ErrorType::InternalError, "no route is proxied by pingora")
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.status == 0 {
            ctx.status = session.response_written().map_or(0, |r| r.status.as_u16());
        }
        let h = session.req_header();
        let line = ctx.access_line(h.method.as_str(), h.uri.path());
        let status = ctx.status.to_string();
        // Only answered requests name a model: an unknown name is client input, not a label.
        let model = if ctx.status == 200 {
            ctx.model.as_deref().unwrap_or("-")
        } else {
            "-"
        };
        metrics::REQUESTS
            .with_label_values(&[ctx.route, model, &status])
            .inc();
        metrics::DURATION
            .with_label_values(&[ctx.route])
            .observe(ctx.started.elapsed().as_secs_f64());
        if let Some(t) = ctx.ttft {
            metrics::TTFT
                .with_label_values(&[ctx.route])
                .observe(t.as_secs_f64());
        }
        // Per-key usage: every authenticated API request (the admin API itself aside).
        if ctx.caller != "-" && !ctx.route.starts_with("admin") {
            let u = ctx.usage.unwrap_or_default();
            self.gw.state.record_usage(
                &ctx.caller,
                crate::store::usage::Delta {
                    prompt_tokens: u.prompt_tokens,
                    completion_tokens: u.completion_tokens,
                    error: ctx.failed(),
                    rate_limited: ctx.rate_limited,
                },
            );
        }
        match e {
            Some(e) => {
                log::info!(target: "access", "{line} downstream_error={}", e.etype().as_str())
            }
            None => log::info!(target: "access", "{line}"),
        }
    }
}
