//! The model catalogue (§3.2). Serialized once; both list endpoints serve the cached bytes.

use bytes::Bytes;
use once_cell::sync::Lazy;
use serde_json::{json, Value};

struct ModelSpec {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    vision: bool,
    thinking: bool,
    search: bool,
    chat_types: &'static [&'static str],
    max_context: u64,
}

const MODELS: &[ModelSpec] = &[
    ModelSpec {
        id: "qwen3-max",
        name: "Qwen3-Max",
        description: "Flagship model with thinking and search.",
        vision: true,
        thinking: true,
        search: true,
        chat_types: &["t2t", "search", "t2i", "image_edit", "t2v"],
        max_context: 262_144,
    },
    ModelSpec {
        id: "qwen3-vl-plus",
        name: "Qwen3-VL-Plus",
        description: "Vision-language model.",
        vision: true,
        thinking: true,
        search: true,
        chat_types: &["t2t", "search"],
        max_context: 131_072,
    },
    ModelSpec {
        id: "qwen3-coder-plus",
        name: "Qwen3-Coder-Plus",
        description: "Coding model without a thinking mode.",
        vision: false,
        thinking: false,
        search: false,
        chat_types: &["t2t"],
        max_context: 1_048_576,
    },
];

/// Upstream encodes abilities as integers: 1 = available, 2 = not available.
fn ability(on: bool) -> u8 {
    if on {
        1
    } else {
        2
    }
}

fn model_json(m: &ModelSpec) -> Value {
    let modality: Vec<&str> = if m.vision {
        vec!["text", "image", "video"]
    } else {
        vec!["text"]
    };
    json!({
        "id": m.id, "name": m.name, "object": "model", "owned_by": "qwen",
        "info": {
            "id": m.id, "user_id": "7e1f4c52-0000-4000-8000-0000000000aa", "base_model_id": null,
            "name": m.name, "access_control": null, "is_active": true, "is_visitor_active": true,
            "created_at": 1745000000, "updated_at": 1780000000,
            "meta": {
                "profile_image_url": "/static/favicon.png",
                "description": m.description,
                "short_description": m.description,
                "capabilities": {
                    "vision": m.vision, "document": true, "video": m.vision, "audio": false,
                    "citations": m.search, "thinking": m.thinking,
                    "thinking_budget": m.thinking, "search": m.search,
                },
                "abilities": {
                    "vision": ability(m.vision), "document": 1, "video": ability(m.vision),
                    "audio": 2, "mcp": 1, "citations": ability(m.search),
                    "thinking": ability(m.thinking), "thinking_budget": ability(m.thinking),
                },
                "max_context_length": m.max_context,
                "max_generation_length": 32768,
                "max_thinking_generation_length": if m.thinking { 81920 } else { 0 },
                "max_summary_generation_length": 8192,
                "chat_type": m.chat_types,
                "mcp": ["code-interpreter"],
                "modality": modality,
                "file_limits": {"image_max_size": 10, "image_max_count": 5, "default_max_size": 20},
                "auto_thinking": false, "auto_search": false,
                "thinking_format": "summary", "is_single_round": 0,
            },
        },
    })
}

fn list() -> Value {
    Value::Array(MODELS.iter().map(model_json).collect())
}

/// `GET /api/models`: `{"data":[...]}`.
pub static MODELS_V1: Lazy<Bytes> =
    Lazy::new(|| Bytes::from(json!({ "data": list() }).to_string()));

/// `GET /api/v2/models/`: `{"success":true,"data":{"data":[...]}}`.
pub static MODELS_V2: Lazy<Bytes> =
    Lazy::new(|| Bytes::from(json!({ "success": true, "data": { "data": list() } }).to_string()));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_shape() {
        let v: Value = serde_json::from_slice(&MODELS_V1).unwrap();
        let coder = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "qwen3-coder-plus")
            .unwrap();
        assert_eq!(coder["info"]["meta"]["abilities"]["thinking"], 2);
        assert_eq!(coder["info"]["meta"]["capabilities"]["thinking"], false);
        assert_eq!(coder["info"]["meta"]["chat_type"], json!(["t2t"]));
        let v2: Value = serde_json::from_slice(&MODELS_V2).unwrap();
        assert_eq!(v2["success"], true);
        assert_eq!(v2["data"]["data"], v["data"]);
    }
}
