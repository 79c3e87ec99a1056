//! Upstream bytes through the SSE decoder and the stream converter, into both sinks.
//!
//! Input: an 8-byte header, then the upstream body. Header byte 0 picks the options (bits 0-1
//! reasoning output, bit 2 search rendering, bit 3 include_usage, bit 4 max_tokens, bit 5 stop
//! sequences, bit 6 "structured": the body is read as an `arbitrary` list of upstream events
//! instead of raw SSE, bit 7 feed byte by byte instead of in seeded chunks); byte 1 is max_tokens
//! - 1; byte 2 a mask over `STOPS`; byte 3 the line bound; bytes 4-7 the chunking seed.
//!
//! Checks: no panic; the stream encoder writes strict SSE whose every payload but `[DONE]` is a
//! JSON object, `[DONE]` comes last and only after a finish; once the converter returns Done or
//! Failed nothing more is emitted, however many events follow; the chunked feed gives the same
//! bytes and the same aggregate as the whole-body feed; the streamed deltas add up to the
//! aggregate; the error event the relay writes on a failure is valid too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qwen_gateway::config::{ReasoningOutput, SearchInfoMode};
use qwen_gateway::convert::stream::{ConvertOptions, Converter, FinishReason, Sink, Step};
use qwen_gateway::openai::chunks::StreamEncoder;
use qwen_gateway::openai::completion::Aggregator;
use qwen_gateway::sse::SseDecoder;
use qwen_gateway_fuzz::{bytewise, chunks, header, parse_client_sse, structured_stream};

const STOPS: [&str; 8] = [
    "END", "\n\n", "é", "</think>", "a", "你好", "STOP!", "[[1]]",
];
const BOUNDS: [usize; 8] = [1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 4096, 300, 64];

/// Something the test can snapshot to prove that nothing was emitted after the end.
trait Observed: Sink {
    fn emitted(&self) -> usize;
}

impl Observed for StreamEncoder {
    fn emitted(&self) -> usize {
        self.pending()
    }
}

impl Observed for Aggregator {
    fn emitted(&self) -> usize {
        self.content.len() + self.reasoning.len() + usize::from(self.finish.is_some())
    }
}

/// Feeds the chunks as the relay does (stop at the first terminal step, then EOF), and keeps
/// feeding the remaining events afterwards to prove the converter stays silent.
fn run<S: Observed>(sink: S, opts: &ConvertOptions, parts: &[&[u8]], max_line: usize) -> (Step, S) {
    let mut conv = Converter::new(sink, opts.clone());
    let mut dec = SseDecoder::new(max_line);
    let mut step = Step::Continue;
    let mut frozen: Option<usize> = None;
    let on = |conv: &mut Converter<S>, ev: &[u8], step: &mut Step, frozen: &mut Option<usize>| {
        let s = conv.on_event(ev);
        match frozen {
            None => {
                if s != Step::Continue {
                    *step = s;
                    *frozen = Some(conv.sink().emitted());
                }
            }
            Some(n) => {
                assert_eq!(
                    s,
                    Step::Done,
                    "a finished converter must keep answering Done"
                );
                assert_eq!(conv.sink().emitted(), *n, "output after the end");
            }
        }
    };
    let mut broken = false;
    for p in parts {
        if dec
            .feed(p, |ev| on(&mut conv, ev, &mut step, &mut frozen))
            .is_err()
        {
            broken = true;
            break;
        }
    }
    if !broken {
        dec.finish(|ev| on(&mut conv, ev, &mut step, &mut frozen));
    }
    if frozen.is_none() {
        // A broken line bound is a failed stream for the relay; a clean end is EOF.
        step = conv.on_eof();
        assert!(
            matches!(step, Step::Failed(_) | Step::Done),
            "EOF must end the stream"
        );
        frozen = Some(conv.sink().emitted());
    }
    let n = frozen.unwrap();
    assert_eq!(conv.on_eof(), Step::Done);
    assert_eq!(
        conv.on_event(br#"{"choices":[{"delta":{"content":"late","phase":"answer"}}]}"#),
        Step::Done
    );
    assert_eq!(conv.sink().emitted(), n, "output after the end");
    (step, conv.into_sink())
}

fn stream(opts: &ConvertOptions, parts: &[&[u8]], max_line: usize, usage: bool) -> (Step, Vec<u8>) {
    let enc = StreamEncoder::new("chatcmpl-fuzz", 1, "qwen3-max", usage);
    let (step, mut enc) = run(enc, opts, parts, max_line);
    let mut out = enc.take().to_vec();
    if let Step::Failed(f) = &step {
        if !out.is_empty() {
            // What the relay does when a committed stream fails.
            enc.error(&f.to_api_error());
            out.extend_from_slice(&enc.take());
        }
    }
    (step, out)
}

fuzz_target!(|input: &[u8]| {
    let (h, body) = header::<8>(input);
    let opts = ConvertOptions {
        reasoning: match h[0] & 3 {
            1 => ReasoningOutput::Tags,
            2 => ReasoningOutput::Hidden,
            _ => ReasoningOutput::Field,
        },
        search_mode: if h[0] & 4 == 0 {
            SearchInfoMode::Table
        } else {
            SearchInfoMode::Text
        },
        stop: if h[0] & 32 == 0 {
            vec![]
        } else {
            STOPS
                .iter()
                .enumerate()
                .filter(|(i, _)| h[2] & (1 << i) != 0)
                .map(|(_, s)| s.to_string())
                .collect()
        },
        max_tokens: (h[0] & 16 != 0).then_some(u64::from(h[1]) + 1),
        prompt_estimate: 3,
        tools: None,
    };
    let include_usage = h[0] & 8 != 0;
    let max_line = BOUNDS[usize::from(h[3]) % BOUNDS.len()];
    let seed = u64::from(u32::from_le_bytes(h[4..8].try_into().unwrap()));
    let owned;
    let data: &[u8] = if h[0] & 64 != 0 {
        owned = structured_stream(body);
        &owned
    } else {
        body
    };
    if !qwen_gateway_fuzz::strict() && qwen_gateway_fuzz::has_huge_number(data) {
        return; // finding 1 in docs/fuzzing.md
    }
    let parts = if h[0] & 128 != 0 {
        bytewise(data)
    } else {
        chunks(data, seed)
    };

    let (step, agg) = run(Aggregator::default(), &opts, &[data], max_line);
    let (step2, agg2) = run(Aggregator::default(), &opts, &parts, max_line);
    assert_eq!(step, step2, "the chunking changed the outcome");
    assert_eq!(
        (&agg.content, &agg.reasoning, agg.finish),
        (&agg2.content, &agg2.reasoning, agg2.finish),
        "the chunking changed the aggregate"
    );
    let (step3, out) = stream(&opts, &[data], max_line, include_usage);
    let (step4, out2) = stream(&opts, &parts, max_line, include_usage);
    assert_eq!(step3, step);
    assert_eq!(step4, step);
    assert!(out == out2, "the chunking changed the client stream");

    let cs = parse_client_sse(&out);
    // The stream and the aggregate tell the same story.
    let (mut content, mut reasoning) = (String::new(), String::new());
    let mut finish: Option<String> = None;
    let mut usage_chunk = None;
    let mut error = false;
    for (i, c) in cs.chunks.iter().enumerate() {
        if c.get("error").is_some() {
            assert!(
                c["error"]["message"].is_string(),
                "error event without a message: {c}"
            );
            error = true;
            continue;
        }
        assert!(!error, "a chunk after the error event");
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        assert_eq!(c["id"], "chatcmpl-fuzz");
        let choices = c["choices"].as_array().expect("choices is a list");
        if choices.is_empty() {
            assert!(
                include_usage && finish.is_some(),
                "a usage chunk out of place: {c}"
            );
            usage_chunk = Some(c["usage"].clone());
            continue;
        }
        assert!(finish.is_none(), "a chunk after the finish chunk: {c}");
        let d = &choices[0]["delta"];
        if i == 0 {
            assert_eq!(
                d["role"], "assistant",
                "the first chunk must carry the role: {c}"
            );
        }
        if let Some(t) = d.get("content").and_then(|v| v.as_str()) {
            content.push_str(t);
        }
        if let Some(t) = d.get("reasoning_content").and_then(|v| v.as_str()) {
            reasoning.push_str(t);
        }
        if let Some(r) = choices[0]["finish_reason"].as_str() {
            finish = Some(r.to_string());
        }
    }
    assert_eq!(content, agg.content);
    assert_eq!(reasoning, agg.reasoning);
    match (&step, agg.finish) {
        (Step::Done, Some((reason, usage))) => {
            assert!(cs.done, "a finished stream must end with [DONE]");
            assert_eq!(finish.as_deref(), Some(reason.as_str()));
            if include_usage {
                let u = usage_chunk.expect("include_usage asks for a usage chunk");
                assert_eq!(u["prompt_tokens"], usage.prompt_tokens);
                assert_eq!(u["completion_tokens"], usage.completion_tokens);
                assert_eq!(u["total_tokens"], usage.total());
            }
            if reason == FinishReason::Stop && opts.stop.is_empty() {
                // Only a stop sequence at the very start may leave a finished answer empty.
                assert!(
                    !agg.content.is_empty(),
                    "a Stop finish without any answer text"
                );
            }
        }
        (Step::Failed(_), None) => {
            assert!(finish.is_none());
            assert_eq!(
                cs.done, error,
                "[DONE] without a finish must follow an error event"
            );
        }
        other => panic!("step and sink disagree: {other:?}"),
    }
    // The aggregate's completion object is valid JSON as well.
    let v: serde_json::Value =
        serde_json::from_slice(&agg.to_json("chatcmpl-fuzz", 1, "m")).expect("completion JSON");
    assert_eq!(v["choices"][0]["message"]["content"], agg.content.as_str());
});
