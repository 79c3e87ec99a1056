//! Aggregates a converted stream into one `chat.completion` object (non-streaming requests).

use serde::Serialize;

use crate::convert::stream::{FinishReason, Sink, Usage};

#[derive(Debug, Default)]
pub struct Aggregator {
    pub content: String,
    pub reasoning: String,
    /// (id, name, arguments JSON)
    pub tool_calls: Vec<(String, String, String)>,
    pub finish: Option<(FinishReason, Usage)>,
}

impl Sink for Aggregator {
    fn reasoning(&mut self, text: &str) {
        self.reasoning.push_str(text);
    }

    fn content(&mut self, text: &str) {
        self.content.push_str(text);
    }

    fn tool_call(&mut self, _index: usize, id: &str, name: &str, arguments: &str) {
        self.tool_calls
            .push((id.into(), name.into(), arguments.into()));
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
    /// Null when the answer is only tool calls, as OpenAI returns it.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
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
                    content: (!self.content.is_empty() || self.tool_calls.is_empty())
                        .then_some(self.content.as_str()),
                    reasoning_content: (!self.reasoning.is_empty()).then_some(&self.reasoning),
                    tool_calls: self
                        .tool_calls
                        .iter()
                        .map(|(id, name, args)| ToolCallOut {
                            id,
                            kind: "function",
                            function: FunctionOut {
                                name,
                                arguments: args,
                            },
                        })
                        .collect(),
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
