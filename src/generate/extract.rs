//! Reading generation results out of upstream payloads, and Markdown in and out. Pure.
//!
//! The upstream has used several shapes for the same result (protocol §5.5, §8.2, §8.3), so
//! each reader accepts every shape peers have seen, but never guesses beyond them: a
//! `response_id` is not a task id, and text that merely mentions a URL is not an image.

use serde_json::Value;

use crate::convert::classify::{classify_json_error, from_error, Failure, FailureClass};
use crate::convert::images::is_url;
use crate::qwen::events::{self, RawUsage};

pub use crate::convert::images::markdown as image_markdown;

/// A player for clients that render HTML in Markdown, and a plain link for the rest.
pub fn video_markdown(url: &str) -> String {
    format!("<video src=\"{url}\" controls></video>\n\n[Download video]({url})")
}

/// The URLs of every `![alt](url)` in `text`, in order. An optional `"title"` and angle
/// brackets around the URL are dropped.
pub fn markdown_images(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("![") {
        rest = &rest[start + 2..];
        let Some(close) = rest.find("](") else { break };
        let after = &rest[close + 2..];
        let Some(end) = after.find(')') else { break };
        let inner = after[..end].trim();
        let url = inner.split_whitespace().next().unwrap_or("");
        let url = url.trim_start_matches('<').trim_end_matches('>');
        if is_url(url) || url.starts_with("data:image/") {
            out.push(url.to_string());
        }
        rest = &after[end..];
    }
    out
}

/// The generated image's URL in one upstream event, if it carries one.
pub fn image_url_in_event(v: &Value) -> Option<String> {
    let delta = v.pointer("/choices/0/delta")?;
    let phase = delta.get("phase").and_then(Value::as_str).unwrap_or("");
    let chat_type = delta.get("chat_type").and_then(Value::as_str).unwrap_or("");
    let content = delta.get("content").and_then(Value::as_str).unwrap_or("");
    let image_phase = matches!(
        phase,
        "image_gen" | "image_gen_tool" | "image_edit" | "image_edit_tool" | "t2i"
    ) || matches!(chat_type, "t2i" | "image_edit");
    if image_phase && is_url(content) {
        return Some(content.trim().to_string());
    }
    if let Some(url) = markdown_images(content).into_iter().find(|u| is_url(u)) {
        return Some(url);
    }
    let extra = delta.get("extra")?;
    fn str_url(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| is_url(s))
    }
    if let Some(u) = str_url(extra.get("image_url")) {
        return Some(u.to_string());
    }
    for list in ["tool_result", "image_list"] {
        for item in extra
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(u) = str_url(item.get("image")).or_else(|| str_url(item.get("url"))) {
                return Some(u.to_string());
            }
        }
    }
    None
}

/// What reading one image stream has found so far.
#[derive(Debug, Default)]
pub struct ImageScan {
    pub url: Option<String>,
    /// Answer-phase text: a refusal or explanation instead of an image.
    pub text: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub failure: Option<Failure>,
    pub finished: bool,
}

impl ImageScan {
    /// Whether to stop reading: the result, an error, or the end of the answer.
    pub fn done(&self) -> bool {
        self.finished || self.failure.is_some()
    }

    /// Feeds the data of one SSE event.
    pub fn feed(&mut self, data: &[u8]) {
        if self.done() || data.trim_ascii() == b"[DONE]" {
            self.finished = true;
            return;
        }
        if let Ok(ev) = events::parse(data) {
            if let Some(err) = &ev.error {
                self.failure = Some(from_error(err));
                return;
            }
            if ev.success == Some(false) || ev.data.as_ref().is_some_and(|d| d.error.is_some()) {
                self.failure = Some(classify_json_error(data).unwrap_or_else(|| {
                    Failure::new(FailureClass::Transient, "the upstream reported a failure")
                }));
                return;
            }
            if let Some(u) = ev.usage.and_then(|r| RawUsage::parse(r.get().as_bytes())) {
                self.input_tokens = u.input_tokens.or(u.prompt_tokens).or(self.input_tokens);
                self.output_tokens = u
                    .output_tokens
                    .or(u.completion_tokens)
                    .or(self.output_tokens);
            }
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if self.url.is_none() {
            self.url = image_url_in_event(&v);
        }
        let Some(delta) = v.pointer("/choices/0/delta") else {
            return;
        };
        let phase = delta.get("phase").and_then(Value::as_str);
        if matches!(phase, None | Some("answer")) {
            if let Some(t) = delta.get("content").and_then(Value::as_str) {
                if self.text.len() < 4096 {
                    self.text.push_str(t);
                }
            }
        }
        if delta.get("status").and_then(Value::as_str) == Some("finished")
            && !matches!(phase, Some("think" | "thinking_summary"))
        {
            self.finished = true;
        }
    }
}

/// A video task id anywhere in a reply (`data.messages[].extra.wanx.task_id` in the 2025
/// capture, `task_id`/`taskId` elsewhere).
pub fn find_task_id(v: &Value) -> Option<String> {
    fn walk(v: &Value, depth: u8) -> Option<String> {
        if depth > 12 {
            return None;
        }
        match v {
            Value::Object(o) => {
                for key in ["task_id", "taskId"] {
                    match o.get(key) {
                        Some(Value::String(s)) if !s.trim().is_empty() => {
                            return Some(s.trim().to_string())
                        }
                        Some(Value::Number(n)) => return Some(n.to_string()),
                        _ => {}
                    }
                }
                o.values().find_map(|x| walk(x, depth + 1))
            }
            Value::Array(a) => a.iter().find_map(|x| walk(x, depth + 1)),
            _ => None,
        }
    }
    walk(v, 0)
}

/// A video task's state from `GET /api/v1/tasks/status/<id>` (protocol §8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Still pending or running; the status word as reported.
    Waiting(String),
    Done(String),
    Failed(String),
}

pub fn parse_task(v: &Value) -> TaskState {
    let body = v.get("data").filter(|d| d.is_object()).unwrap_or(v);
    let status = ["task_status", "status", "state"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_str))
        .unwrap_or("")
        .to_ascii_lowercase();
    match status.as_str() {
        "success" | "succeeded" | "completed" | "complete" | "finished" | "done" => {
            let url = ["content", "url", "video_url", "video", "output_url"]
                .iter()
                .find_map(|k| body.get(*k).and_then(Value::as_str).filter(|s| is_url(s)))
                .or_else(|| {
                    ["/output/video_url", "/output/url"]
                        .iter()
                        .find_map(|p| body.pointer(p).and_then(Value::as_str))
                        .filter(|s| is_url(s))
                });
            match url {
                Some(u) => TaskState::Done(u.trim().to_string()),
                None => TaskState::Failed("the task finished without a video URL".into()),
            }
        }
        "failed" | "failure" | "error" | "canceled" | "cancelled" => {
            let msg = ["message", "error", "content"]
                .iter()
                .find_map(|k| body.get(*k).and_then(Value::as_str))
                .filter(|m| !m.trim().is_empty())
                .unwrap_or("no reason given");
            TaskState::Failed(msg.chars().take(500).collect())
        }
        "" => TaskState::Waiting("unknown".into()),
        other => TaskState::Waiting(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn markdown() {
        assert_eq!(
            markdown_images("a ![x](https://a/1.png) b ![](<http://b/2.png> \"t\") ![no](nope)"),
            vec!["https://a/1.png", "http://b/2.png"]
        );
        assert!(markdown_images("![broken](").is_empty());
        assert_eq!(image_markdown("u"), "![image](u)");
        assert!(video_markdown("https://v").contains("[Download video](https://v)"));
    }

    #[test]
    fn image_urls_in_every_known_shape() {
        let ev = |delta: Value| json!({"choices": [{"delta": delta}]});
        let url = "https://cdn.example/out/1.png?key=k";
        for e in [
            ev(json!({"phase": "image_gen", "content": url})),
            ev(json!({"phase": "image_edit_tool", "content": "", "extra": {"image_url": url}})),
            ev(json!({"phase": "image_edit_tool", "extra": {"tool_result": [{"image": url}]}})),
            ev(json!({"phase": "answer", "content": format!("![image]({url})")})),
            ev(json!({"chat_type": "t2i", "content": url})),
            ev(json!({"phase": "image_gen_tool", "extra": {"image_list": [{"image": url}]}})),
        ] {
            assert_eq!(image_url_in_event(&e).as_deref(), Some(url), "{e}");
        }
        assert_eq!(
            image_url_in_event(&ev(json!({"phase": "answer", "content": url}))),
            None,
            "a URL in ordinary text is not an image"
        );
        assert_eq!(image_url_in_event(&json!({"response.created": {}})), None);
    }

    #[test]
    fn image_scan() {
        let mut s = ImageScan::default();
        s.feed(br#"{"response.created":{"chat_id":"c"}}"#);
        s.feed(br#"{"choices":[{"delta":{"phase":"image_gen","content":"","status":"typing"}}]}"#);
        assert!(!s.done());
        s.feed(br#"{"choices":[{"delta":{"phase":"image_gen","content":"https://c/1.png","status":"typing"}}],"usage":{"input_tokens":1002,"output_tokens":0}}"#);
        s.feed(
            br#"{"choices":[{"delta":{"phase":"image_gen","content":"","status":"finished"}}]}"#,
        );
        assert!(s.done() && s.failure.is_none());
        assert_eq!(s.url.as_deref(), Some("https://c/1.png"));
        assert_eq!(s.input_tokens, Some(1002));

        let mut s = ImageScan::default();
        s.feed(
            r#"{"error":{"code":"data_inspection_failed","details":"内容安全警告"}}"#.as_bytes(),
        );
        assert_eq!(s.failure.unwrap().class, FailureClass::Moderation);
        let mut s = ImageScan::default();
        s.feed(br#"{"success":false,"data":{"code":"RateLimited","num":1,"details":"limit"}}"#);
        assert_eq!(s.failure.unwrap().class, FailureClass::RateLimit);
        let mut s = ImageScan::default();
        s.feed(br#"{"choices":[{"delta":{"phase":"answer","content":"I cannot draw that."}}]}"#);
        s.feed(br#"{"choices":[{"delta":{"phase":"answer","content":"","status":"finished"}}]}"#);
        assert!(s.done() && s.url.is_none());
        assert_eq!(s.text, "I cannot draw that.");
    }

    #[test]
    fn task_ids() {
        let v = json!({"success": true, "data": {"response_id": "r", "messages": [
            {"role": "assistant", "extra": {"wanx": {"task_id": "t-1"}}}]}});
        assert_eq!(find_task_id(&v).as_deref(), Some("t-1"));
        assert_eq!(find_task_id(&json!({"taskId": 42})).as_deref(), Some("42"));
        let none = json!({"data": {"response_id": "r", "messages": [{"extra": {"wanx": {}}}]}});
        assert_eq!(find_task_id(&none), None);
    }

    #[test]
    fn task_states() {
        let url = "https://cdn/v.mp4?key=k";
        assert_eq!(
            parse_task(&json!({"task_status": "running", "content": ""})),
            TaskState::Waiting("running".into())
        );
        assert_eq!(
            parse_task(&json!({"task_status": "success", "content": url})),
            TaskState::Done(url.into())
        );
        assert_eq!(
            parse_task(&json!({"data": {"status": "SUCCEEDED", "output": {"video_url": url}}})),
            TaskState::Done(url.into())
        );
        assert_eq!(
            parse_task(&json!({"task_status": "failed", "message": "nope"})),
            TaskState::Failed("nope".into())
        );
        assert!(matches!(
            parse_task(&json!({"task_status": "success", "content": ""})),
            TaskState::Failed(_)
        ));
    }
}
