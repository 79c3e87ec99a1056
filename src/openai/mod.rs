//! OpenAI wire types: requests, errors, streamed chunks and aggregated completions.

pub mod chunks;
pub mod completion;
pub mod error;
pub mod request;
