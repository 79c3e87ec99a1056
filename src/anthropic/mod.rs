//! The Anthropic Messages API: request mapping, streamed events, whole messages, errors.

pub mod error;
pub mod message;
pub mod request;
pub mod stream;
