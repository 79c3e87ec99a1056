//! Byte-level builders for the upstream SSE events (protocol §5). Each returns one complete
//! `data: {json}\n\n` frame. Strings are escaped by serde_json, everything else is written
//! directly so that no `serde_json::Value` tree is built per event.

use std::io::Write;

use bytes::Bytes;

use crate::faults::UsageStyle;

/// Token counts carried by an event; `usage` is cumulative, as upstream sends it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub answer: u64,
    pub reasoning: u64,
}

/// The per-response constants every event repeats.
#[derive(Debug, Clone)]
pub struct EventWriter {
    pub response_id: String,
    pub timestamp: i64,
    /// False reproduces the "no `output_schema`" regression: deltas carry no `phase`.
    pub with_phase: bool,
    pub usage_style: UsageStyle,
}

fn push_str(buf: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, s);
}

fn push_str_array(buf: &mut Vec<u8>, items: &[String]) {
    buf.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        push_str(buf, s);
    }
    buf.push(b']');
}

fn open(cap: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(cap + 96);
    buf.extend_from_slice(b"data: ");
    buf
}

fn close(mut buf: Vec<u8>) -> Bytes {
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

/// Frames an arbitrary JSON text as one event.
pub fn data_frame(json: &str) -> Bytes {
    let mut buf = open(json.len());
    buf.extend_from_slice(json.as_bytes());
    close(buf)
}

impl EventWriter {
    fn phase(&self, buf: &mut Vec<u8>, phase: &str) {
        if self.with_phase {
            buf.extend_from_slice(b",\"phase\":");
            push_str(buf, phase);
        }
    }

    /// `],"response_id":..,"usage":..,"timestamp":..}` closing every choices event.
    fn tail(&self, buf: &mut Vec<u8>, usage: Option<Usage>) {
        buf.extend_from_slice(b"}],\"response_id\":");
        push_str(buf, &self.response_id);
        if let Some(u) = usage {
            self.usage(buf, u);
        }
        let _ = write!(buf, ",\"timestamp\":{}}}", self.timestamp);
    }

    fn usage(&self, buf: &mut Vec<u8>, u: Usage) {
        let out = u.answer + u.reasoning;
        let total = u.input + out;
        let _ = match self.usage_style {
            UsageStyle::Input => write!(
                buf,
                ",\"usage\":{{\"input_tokens\":{},\"output_tokens\":{out},\"characters\":0,\
                 \"total_tokens\":{total},\"input_tokens_details\":{{\"text_tokens\":{}}},\
                 \"output_tokens_details\":{{\"text_tokens\":{},\"reasoning_tokens\":{}}},\
                 \"prompt_tokens_details\":{{\"cached_tokens\":0}}}}",
                u.input, u.input, u.answer, u.reasoning
            ),
            UsageStyle::Prompt => write!(
                buf,
                ",\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{out},\
                 \"total_tokens\":{total},\"completion_tokens_details\":{{\"reasoning_tokens\":{}}}}}",
                u.input, u.reasoning
            ),
            UsageStyle::None => Ok(()),
        };
    }

    pub fn created(&self, chat_id: &str, parent_id: &str) -> Bytes {
        let mut buf = open(160);
        buf.extend_from_slice(b"{\"response.created\":{\"chat_id\":");
        push_str(&mut buf, chat_id);
        buf.extend_from_slice(b",\"parent_id\":");
        push_str(&mut buf, parent_id);
        buf.extend_from_slice(b",\"response_id\":");
        push_str(&mut buf, &self.response_id);
        buf.extend_from_slice(b",\"response_index\":\"0\"}}");
        close(buf)
    }

    /// An incremental `typing` delta (answer or `think`).
    pub fn delta(&self, phase: &str, content: &str, usage: Option<Usage>) -> Bytes {
        let mut buf = open(content.len() + 330);
        buf.extend_from_slice(b"{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":");
        push_str(&mut buf, content);
        self.phase(&mut buf, phase);
        buf.extend_from_slice(b",\"status\":\"typing\"}");
        self.tail(&mut buf, usage);
        close(buf)
    }

    /// A `thinking_summary` event; both arrays are the full (cumulative) lists so far.
    pub fn summary(&self, titles: &[String], thoughts: &[String], usage: Option<Usage>) -> Bytes {
        let len: usize = titles.iter().chain(thoughts).map(|s| s.len() + 3).sum();
        let mut buf = open(len + 420);
        buf.extend_from_slice(b"{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"");
        self.phase(&mut buf, "thinking_summary");
        buf.extend_from_slice(b",\"extra\":{\"summary_title\":{\"content\":");
        push_str_array(&mut buf, titles);
        buf.extend_from_slice(b"},\"summary_thought\":{\"content\":");
        push_str_array(&mut buf, thoughts);
        buf.extend_from_slice(b"}},\"status\":\"typing\"}");
        self.tail(&mut buf, usage);
        close(buf)
    }

    /// A normal chat's image-tool result (protocol §5.5): the picture in `extra.image_list`.
    pub fn image_list(&self, url: &str, usage: Option<Usage>) -> Bytes {
        let mut buf = open(url.len() + 420);
        buf.extend_from_slice(b"{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"");
        self.phase(&mut buf, "image_gen_tool");
        buf.extend_from_slice(b",\"extra\":{\"image_list\":[{\"image\":");
        push_str(&mut buf, url);
        buf.extend_from_slice(b",\"width\":1024,\"height\":1024}]},\"status\":\"typing\"}");
        self.tail(&mut buf, usage);
        close(buf)
    }

    /// End of a thinking phase: `{"phase":<p>,"status":"finished"}`, no usage.
    pub fn phase_finished(&self, phase: &str) -> Bytes {
        let mut buf = open(160);
        buf.extend_from_slice(b"{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"");
        self.phase(&mut buf, phase);
        buf.extend_from_slice(b",\"status\":\"finished\"}");
        self.tail(&mut buf, None);
        close(buf)
    }

    /// The web-search event. Peers key on either `name` or `phase`, so both are set.
    pub fn search(&self, info_json: &str, usage: Option<Usage>) -> Bytes {
        let mut buf = open(info_json.len() + 400);
        buf.extend_from_slice(
            b"{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"name\":\"web_search\"",
        );
        self.phase(&mut buf, "web_search");
        buf.extend_from_slice(b",\"status\":\"finished\",\"extra\":{\"web_search_info\":");
        buf.extend_from_slice(info_json.as_bytes());
        buf.extend_from_slice(b"}}");
        self.tail(&mut buf, usage);
        close(buf)
    }

    /// The closing `finished` answer delta; upstream sends it without usage or timestamp.
    pub fn finished(&self) -> Bytes {
        let mut buf = open(140);
        buf.extend_from_slice(
            b"{\"choices\":[{\"delta\":{\"content\":\"\",\"role\":\"assistant\",\"status\":\"finished\"",
        );
        self.phase(&mut buf, "answer");
        buf.extend_from_slice(b"}}],\"response_id\":");
        push_str(&mut buf, &self.response_id);
        buf.extend_from_slice(b"}");
        close(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(style: UsageStyle, with_phase: bool) -> EventWriter {
        EventWriter {
            response_id: "r1".into(),
            timestamp: 42,
            with_phase,
            usage_style: style,
        }
    }

    fn json(b: &Bytes) -> serde_json::Value {
        let s = std::str::from_utf8(b).unwrap();
        assert!(s.starts_with("data: ") && s.ends_with("\n\n"), "{s:?}");
        serde_json::from_str(&s[6..s.len() - 2]).unwrap()
    }

    #[test]
    fn delta_shape_and_usage() {
        let u = Usage {
            input: 10,
            answer: 2,
            reasoning: 3,
        };
        let v = json(&w(UsageStyle::Input, true).delta("answer", "a\"b\n", Some(u)));
        assert_eq!(v["choices"][0]["delta"]["content"], "a\"b\n");
        assert_eq!(v["choices"][0]["delta"]["phase"], "answer");
        assert_eq!(v["choices"][0]["delta"]["status"], "typing");
        assert_eq!(v["usage"]["output_tokens"], 5);
        assert_eq!(v["usage"]["total_tokens"], 15);
        assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
        assert_eq!(v["timestamp"], 42);

        let v = json(&w(UsageStyle::Prompt, false).delta("answer", "x", Some(u)));
        assert!(v["choices"][0]["delta"].get("phase").is_none());
        assert_eq!(v["usage"]["completion_tokens"], 5);
        assert!(v["usage"].get("input_tokens").is_none());

        let v = json(&w(UsageStyle::None, true).delta("answer", "x", Some(u)));
        assert!(v.get("usage").is_none());
    }

    #[test]
    fn other_events_are_valid_json() {
        let wr = w(UsageStyle::Input, true);
        let v = json(&wr.created("c", "p"));
        assert_eq!(v["response.created"]["response_id"], "r1");
        let v = json(&wr.finished());
        assert_eq!(v["choices"][0]["delta"]["status"], "finished");
        assert!(v.get("usage").is_none());
        let v = json(&wr.summary(&["t".into()], &["a".into(), "b".into()], None));
        assert_eq!(
            v["choices"][0]["delta"]["extra"]["summary_thought"]["content"][1],
            "b"
        );
        let v = json(&wr.search("[{\"url\":\"u\"}]", None));
        assert_eq!(v["choices"][0]["delta"]["name"], "web_search");
        assert_eq!(
            v["choices"][0]["delta"]["extra"]["web_search_info"][0]["url"],
            "u"
        );
        let v = json(&wr.phase_finished("thinking_summary"));
        assert_eq!(v["choices"][0]["delta"]["phase"], "thinking_summary");
    }
}
