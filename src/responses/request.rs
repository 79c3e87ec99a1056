//! The OpenAI Responses request (`POST /v1/responses`), mapped into the client-neutral
//! conversation, plus the response skeleton that echoes the request's settings.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::convert::input::{CallRecord, ChatInput, MediaRef, Role, ToolSpec, Turn};
use crate::openai::error::ApiError;
use crate::openai::request::parse_tool_choice;

#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    pub model: Option<String>,
    pub input: Option<Value>,
    pub instructions: Option<String>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub stream: Option<bool>,
    pub max_output_tokens: Option<i64>,
    pub reasoning: Option<Value>,
    pub previous_response_id: Option<String>,
}

fn bad(param: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::invalid_param(param, msg)
}

/// Images of a message's content (`input_image` parts with an `image_url`).
fn content_media(v: &Value) -> Vec<MediaRef> {
    v.as_array()
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("input_image"))
                .filter_map(|p| p.get("image_url").and_then(Value::as_str))
                .map(|u| MediaRef {
                    video: false,
                    source: u.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Text of a message's content: a string, or its text parts.
fn content_text(i: usize, v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text" | "summary_text") => {
                        out.push_str(p.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                    Some("refusal") => out.push_str(p.get("refusal").and_then(Value::as_str).unwrap_or("")),
                    Some("input_image") => {}
                    Some(kind @ ("input_file" | "input_audio")) => {
                        return Err(bad(
                            "input",
                            format!("input[{i}].content[{j}]: '{kind}' is not supported by this gateway yet."),
                        ))
                    }
                    other => {
                        return Err(bad(
                            "input",
                            format!("input[{i}].content[{j}] has unknown type {:?}.", other.unwrap_or("")),
                        ))
                    }
                }
            }
            Ok(out)
        }
        Value::Null => Ok(String::new()),
        _ => Err(bad(
            "input",
            format!("input[{i}].content must be a string or a list of parts."),
        )),
    }
}

fn item_turns(i: usize, item: &Value, turns: &mut Vec<Turn>) -> Result<(), ApiError> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some("system" | "developer") => Role::System,
                other => {
                    return Err(bad(
                        "input",
                        format!(
                            "input[{i}].role {:?} is not supported.",
                            other.unwrap_or("")
                        ),
                    ))
                }
            };
            let content = item.get("content").unwrap_or(&Value::Null);
            let text = content_text(i, content)?;
            turns.push(Turn {
                media: content_media(content),
                ..Turn::text(role, text)
            });
        }
        "function_call" => {
            let call = CallRecord {
                id: item
                    .get("call_id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                name: item
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                arguments: item
                    .get("arguments")
                    .and_then(Value::as_str)
                    .unwrap_or("{}")
                    .into(),
            };
            // Consecutive calls belong to one assistant turn.
            match turns.last_mut() {
                Some(t) if t.role == Role::Assistant => t.calls.push(call),
                _ => turns.push(Turn {
                    calls: vec![call],
                    ..Turn::text(Role::Assistant, "")
                }),
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => content_text(i, v)?,
                None => String::new(),
            };
            turns.push(Turn {
                call_id: item
                    .get("call_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                ..Turn::text(Role::Tool, output)
            });
        }
        // Earlier reasoning is not needed upstream.
        "reasoning" => {}
        other => {
            return Err(bad(
                "input",
                format!("input[{i}] has unsupported type '{other}'."),
            ))
        }
    }
    Ok(())
}

impl ResponsesRequest {
    pub fn parse(body: &[u8]) -> Result<ResponsesRequest, ApiError> {
        serde_json::from_slice(body).map_err(|e| {
            if e.is_data() {
                ApiError::invalid(format!("Invalid request: {e}"))
            } else {
                ApiError::invalid(format!("The request body is not valid JSON: {e}"))
            }
        })
    }

    pub fn to_input(&self) -> Result<ChatInput, ApiError> {
        let model = self
            .model
            .clone()
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| bad("model", "'model' is required."))?;
        if self.previous_response_id.is_some() {
            return Err(bad(
                "previous_response_id",
                "Stored responses are not kept by this gateway; send the whole conversation in 'input'.",
            ));
        }
        let mut turns = Vec::new();
        if let Some(ins) = self
            .instructions
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            turns.push(Turn::text(Role::System, ins));
        }
        match &self.input {
            Some(Value::String(s)) => turns.push(Turn::text(Role::User, s.clone())),
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    item_turns(i, item, &mut turns)?;
                }
            }
            _ => {
                return Err(bad(
                    "input",
                    "'input' is required: a string or a list of items.",
                ))
            }
        }
        let mut input = ChatInput::new(model, turns);
        input.stream = self.stream.unwrap_or(false);
        if let Some(m) = self.max_output_tokens {
            if m < 1 {
                return Err(bad(
                    "max_output_tokens",
                    "max_output_tokens must be at least 1.",
                ));
            }
            input.max_tokens = Some(m as u64);
        }
        input.thinking = self
            .reasoning
            .as_ref()
            .and_then(|r| r.get("effort"))
            .and_then(Value::as_str)
            .is_some_and(|e| !matches!(e, "none" | "minimal"));
        input.parallel_calls = self.parallel_tool_calls.unwrap_or(true);
        for t in self.tools.as_deref().unwrap_or_default() {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                continue;
            }
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad("tools", "A function tool needs a 'name'."))?;
            input.tools.push(ToolSpec {
                name: name.into(),
                description: t
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                parameters: t.get("parameters").cloned().unwrap_or(Value::Null),
            });
        }
        input.tool_choice = parse_tool_choice(self.tool_choice.as_ref())?;
        Ok(input)
    }

    /// The response object's fields that echo the request; status, output and usage are
    /// filled in by the encoders.
    pub fn skeleton(&self, id: &str, created: u64, model: &str) -> Value {
        json!({
            "id": id,
            "object": "response",
            "created_at": created,
            "status": "in_progress",
            "error": null,
            "incomplete_details": null,
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "model": model,
            "output": [],
            "parallel_tool_calls": self.parallel_tool_calls.unwrap_or(true),
            "previous_response_id": null,
            "reasoning": self.reasoning.clone().unwrap_or(json!({"effort": null, "summary": null})),
            "store": false,
            "text": {"format": {"type": "text"}},
            "tool_choice": self.tool_choice.clone().unwrap_or(json!("auto")),
            "tools": self.tools.clone().unwrap_or_default(),
            "truncation": "disabled",
            "usage": null,
            "metadata": {},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_map_to_turns() {
        let r = ResponsesRequest::parse(
            br#"{"model":"qwen3-max","instructions":"Be brief.","reasoning":{"effort":"high"},
            "tools":[{"type":"function","name":"f","parameters":{"type":"object"}},{"type":"web_search"}],
            "input":[{"role":"user","content":"hi"},
              {"type":"function_call","call_id":"c1","name":"f","arguments":"{\"a\":1}"},
              {"type":"function_call","call_id":"c2","name":"f","arguments":"{}"},
              {"type":"function_call_output","call_id":"c1","output":"ok"},
              {"type":"message","role":"assistant","content":[{"type":"output_text","text":"done"}]}]}"#,
        )
        .unwrap();
        let i = r.to_input().unwrap();
        assert_eq!(i.turns[0], Turn::text(Role::System, "Be brief."));
        assert_eq!(i.turns[2].calls.len(), 2);
        assert_eq!(i.turns[3].role, Role::Tool);
        assert_eq!(i.turns[4], Turn::text(Role::Assistant, "done"));
        assert_eq!(i.tools.len(), 1);
        assert!(i.thinking);
    }

    #[test]
    fn rejects_what_it_cannot_do() {
        let e = |b: &str| {
            ResponsesRequest::parse(b.as_bytes())
                .and_then(|r| r.to_input())
                .unwrap_err()
        };
        assert_eq!(e(r#"{"input":"x"}"#).param, Some("model"));
        assert_eq!(e(r#"{"model":"m"}"#).param, Some("input"));
        assert_eq!(
            e(r#"{"model":"m","input":"x","previous_response_id":"r"}"#).param,
            Some("previous_response_id")
        );
        assert_eq!(
            e(r#"{"model":"m","input":[{"type":"bogus"}]}"#).param,
            Some("input")
        );
    }
}
