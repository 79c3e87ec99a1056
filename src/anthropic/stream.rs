//! Anthropic Messages streaming encoder: a [`Sink`] that writes the event sequence of the
//! Messages API (`message_start`, `ping`, `content_block_start/delta/stop` per block,
//! `message_delta`, `message_stop`), opening a new block whenever the kind of output changes.

use bytes::{Bytes, BytesMut};
use serde_json::json;

use crate::convert::stream::{FinishReason, Sink, Usage};
use crate::openai::error::ApiError;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
}

pub struct Encoder {
    out: BytesMut,
    open: Option<Block>,
    index: usize,
}

/// Thinking blocks carry a signature in the Messages API; clients send it back unchanged and
/// the gateway ignores it, so it only has to be present.
pub const SIGNATURE: &str = "qwen-gateway";

/// Bytes of tool input per `input_json_delta`.
const INPUT_SLICE: usize = 48;

pub fn stop_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

impl Encoder {
    pub fn new(id: &str, model: &str, input_estimate: u64) -> Self {
        let mut e = Encoder {
            out: BytesMut::with_capacity(4096),
            open: None,
            index: 0,
        };
        e.event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input_estimate, "output_tokens": 0}}}),
        );
        e.event("ping", &json!({"type": "ping"}));
        e
    }

    fn event(&mut self, name: &str, data: &serde_json::Value) {
        self.out.extend_from_slice(b"event: ");
        self.out.extend_from_slice(name.as_bytes());
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

    fn close(&mut self) {
        if let Some(kind) = self.open.take() {
            if kind == Block::Thinking {
                self.event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": self.index,
                            "delta": {"type": "signature_delta", "signature": SIGNATURE}}),
                );
            }
            self.event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.index}),
            );
            self.index += 1;
        }
    }

    fn ensure(&mut self, kind: Block) {
        if self.open == Some(kind) {
            return;
        }
        self.close();
        let block = match kind {
            Block::Thinking => json!({"type": "thinking", "thinking": "", "signature": ""}),
            Block::Text => json!({"type": "text", "text": ""}),
        };
        self.event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.index, "content_block": block}),
        );
        self.open = Some(kind);
    }

    /// Ends a committed stream with an error event, as the Messages API does.
    pub fn error(&mut self, e: &ApiError) {
        self.event("error", &super::error::body(e));
    }
}

impl Sink for Encoder {
    fn reasoning(&mut self, text: &str) {
        self.ensure(Block::Thinking);
        self.event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.index,
                    "delta": {"type": "thinking_delta", "thinking": text}}),
        );
    }

    fn content(&mut self, text: &str) {
        self.ensure(Block::Text);
        self.event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.index,
                    "delta": {"type": "text_delta", "text": text}}),
        );
    }

    fn tool_call(&mut self, _n: usize, id: &str, name: &str, arguments: &str) {
        self.close();
        self.event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.index,
                    "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        );
        let mut rest = arguments;
        while !rest.is_empty() {
            let mut cut = rest.len().min(INPUT_SLICE);
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            let (piece, tail) = rest.split_at(cut);
            self.event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": self.index,
                        "delta": {"type": "input_json_delta", "partial_json": piece}}),
            );
            rest = tail;
        }
        self.event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": self.index}),
        );
        self.index += 1;
    }

    fn finish(&mut self, reason: FinishReason, usage: &Usage) {
        self.close();
        self.event(
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop_reason(reason), "stop_sequence": null},
                    "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}}),
        );
        self.event("message_stop", &json!({"type": "message_stop"}));
    }
}
