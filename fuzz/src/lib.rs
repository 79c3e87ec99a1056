//! Helpers shared by the fuzz targets: deterministic chunking, a reference SSE decoder used as an
//! oracle, a strict validator for the gateway's own SSE output, and a structured generator of
//! upstream event streams (protocol §5) for inputs that random bytes would rarely reach.

use arbitrary::{Arbitrary, Unstructured};
use qwen_gateway::sse::{SseDecoder, SseError};
use serde_json::{json, Value};

/// Splits `input` into a fixed-size header (zero padded when the input is shorter) and the rest.
pub fn header<const N: usize>(input: &[u8]) -> ([u8; N], &[u8]) {
    let mut h = [0u8; N];
    let n = input.len().min(N);
    h[..n].copy_from_slice(&input[..n]);
    (h, &input[n..])
}

/// Findings reported in docs/fuzzing.md that are not fixed yet, so that a run can go on finding
/// new ones. `QG_FUZZ_STRICT=1` turns every filter off (use it to check a fix).
pub fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("QG_FUZZ_STRICT").is_some_and(|v| v == "1"))
}

/// Finding 1: `Usage::total` adds the two upstream token counts without saturating, so counts
/// near `u64::MAX` (19+ digits) overflow (a panic with overflow checks, a wrong total without).
/// Fixed (saturating addition); kept so that older corpora replay, always false unless a new
/// regression is being bisected with `QG_FUZZ_KEEP_FILTER=1`.
pub fn has_huge_number(data: &[u8]) -> bool {
    if std::env::var_os("QG_FUZZ_KEEP_FILTER").is_none() {
        return false;
    }
    let mut run = 0;
    for b in data {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 19 {
            return true;
        }
    }
    false
}

/// A tiny deterministic generator (xorshift64*), so a header seed picks the chunk boundaries.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Cuts `data` into chunks whose boundaries come from `seed`: mostly short chunks (so that line
/// ends, CRLF pairs and UTF-8 sequences get split), sometimes empty ones, sometimes long ones.
pub fn chunks(data: &[u8], seed: u64) -> Vec<&[u8]> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let len = match rng.below(8) {
            0 => 0,
            1..=5 => 1 + rng.below(4),
            6 => 1 + rng.below(32),
            _ => 1 + rng.below(data.len()),
        };
        let end = (at + len).min(data.len());
        out.push(&data[at..end]);
        at = end;
    }
    if rng.below(2) == 0 {
        out.push(&[]);
    }
    out
}

/// Every byte its own chunk: the most adversarial split.
pub fn bytewise(data: &[u8]) -> Vec<&[u8]> {
    data.chunks(1).collect()
}

/// What decoding a whole input gave: the events, and the error that stopped it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub events: Vec<Vec<u8>>,
    pub error: Option<SseError>,
}

/// Runs the gateway's decoder over `chunks`, as the relay does: stop at the first error, else
/// call `finish` at the end of the body.
pub fn decode(chunks: &[&[u8]], max_line: usize) -> Decoded {
    let mut d = SseDecoder::new(max_line);
    let mut events = Vec::new();
    for c in chunks {
        if let Err(e) = d.feed(c, |ev| events.push(ev.to_vec())) {
            return Decoded {
                events,
                error: Some(e),
            };
        }
    }
    d.finish(|ev| events.push(ev.to_vec()));
    Decoded {
        events,
        error: None,
    }
}

/// A deliberately naive SSE decoder written straight from the spec (LF, CRLF and CR line ends,
/// comments, `field: value` with one optional space, multi-line data, dispatch at a blank line and
/// at EOF), plus the gateway's bound: a line longer than `max_line` stops decoding.
pub fn reference_decode(data: &[u8], max_line: usize) -> Decoded {
    let mut events = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut has_data = false;
    let line_fn = |line: &[u8], buf: &mut Vec<u8>, has_data: &mut bool, events: &mut Vec<_>| {
        if line.is_empty() {
            if *has_data {
                events.push(std::mem::take(buf));
                *has_data = false;
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if *has_data {
                buf.push(b'\n');
            }
            buf.extend_from_slice(value);
            *has_data = true;
        }
    };
    let mut i = 0;
    let mut start = 0;
    while i < data.len() {
        let b = data[i];
        if b == b'\n' || b == b'\r' {
            let line = &data[start..i];
            if line.len() > max_line {
                return Decoded {
                    events,
                    error: Some(SseError::LineTooLong { limit: max_line }),
                };
            }
            line_fn(line, &mut buf, &mut has_data, &mut events);
            if b == b'\r' && data.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    let tail = &data[start..];
    if tail.len() > max_line {
        return Decoded {
            events,
            error: Some(SseError::LineTooLong { limit: max_line }),
        };
    }
    if !tail.is_empty() {
        line_fn(tail, &mut buf, &mut has_data, &mut events);
    }
    if has_data {
        events.push(buf);
    }
    Decoded {
        events,
        error: None,
    }
}

/// What a client sees in a stream the gateway wrote.
#[derive(Debug, Default)]
pub struct ClientStream {
    pub chunks: Vec<Value>,
    pub done: bool,
}

/// Checks that `out` is exactly a sequence of `data: <payload>\n\n` events (the framing every
/// OpenAI client parser accepts), that every payload but a final `[DONE]` is a JSON object, and
/// that nothing follows `[DONE]`. Panics with a description otherwise.
pub fn parse_client_sse(out: &[u8]) -> ClientStream {
    let mut rest = out;
    let mut cs = ClientStream::default();
    while !rest.is_empty() {
        assert!(!cs.done, "bytes after data: [DONE]: {:?}", lossy(rest));
        let body = rest
            .strip_prefix(b"data: ")
            .unwrap_or_else(|| panic!("event does not start with 'data: ': {:?}", lossy(rest)));
        let end = body
            .windows(2)
            .position(|w| w == b"\n\n")
            .unwrap_or_else(|| panic!("event not terminated by a blank line: {:?}", lossy(body)));
        let payload = &body[..end];
        assert!(
            !payload.contains(&b'\n') && !payload.contains(&b'\r'),
            "line break inside a payload: {:?}",
            lossy(payload)
        );
        if payload == b"[DONE]" {
            cs.done = true;
        } else {
            let v: Value = serde_json::from_slice(payload)
                .unwrap_or_else(|e| panic!("payload is not JSON ({e}): {:?}", lossy(payload)));
            assert!(v.is_object(), "payload is not an object: {v}");
            cs.chunks.push(v);
        }
        rest = &body[end + 2..];
    }
    cs
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Structured upstream streams.

#[derive(Debug, Arbitrary)]
pub enum Frame {
    /// `data: {json}\n\n`, what the upstream sends (protocol §5.1).
    Lf,
    Crlf,
    Cr,
    /// `data:{json}` without the space.
    NoSpace,
    /// The JSON split over two `data:` lines (valid SSE; joined with a line break).
    TwoLines,
}

#[derive(Debug, Arbitrary)]
pub struct Usage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub reasoning: Option<u64>,
    /// The older `prompt_tokens`/`completion_tokens` names.
    pub legacy: bool,
}

#[derive(Debug, Arbitrary)]
pub enum SummaryStep {
    /// Grows the last thought (the normal cumulative update).
    Extend(String),
    /// Starts a new thought.
    Push(String),
    /// Repeats the list unchanged.
    Repeat,
    /// Replaces the last thought (not cumulative: the upstream misbehaving).
    Replace(String),
    /// Drops the last thought (not cumulative either).
    Pop,
}

#[derive(Debug, Arbitrary)]
pub enum Code {
    RateLimited,
    BadRequest,
    DataInspection,
    Unauthorized,
    InternalError,
    Other(String),
}

impl Code {
    fn as_str(&self) -> &str {
        match self {
            Code::RateLimited => "RateLimited",
            Code::BadRequest => "Bad_Request",
            Code::DataInspection => "data_inspection_failed",
            Code::Unauthorized => "Unauthorized",
            Code::InternalError => "internal_error",
            Code::Other(s) => s,
        }
    }
}

#[derive(Debug, Arbitrary)]
pub enum Event {
    Created,
    Answer {
        text: String,
        usage: Option<Usage>,
        finished: bool,
    },
    /// An answer delta with no `phase` (older upstreams).
    Bare(String),
    Think {
        text: String,
        finished: bool,
    },
    Summary(SummaryStep, Option<Usage>),
    SummaryFinished,
    Search {
        items: Vec<(String, String, String)>,
        by_name: bool,
        by_phase: bool,
    },
    UsageOnly(Usage),
    Finished,
    Envelope {
        code: Code,
        details: String,
        num: Option<u8>,
    },
    NestedError {
        code: Code,
        details: String,
    },
    MidError {
        code: Code,
        message: String,
    },
    OtherPhase {
        phase: String,
        content: String,
    },
    Done,
    Comment(String),
    /// Arbitrary bytes as an event payload.
    Raw(Vec<u8>),
}

fn usage_json(u: &Usage) -> Value {
    let mut m = serde_json::Map::new();
    let (i, o) = if u.legacy {
        ("prompt_tokens", "completion_tokens")
    } else {
        ("input_tokens", "output_tokens")
    };
    if let Some(v) = u.input {
        m.insert(i.into(), json!(v));
    }
    if let Some(v) = u.output {
        m.insert(o.into(), json!(v));
    }
    if let Some(r) = u.reasoning {
        m.insert(
            "output_tokens_details".into(),
            json!({"reasoning_tokens": r}),
        );
    }
    Value::Object(m)
}

fn delta(d: Value, usage: Option<&Usage>) -> Value {
    let mut v = json!({"choices": [{"delta": d}], "response_id": "r"});
    if let Some(u) = usage {
        v["usage"] = usage_json(u);
    }
    v
}

/// Renders a structured stream as upstream SSE bytes.
pub fn render(events: &[(Event, Frame)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut summary: Vec<String> = Vec::new();
    for (ev, frame) in events {
        let payload: Vec<u8> = match ev {
            Event::Created => {
                br#"{"response.created":{"chat_id":"c","parent_id":"p","response_id":"r"}}"#
                    .to_vec()
            }
            Event::Answer {
                text,
                usage,
                finished,
            } => delta(
                json!({"role":"assistant","content":text,"phase":"answer",
                       "status": if *finished {"finished"} else {"typing"}}),
                usage.as_ref(),
            )
            .to_string()
            .into_bytes(),
            Event::Bare(text) => delta(json!({"content": text}), None)
                .to_string()
                .into_bytes(),
            Event::Think { text, finished } => delta(
                json!({"role":"assistant","content":text,"phase":"think",
                       "status": if *finished {"finished"} else {"typing"}}),
                None,
            )
            .to_string()
            .into_bytes(),
            Event::Summary(step, usage) => {
                match step {
                    SummaryStep::Extend(s) => match summary.last_mut() {
                        Some(last) => last.push_str(s),
                        None => summary.push(s.clone()),
                    },
                    SummaryStep::Push(s) => summary.push(s.clone()),
                    SummaryStep::Repeat => {}
                    SummaryStep::Replace(s) => match summary.last_mut() {
                        Some(last) => *last = s.clone(),
                        None => summary.push(s.clone()),
                    },
                    SummaryStep::Pop => {
                        summary.pop();
                    }
                }
                delta(
                    json!({"role":"assistant","content":"","phase":"thinking_summary",
                           "extra":{"summary_title":{"content":["T"]},
                                    "summary_thought":{"content": summary}},
                           "status":"typing"}),
                    usage.as_ref(),
                )
                .to_string()
                .into_bytes()
            }
            Event::SummaryFinished => delta(
                json!({"role":"assistant","content":"","phase":"thinking_summary","status":"finished"}),
                None,
            )
            .to_string()
            .into_bytes(),
            Event::Search {
                items,
                by_name,
                by_phase,
            } => {
                let list: Vec<Value> = items
                    .iter()
                    .map(|(u, t, h)| json!({"url":u,"title":t,"hostname":h,"snippet":"s"}))
                    .collect();
                let mut d = json!({"role":"assistant","content":"","status":"typing",
                                   "extra":{"web_search_info": list}});
                if *by_name {
                    d["name"] = json!("web_search");
                }
                if *by_phase {
                    d["phase"] = json!("web_search");
                }
                delta(d, None).to_string().into_bytes()
            }
            Event::UsageOnly(u) => json!({"usage": usage_json(u)}).to_string().into_bytes(),
            Event::Finished => delta(
                json!({"content":"","role":"assistant","status":"finished","phase":"answer"}),
                None,
            )
            .to_string()
            .into_bytes(),
            Event::Envelope { code, details, num } => {
                let mut d = json!({"code": code.as_str(), "details": details});
                if let Some(n) = num {
                    d["num"] = json!(n);
                }
                json!({"success": false, "request_id": "q", "data": d})
                    .to_string()
                    .into_bytes()
            }
            Event::NestedError { code, details } => {
                json!({"data": {"error": {"code": code.as_str(), "details": details}}})
                    .to_string()
                    .into_bytes()
            }
            Event::MidError { code, message } => {
                json!({"error": {"code": code.as_str(), "message": message}})
                    .to_string()
                    .into_bytes()
            }
            Event::OtherPhase { phase, content } => delta(
                json!({"role":"assistant","content":content,"phase":phase,"status":"typing"}),
                None,
            )
            .to_string()
            .into_bytes(),
            Event::Done => b"[DONE]".to_vec(),
            Event::Comment(c) => {
                out.push(b':');
                out.extend(c.bytes().filter(|b| *b != b'\n' && *b != b'\r'));
                out.extend_from_slice(b"\n\n");
                continue;
            }
            Event::Raw(bytes) => bytes.clone(),
        };
        match frame {
            Frame::Lf => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&payload);
                out.extend_from_slice(b"\n\n");
            }
            Frame::Crlf => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&payload);
                out.extend_from_slice(b"\r\n\r\n");
            }
            Frame::Cr => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&payload);
                out.extend_from_slice(b"\r\r");
            }
            Frame::NoSpace => {
                out.extend_from_slice(b"data:");
                out.extend_from_slice(&payload);
                out.extend_from_slice(b"\n\n");
            }
            Frame::TwoLines => {
                // After the opening brace, so the JSON stays valid with the joining line break.
                let mid = usize::from(!payload.is_empty());
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&payload[..mid]);
                out.extend_from_slice(b"\ndata: ");
                out.extend_from_slice(&payload[mid..]);
                out.extend_from_slice(b"\n\n");
            }
        }
    }
    out
}

/// Builds a structured stream from fuzzer bytes.
pub fn structured_stream(data: &[u8]) -> Vec<u8> {
    let mut u = Unstructured::new(data);
    let events: Vec<(Event, Frame)> = u.arbitrary().unwrap_or_default();
    render(&events)
}
