//! Turns content plus faults into the exact sequence of writes for one SSE response.

use bytes::Bytes;

use crate::answer::{Content, Thinking, SEARCH_INFO_JSON};
use crate::events::{data_frame, EventWriter, Usage};
use crate::faults::Faults;

/// One step of the response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Written (and flushed) as one chunk.
    Data(Bytes),
    /// Written as two chunks, split at the index, with a short pause between.
    Split(Bytes, usize),
    /// Silence for this many milliseconds (on top of the regular per-event delay).
    Pause(u64),
}

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Terminate the chunked body properly.
    Finish,
    /// Close the connection without the terminating chunk.
    Disconnect,
    /// Abort the connection with a TCP RST.
    Reset,
    /// Stay open and silent until the client goes away.
    Hang,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub frames: Vec<Frame>,
    pub end: End,
    /// Answer text actually streamed before the `finished` event.
    pub answer: String,
    pub reasoning: String,
    pub search: bool,
    pub usage: Usage,
}

/// The picture `image_tool` reports (a CDN-style URL; nothing is served there).
pub const TOOL_IMAGE_URL: &str = "https://cdn.qwenlm.ai/output/sim/t2i/tool/1780000000.png?key=sim";

pub const QUOTA_ERROR: &str = r#"{"error":{"code":"internal_error","message":"Allocated quota exceeded, please increase your quota limit. For details, see: https://help.aliyun.com/zh/model-studio/error-code#token-limit"}}"#;
pub const MODERATION_INPUT: &str = r#"{"error":{"code":"data_inspection_failed","details":"内容安全警告：输入数据可能包含不适当的内容！"}}"#;
pub const MODERATION_OUTPUT: &str = r#"{"error":{"code":"data_inspection_failed","details":"内容安全警告：输出内容可能包含不适当的内容！"}}"#;
pub const RATE_LIMIT_ENVELOPE: &str = r#"{"success":false,"request_id":"00000000-0000-4000-8000-000000000429","data":{"code":"RateLimited","num":2,"details":"You have reached the upper limit for today's usage"}}"#;

/// Where `never_end` goes quiet.
const NEVER_END_AFTER: usize = 3;

/// Applies the per-event write faults (`noncanonical`, `split`, `split_utf8`) as frames are added.
struct Frames {
    out: Vec<Frame>,
    noncanonical: bool,
    split: bool,
    split_utf8: bool,
}

/// `data: X\n\n` -> `data:X\r\n\r\n`: legal SSE that naive `"data: "`/`"\n\n"` parsers miss.
fn to_crlf(ev: &Bytes) -> Bytes {
    let body = ev
        .strip_prefix(b"data: ")
        .and_then(|b| b.strip_suffix(b"\n\n"))
        .unwrap_or(ev);
    let mut v = Vec::with_capacity(body.len() + 10);
    v.extend_from_slice(b"data:");
    v.extend_from_slice(body);
    v.extend_from_slice(b"\r\n\r\n");
    Bytes::from(v)
}

/// The same event as two `data:` lines; the SSE join adds `\n`, which JSON treats as space.
fn to_multiline(ev: &Bytes) -> Option<Bytes> {
    let s = std::str::from_utf8(ev).ok()?;
    let body = s.strip_prefix("data: ")?.strip_suffix("\n\n")?;
    let at = body.find(",\"response_id\"")?;
    Some(Bytes::from(format!(
        "data:{}\r\ndata:{}\r\n\r\n",
        &body[..at],
        &body[at..]
    )))
}

impl Frames {
    fn push(&mut self, ev: Bytes) {
        let ev = if self.noncanonical { to_crlf(&ev) } else { ev };
        if self.split_utf8 {
            // Split right after the lead byte of the first multi-byte character.
            if let Some(i) = ev.iter().position(|b| *b >= 0xC0) {
                self.out.push(Frame::Split(ev, i + 1));
                return;
            }
        }
        if self.split && ev.len() > 1 {
            let mut at = ev.len() / 2;
            while at < ev.len() && (ev[at] & 0xC0) == 0x80 {
                at += 1;
            }
            self.out.push(Frame::Split(ev, at));
            return;
        }
        self.out.push(Frame::Data(ev));
    }

    fn raw(&mut self, b: &'static [u8]) {
        self.out.push(Frame::Data(Bytes::from_static(b)));
    }
}

fn huge_delta(w: &EventWriter, usage: Usage, line_bytes: usize) -> (Bytes, String) {
    // The line is `data: {json}`; measure the overhead once with empty content.
    let overhead = w.delta("answer", "", Some(usage)).len() - 2;
    let content = "x".repeat(line_bytes.saturating_sub(overhead).max(1));
    (w.delta("answer", &content, Some(usage)), content)
}

pub fn build_plan(
    w: &EventWriter,
    content: &Content,
    faults: &Faults,
    chat_id: &str,
    parent_id: &str,
    input_tokens: u64,
) -> Plan {
    let mut f = Frames {
        out: Vec::with_capacity(content.answer.len() + content.thinking.len() + 8),
        noncanonical: faults.noncanonical,
        split: faults.split,
        split_utf8: faults.split_utf8,
    };
    let mut plan = Plan {
        frames: Vec::new(),
        end: End::Finish,
        answer: String::new(),
        reasoning: String::new(),
        search: false,
        usage: Usage {
            input: input_tokens,
            ..Usage::default()
        },
    };
    if faults.ratelimit_sse {
        f.push(data_frame(RATE_LIMIT_ENVELOPE));
        plan.frames = f.out;
        return plan;
    }
    let end = render_events(w, content, faults, chat_id, parent_id, &mut f, &mut plan);
    plan.end = end;
    plan.frames = f.out;
    plan
}

fn render_events(
    w: &EventWriter,
    content: &Content,
    faults: &Faults,
    chat_id: &str,
    parent_id: &str,
    f: &mut Frames,
    plan: &mut Plan,
) -> End {
    if let Some(ms) = faults.slow_first_event_ms {
        f.out.push(Frame::Pause(ms));
    }
    f.push(w.created(chat_id, parent_id));
    if faults.noncanonical {
        f.raw(b"event: ping\r\n\r\n");
        f.raw(b": keep-alive\r\n\r\n");
    }
    if faults.moderation {
        f.push(data_frame(MODERATION_INPUT));
        return End::Finish;
    }
    if faults.empty {
        f.push(w.finished());
        if faults.done {
            f.push(data_frame("[DONE]"));
        }
        return End::Finish;
    }

    let mut usage = plan.usage;
    if content.search {
        f.push(w.search(SEARCH_INFO_JSON, Some(usage)));
        plan.search = true;
    }
    match &content.thinking {
        Thinking::None => {}
        Thinking::Summary(steps) => {
            for (titles, thoughts) in steps {
                usage.reasoning += 1;
                f.push(w.summary(titles, thoughts, Some(usage)));
            }
            f.push(w.phase_finished("thinking_summary"));
        }
        Thinking::Detail(parts) => {
            for (i, p) in parts.iter().enumerate() {
                usage.reasoning += 1;
                f.push(w.delta("think", p, Some(usage)));
                if i == 0 && faults.image_tool {
                    f.push(w.image_list(TOOL_IMAGE_URL, Some(usage)));
                }
            }
            f.push(w.phase_finished("think"));
        }
    }
    if faults.image_tool {
        // Upstream repeats the list; the gateway shows each picture once.
        f.push(w.image_list(TOOL_IMAGE_URL, Some(usage)));
    }
    plan.reasoning = content.thinking.reasoning();
    plan.usage = usage;
    if faults.disconnect_after_thinking {
        return End::Disconnect;
    }

    let n = content.answer.len();
    let gap_at = n / 2;
    for (i, d) in content.answer.iter().enumerate() {
        if let Some(end) = stop_before_delta(i, faults, f) {
            return end;
        }
        if i == gap_at && i > 0 {
            if let Some(ms) = faults.idle_gap_ms {
                f.out.push(Frame::Pause(ms));
            }
        }
        usage.answer += 1;
        let ev = w.delta("answer", d, Some(usage));
        match (i, faults.noncanonical) {
            (0, true) => match to_multiline(&ev) {
                Some(m) => f.out.push(Frame::Data(m)),
                None => f.push(ev),
            },
            _ => f.push(ev),
        }
        plan.answer.push_str(d);
        plan.usage = usage;
        if i == 0 && faults.malformed {
            f.raw(
                b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"trunc\n\n",
            );
            f.raw(b"data:\n\n");
        }
    }
    if let Some(line) = faults.huge_line {
        usage.answer += 1;
        let (ev, text) = huge_delta(w, usage, line);
        f.push(ev);
        plan.answer.push_str(&text);
        plan.usage = usage;
    }
    // Thresholds at or past the end of the answer still fire, after the last delta.
    if let Some(end) = stop_before_delta(usize::MAX, faults, f) {
        return end;
    }

    f.push(w.delta("answer", "", Some(usage)));
    f.push(w.finished());
    if faults.after_finished {
        for extra in ["late ", "tail "] {
            usage.answer += 1;
            f.push(w.delta("answer", extra, Some(usage)));
        }
    }
    if faults.done {
        f.push(data_frame("[DONE]"));
    }
    End::Finish
}

/// Checks the "after N answer deltas" faults before delta `i` (`usize::MAX` = after all).
fn stop_before_delta(i: usize, faults: &Faults, f: &mut Frames) -> Option<End> {
    let hit = |n: Option<usize>| n.is_some_and(|n| i == usize::MAX || n == i);
    if hit(faults.disconnect) {
        return Some(End::Disconnect);
    }
    if hit(faults.reset) {
        return Some(End::Reset);
    }
    if hit(faults.midstream_quota) {
        f.push(data_frame(QUOTA_ERROR));
        return Some(End::Finish);
    }
    if hit(faults.moderation_output) {
        f.push(data_frame(MODERATION_OUTPUT));
        return Some(End::Finish);
    }
    if faults.never_end && (i == NEVER_END_AFTER || i == usize::MAX) {
        return Some(End::Hang);
    }
    None
}

impl Plan {
    /// The body bytes in write order, as one chunk per frame (splits become two chunks).
    pub fn chunks(&self) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(self.frames.len() + 4);
        for fr in &self.frames {
            match fr {
                Frame::Data(b) => out.push(b.clone()),
                Frame::Split(b, at) => {
                    out.push(b.slice(..*at));
                    out.push(b.slice(*at..));
                }
                Frame::Pause(_) => {}
            }
        }
        out
    }
}
