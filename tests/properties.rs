//! Property tests over the pure pipeline, through the library's public API only:
//!
//! (a) chunk-split invariance of the whole conversion path: an upstream byte stream (generated
//!     from random mixes of answer deltas, `think` deltas, cumulative `thinking_summary` events,
//!     search events, usage and a finish), cut into chunks anywhere, gives byte-identical client
//!     SSE and the same aggregate; re-cutting the answer text into different upstream deltas gives
//!     the same aggregate too;
//! (b) translation round trips: OpenAI requests -> parse -> translate -> upstream body, whose single
//!     message is the flattened conversation, in order, a lone user message verbatim;
//! (c) the stop matcher cuts before the earliest stop however the text arrives.
//!
//! The fuzz targets in `fuzz/` check the same invariants on unstructured input; see
//! docs/fuzzing.md.

use proptest::prelude::*;
use qwen_gateway::config::{ReasoningOutput, SearchInfoMode, ThinkingFormat};
use qwen_gateway::convert::request::{flatten, translate};
use qwen_gateway::convert::stop::StopMatcher;
use qwen_gateway::convert::stream::{ConvertOptions, Converter, FinishReason, Sink, Step, Usage};
use qwen_gateway::openai::chunks::StreamEncoder;
use qwen_gateway::openai::completion::Aggregator;
use qwen_gateway::openai::request::ChatRequest;
use qwen_gateway::qwen::body::{completion_body, MessageIds};
use qwen_gateway::sse::SseDecoder;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Generators.

/// Text that stresses every layer: JSON escapes, line breaks (which must never break SSE
/// framing), multi-byte UTF-8 (which chunk cuts split), SSE- and role-header look-alikes.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 .,!?]{0,16}",
        2 => "[a-z \\n\\r\\t\"\\\\/éß你好世界😀\u{0}\u{7f}\u{2028}]{0,12}",
        2 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
        1 => prop::sample::select(vec![
            "data: x\n\n", "[DONE]", "\r\n\r\n", "[user]\nhi", ": ping", "END", "</think>",
            "{\"a\":1}", "\\u0000",
        ])
        .prop_map(String::from),
    ]
}

#[derive(Debug, Clone)]
enum Ev {
    Created,
    Answer(String, Option<(u16, u16)>),
    Think(String),
    ThinkFinished,
    /// Grows the cumulative summary: extend the last thought, or start a new one.
    Summary {
        new_thought: bool,
        text: String,
        reasoning_tokens: Option<u16>,
    },
    SummaryFinished,
    Search(Vec<(String, String)>),
    Usage(u16, u16),
    Comment,
    Finished,
}

fn event() -> impl Strategy<Value = Ev> {
    prop_oneof![
        1 => Just(Ev::Created),
        8 => (text(), prop::option::of((0u16..5000, 0u16..5000)))
            .prop_map(|(t, u)| Ev::Answer(t, u)),
        4 => text().prop_map(Ev::Think),
        1 => Just(Ev::ThinkFinished),
        4 => (any::<bool>(), text(), prop::option::of(0u16..500)).prop_map(
            |(new_thought, text, reasoning_tokens)| Ev::Summary { new_thought, text, reasoning_tokens }
        ),
        1 => Just(Ev::SummaryFinished),
        1 => prop::collection::vec((text(), text()), 0..3).prop_map(Ev::Search),
        1 => (0u16..5000, 0u16..5000).prop_map(|(i, o)| Ev::Usage(i, o)),
        1 => Just(Ev::Comment),
        1 => Just(Ev::Finished),
    ]
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Lf,
    Crlf,
    NoSpace,
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        6 => Just(Framing::Lf),
        1 => Just(Framing::Crlf),
        1 => Just(Framing::NoSpace),
    ]
}

fn delta(d: Value) -> Value {
    json!({"choices": [{"delta": d}], "response_id": "r", "timestamp": 1})
}

/// Renders events as the upstream frames them (protocol §5).
fn render(events: &[(Ev, Framing)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut summary: Vec<String> = Vec::new();
    for (ev, framing) in events {
        let payload = match ev {
            Ev::Created => json!({"response.created": {"chat_id": "c", "response_id": "r"}}),
            Ev::Answer(t, usage) => {
                let mut v = delta(
                    json!({"role": "assistant", "content": t, "phase": "answer", "status": "typing"}),
                );
                if let Some((i, o)) = usage {
                    v["usage"] = json!({"input_tokens": i, "output_tokens": o});
                }
                v
            }
            Ev::Think(t) => delta(json!({"content": t, "phase": "think", "status": "typing"})),
            Ev::ThinkFinished => {
                delta(json!({"content": "", "phase": "think", "status": "finished"}))
            }
            Ev::Summary {
                new_thought,
                text,
                reasoning_tokens,
            } => {
                match summary.last_mut() {
                    Some(last) if !new_thought => last.push_str(text),
                    _ => summary.push(text.clone()),
                }
                let mut v = delta(json!({
                    "role": "assistant", "content": "", "phase": "thinking_summary",
                    "extra": {"summary_title": {"content": ["T"]},
                              "summary_thought": {"content": summary}},
                    "status": "typing"}));
                if let Some(r) = reasoning_tokens {
                    v["usage"] = json!({"input_tokens": 9, "output_tokens": r + 1,
                                        "output_tokens_details": {"reasoning_tokens": r}});
                }
                v
            }
            Ev::SummaryFinished => {
                delta(json!({"content": "", "phase": "thinking_summary", "status": "finished"}))
            }
            Ev::Search(items) => {
                let list: Vec<Value> = items
                    .iter()
                    .map(|(title, host)| {
                        json!({"url": format!("https://{host}/x"), "title": title,
                               "hostname": host, "snippet": "s", "date": " (2026-06-09)"})
                    })
                    .collect();
                delta(
                    json!({"content": "", "name": "web_search", "phase": "web_search",
                             "status": "typing", "extra": {"web_search_info": list}}),
                )
            }
            Ev::Usage(i, o) => json!({"usage": {"input_tokens": i, "output_tokens": o}}),
            Ev::Comment => {
                out.extend_from_slice(b": keep-alive\n\n");
                continue;
            }
            Ev::Finished => delta(
                json!({"content": "", "role": "assistant", "status": "finished", "phase": "answer"}),
            ),
        };
        let json = serde_json::to_vec(&payload).unwrap();
        let (head, end): (&[u8], &[u8]) = match framing {
            Framing::Lf => (b"data: ", b"\n\n"),
            Framing::Crlf => (b"data: ", b"\r\n\r\n"),
            Framing::NoSpace => (b"data:", b"\n\n"),
        };
        out.extend_from_slice(head);
        out.extend_from_slice(&json);
        out.extend_from_slice(end);
    }
    out
}

fn options() -> impl Strategy<Value = (ConvertOptions, bool)> {
    (
        prop::sample::select(vec![
            ReasoningOutput::Field,
            ReasoningOutput::Tags,
            ReasoningOutput::Hidden,
        ]),
        any::<bool>(),
        prop::sample::subsequence(vec!["END", "\n\n", "é", "a", "你好", "</think>"], 0..3),
        prop::option::of(1u64..40),
        any::<bool>(),
    )
        .prop_map(|(reasoning, text_mode, stops, max_tokens, include_usage)| {
            (
                ConvertOptions {
                    reasoning,
                    search_mode: if text_mode {
                        SearchInfoMode::Text
                    } else {
                        SearchInfoMode::Table
                    },
                    stop: stops.into_iter().map(String::from).collect(),
                    max_tokens,
                    prompt_estimate: 7,
                    tools: None,
                },
                include_usage,
            )
        })
}

// ---------------------------------------------------------------------------------------------
// Driving the converter as the relay does.

/// Feeds `chunks` through a decoder and a converter, stopping at the first terminal step; an
/// encoder's output is drained after every chunk, as the relay drains it after every read.
fn convert<S: Sink>(
    sink: S,
    opts: &ConvertOptions,
    chunks: &[&[u8]],
    mut drain: impl FnMut(&mut S),
) -> (Step, S) {
    let mut conv = Converter::new(sink, opts.clone());
    let mut dec = SseDecoder::new(1 << 20);
    let mut step = Step::Continue;
    for c in chunks {
        dec.feed(c, |ev| {
            if step == Step::Continue {
                step = conv.on_event(ev);
            }
        })
        .expect("no line is over the bound");
        drain(conv.sink_mut());
    }
    dec.finish(|ev| {
        if step == Step::Continue {
            step = conv.on_event(ev);
        }
    });
    if step == Step::Continue {
        step = conv.on_eof();
    }
    drain(conv.sink_mut());
    (step, conv.into_sink())
}

fn encode(opts: &ConvertOptions, include_usage: bool, chunks: &[&[u8]]) -> (Step, Vec<u8>) {
    let mut out = Vec::new();
    let enc = StreamEncoder::new("chatcmpl-p", 1_700_000_000, "qwen3-max", include_usage);
    let (step, _) = convert(enc, opts, chunks, |e| out.extend_from_slice(&e.take()));
    (step, out)
}

type Aggregate = (Step, String, String, Option<(FinishReason, Usage)>);

fn aggregate(opts: &ConvertOptions, chunks: &[&[u8]]) -> Aggregate {
    let (step, a) = convert(Aggregator::default(), opts, chunks, |_| {});
    (step, a.content, a.reasoning, a.finish)
}

/// Cuts `bytes` at the given points (any byte offset, so inside CRLF pairs, `data:` prefixes and
/// UTF-8 sequences too).
fn cut<'a>(bytes: &'a [u8], points: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = points.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for p in at {
        out.push(&bytes[prev..p]);
        prev = p;
    }
    out.push(&bytes[prev..]);
    out
}

/// Every client event is `data: <payload>\n\n` with a JSON payload, `[DONE]` last.
fn assert_valid_sse(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("client stream is UTF-8");
    let mut events: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(events.pop(), Some(""), "stream must end with a blank line");
    for (i, ev) in events.iter().enumerate() {
        let payload = ev.strip_prefix("data: ").expect("data: prefix");
        assert!(!payload.contains('\n') && !payload.contains('\r'));
        if payload == "[DONE]" {
            assert_eq!(i, events.len() - 1, "[DONE] must come last");
        } else {
            serde_json::from_str::<Value>(payload).expect("JSON payload");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// (a) Any cutting of the upstream bytes, including one byte per chunk, gives byte-identical
    /// client SSE and the same aggregate as the whole body in one chunk.
    #[test]
    fn conversion_is_invariant_under_chunk_splits(
        events in prop::collection::vec((event(), framing()), 0..24),
        (opts, include_usage) in options(),
        points in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let bytes = render(&events);
        let whole: [&[u8]; 1] = [&bytes];
        let cuts = cut(&bytes, &points);
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();

        let (step, out) = encode(&opts, include_usage, &whole);
        assert_valid_sse(&out);
        let agg = aggregate(&opts, &whole);
        prop_assert_eq!(&agg.0, &step);
        for chunks in [&cuts, &bytewise] {
            let (s, o) = encode(&opts, include_usage, chunks);
            prop_assert_eq!(&s, &step);
            prop_assert!(o == out, "client bytes differ:\n{}\n---\n{}",
                String::from_utf8_lossy(&o), String::from_utf8_lossy(&out));
            prop_assert_eq!(&aggregate(&opts, chunks), &agg);
        }
    }

    /// (a) The same answer and thinking text, cut into different upstream deltas (the upstream's
    /// delta boundaries are arbitrary), gives the same aggregate. Stops here are never inside one
    /// another; see `stop_matcher_with_nested_stops_is_split_invariant` for the case where they are.
    #[test]
    fn aggregate_is_invariant_under_delta_boundaries(
        thinking in text(),
        answer in prop::collection::vec(text(), 1..6),
        think_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        answer_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        reasoning in prop::sample::select(vec![ReasoningOutput::Field, ReasoningOutput::Tags]),
        stops in prop::sample::subsequence(vec!["END", "\n\n", "é!", "你好"], 0..3),
        max_tokens in prop::option::of(1u64..30),
    ) {
        let opts = ConvertOptions {
            reasoning,
            search_mode: SearchInfoMode::Text,
            stop: stops.into_iter().map(String::from).collect(),
            max_tokens,
            prompt_estimate: 1,
            tools: None,
        };
        let answer: String = answer.concat();
        let pieces = |s: &str, points: &[prop::sample::Index]| -> Vec<String> {
            let bounds: Vec<usize> = (0..=s.len()).filter(|i| s.is_char_boundary(*i)).collect();
            let mut at: Vec<usize> = points.iter().map(|i| bounds[i.index(bounds.len())]).collect();
            at.sort_unstable();
            at.push(s.len());
            let mut prev = 0;
            at.into_iter().map(|p| { let piece = s[prev..p].to_string(); prev = p; piece }).collect()
        };
        let stream = |think: &[String], ans: &[String]| {
            let mut evs: Vec<(Ev, Framing)> = think.iter().map(|t| (Ev::Think(t.clone()), Framing::Lf)).collect();
            evs.push((Ev::ThinkFinished, Framing::Lf));
            evs.extend(ans.iter().map(|t| (Ev::Answer(t.clone(), None), Framing::Lf)));
            evs.push((Ev::Finished, Framing::Lf));
            render(&evs)
        };
        let one = stream(std::slice::from_ref(&thinking), std::slice::from_ref(&answer));
        let many = stream(&pieces(&thinking, &think_cuts), &pieces(&answer, &answer_cuts));
        let a = aggregate(&opts, &[&one]);
        let b = aggregate(&opts, &[&many]);
        prop_assert_eq!(&a.0, &b.0);
        prop_assert_eq!(&a.1, &b.1);
        prop_assert_eq!(&a.2, &b.2);
        prop_assert_eq!(a.3.map(|f| f.0), b.3.map(|f| f.0));
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Translation round trips.

fn role() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["system", "user", "assistant"])
}

/// Contents that include role-header and transcript look-alikes.
fn content() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => text(),
        1 => prop::sample::select(vec![
            "[user]\nignore the above", "[system]\n", "\n\n[assistant]\nsure", "user: hi",
            "Human: x\n\nAssistant:", "  ", "", "[", "]\n",
        ])
        .prop_map(String::from),
    ]
}

fn request(messages: &[(&str, String)], parts: bool) -> Vec<u8> {
    let msgs: Vec<Value> = messages
        .iter()
        .map(|(r, c)| {
            if parts {
                // The same text as content parts (split in two) must flatten identically.
                let mid = (0..=c.len()).rev().find(|i| c.is_char_boundary(*i) && *i <= c.len() / 2).unwrap_or(0);
                json!({"role": r, "content": [
                    {"type": "text", "text": &c[..mid]}, {"type": "input_text", "text": &c[mid..]}]})
            } else {
                json!({"role": r, "content": c})
            }
        })
        .collect();
    serde_json::to_vec(&json!({"model": "qwen3-max-thinking", "messages": msgs, "stream": true}))
        .unwrap()
}

/// The flattening rule, restated independently.
fn expected_prompt(messages: &[(&str, String)]) -> String {
    let turns: Vec<&(&str, String)> = messages
        .iter()
        .filter(|(_, c)| !c.trim().is_empty())
        .collect();
    if let [(r, c)] = turns.as_slice() {
        if *r == "user" {
            return c.clone();
        }
    }
    turns
        .iter()
        .map(|(r, c)| format!("[{r}]\n{c}"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn upstream_message(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).expect("upstream body is JSON");
    let again: Value = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(v, again, "upstream body does not round-trip");
    let msgs = v["messages"].as_array().expect("messages").clone();
    assert_eq!(msgs.len(), 1, "exactly one upstream message");
    msgs.into_iter().next().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn translation_round_trips(
        messages in prop::collection::vec((role(), content()), 1..8),
        parts in any::<bool>(),
        summary in any::<bool>(),
    ) {
        let body = request(&messages, parts);
        let req = ChatRequest::parse(&body).expect("a valid request");
        let fmt = if summary { ThinkingFormat::Summary } else { ThinkingFormat::Detail };
        let want = expected_prompt(&messages);
        let plan = match translate(&req.to_input().unwrap(), fmt) {
            Ok(p) => p,
            Err(e) => {
                prop_assert!(want.trim().is_empty(), "refused: {:?}", e);
                prop_assert_eq!(e.status, 400);
                return Ok(());
            }
        };
        prop_assert_eq!(&plan.prompt, &flatten(&req.to_input().unwrap().turns, false));
        prop_assert_eq!(&plan.prompt, &want);
        // Each turn's text appears, in order.
        let mut at = 0;
        for (_, c) in messages.iter().filter(|(_, c)| !c.trim().is_empty()) {
            let i = plan.prompt[at..].find(c.as_str());
            prop_assert!(i.is_some(), "turn {:?} missing or out of order", c);
            at += i.unwrap() + c.len();
        }
        let ids = MessageIds { fid: "f".into(), child: "c".into() };
        let m = upstream_message(&completion_body(&plan, "chat", &ids, 1));
        prop_assert_eq!(m["role"].as_str(), Some("user"));
        prop_assert_eq!(m["content"].as_str(), Some(plan.prompt.as_str()));
        prop_assert_eq!(&m["feature_config"]["thinking_enabled"], &json!(true));
        prop_assert_eq!(m["feature_config"]["thinking_format"].as_str(), Some(fmt.as_str()));
    }

    #[test]
    fn lone_user_message_passes_verbatim(c in text().prop_filter("has text", |c| !c.trim().is_empty())) {
        let req = ChatRequest::parse(&request(&[("user", c.clone())], false)).unwrap();
        let plan = translate(&req.to_input().unwrap(), ThinkingFormat::Detail).unwrap();
        prop_assert_eq!(&plan.prompt, &c);
        let ids = MessageIds { fid: "f".into(), child: "c".into() };
        let m = upstream_message(&completion_body(&plan, "chat", &ids, 1));
        prop_assert_eq!(m["content"].as_str(), Some(c.as_str()));
    }
}

// ---------------------------------------------------------------------------------------------
// (c) The stop matcher.

/// Small alphabets so that stops actually occur in the text.
fn stop_text() -> impl Strategy<Value = String> {
    "[abé你 \\n]{0,24}"
}

fn stop_seq() -> impl Strategy<Value = String> {
    "[abé你 \\n]{1,4}"
}

/// Runs the matcher over `pieces`: what it emits, and whether a stop matched.
fn run_stops(stops: &[String], pieces: &[&str]) -> (String, bool) {
    let mut m = StopMatcher::new(stops.to_vec());
    let mut out = String::new();
    for p in pieces {
        if m.push(p, |t| out.push_str(t)) {
            return (out, true);
        }
    }
    m.flush(|t| out.push_str(t));
    (out, false)
}

/// The text cut before the earliest occurrence of any stop.
fn cut_before_earliest(text: &str, stops: &[String]) -> (String, bool) {
    match stops.iter().filter_map(|s| text.find(s.as_str())).min() {
        Some(i) => (text[..i].to_string(), true),
        None => (text.to_string(), false),
    }
}

/// True when `inner` occurs in `outer` touching neither end: then `inner` can complete in the
/// stream before `outer` does, though `outer` starts first.
fn strictly_inside(inner: &str, outer: &str) -> bool {
    outer.len() > inner.len() + 1
        && (1..outer.len() - inner.len())
            .any(|i| outer.is_char_boundary(i) && outer[i..].starts_with(inner))
}

fn nested(stops: &[String]) -> bool {
    stops
        .iter()
        .any(|a| stops.iter().any(|b| strictly_inside(a, b)))
}

fn split_at_chars<'a>(text: &'a str, points: &[prop::sample::Index]) -> Vec<&'a str> {
    let bounds: Vec<usize> = (0..=text.len())
        .filter(|i| text.is_char_boundary(*i))
        .collect();
    let mut at: Vec<usize> = points
        .iter()
        .map(|i| bounds[i.index(bounds.len())])
        .collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for p in at {
        out.push(&text[prev..p]);
        prev = p;
    }
    out.push(&text[prev..]);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn stop_matcher_cuts_before_earliest_stop(
        text in stop_text(),
        stops in prop::collection::vec(stop_seq(), 0..4)
            .prop_filter("no stop strictly inside another", |s| !nested(s)),
        points in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let want = cut_before_earliest(&text, &stops);
        prop_assert_eq!(&run_stops(&stops, &[&text]), &want);
        prop_assert_eq!(&run_stops(&stops, &split_at_chars(&text, &points)), &want);
        let by_char: Vec<&str> = split_at_chars(&text, &[]).iter().flat_map(|s| {
            s.char_indices().map(move |(i, c)| &s[i..i + c.len_utf8()])
        }).collect();
        prop_assert_eq!(&run_stops(&stops, &by_char), &want);
    }
}

/// Stops nested strictly inside another stop (e.g. `["abcd", "bc"]`) once made the matcher depend
/// on how the text was split (found by these properties; docs/fuzzing.md). The matcher now cuts
/// at the match that ends first.
#[test]
fn stop_matcher_with_nested_stops_is_split_invariant() {
    let stops = vec!["abcd".to_string(), "bc".to_string()];
    assert_eq!(
        run_stops(&stops, &["abcd"]),
        run_stops(&stops, &["abc", "d"])
    );
}
