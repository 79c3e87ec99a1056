//! `qwen-sim`: a simulated Qwen web-chat upstream (chat.qwen.ai) for the gateway's tests,
//! benchmarks and `--demo` mode. It speaks the wire protocol described in
//! `qwen-protocol.md` (§16 is the checklist) and can inject the upstream's known faults.
//!
//! Entry points: [`Sim`] (shared state, token minting, the Pingora service) and
//! [`render_completion_sse`] (the exact event bytes for a body, without a server).

mod accounts;
mod answer;
mod app;
mod cdn;
mod chats;
mod cli;
mod completion;
mod config;
mod control;
mod events;
mod faults;
mod generation;
mod http;
mod jwt;
mod media_faults;
mod media_state;
mod models;
mod oss_sign;
mod render;
mod replies;
mod request;
mod routes;
mod state;
mod stream;
mod uploads;

use std::sync::Arc;

use bytes::Bytes;
use pingora::services::listening::Service;

pub use app::SimApp;
pub use config::{SimConfig, DEMO_EMAIL, DEMO_PASSWORD};

use accounts::AccountBook;
use config::RuntimeConfig;
use state::SimState;

pub(crate) struct Inner {
    secret: String,
    accounts: AccountBook,
    runtime: RuntimeConfig,
    state: SimState,
    cli: cli::CliState,
}

/// A simulator instance. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Sim {
    pub(crate) inner: Arc<Inner>,
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        Sim {
            inner: Arc::new(Inner {
                secret: cfg.jwt_secret.clone(),
                accounts: AccountBook::new(&cfg.accounts),
                runtime: RuntimeConfig::new(&cfg),
                state: SimState::default(),
                cli: cli::CliState::default(),
            }),
        }
    }

    /// A valid HS256 JWT `{"id","exp":now+ttl}` for the account; a negative TTL gives an
    /// already expired token. Unknown emails get a well-formed token that auth rejects.
    pub fn mint_token(&self, email: &str, ttl_secs: i64) -> String {
        self.inner.mint_for(email, ttl_secs)
    }

    /// A browser-like cookie header carrying a fresh `token=` plus unrelated cookies.
    pub fn cookie_for(&self, email: &str) -> String {
        let token = self.mint_token(email, self.inner.runtime.token_ttl_secs());
        cookie_with(&token)
    }

    /// A plain-TCP HTTP/1.1 Pingora service listening on `addr`, for the caller's `Server`.
    pub fn service(&self, addr: &str) -> Service<SimApp> {
        let mut svc = Service::new("qwen-sim".to_string(), SimApp::new(self.clone()));
        svc.add_tcp(addr);
        svc
    }

    /// The same document as `GET /__sim/state`.
    pub fn state_json(&self) -> serde_json::Value {
        self.inner.state_json()
    }
}

pub(crate) fn cookie_with(token: &str) -> String {
    format!("cna=QwenSimCnaCookie00000000; token={token}; ssxmod_itna=1-qwen-sim-placeholder")
}

impl Inner {
    pub(crate) fn mint_for(&self, email: &str, ttl_secs: i64) -> String {
        let id = match self.accounts.by_email(email) {
            Some(acc) => acc.id.clone(),
            None => format!("unknown:{}", email.trim().to_ascii_lowercase()),
        };
        jwt::mint(&self.secret, &id, jwt::now_secs() + ttl_secs)
    }

    pub(crate) fn state_json(&self) -> serde_json::Value {
        let mut emails: Vec<&str> = self.accounts.emails().collect();
        emails.sort_unstable();
        let mut v = self.state.to_json(self.runtime.to_json(), emails);
        v["cli"] = self.cli.to_json();
        v
    }
}

/// The exact SSE bytes the sim would stream for a completion request body (JSON as sent by
/// the gateway) from the given account, with no faults and no delays. One `Bytes` per write.
///
/// Directives that are not faults (`[[sim:deltas=N]]`) still apply; fault directives are
/// ignored. The response id is derived from the body, so equal bodies give equal bytes
/// (the timestamp is the body's `timestamp`, or now).
pub fn render_completion_sse(sim: &Sim, email: &str, body: &serde_json::Value) -> Vec<Bytes> {
    completion::render_pure(&sim.inner, email, body)
}

#[cfg(test)]
mod tests;
