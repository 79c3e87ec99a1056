//! Micro benchmarks of the pure hot paths: upstream SSE -> OpenAI chunks, and request
//! translation. Throughput is reported in bytes of upstream SSE.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use qwen_gateway::config::{ReasoningOutput, SearchInfoMode, ThinkingFormat};
use qwen_gateway::convert::input::ToolChoice;
use qwen_gateway::convert::request::{translate, ToolPlan};
use qwen_gateway::convert::stream::{ConvertOptions, Converter};
use qwen_gateway::convert::toolcall::ToolCallParser;
use qwen_gateway::openai::chunks::StreamEncoder;
use qwen_gateway::openai::request::ChatRequest;
use qwen_gateway::sse::SseDecoder;
use serde_json::json;

fn delta(phase: &str, text: &str, n: usize) -> String {
    format!(
        "data: {}\n\n",
        json!({"choices":[{"delta":{"role":"assistant","content":text,"phase":phase,"status":"typing"}}],
               "response_id":"bceb0e1a","usage":{"input_tokens":1049,"output_tokens":n,"characters":0,"total_tokens":1049+n,
               "input_tokens_details":{"text_tokens":1049},"output_tokens_details":{"text_tokens":n},"prompt_tokens_details":{"cached_tokens":0}},
               "timestamp":1780468951})
    )
}

fn stream(kind: &str) -> Vec<u8> {
    let mut s = String::from("data: {\"response.created\":{\"chat_id\":\"c\",\"parent_id\":\"p\",\"response_id\":\"r\",\"response_index\":\"0\"}}\n\n");
    if kind == "search" {
        s.push_str(&format!("data: {}\n\n", json!({"choices":[{"delta":{"content":"","name":"web_search","phase":"web_search",
            "extra":{"web_search_info":[{"url":"https://a.example/1","title":"A","hostname":"a.example","snippet":"s"},
                                        {"url":"https://b.example/2","title":"B"}]}}}]})));
    }
    if kind == "think" {
        for i in 0..100 {
            s.push_str(&delta("think", "reasoning about the question ", i));
        }
    }
    if kind == "summary" {
        let mut thoughts: Vec<String> = Vec::new();
        for i in 0..50 {
            if i % 10 == 0 {
                thoughts.push(String::new());
            }
            thoughts.last_mut().unwrap().push_str("more thinking text ");
            s.push_str(&format!("data: {}\n\n", json!({"choices":[{"delta":{"content":"","phase":"thinking_summary",
                "extra":{"summary_title":{"content":["Title"]},"summary_thought":{"content":thoughts}},"status":"typing"}}]})));
        }
    }
    for i in 0..300 {
        s.push_str(&delta("answer", "Hello, wörld! ", i));
    }
    s.push_str("data: {\"choices\":[{\"delta\":{\"content\":\"\",\"role\":\"assistant\",\"status\":\"finished\",\"phase\":\"answer\"}}],\"response_id\":\"r\"}\n\n");
    s.into_bytes()
}

/// An agent's answer: a sentence, then two `<tool_call>` blocks, streamed as upstream deltas.
const TOOL_ANSWER: &str = "Let me look that up for you.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": \"weather in Paris tomorrow\", \"limit\": 5}}\n</tool_call>";

/// Deltas of about the size the upstream sends (a few characters each).
fn tool_deltas() -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut rest = TOOL_ANSWER;
    while !rest.is_empty() {
        let mut n = rest.len().min(6);
        while !rest.is_char_boundary(n) {
            n += 1;
        }
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

fn tool_stream() -> Vec<u8> {
    let mut s = String::from("data: {\"response.created\":{\"chat_id\":\"c\",\"parent_id\":\"p\",\"response_id\":\"r\",\"response_index\":\"0\"}}\n\n");
    for (i, d) in tool_deltas().iter().enumerate() {
        s.push_str(&delta("answer", d, i));
    }
    s.push_str("data: {\"choices\":[{\"delta\":{\"content\":\"\",\"role\":\"assistant\",\"status\":\"finished\",\"phase\":\"answer\"}}],\"response_id\":\"r\"}\n\n");
    s.into_bytes()
}

fn convert_all(bytes: &[u8]) -> usize {
    convert_with(bytes, None)
}

fn convert_with(bytes: &[u8], tools: Option<ToolPlan>) -> usize {
    let enc = StreamEncoder::new("chatcmpl-bench", 1, "qwen3-max", true);
    let mut conv = Converter::new(
        enc,
        ConvertOptions {
            reasoning: ReasoningOutput::Field,
            search_mode: SearchInfoMode::Table,
            stop: vec![],
            max_tokens: None,
            prompt_estimate: 10,
            tools,
        },
    );
    let mut dec = SseDecoder::new(1 << 22);
    let mut out = 0;
    // Upstream reads arrive in pieces; 4 KiB is a typical socket read.
    for piece in bytes.chunks(4096) {
        dec.feed(piece, |ev| {
            conv.on_event(ev);
        })
        .unwrap();
        out += conv.sink_mut().take().len();
    }
    out
}

fn bench_convert(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_conversion");
    for kind in ["plain", "think", "summary", "search"] {
        let s = stream(kind);
        g.throughput(Throughput::Bytes(s.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(kind), &s, |b, s| {
            b.iter(|| convert_all(black_box(s)))
        });
    }
    g.finish();
}

fn bench_tool_calls(c: &mut Criterion) {
    let mut g = c.benchmark_group("tool_call_parsing");
    let deltas = tool_deltas();
    g.throughput(Throughput::Bytes(TOOL_ANSWER.len() as u64));
    g.bench_function("parser, answer text", |b| {
        b.iter(|| {
            let mut p = ToolCallParser::new(vec!["get_weather".into(), "search".into()]);
            let mut out = Vec::new();
            for d in black_box(&deltas) {
                p.push(d, &mut out);
            }
            p.finish(&mut out);
            out.len()
        })
    });
    let s = tool_stream();
    let plan = ToolPlan {
        names: vec!["get_weather".into(), "search".into()],
        choice: ToolChoice::Auto,
        parallel: true,
    };
    g.throughput(Throughput::Bytes(s.len() as u64));
    g.bench_function("stream conversion with tools, upstream SSE", |b| {
        b.iter(|| convert_with(black_box(&s), Some(plan.clone())))
    });
    g.finish();
}

fn bench_translate(c: &mut Criterion) {
    let mut g = c.benchmark_group("request_translation");
    for n in [1usize, 20, 200] {
        let msgs: Vec<_> = (0..n)
            .map(|i| json!({"role": if i % 2 == 0 {"user"} else {"assistant"}, "content": format!("message number {i} with some ordinary text in it")}))
            .collect();
        let body = serde_json::to_vec(&json!({"model":"qwen3-max","stream":true,"messages":msgs}))
            .unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(n), &body, |b, body| {
            b.iter(|| {
                let req = ChatRequest::parse(black_box(body)).unwrap();
                let plan = translate(&req.to_input().unwrap(), ThinkingFormat::Detail).unwrap();
                qwen_gateway::qwen::body::completion_body(
                    &plan,
                    "chat",
                    &qwen_gateway::qwen::body::MessageIds {
                        fid: "f".into(),
                        child: "c".into(),
                    },
                    1,
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_convert, bench_tool_calls, bench_translate);
criterion_main!(benches);
