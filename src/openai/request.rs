//! The client-facing chat completion request, parsed strictly enough to give precise 400s and
//! loosely enough that the many optional OpenAI fields the upstream cannot honour are accepted.

use serde::Deserialize;

use super::error::ApiError;
use crate::convert::input::{CallRecord, ChatInput, Role, ToolChoice, ToolSpec, Turn};

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Option<Vec<Message>>,
    #[serde(default)]
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub stop: Option<Stop>,
    pub n: Option<i64>,
    pub enable_thinking: Option<bool>,
    pub reasoning_effort: Option<String>,
    pub tools: Option<Vec<Tool>>,
    pub tool_choice: Option<serde_json::Value>,
    pub parallel_tool_calls: Option<bool>,
    /// Generation selectors (`t2i`, ...) and the image or video size.
    pub chat_type: Option<String>,
    pub size: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Tool {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub function: Option<FunctionDef>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct ToolCallIn {
    pub id: Option<String>,
    pub function: Option<FunctionCallIn>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionCallIn {
    pub name: String,
    #[serde(default)]
    pub arguments: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    pub name: Option<String>,
    pub tool_calls: Option<Vec<ToolCallIn>>,
    pub tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub image_url: Option<serde_json::Value>,
    pub video_url: Option<serde_json::Value>,
    pub image: Option<serde_json::Value>,
    pub video: Option<serde_json::Value>,
    pub url: Option<String>,
}

impl Part {
    /// The media this part carries: `{"url": ...}` objects or bare strings, in any of the
    /// spellings clients use (`image_url`, `input_image`, `image`, `video_url`, `video`).
    pub fn media(&self) -> Option<crate::convert::input::MediaRef> {
        fn url_of(v: &serde_json::Value) -> Option<String> {
            v.as_str()
                .map(str::to_string)
                .or_else(|| v.get("url").and_then(|u| u.as_str()).map(str::to_string))
        }
        let video = matches!(self.kind.as_str(), "video" | "video_url" | "input_video");
        let source = [&self.image_url, &self.video_url, &self.image, &self.video]
            .into_iter()
            .flatten()
            .find_map(url_of)
            .or_else(|| self.url.clone())?;
        Some(crate::convert::input::MediaRef { video, source })
    }
}

/// Roles the gateway understands; anything else is a client mistake worth a 400.
pub const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Above this, `max_tokens` is certainly a mistake (no Qwen model generates this much).
pub const MAX_TOKENS_LIMIT: i64 = 1_000_000;
pub const MAX_STOP_SEQUENCES: usize = 16;

impl ChatRequest {
    /// Parses the body, turning serde's messages into ones that name the field at fault.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid(
                "The request body is empty; send a JSON object.",
            ));
        }
        let v: ChatRequest = serde_json::from_slice(body).map_err(|e| {
            if e.is_data() {
                ApiError::invalid(format!("Invalid request: {e}"))
            } else {
                ApiError::invalid(format!("The request body is not valid JSON: {e}"))
            }
        })?;
        v.validate()?;
        Ok(v)
    }

    fn validate(&self) -> Result<(), ApiError> {
        match &self.model {
            None => return Err(ApiError::invalid_param("model", "'model' is required.")),
            Some(m) if m.trim().is_empty() => {
                return Err(ApiError::invalid_param(
                    "model",
                    "'model' must not be empty.",
                ))
            }
            _ => {}
        }
        let msgs = self
            .messages
            .as_ref()
            .ok_or_else(|| ApiError::invalid_param("messages", "'messages' is required."))?;
        if msgs.is_empty() {
            return Err(ApiError::invalid_param(
                "messages",
                "'messages' must contain at least one message.",
            ));
        }
        for (i, m) in msgs.iter().enumerate() {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::invalid_param(
                    "messages",
                    format!(
                        "messages[{i}].role '{}' is not one of system, developer, user, assistant, tool.",
                        m.role
                    ),
                ));
            }
            if let Some(Content::Parts(parts)) = &m.content {
                for (j, p) in parts.iter().enumerate() {
                    match p.kind.as_str() {
                        "text" | "input_text" => {
                            if p.text.is_none() {
                                return Err(ApiError::invalid_param(
                                    "messages",
                                    format!("messages[{i}].content[{j}] is a text part without 'text'."),
                                ));
                            }
                        }
                        "image_url" | "input_image" | "image" | "video" | "video_url"
                        | "input_video" => {
                            if p.media().is_none() {
                                return Err(ApiError::invalid_param(
                                    "messages",
                                    format!("messages[{i}].content[{j}] is a '{}' part without a URL.", p.kind),
                                ));
                            }
                        }
                        "file" | "input_file" | "input_audio" => {
                            return Err(ApiError::invalid_param(
                                "messages",
                                format!(
                                    "messages[{i}].content[{j}]: '{}' parts are not supported by this gateway yet.",
                                    p.kind
                                ),
                            ))
                        }
                        other => {
                            return Err(ApiError::invalid_param(
                                "messages",
                                format!("messages[{i}].content[{j}] has unknown type '{other}'."),
                            ))
                        }
                    }
                }
            }
        }
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::invalid_param(
                    "n",
                    format!("n={n} is not supported: the Qwen web upstream produces exactly one choice, so only n=1 is accepted."),
                ));
            }
        }
        for (name, v) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if let Some(v) = v {
                if !(1..=MAX_TOKENS_LIMIT).contains(&v) {
                    return Err(ApiError::invalid_param(
                        if name == "max_tokens" {
                            "max_tokens"
                        } else {
                            "max_completion_tokens"
                        },
                        format!("{name} must be between 1 and {MAX_TOKENS_LIMIT}, got {v}."),
                    ));
                }
            }
        }
        let stops = self.stop_sequences();
        if stops.len() > MAX_STOP_SEQUENCES {
            return Err(ApiError::invalid_param(
                "stop",
                format!("At most {MAX_STOP_SEQUENCES} stop sequences are allowed."),
            ));
        }
        Ok(())
    }

    pub fn stop_sequences(&self) -> Vec<String> {
        match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        }
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect()
    }

    /// The client-neutral conversation; call after `parse` validated the request.
    pub fn to_input(&self) -> Result<ChatInput, ApiError> {
        let turns = self
            .messages
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(Message::to_turn)
            .collect();
        let mut input = ChatInput::new(self.model.clone().unwrap_or_default(), turns);
        input.thinking = self.enable_thinking == Some(true)
            || self
                .reasoning_effort
                .as_deref()
                .is_some_and(|e| !matches!(e, "none" | "minimal"));
        input.stream = self.stream.unwrap_or(false);
        input.include_usage = self
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        input.stop = self.stop_sequences();
        input.max_tokens = self.token_limit();
        input.parallel_calls = self.parallel_tool_calls.unwrap_or(true);
        input.chat_type = self.chat_type.clone();
        input.size = self.size.clone();
        for (i, t) in self.tools.as_deref().unwrap_or_default().iter().enumerate() {
            if t.kind.as_deref().is_some_and(|k| k != "function") {
                return Err(ApiError::invalid_param(
                    "tools",
                    format!(
                        "tools[{i}] has type '{}'; only function tools are supported.",
                        t.kind.as_deref().unwrap_or("")
                    ),
                ));
            }
            let f = t.function.as_ref().ok_or_else(|| {
                ApiError::invalid_param("tools", format!("tools[{i}] has no 'function'."))
            })?;
            if f.name.trim().is_empty() {
                return Err(ApiError::invalid_param(
                    "tools",
                    format!("tools[{i}] has an empty name."),
                ));
            }
            input.tools.push(ToolSpec {
                name: f.name.clone(),
                description: f.description.clone().unwrap_or_default(),
                parameters: f.parameters.clone().unwrap_or(serde_json::Value::Null),
            });
        }
        input.tool_choice = parse_tool_choice(self.tool_choice.as_ref())?;
        Ok(input)
    }

    /// `max_completion_tokens` is the newer name and wins when both are given.
    pub fn token_limit(&self) -> Option<u64> {
        self.max_completion_tokens
            .or(self.max_tokens)
            .map(|v| v as u64)
    }
}

/// OpenAI's `tool_choice`: a mode string or `{"type":"function","function":{"name":...}}`.
pub fn parse_tool_choice(v: Option<&serde_json::Value>) -> Result<ToolChoice, ApiError> {
    use serde_json::Value;
    match v {
        None | Some(Value::Null) => Ok(ToolChoice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" | "any" => Ok(ToolChoice::Required),
            other => Err(ApiError::invalid_param(
                "tool_choice",
                format!("tool_choice '{other}' is not one of auto, none, required."),
            )),
        },
        Some(obj) => obj
            .pointer("/function/name")
            .or_else(|| obj.get("name"))
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Named(n.to_string()))
            .ok_or_else(|| {
                ApiError::invalid_param("tool_choice", "tool_choice names no function.")
            }),
    }
}

impl Message {
    fn to_turn(&self) -> Turn {
        let role = match self.role.as_str() {
            "system" | "developer" => Role::System,
            "assistant" => Role::Assistant,
            "tool" | "function" => Role::Tool,
            _ => Role::User,
        };
        let calls = self
            .tool_calls
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|c| {
                let f = c.function.as_ref()?;
                let arguments = match &f.arguments {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => "{}".into(),
                };
                Some(CallRecord {
                    id: c.id.clone().unwrap_or_default(),
                    name: f.name.clone(),
                    arguments,
                })
            })
            .collect();
        let media = match &self.content {
            Some(Content::Parts(parts)) => parts.iter().filter_map(Part::media).collect(),
            _ => Vec::new(),
        };
        Turn {
            role,
            text: self.text(),
            media,
            calls,
            call_id: self.tool_call_id.clone(),
            name: self.name.clone(),
        }
    }

    /// The message's text: a string, or its text parts joined.
    pub fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(s)) => s.clone(),
            Some(Content::Parts(parts)) => {
                let mut out = String::new();
                for p in parts {
                    if let Some(t) = &p.text {
                        out.push_str(t);
                    }
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ApiError {
        ChatRequest::parse(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn rejects_bad_input_with_precise_messages() {
        assert!(err("{").message.contains("not valid JSON"));
        assert!(err("").message.contains("empty"));
        assert_eq!(err(r#"{"messages":[]}"#).param, Some("model"));
        assert!(err(r#"{"model":"m"}"#)
            .message
            .contains("'messages' is required"));
        assert!(err(r#"{"model":"m","messages":[]}"#)
            .message
            .contains("at least one"));
        assert!(
            err(r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#)
                .message
                .contains("wizard")
        );
        assert!(
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#)
                .message
                .contains("n=2")
        );
        assert!(
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#)
                .message
                .contains("max_tokens")
        );
        assert!(
            err(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"bogus"}]}]}"#)
                .message
                .contains("unknown type")
        );
        assert!(err(r#"{"model":"m","messages":"hi"}"#)
            .message
            .contains("Invalid request"));
        assert!(err(r#"{"model":5,"messages":[]}"#)
            .message
            .contains("Invalid request"));
    }

    #[test]
    fn accepts_parts_and_stops() {
        let r = ChatRequest::parse(
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"stop":"X","max_tokens":5,"max_completion_tokens":7,"temperature":0.2}"#,
        )
        .unwrap();
        assert_eq!(r.messages.as_ref().unwrap()[0].text(), "ab");
        assert_eq!(r.stop_sequences(), vec!["X"]);
        assert_eq!(r.token_limit(), Some(7));
    }
}
