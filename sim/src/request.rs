//! Reading a completion body. Both the 2026 React-client shape and the older shape (§4.2)
//! put everything that matters in `messages[]`; this extracts it once, leniently.

use serde_json::Value;

use crate::faults::{strip_directives, Faults};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkingFormat {
    Summary,
    Detail,
}

/// The parts of a completion request that shape the answer.
#[derive(Debug, Clone)]
pub struct CompletionInput {
    pub chat_id: Option<String>,
    pub model: String,
    pub stream: bool,
    pub chat_type: String,
    /// `Some` only when `thinking_enabled` is true.
    pub thinking: Option<ThinkingFormat>,
    /// The requested format even when thinking is off (faults can force thinking events).
    pub thinking_format: ThinkingFormat,
    /// `feature_config.output_schema` present; without it upstream drops `phase`.
    pub with_phase: bool,
    pub function_calling: bool,
    /// Last message's text, directives removed, trimmed.
    pub prompt: String,
    /// Character count of all message text, the basis of `input_tokens`.
    pub prompt_chars: usize,
    pub parent_id: Option<String>,
    pub timestamp: Option<i64>,
    /// Faults and directives found in the prompt text.
    pub faults: Faults,
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match p {
                    Value::String(s) => out.push_str(s),
                    Value::Object(o) => {
                        if let Some(t) = o.get("text").and_then(Value::as_str) {
                            out.push_str(t);
                        }
                    }
                    _ => {}
                }
            }
            out
        }
        _ => String::new(),
    }
}

/// `feature_config` may sit on the message, on a content part (media form) or at top level.
fn feature_config<'a>(body: &'a Value, messages: &'a [Value]) -> Option<&'a Value> {
    let on_msg = |m: &'a Value| {
        m.get("feature_config").or_else(|| {
            m.get("content")?
                .as_array()?
                .iter()
                .find_map(|p| p.get("feature_config"))
        })
    };
    messages
        .last()
        .and_then(on_msg)
        .or_else(|| messages.first().and_then(on_msg))
        .or_else(|| body.get("feature_config"))
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "on" | "1"),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        _ => false,
    }
}

impl CompletionInput {
    pub fn from_json(body: &Value) -> CompletionInput {
        let empty = Vec::new();
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        let last = messages.last();
        let str_at = |v: Option<&Value>, k: &str| {
            v.and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };

        let mut faults = Faults::default();
        let mut prompt_chars = 0;
        let mut prompt = String::new();
        for (i, m) in messages.iter().enumerate() {
            let text = m.get("content").map(text_of).unwrap_or_default();
            prompt_chars += text.chars().count();
            let cleaned = strip_directives(&text, &mut faults);
            if i + 1 == messages.len() {
                prompt = cleaned.trim().to_string();
            }
        }

        let fc = feature_config(body, messages);
        let thinking_format = match fc
            .and_then(|f| f.get("thinking_format"))
            .and_then(Value::as_str)
        {
            Some("detail") => ThinkingFormat::Detail,
            _ => ThinkingFormat::Summary,
        };
        let thinking_enabled = truthy(fc.and_then(|f| f.get("thinking_enabled")));

        CompletionInput {
            chat_id: str_at(Some(body), "chat_id"),
            model: str_at(Some(body), "model")
                .or_else(|| {
                    last.and_then(|m| m.get("models"))
                        .and_then(|v| v.get(0))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "qwen3-max".to_string()),
            // Peers always send it; a body without it is treated as the streaming default.
            stream: body.get("stream").is_none_or(|v| truthy(Some(v))),
            chat_type: str_at(last, "chat_type")
                .or_else(|| str_at(Some(body), "chat_type"))
                .unwrap_or_else(|| "t2t".to_string()),
            thinking: thinking_enabled.then_some(thinking_format),
            thinking_format,
            with_phase: fc.and_then(|f| f.get("output_schema")).is_some(),
            function_calling: truthy(fc.and_then(|f| f.get("function_calling"))),
            prompt,
            prompt_chars,
            parent_id: str_at(last, "fid").or_else(|| str_at(last, "id")),
            timestamp: body.get("timestamp").and_then(Value::as_i64),
            faults,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn new_shape() {
        let body = json!({
            "stream": true, "chat_id": "c1", "model": "qwen3-max",
            "messages": [{"fid": "f1", "role": "user", "content": "hi [[sim:split]] there",
                "chat_type": "search",
                "feature_config": {"output_schema": "phase", "thinking_enabled": true,
                                   "thinking_format": "detail"}}],
            "timestamp": 1783327438
        });
        let r = CompletionInput::from_json(&body);
        assert_eq!(r.chat_id.as_deref(), Some("c1"));
        assert_eq!(r.prompt, "hi  there");
        assert!(r.faults.split);
        assert_eq!(r.chat_type, "search");
        assert_eq!(r.thinking, Some(ThinkingFormat::Detail));
        assert!(r.with_phase);
        assert_eq!(r.parent_id.as_deref(), Some("f1"));
    }

    #[test]
    fn old_and_media_shapes() {
        let body = json!({"chat_type": "t2t", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a",
              "feature_config": {"thinking_enabled": true}}, {"type": "image", "image": "u"}]}]});
        let r = CompletionInput::from_json(&body);
        assert_eq!(r.prompt, "a");
        assert_eq!(r.thinking, Some(ThinkingFormat::Summary));
        assert!(!r.with_phase);
        assert!(r.stream);
        let r = CompletionInput::from_json(&json!({"stream": false, "messages": "bad"}));
        assert!(!r.stream);
        assert_eq!(r.prompt, "");
    }
}
