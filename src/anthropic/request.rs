//! The Anthropic Messages request, mapped into the client-neutral conversation. Fields the
//! upstream cannot honour are accepted, ignored and named in a response header.

use serde::Deserialize;
use serde_json::Value;

use crate::convert::input::{CallRecord, ChatInput, MediaRef, Role, ToolChoice, ToolSpec, Turn};
use crate::openai::error::ApiError;

#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: Option<String>,
    pub messages: Option<Vec<AMessage>>,
    pub system: Option<Value>,
    pub max_tokens: Option<i64>,
    pub stream: Option<bool>,
    pub stop_sequences: Option<Vec<String>>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub thinking: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct AMessage {
    pub role: String,
    pub content: Value,
}

/// Accepted and ignored: sampling and bookkeeping the web upstream has no control for.
const IGNORED: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "metadata",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "output_config",
];

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::invalid(msg)
}

/// Text of a `system` value or a `tool_result` content: a string or an array of text blocks.
fn plain_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

impl MessagesRequest {
    /// Parses the body; returns the request and the names of fields that were ignored.
    pub fn parse(body: &[u8]) -> Result<(MessagesRequest, Vec<String>), ApiError> {
        let raw: Value = serde_json::from_slice(body)
            .map_err(|e| bad(format!("The request body is not valid JSON: {e}")))?;
        let ignored = raw
            .as_object()
            .map(|o| {
                o.keys()
                    .filter(|k| IGNORED.contains(&k.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let req: MessagesRequest =
            serde_json::from_value(raw).map_err(|e| bad(format!("Invalid request: {e}")))?;
        Ok((req, ignored))
    }

    pub fn to_input(&self) -> Result<ChatInput, ApiError> {
        let model = self
            .model
            .clone()
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| bad("model: Field required"))?;
        let msgs = self
            .messages
            .as_ref()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| bad("messages: at least one message is required"))?;
        if let Some(m) = self.max_tokens {
            if m < 1 {
                return Err(bad("max_tokens: must be at least 1"));
            }
        }
        let mut turns = Vec::new();
        if let Some(sys) = &self.system {
            let s = plain_text(sys);
            if !s.trim().is_empty() {
                turns.push(Turn::text(Role::System, s));
            }
        }
        for (i, m) in msgs.iter().enumerate() {
            let role = match m.role.as_str() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(bad(format!(
                        "messages.{i}.role: '{other}' is not user or assistant"
                    )))
                }
            };
            message_turns(i, role, &m.content, &mut turns)?;
        }
        let mut input = ChatInput::new(model, turns);
        input.stream = self.stream.unwrap_or(false);
        input.max_tokens = self.max_tokens.map(|m| m as u64);
        input.stop = self.stop_sequences.clone().unwrap_or_default();
        input.thinking = self
            .thinking
            .as_ref()
            .and_then(|t| t.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t == "enabled" || t == "adaptive");
        for (i, t) in self.tools.as_deref().unwrap_or_default().iter().enumerate() {
            // Server tools (web search, code execution) have a `type` and no schema: not ours.
            let Some(schema) = t.get("input_schema") else {
                continue;
            };
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad(format!("tools.{i}.name: Field required")))?;
            input.tools.push(ToolSpec {
                name: name.into(),
                description: t
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                parameters: schema.clone(),
            });
        }
        if let Some(tc) = &self.tool_choice {
            input.tool_choice = match tc.get("type").and_then(Value::as_str) {
                Some("auto") | None => ToolChoice::Auto,
                Some("any") => ToolChoice::Required,
                Some("none") => ToolChoice::None,
                Some("tool") => ToolChoice::Named(
                    tc.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("tool_choice.name: Field required"))?
                        .into(),
                ),
                Some(other) => {
                    return Err(bad(format!("tool_choice.type: '{other}' is not supported")))
                }
            };
            if tc.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
                input.parallel_calls = false;
            }
        }
        Ok(input)
    }
}

/// One Anthropic message becomes one or more turns: tool results are turns of their own.
fn message_turns(
    i: usize,
    role: Role,
    content: &Value,
    turns: &mut Vec<Turn>,
) -> Result<(), ApiError> {
    let blocks = match content {
        Value::String(s) => {
            turns.push(Turn::text(role, s.clone()));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => {
            return Err(bad(format!(
                "messages.{i}.content: must be a string or a list of blocks"
            )))
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut media = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(b.get("text").and_then(Value::as_str).unwrap_or(""));
            }
            // Earlier thinking is the model's own scratchpad; the upstream does not need it back.
            Some("thinking") | Some("redacted_thinking") => {}
            Some("tool_use") => calls.push(CallRecord {
                id: b.get("id").and_then(Value::as_str).unwrap_or("").into(),
                name: b.get("name").and_then(Value::as_str).unwrap_or("").into(),
                arguments: b.get("input").map_or("{}".into(), Value::to_string),
            }),
            Some("tool_result") => {
                let mut result = plain_text(b.get("content").unwrap_or(&Value::Null));
                if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                    result = format!("Error: {result}");
                }
                turns.push(Turn {
                    call_id: b
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    ..Turn::text(Role::Tool, result)
                });
            }
            Some("image") => {
                let src = b.get("source").unwrap_or(&Value::Null);
                let source = match src.get("type").and_then(Value::as_str) {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        src.get("media_type")
                            .and_then(Value::as_str)
                            .unwrap_or("image/png"),
                        src.get("data").and_then(Value::as_str).unwrap_or("")
                    ),
                    Some("url") => src
                        .get("url")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    _ => {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}.source: expected base64 or url"
                        )))
                    }
                };
                media.push(MediaRef {
                    video: false,
                    source,
                });
            }
            Some(kind @ ("document" | "search_result")) => {
                return Err(bad(format!(
                "messages.{i}.content.{j}: '{kind}' blocks are not supported by this gateway yet"
            )))
            }
            other => {
                return Err(bad(format!(
                    "messages.{i}.content.{j}.type: unknown block type {:?}",
                    other.unwrap_or("")
                )))
            }
        }
    }
    if !text.is_empty() || !calls.is_empty() || !media.is_empty() {
        turns.push(Turn {
            calls,
            media,
            ..Turn::text(role, text)
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(body: &str) -> Result<ChatInput, ApiError> {
        MessagesRequest::parse(body.as_bytes())?.0.to_input()
    }

    #[test]
    fn maps_system_tools_results_and_choice() {
        let i = input(
            r#"{"model":"qwen3-max","max_tokens":100,"system":[{"type":"text","text":"Be brief."}],
            "thinking":{"type":"enabled","budget_tokens":2000},
            "tools":[{"name":"get_weather","description":"d","input_schema":{"type":"object"}},{"type":"web_search_20250305","name":"web_search"}],
            "tool_choice":{"type":"any","disable_parallel_tool_use":true},
            "messages":[{"role":"user","content":"Weather?"},
              {"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"s"},{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"18C"}]},{"type":"text","text":"Thanks"}]}]}"#,
        )
        .unwrap();
        assert_eq!(i.turns[0], Turn::text(Role::System, "Be brief."));
        assert_eq!(i.turns[2].calls[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(i.turns[2].text, "Checking.");
        assert_eq!(i.turns[3].role, Role::Tool);
        assert_eq!(i.turns[3].call_id.as_deref(), Some("toolu_1"));
        assert_eq!(i.turns[4], Turn::text(Role::User, "Thanks"));
        assert_eq!(i.tools.len(), 1);
        assert_eq!(i.tool_choice, ToolChoice::Required);
        assert!(!i.parallel_calls && i.thinking);
        assert_eq!(i.max_tokens, Some(100));
    }

    #[test]
    fn reports_ignored_fields_and_rejects_bad_input() {
        let (_, ignored) =
            MessagesRequest::parse(br#"{"model":"m","messages":[],"temperature":0.5,"top_k":3}"#)
                .unwrap();
        assert_eq!(ignored.len(), 2);
        assert!(input(r#"{"model":"m","messages":[]}"#)
            .unwrap_err()
            .message
            .contains("at least one"));
        assert!(input(r#"{"messages":[{"role":"user","content":"x"}]}"#)
            .unwrap_err()
            .message
            .contains("model"));
        assert!(input(r#"{"model":"m","messages":[{"role":"system","content":"x"}]}"#).is_err());
        assert!(input(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"hologram"}]}]}"#
        )
        .is_err());
        assert!(input("{").is_err());
    }
}
