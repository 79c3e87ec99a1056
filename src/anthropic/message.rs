//! A non-streamed Messages API answer, rendered from the aggregated conversion.

use serde_json::{json, Value};

use super::stream::{stop_reason, SIGNATURE};
use crate::convert::stream::FinishReason;
use crate::openai::completion::Aggregator;

pub fn render(agg: &Aggregator, id: &str, model: &str) -> Vec<u8> {
    let (reason, usage) = agg
        .finish
        .unwrap_or((FinishReason::Stop, Default::default()));
    let mut content = Vec::new();
    if !agg.reasoning.is_empty() {
        content
            .push(json!({"type": "thinking", "thinking": agg.reasoning, "signature": SIGNATURE}));
    }
    if !agg.content.is_empty() {
        content.push(json!({"type": "text", "text": agg.content}));
    }
    for (cid, name, args) in &agg.tool_calls {
        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": cid, "name": name, "input": input}));
    }
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(reason),
        "stop_sequence": null,
        "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens},
    })
    .to_string()
    .into_bytes()
}
