//! OpenAI Responses streaming encoder: typed events (`response.created`, output items with
//! their parts and deltas, `response.completed`), each with a `sequence_number`, plus the
//! rendering of a whole response from the aggregated conversion.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use crate::convert::stream::{FinishReason, Sink, Usage};
use crate::openai::completion::Aggregator;
use crate::openai::error::ApiError;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Reasoning,
    Message,
}

pub struct Encoder {
    out: BytesMut,
    seq: u64,
    response: Value,
    items: Vec<Value>,
    open: Option<(Open, String, String)>,
}

fn item_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total(),
    })
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"id": id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]})
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = if status == "completed" {
        json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
    } else {
        json!([])
    };
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

fn call_item(id: &str, call_id: &str, name: &str, args: &str, status: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": args})
}

/// Fills the skeleton for a finished response.
fn finished(mut response: Value, output: Vec<Value>, reason: FinishReason, usage: &Usage) -> Value {
    let incomplete = reason == FinishReason::Length;
    response["status"] = json!(if incomplete {
        "incomplete"
    } else {
        "completed"
    });
    if incomplete {
        response["incomplete_details"] = json!({"reason": "max_output_tokens"});
    }
    response["output"] = Value::Array(output);
    response["usage"] = usage_json(usage);
    response
}

impl Encoder {
    pub fn new(skeleton: Value) -> Self {
        let mut e = Encoder {
            out: BytesMut::with_capacity(4096),
            seq: 0,
            response: skeleton,
            items: Vec::new(),
            open: None,
        };
        let r = e.response.clone();
        e.event("response.created", json!({"response": r}));
        e.event("response.in_progress", json!({"response": r}));
        e
    }

    fn event(&mut self, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        self.out.extend_from_slice(b"event: ");
        self.out.extend_from_slice(kind.as_bytes());
        self.out.extend_from_slice(b"\ndata: ");
        self.out.extend_from_slice(data.to_string().as_bytes());
        self.out.extend_from_slice(b"\n\n");
    }

    pub fn take(&mut self) -> Bytes {
        self.out.split().freeze()
    }

    pub fn pending(&self) -> usize {
        self.out.len()
    }

    fn index(&self) -> usize {
        self.items.len()
    }

    fn close(&mut self) {
        let Some((kind, id, text)) = self.open.take() else {
            return;
        };
        let idx = self.index();
        let item = match kind {
            Open::Reasoning => {
                self.event(
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": idx, "summary_index": 0, "text": text}),
                );
                self.event(
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": idx, "summary_index": 0,
                           "part": {"type": "summary_text", "text": text}}),
                );
                reasoning_item(&id, &text)
            }
            Open::Message => {
                self.event(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": idx, "content_index": 0, "text": text, "logprobs": []}),
                );
                self.event(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": idx, "content_index": 0,
                           "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}}),
                );
                message_item(&id, &text, "completed")
            }
        };
        self.event(
            "response.output_item.done",
            json!({"output_index": idx, "item": item}),
        );
        self.items.push(item);
    }

    fn ensure(&mut self, kind: Open) -> String {
        if let Some((k, id, _)) = &self.open {
            if *k == kind {
                return id.clone();
            }
        }
        self.close();
        let idx = self.index();
        let id = match kind {
            Open::Reasoning => {
                let id = item_id("rs");
                self.event(
                    "response.output_item.added",
                    json!({"output_index": idx, "item": {"id": id, "type": "reasoning", "summary": []}}),
                );
                self.event(
                    "response.reasoning_summary_part.added",
                    json!({"item_id": id, "output_index": idx, "summary_index": 0,
                           "part": {"type": "summary_text", "text": ""}}),
                );
                id
            }
            Open::Message => {
                let id = item_id("msg");
                self.event(
                    "response.output_item.added",
                    json!({"output_index": idx, "item": message_item(&id, "", "in_progress")}),
                );
                self.event(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": idx, "content_index": 0,
                           "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
                );
                id
            }
        };
        self.open = Some((kind, id.clone(), String::new()));
        id
    }

    fn append(&mut self, text: &str) {
        if let Some((_, _, t)) = &mut self.open {
            t.push_str(text);
        }
    }

    /// Ends a committed stream: an `error` event, then `response.failed`.
    pub fn error(&mut self, e: &ApiError) {
        self.close();
        self.event(
            "error",
            json!({"code": e.code, "message": e.message, "param": null}),
        );
        let mut r = self.response.clone();
        r["status"] = json!("failed");
        r["error"] = json!({"code": e.code, "message": e.message});
        r["output"] = Value::Array(self.items.clone());
        self.event("response.failed", json!({"response": r}));
    }
}

impl Sink for Encoder {
    fn reasoning(&mut self, text: &str) {
        let id = self.ensure(Open::Reasoning);
        let idx = self.index();
        self.append(text);
        self.event(
            "response.reasoning_summary_text.delta",
            json!({"item_id": id, "output_index": idx, "summary_index": 0, "delta": text}),
        );
    }

    fn content(&mut self, text: &str) {
        let id = self.ensure(Open::Message);
        let idx = self.index();
        self.append(text);
        self.event(
            "response.output_text.delta",
            json!({"item_id": id, "output_index": idx, "content_index": 0, "delta": text, "logprobs": []}),
        );
    }

    fn tool_call(&mut self, _n: usize, call_id: &str, name: &str, arguments: &str) {
        self.close();
        let idx = self.index();
        let id = item_id("fc");
        self.event(
            "response.output_item.added",
            json!({"output_index": idx, "item": call_item(&id, call_id, name, "", "in_progress")}),
        );
        self.event(
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": idx, "delta": arguments}),
        );
        self.event(
            "response.function_call_arguments.done",
            json!({"item_id": id, "output_index": idx, "arguments": arguments}),
        );
        let item = call_item(&id, call_id, name, arguments, "completed");
        self.event(
            "response.output_item.done",
            json!({"output_index": idx, "item": item}),
        );
        self.items.push(item);
    }

    fn finish(&mut self, reason: FinishReason, usage: &Usage) {
        self.close();
        let r = finished(self.response.clone(), self.items.clone(), reason, usage);
        let kind = if reason == FinishReason::Length {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.event(kind, json!({"response": r}));
    }
}

/// A whole (non-streamed) response from the aggregated conversion.
pub fn render(agg: &Aggregator, skeleton: Value) -> Vec<u8> {
    let (reason, usage) = agg.finish.unwrap_or((FinishReason::Stop, Usage::default()));
    let mut output = Vec::new();
    if !agg.reasoning.is_empty() {
        output.push(reasoning_item(&item_id("rs"), &agg.reasoning));
    }
    if !agg.content.is_empty() {
        output.push(message_item(&item_id("msg"), &agg.content, "completed"));
    }
    for (call_id, name, args) in &agg.tool_calls {
        output.push(call_item(&item_id("fc"), call_id, name, args, "completed"));
    }
    finished(skeleton, output, reason, &usage)
        .to_string()
        .into_bytes()
}
