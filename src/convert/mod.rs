//! Pure translation between the client APIs and the Qwen web protocol: no I/O, no clock.

pub mod classify;
pub mod images;
pub mod input;
pub mod model;
pub mod request;
pub mod search;
pub mod stop;
pub mod stream;
pub mod tokens;
pub mod toolcall;
pub mod tools;

#[cfg(test)]
mod tests;
