//! Upstream model metadata (protocol §3) and the client-facing variants it allows (§13).

use serde_json::{json, Value};

use crate::convert::model::GenKind;

#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub id: String,
    pub name: String,
    pub thinking: bool,
    pub search: bool,
    pub vision: bool,
    /// The `chat_type` list names `t2i`, `image_edit`, `t2v` (protocol §3.2, §13).
    pub t2i: bool,
    pub image_edit: bool,
    pub t2v: bool,
    pub raw: Value,
}

/// `abilities` uses 1 for available (2 unavailable, 4 always on); `capabilities` uses bools.
fn ability(meta: &Value, key: &str) -> bool {
    let a = meta
        .get("abilities")
        .and_then(|a| a.get(key))
        .and_then(Value::as_i64);
    let c = meta
        .get("capabilities")
        .and_then(|c| c.get(key))
        .and_then(Value::as_bool);
    match (a, c) {
        (Some(v), _) => v == 1 || v == 4,
        (None, Some(b)) => b,
        (None, None) => false,
    }
}

pub fn parse(raw: &Value) -> Option<ModelInfo> {
    let id = raw.get("id")?.as_str()?.to_string();
    let name = raw
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(&id)
        .to_string();
    let meta = raw
        .get("info")
        .and_then(|i| i.get("meta"))
        .cloned()
        .unwrap_or(Value::Null);
    let chat_types: Vec<&str> = meta
        .get("chat_type")
        .or_else(|| meta.get("chatType"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Some(ModelInfo {
        thinking: ability(&meta, "thinking"),
        search: chat_types.contains(&"search"),
        vision: ability(&meta, "vision"),
        t2i: chat_types.contains(&"t2i"),
        image_edit: chat_types.contains(&"image_edit"),
        t2v: chat_types.contains(&"t2v"),
        id,
        name,
        raw: raw.clone(),
    })
}

impl ModelInfo {
    /// Client-facing ids: the base plus the suffixes its capabilities allow.
    pub fn variants(&self, simple: bool) -> Vec<String> {
        let mut v = vec![self.id.clone()];
        if simple {
            return v;
        }
        if self.thinking {
            v.push(format!("{}-thinking", self.id));
        }
        if self.search {
            v.push(format!("{}-search", self.id));
        }
        if self.thinking && self.search {
            v.push(format!("{}-thinking-search", self.id));
        }
        for kind in [GenKind::Image, GenKind::ImageEdit, GenKind::Video] {
            if self.generates(kind) {
                v.push(format!("{}{}", self.id, kind.suffix()));
            }
        }
        v
    }

    pub fn generates(&self, kind: GenKind) -> bool {
        match kind {
            GenKind::Image => self.t2i,
            GenKind::ImageEdit => self.image_edit,
            GenKind::Video => self.t2v,
        }
    }

    /// Whether a parsed request (suffix flags) is something this model can do.
    pub fn allows(&self, thinking_suffix: bool, search_suffix: bool) -> bool {
        (!thinking_suffix || self.thinking) && (!search_suffix || self.search)
    }
}

/// Finds a model by id or display name, case-insensitively (what clients copy from UIs).
pub fn find<'a>(models: &'a [ModelInfo], name: &str) -> Option<&'a ModelInfo> {
    models
        .iter()
        .find(|m| m.id.eq_ignore_ascii_case(name))
        .or_else(|| models.iter().find(|m| m.name.eq_ignore_ascii_case(name)))
}

/// The OpenAI `GET /v1/models` list.
pub fn openai_list(models: &[ModelInfo], simple: bool) -> Value {
    let mut data = Vec::new();
    for m in models {
        let created = m
            .raw
            .get("info")
            .and_then(|i| i.get("created_at"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        for id in m.variants(simple) {
            data.push(json!({
                "id": id,
                "object": "model",
                "created": created,
                "owned_by": "qwen",
                "upstream_id": m.id,
                "display_name": format!("{}{}", m.name, &id[m.id.len()..]),
            }));
        }
    }
    json!({"object": "list", "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: &str, thinking: i64, chat: &[&str]) -> Value {
        json!({"id": id, "name": id.to_uppercase(), "info": {"meta": {
            "abilities": {"thinking": thinking, "vision": 1},
            "capabilities": {"thinking": thinking == 1},
            "chat_type": chat}}})
    }

    #[test]
    fn variants_follow_capabilities() {
        let a = parse(&model("qwen3-max", 1, &["t2t", "search"])).unwrap();
        assert_eq!(
            a.variants(false),
            vec![
                "qwen3-max",
                "qwen3-max-thinking",
                "qwen3-max-search",
                "qwen3-max-thinking-search"
            ]
        );
        assert_eq!(a.variants(true), vec!["qwen3-max"]);
        let b = parse(&model("coder", 2, &["t2t"])).unwrap();
        assert_eq!(b.variants(false), vec!["coder"]);
        let g = parse(&model("wan", 2, &["t2t", "t2i", "image_edit", "t2v"])).unwrap();
        assert_eq!(
            g.variants(false),
            vec!["wan", "wan-image", "wan-image_edit", "wan-video"]
        );
        assert!(g.generates(GenKind::Video) && !a.generates(GenKind::Image));
        assert!(!b.allows(true, false));
        assert!(a.allows(true, true));
    }

    #[test]
    fn find_and_list() {
        let ms: Vec<ModelInfo> = [model("qwen3-max", 1, &["t2t"]), model("coder", 2, &["t2t"])]
            .iter()
            .filter_map(parse)
            .collect();
        assert_eq!(find(&ms, "QWEN3-MAX").unwrap().id, "qwen3-max");
        assert_eq!(find(&ms, "CODER").unwrap().id, "coder");
        assert!(find(&ms, "nope").is_none());
        let list = openai_list(&ms, false);
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec!["qwen3-max", "qwen3-max-thinking", "coder"]);
    }
}
