//! Converter tests over hand-written upstream streams shaped like the protocol captures.

use proptest::prelude::*;

use super::classify::FailureClass;
use super::stream::{ConvertOptions, Converter, FinishReason, Step};
use crate::config::{ReasoningOutput, SearchInfoMode};
use crate::openai::chunks::StreamEncoder;
use crate::openai::completion::Aggregator;
use crate::sse::SseDecoder;

fn opts() -> ConvertOptions {
    ConvertOptions {
        reasoning: ReasoningOutput::Field,
        search_mode: SearchInfoMode::Text,
        stop: vec![],
        max_tokens: None,
        prompt_estimate: 3,
        tools: None,
    }
}

fn answer(text: &str, out_tokens: u32) -> String {
    format!(
        r#"data: {{"choices":[{{"delta":{{"role":"assistant","content":{},"phase":"answer","status":"typing"}}}}],"usage":{{"input_tokens":100,"output_tokens":{out_tokens}}}}}"#,
        serde_json::to_string(text).unwrap()
    ) + "\n\n"
}

const CREATED: &str = "data: {\"response.created\":{\"chat_id\":\"c\",\"response_id\":\"r\"}}\n\n";
const FINISHED: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"\",\"role\":\"assistant\",\"status\":\"finished\",\"phase\":\"answer\"}}],\"response_id\":\"r\"}\n\n";

fn plain() -> String {
    [
        CREATED.to_string(),
        answer("Hel", 1),
        answer("lo wörld", 2),
        answer("", 2),
        FINISHED.to_string(),
    ]
    .concat()
}

fn summary_stream() -> String {
    let ev = |thoughts: &[&str]| {
        format!(
            r#"data: {{"choices":[{{"delta":{{"role":"assistant","content":"","phase":"thinking_summary","extra":{{"summary_title":{{"content":["T"]}},"summary_thought":{{"content":{}}}}},"status":"typing"}}}}],"usage":{{"input_tokens":9,"output_tokens":5,"output_tokens_details":{{"reasoning_tokens":4}}}}}}"#,
            serde_json::to_string(thoughts).unwrap()
        ) + "\n\n"
    };
    [
        CREATED.to_string(),
        ev(&["First"]),
        ev(&["First thought."]),
        ev(&["First thought.", "Second"]),
        ev(&["First thought.", "Second"]),
        ev(&["First thought.", "Second one."]),
        "data: {\"choices\":[{\"delta\":{\"content\":\"\",\"phase\":\"thinking_summary\",\"status\":\"finished\"}}]}\n\n".into(),
        answer("Answer.", 6),
        FINISHED.to_string(),
    ]
    .concat()
}

/// Runs a whole upstream byte stream, split at the given points, through the converter.
fn run_split<S: super::stream::Sink>(
    conv: &mut Converter<S>,
    bytes: &[u8],
    cuts: &[usize],
) -> Step {
    let mut dec = SseDecoder::new(1 << 20);
    let mut step = Step::Continue;
    let mut prev = 0;
    let mut points: Vec<usize> = cuts.iter().copied().filter(|c| *c <= bytes.len()).collect();
    points.sort_unstable();
    points.push(bytes.len());
    for p in points {
        dec.feed(&bytes[prev..p], |ev| {
            if step == Step::Continue {
                step = conv.on_event(ev);
            }
        })
        .unwrap();
        prev = p;
    }
    dec.finish(|ev| {
        if step == Step::Continue {
            step = conv.on_event(ev);
        }
    });
    if step == Step::Continue {
        step = conv.on_eof();
    }
    step
}

fn aggregate(stream: &str, o: ConvertOptions) -> (Step, Aggregator) {
    let mut c = Converter::new(Aggregator::default(), o);
    let step = run_split(&mut c, stream.as_bytes(), &[]);
    (step, c.into_sink())
}

fn stream_bytes(stream: &[u8], cuts: &[usize], include_usage: bool) -> (Step, Vec<u8>) {
    let enc = StreamEncoder::new("chatcmpl-x", 7, "m", include_usage);
    let mut c = Converter::new(enc, opts());
    let mut out = Vec::new();
    let step = run_split(&mut c, stream, cuts);
    out.extend_from_slice(&c.sink_mut().take());
    (step, out)
}

#[test]
fn plain_answer_aggregates_with_upstream_usage() {
    let (step, agg) = aggregate(&plain(), opts());
    assert_eq!(step, Step::Done);
    assert_eq!(agg.content, "Hello wörld");
    let (reason, usage) = agg.finish.unwrap();
    assert_eq!(reason, FinishReason::Stop);
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.estimated
        ),
        (100, 2, false)
    );
}

#[test]
fn summary_thinking_is_diffed_not_duplicated() {
    let (step, agg) = aggregate(&summary_stream(), opts());
    assert_eq!(step, Step::Done);
    assert_eq!(agg.reasoning, "First thought.\n\nSecond one.");
    assert_eq!(agg.content, "Answer.");
    assert_eq!(agg.finish.unwrap().1.reasoning_tokens, 4);
}

#[test]
fn detail_thinking_and_tags_and_hidden() {
    let think = |t: &str| {
        format!(
            r#"data: {{"choices":[{{"delta":{{"content":"{t}","phase":"think","status":"typing"}}}}]}}"#
        ) + "\n\n"
    };
    let s = [
        CREATED.to_string(),
        think("Let me "),
        think("see."),
        answer("42", 1),
        FINISHED.to_string(),
    ]
    .concat();
    let (_, agg) = aggregate(&s, opts());
    assert_eq!(
        (agg.reasoning.as_str(), agg.content.as_str()),
        ("Let me see.", "42")
    );
    let (_, agg) = aggregate(
        &s,
        ConvertOptions {
            reasoning: ReasoningOutput::Tags,
            ..opts()
        },
    );
    assert_eq!(agg.content, "<think>\nLet me see.\n</think>\n\n42");
    let (_, agg) = aggregate(
        &s,
        ConvertOptions {
            reasoning: ReasoningOutput::Hidden,
            ..opts()
        },
    );
    assert_eq!((agg.reasoning.as_str(), agg.content.as_str()), ("", "42"));
}

#[test]
fn search_sources_are_rendered() {
    let search = "data: {\"choices\":[{\"delta\":{\"content\":\"\",\"name\":\"web_search\",\"phase\":\"web_search\",\"extra\":{\"web_search_info\":[{\"url\":\"https://a.example/1\",\"title\":\"A\",\"hostname\":\"a.example\"}]}}}]}\n\n";
    let s = [
        CREATED.to_string(),
        search.to_string(),
        answer("See [[1]].", 1),
        FINISHED.to_string(),
    ]
    .concat();
    let (_, agg) = aggregate(&s, opts());
    assert_eq!(
        agg.content,
        "See [[1]].\n\n---\n[1] [A](https://a.example/1) | a.example\n"
    );
}

#[test]
fn stop_sequence_cuts_across_deltas() {
    let s = [
        CREATED.to_string(),
        answer("one two TH", 1),
        answer("REE four", 2),
        FINISHED.to_string(),
    ]
    .concat();
    let (step, agg) = aggregate(
        &s,
        ConvertOptions {
            stop: vec!["THREE".into()],
            ..opts()
        },
    );
    assert_eq!(step, Step::Done);
    assert_eq!(agg.content, "one two ");
    assert_eq!(agg.finish.unwrap().0, FinishReason::Stop);
}

#[test]
fn max_tokens_truncates_with_length() {
    let s = [
        CREATED.to_string(),
        answer("abcdefgh", 1),
        answer("ijklmnop", 2),
        FINISHED.to_string(),
    ]
    .concat();
    let (step, agg) = aggregate(
        &s,
        ConvertOptions {
            max_tokens: Some(3),
            ..opts()
        },
    );
    assert_eq!(step, Step::Done);
    assert_eq!(agg.content, "abcdefghijkl");
    assert_eq!(agg.finish.unwrap().0, FinishReason::Length);
}

#[test]
fn failures_are_classified() {
    let cases: Vec<(String, FailureClass)> = vec![
        ([CREATED, FINISHED].concat(), FailureClass::Empty),
        (CREATED.to_string(), FailureClass::Transient),
        ([CREATED, "data: {\"success\":false,\"data\":{\"code\":\"RateLimited\",\"num\":2,\"details\":\"upper limit\"}}\n\n"].concat(), FailureClass::RateLimit),
        ([CREATED.to_string(), answer("x", 1), "data: {\"error\":{\"code\":\"internal_error\",\"message\":\"Allocated quota exceeded\"}}\n\n".into()].concat(), FailureClass::RateLimit),
        ([CREATED, "data: {\"error\":{\"code\":\"data_inspection_failed\",\"details\":\"x\"}}\n\n"].concat(), FailureClass::Moderation),
        ([CREATED.to_string(), answer("partial", 1)].concat(), FailureClass::Transient),
    ];
    for (s, class) in cases {
        match aggregate(&s, opts()).0 {
            Step::Failed(f) => assert_eq!(f.class, class, "{s}"),
            other => panic!("expected a failure for {s}, got {other:?}"),
        }
    }
}

#[test]
fn output_moderation_after_content_is_a_content_filter_stop() {
    let s = [
        CREATED.to_string(),
        answer("Some text", 1),
        "data: {\"error\":{\"code\":\"data_inspection_failed\",\"details\":\"out\"}}\n\n".into(),
    ]
    .concat();
    let (step, agg) = aggregate(&s, opts());
    assert_eq!(step, Step::Done);
    assert_eq!(agg.finish.unwrap().0, FinishReason::ContentFilter);
}

#[test]
fn malformed_lines_and_done_marker_are_tolerated() {
    let s = [
        CREATED.to_string(),
        "data: {\"choices\":[{\"de\n\ndata:\n\n".into(),
        answer("ok", 1),
        "data: [DONE]\n\n".into(),
    ]
    .concat();
    let mut c = Converter::new(Aggregator::default(), opts());
    let step = run_split(&mut c, s.as_bytes(), &[]);
    assert_eq!(c.malformed(), 2);
    // [DONE] without `finished` after content: the answer may be cut; report it.
    assert!(matches!(step, Step::Failed(_)));
    assert_eq!(c.sink().content, "ok");
}

#[test]
fn stream_chunks_follow_the_openai_spec() {
    let (step, out) = stream_bytes(plain().as_bytes(), &[], true);
    assert_eq!(step, Step::Done);
    let text = String::from_utf8(out).unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    for c in &chunks {
        assert_eq!(c["id"], "chatcmpl-x");
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "m");
        assert_eq!(c["created"], 7);
    }
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], serde_json::json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 102);
    let fin = &chunks[chunks.len() - 2];
    assert_eq!(fin["choices"][0]["finish_reason"], "stop");
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["usage"].is_null() && c.get("usage").is_some()));
    let (_, without) = stream_bytes(plain().as_bytes(), &[], false);
    let without = String::from_utf8(without).unwrap();
    assert!(!without.contains("usage"));
}

proptest! {
    #[test]
    fn any_split_gives_identical_output(cuts in proptest::collection::vec(0usize..2000, 0..12)) {
        for stream in [plain(), summary_stream()] {
            let whole = stream_bytes(stream.as_bytes(), &[], true);
            let split = stream_bytes(stream.as_bytes(), &cuts, true);
            prop_assert_eq!(whole, split);
        }
    }
}

fn image_tool(url: &str) -> String {
    format!(
        r#"data: {{"choices":[{{"delta":{{"role":"assistant","content":"","phase":"image_gen_tool","extra":{{"image_list":[{{"image":{},"width":1024}}]}},"status":"typing"}}}}]}}"#,
        serde_json::to_string(url).unwrap()
    ) + "\n\n"
}

#[test]
fn image_tool_pictures_become_markdown_in_the_answer() {
    // Pictures only: the answer is the pictures.
    let stream = [
        CREATED.to_string(),
        image_tool("https://cdn/a.png"),
        FINISHED.into(),
    ]
    .concat();
    let (step, agg) = aggregate(&stream, opts());
    assert_eq!(step, Step::Done);
    assert_eq!(agg.content, "![image](https://cdn/a.png)");

    // One arriving in the middle of the answer, repeated: shown there, once.
    let stream = [
        CREATED.to_string(),
        answer("Here:", 1),
        image_tool("https://cdn/a.png"),
        image_tool("https://cdn/a.png"),
        answer(" done", 2),
        FINISHED.into(),
    ]
    .concat();
    let (_, agg) = aggregate(&stream, opts());
    assert_eq!(agg.content, "Here:\n\n![image](https://cdn/a.png) done");

    // A list without a usable URL changes nothing.
    let stream = [
        CREATED.to_string(),
        image_tool("data:x"),
        answer("Hi", 1),
        FINISHED.into(),
    ]
    .concat();
    let (_, agg) = aggregate(&stream, opts());
    assert_eq!(agg.content, "Hi");
}
