//! The Qwen web upstream: wire types, request bodies and headers, and side calls.

pub mod api;
pub mod body;
pub mod client;
pub mod events;
pub mod headers;
pub mod jwt;
pub mod models;
