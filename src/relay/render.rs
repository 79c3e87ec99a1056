//! How one answer is rendered for the client API that asked: a streaming encoder per dialect,
//! and whole answers rendered from the aggregated conversion. Enum dispatch keeps the relay
//! and the converter free of generics over three APIs.

use bytes::Bytes;
use serde_json::Value;

use crate::convert::stream::{FinishReason, Sink, Usage};
use crate::openai::chunks::StreamEncoder;
use crate::openai::completion::Aggregator;
use crate::openai::error::ApiError;
use crate::{anthropic, responses};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    Responses,
}

impl Dialect {
    pub fn error_body(self, e: &ApiError) -> Vec<u8> {
        match self {
            Dialect::Anthropic => anthropic::error::to_json(e),
            Dialect::OpenAi | Dialect::Responses => e.to_json(),
        }
    }
}

/// Everything needed to render one answer, decided by the route before the relay starts.
pub struct Render {
    pub dialect: Dialect,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub include_usage: bool,
    /// The Responses API's response object skeleton.
    pub skeleton: Option<Value>,
    pub input_estimate: u64,
    /// Sent with a successful answer (e.g. which request fields were ignored).
    pub headers: Vec<(&'static str, String)>,
}

impl Render {
    pub fn new(dialect: Dialect, model: &str) -> Self {
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        let id = match dialect {
            Dialect::OpenAi => format!("chatcmpl-{uuid}"),
            Dialect::Anthropic => format!("msg_{}", &uuid[..24]),
            Dialect::Responses => format!("resp_{uuid}"),
        };
        Render {
            dialect,
            id,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: model.to_string(),
            include_usage: false,
            skeleton: None,
            input_estimate: 0,
            headers: Vec::new(),
        }
    }

    pub fn stream_sink(&self) -> StreamSink {
        match self.dialect {
            Dialect::OpenAi => StreamSink::OpenAi(StreamEncoder::new(
                &self.id,
                self.created,
                &self.model,
                self.include_usage,
            )),
            Dialect::Anthropic => StreamSink::Anthropic(anthropic::stream::Encoder::new(
                &self.id,
                &self.model,
                self.input_estimate,
            )),
            Dialect::Responses => StreamSink::Responses(responses::stream::Encoder::new(
                self.skeleton.clone().unwrap_or(Value::Null),
            )),
        }
    }

    pub fn whole(&self, agg: &Aggregator) -> Vec<u8> {
        match self.dialect {
            Dialect::OpenAi => agg.to_json(&self.id, self.created, &self.model),
            Dialect::Anthropic => anthropic::message::render(agg, &self.id, &self.model),
            Dialect::Responses => {
                responses::stream::render(agg, self.skeleton.clone().unwrap_or(Value::Null))
            }
        }
    }
}

pub enum StreamSink {
    OpenAi(StreamEncoder),
    Anthropic(anthropic::stream::Encoder),
    Responses(responses::stream::Encoder),
}

macro_rules! each {
    ($self:ident, $e:ident => $body:expr) => {
        match $self {
            StreamSink::OpenAi($e) => $body,
            StreamSink::Anthropic($e) => $body,
            StreamSink::Responses($e) => $body,
        }
    };
}

impl StreamSink {
    pub fn take(&mut self) -> Bytes {
        each!(self, e => e.take())
    }

    pub fn pending(&self) -> usize {
        each!(self, e => e.pending())
    }

    pub fn error(&mut self, err: &ApiError) {
        each!(self, e => e.error(err))
    }
}

impl Sink for StreamSink {
    fn reasoning(&mut self, text: &str) {
        each!(self, e => e.reasoning(text))
    }

    fn content(&mut self, text: &str) {
        each!(self, e => e.content(text))
    }

    fn tool_call(&mut self, index: usize, id: &str, name: &str, arguments: &str) {
        each!(self, e => e.tool_call(index, id, name, arguments))
    }

    fn finish(&mut self, reason: FinishReason, usage: &Usage) {
        each!(self, e => e.finish(reason, usage))
    }
}
