//! A client-neutral conversation -> the plan for one upstream exchange. Pure: no I/O, no clock.
//!
//! The v2 upstream answers multi-message bodies with empty replies (protocol §4.5), so the
//! conversation is flattened into one user message. A lone user message goes through verbatim;
//! anything longer becomes a transcript with one `[role]` header per turn, which keeps turn
//! boundaries unambiguous even when the text itself contains `role:`-like prefixes. Tools are
//! described before the transcript (see `tools`).

use crate::config::ThinkingFormat;
use crate::openai::error::ApiError;

use super::input::{ChatInput, MediaRef, Role, ToolChoice, Turn};
use super::model::parse_model;
use super::tools;

/// What the stream parser needs to know about tools for one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPlan {
    pub names: Vec<String>,
    pub choice: ToolChoice,
    pub parallel: bool,
}

impl ToolPlan {
    /// A required or named choice: an answer without a call earns one corrective retry.
    pub fn must_call(&self) -> bool {
        matches!(self.choice, ToolChoice::Required | ToolChoice::Named(_))
    }
}

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
    pub tools: Option<ToolPlan>,
    /// This plan is the corrective retry of a required tool call.
    pub corrective: bool,
    /// Images and videos of the latest user message (the upstream takes media only there).
    pub media: Vec<MediaRef>,
}

impl ChatPlan {
    /// The same exchange once more, with a hint that a tool call is required.
    pub fn corrected(&self) -> ChatPlan {
        let choice = self
            .tools
            .as_ref()
            .map_or(ToolChoice::Required, |t| t.choice.clone());
        ChatPlan {
            prompt: format!("{}{}", self.prompt, tools::corrective_hint(&choice)),
            corrective: true,
            ..self.clone()
        }
    }
}

pub fn translate(input: &ChatInput, thinking_format: ThinkingFormat) -> Result<ChatPlan, ApiError> {
    let spec = parse_model(&input.model);
    let tools_on = !input.tools.is_empty() && input.tool_choice != ToolChoice::None;
    if let ToolChoice::Named(n) = &input.tool_choice {
        if !input.tools.iter().any(|t| &t.name == n) {
            return Err(ApiError::invalid_param(
                "tool_choice",
                format!("tool_choice names '{n}', which is not among the tools."),
            ));
        }
    }
    let transcript = flatten(&input.turns, tools_on);
    if transcript.trim().is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "The messages contain no text to send.",
        ));
    }
    let prompt = if tools_on {
        let mut p = tools::instructions(&input.tools, &input.tool_choice, input.parallel_calls);
        p.push('\n');
        p.push_str(&transcript);
        p
    } else {
        transcript
    };
    Ok(ChatPlan {
        requested_model: input.model.clone(),
        upstream_model: spec.base,
        chat_type: if spec.search { "search" } else { "t2t" },
        thinking: spec.thinking || input.thinking,
        thinking_format,
        prompt,
        stream: input.stream,
        include_usage: input.include_usage,
        stop: input.stop.clone(),
        max_tokens: input.max_tokens,
        tools: tools_on.then(|| ToolPlan {
            names: input.tools.iter().map(|t| t.name.clone()).collect(),
            choice: input.tool_choice.clone(),
            parallel: input.parallel_calls,
        }),
        corrective: false,
        media: input
            .turns
            .iter()
            .rev()
            .find(|t| t.role == Role::User)
            .map(|t| t.media.clone())
            .unwrap_or_default(),
    })
}

/// Flattens the conversation into the single upstream message. With tools, earlier calls and
/// their results are written in the tool notation and every turn keeps its header.
pub fn flatten(turns: &[Turn], tools_on: bool) -> String {
    let rendered: Vec<(&str, String)> = turns
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let text = match t.role {
                Role::Tool => tools::fold_result(t, &turns[..i]),
                Role::Assistant if !t.calls.is_empty() => tools::fold_calls(&t.text, &t.calls),
                _ => t.text.clone(),
            };
            (t.role.label(), text)
        })
        .filter(|(_, t)| !t.trim().is_empty())
        .collect();
    if let [(role, text)] = rendered.as_slice() {
        if *role == "user" && !tools_on {
            return text.clone();
        }
    }
    let mut out = String::with_capacity(rendered.iter().map(|(_, t)| t.len() + 16).sum());
    for (i, (role, text)) in rendered.iter().enumerate() {
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
    use super::super::input::{CallRecord, ToolSpec};
    use super::*;

    fn input(turns: Vec<Turn>) -> ChatInput {
        ChatInput::new("qwen3-max", turns)
    }

    #[test]
    fn single_user_message_is_verbatim() {
        let p = translate(
            &input(vec![Turn::text(Role::User, "Hi there")]),
            ThinkingFormat::Detail,
        )
        .unwrap();
        assert_eq!(p.prompt, "Hi there");
        assert_eq!(p.chat_type, "t2t");
        assert!(!p.thinking && !p.stream && p.tools.is_none());
    }

    #[test]
    fn history_is_flattened_in_order() {
        let mut i = input(vec![
            Turn::text(Role::System, "Be brief."),
            Turn::text(Role::User, "Hi"),
            Turn::text(Role::Assistant, "Hello!"),
            Turn::text(Role::Assistant, ""),
            Turn::text(Role::User, "What is 2+2?"),
        ]);
        i.model = "qwen3-max-thinking-search".into();
        let p = translate(&i, ThinkingFormat::Summary).unwrap();
        assert_eq!(
            p.prompt,
            "[system]\nBe brief.\n\n[user]\nHi\n\n[assistant]\nHello!\n\n[user]\nWhat is 2+2?"
        );
        assert_eq!(p.upstream_model, "qwen3-max");
        assert_eq!(p.chat_type, "search");
        assert!(p.thinking);
    }

    #[test]
    fn tools_are_described_and_history_folded() {
        let mut i = input(vec![
            Turn::text(Role::User, "Weather in Paris?"),
            Turn {
                calls: vec![CallRecord {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into(),
                }],
                ..Turn::text(Role::Assistant, "")
            },
            Turn {
                call_id: Some("call_1".into()),
                ..Turn::text(Role::Tool, "18C")
            },
        ]);
        i.tools = vec![ToolSpec {
            name: "get_weather".into(),
            description: "Weather".into(),
            parameters: serde_json::json!({"type":"object","properties":{"city":{"type":"string"}}}),
        }];
        i.tool_choice = ToolChoice::Required;
        let p = translate(&i, ThinkingFormat::Detail).unwrap();
        assert!(p.prompt.starts_with("# Tools\n"));
        assert!(p.prompt.contains("[assistant]\n<tool_call>\n{\"arguments\":{\"city\":\"Paris\"},\"name\":\"get_weather\"}\n</tool_call>"));
        assert!(p.prompt.contains("[tool]\n<tool_response tool_call_id=\"call_1\" name=\"get_weather\">\n18C\n</tool_response>"));
        let t = p.tools.clone().unwrap();
        assert!(t.must_call());
        assert_eq!(t.names, vec!["get_weather"]);
        let c = p.corrected();
        assert!(c.corrective && c.prompt.ends_with("using the <tool_call> block form."));

        i.tool_choice = ToolChoice::Named("nope".into());
        assert_eq!(
            translate(&i, ThinkingFormat::Detail).unwrap_err().param,
            Some("tool_choice")
        );
        i.tool_choice = ToolChoice::None;
        let p = translate(&i, ThinkingFormat::Detail).unwrap();
        assert!(p.tools.is_none() && !p.prompt.contains("# Tools"));
    }

    #[test]
    fn empty_text_is_refused() {
        let e = translate(
            &input(vec![Turn::text(Role::User, "  ")]),
            ThinkingFormat::Detail,
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
    }
}
