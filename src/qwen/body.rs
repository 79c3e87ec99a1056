//! Upstream request bodies (protocol §4.1 and §4.2), newest shape, serialised from borrowed
//! structs so building a body costs one pass and one allocation.

use serde::Serialize;

use crate::convert::request::ChatPlan;

#[derive(Serialize)]
struct NewChat<'a> {
    title: &'a str,
    models: [&'a str; 1],
    chat_mode: &'a str,
    chat_type: &'a str,
    timestamp: u64,
}

/// `POST /api/v2/chats/new`; `now_ms` is wall-clock milliseconds.
pub fn new_chat_body(plan: &ChatPlan, now_ms: u64) -> Vec<u8> {
    serde_json::to_vec(&NewChat {
        title: "New Chat",
        models: [&plan.upstream_model],
        chat_mode: "normal",
        chat_type: plan.chat_type,
        timestamp: now_ms,
    })
    .expect("plain struct serialises")
}

#[derive(Serialize)]
struct Completion<'a> {
    stream: bool,
    version: &'a str,
    incremental_output: bool,
    chat_id: &'a str,
    chat_mode: &'a str,
    model: &'a str,
    parent_id: Option<&'a str>,
    messages: [UserMessage<'a>; 1],
    timestamp: u64,
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct UserMessage<'a> {
    fid: &'a str,
    parentId: Option<&'a str>,
    childrenIds: [&'a str; 1],
    role: &'a str,
    content: serde_json::Value,
    user_action: &'a str,
    files: [(); 0],
    timestamp: u64,
    models: [&'a str; 1],
    chat_type: &'a str,
    feature_config: FeatureConfig<'a>,
    extra: Extra<'a>,
    sub_chat_type: &'a str,
}

#[derive(Serialize)]
struct FeatureConfig<'a> {
    /// Mandatory: without it the upstream drops `phase` from deltas (protocol §4.2).
    output_schema: &'a str,
    thinking_enabled: bool,
    thinking_format: &'a str,
    thinking_mode: &'a str,
    auto_thinking: bool,
    research_mode: &'a str,
    auto_search: bool,
    /// Native tools intercept prompt-level tool text upstream (protocol §4.2), so keep them off.
    function_calling: bool,
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct Extra<'a> {
    meta: Meta<'a>,
}

#[derive(Serialize)]
#[allow(non_snake_case)]
struct Meta<'a> {
    subChatType: &'a str,
}

/// Fresh ids for one completion body.
pub struct MessageIds {
    pub fid: String,
    pub child: String,
}

impl MessageIds {
    pub fn random() -> Self {
        MessageIds {
            fid: uuid::Uuid::new_v4().to_string(),
            child: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// `POST /api/v2/chat/completions?chat_id=`; `now_s` is wall-clock seconds.
pub fn completion_body(plan: &ChatPlan, chat_id: &str, ids: &MessageIds, now_s: u64) -> Vec<u8> {
    completion_body_with_media(plan, chat_id, ids, now_s, &[])
}

/// The same, with uploaded media (`(is_video, file_url)`) as content parts after the text
/// (protocol §4.6): the message content becomes an array.
pub fn completion_body_with_media(
    plan: &ChatPlan,
    chat_id: &str,
    ids: &MessageIds,
    now_s: u64,
    media: &[(bool, String)],
) -> Vec<u8> {
    let ct = plan.chat_type;
    let content = if media.is_empty() {
        serde_json::Value::String(plan.prompt.clone())
    } else {
        let mut parts = vec![serde_json::json!({"type": "text", "text": plan.prompt})];
        for (video, url) in media {
            parts.push(if *video {
                serde_json::json!({"type": "video", "video": url})
            } else {
                serde_json::json!({"type": "image", "image": url})
            });
        }
        serde_json::Value::Array(parts)
    };
    let body = Completion {
        stream: true,
        version: "2.1",
        incremental_output: true,
        chat_id,
        chat_mode: "normal",
        model: &plan.upstream_model,
        parent_id: None,
        messages: [UserMessage {
            fid: &ids.fid,
            parentId: None,
            childrenIds: [&ids.child],
            role: "user",
            content,
            user_action: "chat",
            files: [],
            timestamp: now_s,
            models: [&plan.upstream_model],
            chat_type: ct,
            feature_config: FeatureConfig {
                output_schema: "phase",
                thinking_enabled: plan.thinking,
                thinking_format: plan.thinking_format.as_str(),
                thinking_mode: if plan.thinking { "Thinking" } else { "Fast" },
                auto_thinking: false,
                research_mode: "normal",
                auto_search: ct == "search",
                function_calling: false,
            },
            extra: Extra {
                meta: Meta { subChatType: ct },
            },
            sub_chat_type: ct,
        }],
        timestamp: now_s,
    };
    let mut out = Vec::with_capacity(plan.prompt.len() + 768);
    serde_json::to_writer(&mut out, &body).expect("plain struct serialises");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ThinkingFormat;

    fn plan() -> ChatPlan {
        ChatPlan {
            requested_model: "qwen3-max-thinking".into(),
            upstream_model: "qwen3-max".into(),
            chat_type: "t2t",
            thinking: true,
            thinking_format: ThinkingFormat::Summary,
            prompt: "Hi \"there\"".into(),
            stream: false,
            include_usage: false,
            stop: vec![],
            max_tokens: None,
            tools: None,
            corrective: false,
            media: vec![],
        }
    }

    #[test]
    fn completion_body_shape() {
        let ids = MessageIds {
            fid: "f".into(),
            child: "c".into(),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&completion_body(&plan(), "chat-1", &ids, 7)).unwrap();
        assert_eq!(v["stream"], true);
        assert_eq!(v["chat_id"], "chat-1");
        assert_eq!(v["model"], "qwen3-max");
        let m = &v["messages"][0];
        assert_eq!(m["content"], "Hi \"there\"");
        assert_eq!(m["files"], serde_json::json!([]));
        assert_eq!(m["feature_config"]["output_schema"], "phase");
        assert_eq!(m["feature_config"]["thinking_enabled"], true);
        assert_eq!(m["feature_config"]["thinking_format"], "summary");
        assert_eq!(m["extra"]["meta"]["subChatType"], "t2t");
        assert_eq!(v["messages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn new_chat_shape() {
        let v: serde_json::Value = serde_json::from_slice(&new_chat_body(&plan(), 5)).unwrap();
        assert_eq!(v["models"][0], "qwen3-max");
        assert_eq!(v["chat_type"], "t2t");
        assert_eq!(v["timestamp"], 5);
    }
}
