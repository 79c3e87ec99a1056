//! Upstream bodies for a generation (protocol §8.1): the newest completion shape (§4.2) with
//! the generation `chat_type`, the input images in `files[]`, and the ratio in `size`. Pure.
//!
//! Peers disagree on where `size` goes (top level, the message, `extra.meta`), and the
//! upstream has never been seen to reject extra keys, so it goes in all three.

use serde_json::{json, Value};

use crate::convert::model::GenKind;
use crate::media::Uploaded;

/// What one upstream generation needs once the model is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSpec {
    pub kind: GenKind,
    /// The upstream model id.
    pub model: String,
    pub prompt: String,
    pub size: Option<&'static str>,
}

/// `POST /api/v2/chats/new`.
pub fn new_chat(spec: &GenSpec, now_ms: u64) -> Vec<u8> {
    json!({
        "title": "New Chat",
        "models": [spec.model],
        "chat_mode": "normal",
        "chat_type": spec.kind.chat_type(),
        "timestamp": now_ms,
    })
    .to_string()
    .into_bytes()
}

/// A `files[]` item for an uploaded image, mirroring the web client's fields (§7.4).
pub fn uploaded_file(up: &Uploaded) -> Value {
    let mut item = json!({
        "type": "image",
        "url": up.file_url,
        "name": up.filename,
        "size": up.size,
        "file_type": up.mime,
        "showType": "image",
        "file_class": "vision",
        "status": "uploaded",
    });
    if let Some(id) = &up.file_id {
        item["id"] = json!(id);
    }
    item
}

/// A `files[]` item for an image already in the upstream's storage (an earlier result).
pub fn linked_file(url: &str) -> Value {
    json!({"type": "image", "url": url, "showType": "image", "file_class": "vision",
           "status": "uploaded"})
}

/// `POST /api/v2/chat/completions?chat_id=`. t2v is the one synchronous call (§4.3).
pub fn completion(
    spec: &GenSpec,
    chat_id: &str,
    files: &[Value],
    fid: &str,
    now_s: u64,
) -> Vec<u8> {
    let ct = spec.kind.chat_type();
    let mut meta = json!({"subChatType": ct});
    let mut message = json!({
        "fid": fid,
        "parentId": null,
        "childrenIds": [],
        "role": "user",
        "content": spec.prompt,
        "user_action": "chat",
        "files": files,
        "timestamp": now_s,
        "models": [spec.model],
        "chat_type": ct,
        "feature_config": {"output_schema": "phase", "thinking_enabled": false,
                           "function_calling": false},
        "sub_chat_type": ct,
    });
    let mut body = json!({
        "stream": spec.kind != GenKind::Video,
        "version": "2.1",
        "incremental_output": true,
        "chat_id": chat_id,
        "chat_mode": "normal",
        "model": spec.model,
        "parent_id": null,
        "timestamp": now_s,
        "chat_type": ct,
    });
    if let Some(size) = spec.size {
        meta["size"] = json!(size);
        message["size"] = json!(size);
        body["size"] = json!(size);
    }
    message["extra"] = json!({"meta": meta});
    body["messages"] = json!([message]);
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: GenKind, size: Option<&'static str>) -> GenSpec {
        GenSpec {
            kind,
            model: "qwen3-max".into(),
            prompt: "a fox".into(),
            size,
        }
    }

    #[test]
    fn image_body() {
        let files = [linked_file("https://cdn/x.png")];
        let b = completion(
            &spec(GenKind::ImageEdit, Some("16:9")),
            "c1",
            &files,
            "f",
            7,
        );
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["stream"], true);
        assert_eq!(v["size"], "16:9");
        let m = &v["messages"][0];
        assert_eq!(m["chat_type"], "image_edit");
        assert_eq!(m["content"], "a fox");
        assert_eq!(m["files"][0]["url"], "https://cdn/x.png");
        assert_eq!(m["size"], "16:9");
        assert_eq!(m["extra"]["meta"]["size"], "16:9");
        assert_eq!(m["feature_config"]["output_schema"], "phase");
    }

    #[test]
    fn video_body_is_synchronous_and_sizeless_by_default() {
        let v: Value =
            serde_json::from_slice(&completion(&spec(GenKind::Video, None), "c", &[], "f", 1))
                .unwrap();
        assert_eq!(v["stream"], false);
        assert_eq!(v["chat_type"], "t2v");
        assert!(v.get("size").is_none());
        let n: Value = serde_json::from_slice(&new_chat(&spec(GenKind::Image, None), 5)).unwrap();
        assert_eq!(
            (n["chat_type"].as_str(), n["models"][0].as_str()),
            (Some("t2i"), Some("qwen3-max"))
        );
    }
}
