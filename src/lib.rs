//! qwen-gateway: the OpenAI API served from the Qwen web chat, on Cloudflare's Pingora.
//!
//! Data flows one way: downstream request -> auth and local routes (`routes`) -> translation
//! (`convert::request`) -> identity choice (`pool`) -> upstream exchange (`relay`, `qwen`) ->
//! stream conversion (`sse`, `convert::stream`, `openai`) -> downstream.
//!
//! To mount the gateway in another Pingora application, build a [`gateway::Gateway`] and add
//! `pingora::proxy::http_proxy_service(&conf, proxy::QwenProxy::new(gw))` to your server, or call
//! the pure pieces (`convert`, `sse`) from your own `ProxyHttp`; see `examples/`.

pub mod anthropic;
pub mod auth;
pub mod catalog;
pub mod coder;
pub mod config;
pub mod context;
pub mod convert;
pub mod gateway;
pub mod generate;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod openai;
pub mod pool;
pub mod probe;
pub mod proxy;
pub mod qwen;
pub mod relay;
pub mod respond;
pub mod responses;
pub mod routes;
pub mod server;
pub mod shared;
pub mod sse;
pub mod store;
