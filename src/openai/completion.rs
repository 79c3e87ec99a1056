//! Aggregates a converted stream into one `chat.completion` object (non-streaming requests).

use serde::Serialize;

use crate::convert::stream::{FinishReason, Sink, Usage};

#[derive(Debug, Default)]
pub struct Aggregator {
    pub content: String,
    pub reasoning: String,
    pub finish: Option<(FinishReason, Usage)>,
}

impl Sink for Aggregator {
    fn reasoning(&mut self, text: &str) {
        self.reasoning.push_str(text);
    }

    fn content(&mut self, text: &str) {
        self.content.push_str(text);
    }

    fn finish(&mut self, reason: FinishReason, usage: &Usage) {
        self.finish = Some((reason, *usage));
    }
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: UsageOut,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    completion_tokens_details: Details,
}

#[derive(Serialize)]
struct Details {
    reasoning_tokens: u64,
}

impl Aggregator {
    /// The final JSON; call only after the converter finished.
    pub fn to_json(&self, id: &str, created: u64, model: &str) -> Vec<u8> {
        let (reason, usage) = self
            .finish
            .unwrap_or((FinishReason::Stop, Usage::default()));
        serde_json::to_vec(&Completion {
            id,
            object: "chat.completion",
            created,
            model,
            choices: [Choice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: &self.content,
                    reasoning_content: (!self.reasoning.is_empty()).then_some(&self.reasoning),
                },
                logprobs: None,
                finish_reason: reason.as_str(),
            }],
            usage: UsageOut {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage.total(),
                completion_tokens_details: Details {
                    reasoning_tokens: usage.reasoning_tokens,
                },
            },
        })
        .expect("plain struct serialises")
    }
}
