//! The OpenAI Responses API (`POST /v1/responses`): request mapping and typed event stream.

pub mod request;
pub mod stream;
