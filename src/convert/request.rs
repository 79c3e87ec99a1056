//! OpenAI chat request -> the plan for one upstream exchange. Pure: no I/O, no clock.
//!
//! The v2 upstream answers multi-message bodies with empty replies (protocol §4.5), so the
//! conversation is flattened into one user message. A lone user message goes through verbatim;
//! anything longer becomes a transcript with one `[role]` header per turn, which keeps turn
//! boundaries unambiguous even when the text itself contains `role:`-like prefixes.

use crate::config::ThinkingFormat;
use crate::openai::error::ApiError;
use crate::openai::request::{ChatRequest, Message};

use super::model::parse_model;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPlan {
    /// The name the client asked for; echoed in every response.
    pub requested_model: String,
    /// The upstream model id (suffixes removed, resolved against the catalog by the caller).
    pub upstream_model: String,
    pub chat_type: &'static str,
    pub thinking: bool,
    pub thinking_format: ThinkingFormat,
    pub prompt: String,
    pub stream: bool,
    pub include_usage: bool,
    pub stop: Vec<String>,
    pub max_tokens: Option<u64>,
}

pub fn translate(req: &ChatRequest, thinking_format: ThinkingFormat) -> Result<ChatPlan, ApiError> {
    let requested = req.model.clone().unwrap_or_default();
    let spec = parse_model(&requested);
    let thinking = spec.thinking
        || req.enable_thinking == Some(true)
        || req
            .reasoning_effort
            .as_deref()
            .is_some_and(|e| !matches!(e, "none" | "minimal"));
    let messages = req.messages.as_deref().unwrap_or_default();
    let prompt = flatten(messages);
    if prompt.trim().is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "The messages contain no text to send.",
        ));
    }
    Ok(ChatPlan {
        requested_model: requested,
        upstream_model: spec.base,
        chat_type: if spec.search { "search" } else { "t2t" },
        thinking,
        thinking_format,
        prompt,
        stream: req.stream.unwrap_or(false),
        include_usage: req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        stop: req.stop_sequences(),
        max_tokens: req.token_limit(),
    })
}

fn role_label(role: &str) -> &str {
    match role {
        "developer" => "system",
        "function" => "tool",
        other => other,
    }
}

/// Flattens the conversation into the single upstream message.
pub fn flatten(messages: &[Message]) -> String {
    let turns: Vec<(&str, String)> = messages
        .iter()
        .map(|m| (role_label(&m.role), m.text()))
        .filter(|(_, t)| !t.trim().is_empty())
        .collect();
    if let [(role, text)] = turns.as_slice() {
        if *role == "user" {
            return text.clone();
        }
    }
    let mut out = String::with_capacity(turns.iter().map(|(_, t)| t.len() + 16).sum());
    for (i, (role, text)) in turns.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        out.push('[');
        out.push_str(role);
        out.push_str("]\n");
        out.push_str(text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> ChatRequest {
        ChatRequest::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn single_user_message_is_verbatim() {
        let p = translate(
            &req(r#"{"model":"qwen3-max","messages":[{"role":"user","content":"Hi there"}]}"#),
            ThinkingFormat::Detail,
        )
        .unwrap();
        assert_eq!(p.prompt, "Hi there");
        assert_eq!(p.chat_type, "t2t");
        assert!(!p.thinking && !p.stream);
    }

    #[test]
    fn history_is_flattened_in_order() {
        let p = translate(
            &req(r#"{"model":"qwen3-max-thinking-search","stream":true,"stream_options":{"include_usage":true},"messages":[
                {"role":"system","content":"Be brief."},
                {"role":"user","content":"Hi"},
                {"role":"assistant","content":"Hello!"},
                {"role":"assistant","content":""},
                {"role":"user","content":[{"type":"text","text":"What is "},{"type":"text","text":"2+2?"}]}]}"#),
            ThinkingFormat::Summary,
        )
        .unwrap();
        assert_eq!(
            p.prompt,
            "[system]\nBe brief.\n\n[user]\nHi\n\n[assistant]\nHello!\n\n[user]\nWhat is 2+2?"
        );
        assert_eq!(p.upstream_model, "qwen3-max");
        assert_eq!(p.chat_type, "search");
        assert!(p.thinking && p.stream && p.include_usage);
    }

    #[test]
    fn thinking_flags() {
        for (extra, want) in [
            (r#","enable_thinking":true"#, true),
            (r#","reasoning_effort":"high""#, true),
            (r#","reasoning_effort":"none""#, false),
            ("", false),
        ] {
            let body = format!(
                r#"{{"model":"qwen3-max","messages":[{{"role":"user","content":"x"}}]{extra}}}"#
            );
            assert_eq!(
                translate(&req(&body), ThinkingFormat::Detail)
                    .unwrap()
                    .thinking,
                want
            );
        }
    }

    #[test]
    fn empty_text_is_refused() {
        let e = translate(
            &req(r#"{"model":"m","messages":[{"role":"user","content":"  "}]}"#),
            ThinkingFormat::Detail,
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
    }
}
