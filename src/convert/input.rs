//! The client-neutral conversation every API (OpenAI chat, Anthropic messages, OpenAI
//! responses) is mapped into before translation, so tool folding and flattening exist once.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A tool call the assistant made earlier in the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// An image or video a client attached: a `data:` URI or an http(s) URL, uploaded to the
/// upstream's storage before the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    pub video: bool,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: Role,
    pub text: String,
    pub media: Vec<MediaRef>,
    pub calls: Vec<CallRecord>,
    /// For tool results: the call they answer.
    pub call_id: Option<String>,
    pub name: Option<String>,
}

impl Turn {
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Turn {
            role,
            text: text.into(),
            media: Vec::new(),
            calls: Vec::new(),
            call_id: None,
            name: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    Named(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatInput {
    pub model: String,
    pub turns: Vec<Turn>,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolChoice,
    pub parallel_calls: bool,
    pub thinking: bool,
    pub stop: Vec<String>,
    pub max_tokens: Option<u64>,
    pub stream: bool,
    pub include_usage: bool,
    /// The request's own `chat_type` (`t2i` selects image generation without a suffix).
    pub chat_type: Option<String>,
    /// Image or video `size`: a ratio or OpenAI pixel size.
    pub size: Option<String>,
}

impl ChatInput {
    pub fn new(model: impl Into<String>, turns: Vec<Turn>) -> Self {
        ChatInput {
            model: model.into(),
            turns,
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            parallel_calls: true,
            thinking: false,
            stop: Vec::new(),
            max_tokens: None,
            stream: false,
            include_usage: false,
            chat_type: None,
            size: None,
        }
    }
}
