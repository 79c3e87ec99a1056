//! The stream converter: a state machine from upstream event payloads to client-neutral output
//! (reasoning text, answer text, finish), pushed into a [`Sink`] that encodes it for one client
//! API. Pure: no I/O and no clock, so the same code drives streaming, aggregation, tests,
//! property tests and benchmarks.

use crate::config::{ReasoningOutput, SearchInfoMode};
use crate::qwen::events::{self, RawDelta, RawUsage};

use super::classify::{classify_json_error, from_error, Failure, FailureClass};
use super::images::ToolImages;
use super::request::ToolPlan;
use super::search;
use super::stop::StopMatcher;
use super::tokens::{estimate, TokenCounter};
use super::toolcall::{ParsedCall, Piece, ToolCallParser};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ContentFilter,
    ToolCalls,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::ToolCalls => "tool_calls",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub reasoning_tokens: u64,
    /// True when the upstream reported nothing and the numbers are local estimates.
    pub estimated: bool,
}

impl Usage {
    pub fn total(&self) -> u64 {
        // The counts come from the upstream; absurd values must not overflow.
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// Receives converted output for one client API.
pub trait Sink {
    fn reasoning(&mut self, text: &str);
    fn content(&mut self, text: &str);
    /// A complete tool call; `index` counts calls from 0 within the answer.
    fn tool_call(&mut self, index: usize, id: &str, name: &str, arguments: &str);
    fn finish(&mut self, reason: FinishReason, usage: &Usage);
}

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub reasoning: ReasoningOutput,
    pub search_mode: SearchInfoMode,
    pub stop: Vec<String>,
    pub max_tokens: Option<u64>,
    /// Local estimate of the prompt, used only when the upstream reports no usage.
    pub prompt_estimate: u64,
    pub tools: Option<ToolPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// The answer is complete (finished, stop sequence or token limit); read no further.
    Done,
    /// The upstream failed; nothing more will be emitted.
    Failed(Failure),
}

pub struct Converter<S: Sink> {
    sink: S,
    reasoning_mode: ReasoningOutput,
    search_mode: SearchInfoMode,
    max_tokens: Option<u64>,
    prompt_estimate: u64,
    stop: StopMatcher,
    content_tokens: TokenCounter,
    reasoning_tokens: TokenCounter,
    /// The latest raw usage object (cumulative upstream, so the last one counts).
    usage: Vec<u8>,
    /// Later events may omit the details, so the largest reported count is kept.
    reasoning_reported: Option<u64>,
    /// Cumulative-summary diffing: elements fully or partly sent, and bytes sent of the last.
    summary_elems: usize,
    summary_last_len: usize,
    think_tag_open: bool,
    search_pending: Option<String>,
    images: ToolImages,
    visible: bool,
    content_seen: bool,
    done: bool,
    malformed: u32,
    tool_parser: Option<ToolCallParser>,
    parallel_calls: bool,
    calls: usize,
}

impl<S: Sink> Converter<S> {
    pub fn new(sink: S, opts: ConvertOptions) -> Self {
        Converter {
            sink,
            reasoning_mode: opts.reasoning,
            search_mode: opts.search_mode,
            max_tokens: opts.max_tokens,
            prompt_estimate: opts.prompt_estimate,
            stop: StopMatcher::new(opts.stop),
            content_tokens: TokenCounter::default(),
            reasoning_tokens: TokenCounter::default(),
            usage: Vec::new(),
            reasoning_reported: None,
            summary_elems: 0,
            summary_last_len: 0,
            think_tag_open: false,
            search_pending: None,
            images: ToolImages::default(),
            visible: false,
            content_seen: false,
            done: false,
            malformed: 0,
            parallel_calls: opts.tools.as_ref().is_none_or(|t| t.parallel),
            tool_parser: opts.tools.map(|t| ToolCallParser::new(t.names)),
            calls: 0,
        }
    }

    /// Tool calls emitted so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    pub fn into_sink(self) -> S {
        self.sink
    }

    /// Whether anything visible has been emitted (the point after which a stream is committed).
    pub fn has_output(&self) -> bool {
        self.visible
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The usage reported with the finished answer (`None` until it finished).
    pub fn final_usage(&self) -> Option<Usage> {
        self.done.then(|| self.usage())
    }

    /// Data lines that were not valid JSON and were skipped.
    pub fn malformed(&self) -> u32 {
        self.malformed
    }

    /// Feeds the data of one SSE event.
    pub fn on_event(&mut self, data: &[u8]) -> Step {
        if self.done {
            return Step::Done;
        }
        if data.trim_ascii() == b"[DONE]" {
            return self.on_eof();
        }
        let Ok(ev) = events::parse(data) else {
            self.malformed += 1;
            return Step::Continue;
        };
        if let Some(raw) = ev.usage {
            let raw = raw.get().as_bytes();
            if let Some(r) = events::reasoning_tokens(raw) {
                self.reasoning_reported = Some(self.reasoning_reported.unwrap_or(0).max(r));
            }
            // Parsed only when the usage is read, at the end.
            self.usage.clear();
            self.usage.extend_from_slice(raw);
        }
        if let Some(err) = &ev.error {
            return self.on_error(from_error(err));
        }
        if ev.success == Some(false) || ev.data.as_ref().is_some_and(|d| d.error.is_some()) {
            if let Some(f) = classify_json_error(data) {
                return self.on_error(f);
            }
        }
        let Some(delta) = ev.choices.and_then(|c| c.delta) else {
            return Step::Continue;
        };
        self.on_delta(delta)
    }

    /// The upstream body ended (or sent `[DONE]`).
    pub fn on_eof(&mut self) -> Step {
        if self.done {
            return Step::Done;
        }
        let detail = if self.content_seen {
            "the stream ended in the middle of the answer"
        } else if self.reasoning_tokens.tokens() > 0 {
            "the stream ended after thinking, before any answer"
        } else {
            "the stream ended before any answer"
        };
        self.fail(Failure::new(FailureClass::Transient, detail))
    }

    fn on_error(&mut self, f: Failure) -> Step {
        // Output moderation after some answer is a content filter stop, as OpenAI reports it.
        if f.class == FailureClass::Moderation && self.content_seen {
            return self.complete(FinishReason::ContentFilter);
        }
        self.fail(f)
    }

    fn fail(&mut self, f: Failure) -> Step {
        self.done = true;
        Step::Failed(f)
    }

    fn on_delta(&mut self, d: RawDelta<'_>) -> Step {
        if let Some(list) = d.extra.as_ref().and_then(|e| e.image_list.as_ref()) {
            for item in list {
                if let Some(url) = item.image.as_deref().or(item.url.as_deref()) {
                    self.images.offer(url);
                }
            }
            // Before the answer begins they wait for it (`content`, `complete`).
            if self.content_seen && self.images.has_held() {
                let step = self.show_images(false);
                if step != Step::Continue {
                    return step;
                }
            }
        }
        let phase = d.phase.as_deref();
        let is_search = d.name.as_deref() == Some("web_search") || phase == Some("web_search");
        if is_search {
            if let Some(items) = d.extra.and_then(|e| e.web_search_info) {
                if !items.is_empty() {
                    self.search_pending = Some(search::render(&items, self.search_mode));
                }
            }
            return Step::Continue;
        }
        let text = d.content.as_deref().unwrap_or("");
        let step = match phase {
            Some("think") => {
                self.reasoning(text);
                Step::Continue
            }
            Some("thinking_summary") => {
                if let Some(list) = d.extra.and_then(|e| e.summary_thought) {
                    self.summary(&list.content);
                }
                Step::Continue
            }
            None | Some("answer") => self.content(text),
            _ => Step::Continue,
        };
        if step != Step::Continue {
            return step;
        }
        let ends = d.status.as_deref() == Some("finished")
            && !matches!(phase, Some("think" | "thinking_summary"));
        if ends {
            return self.complete(FinishReason::Stop);
        }
        Step::Continue
    }

    fn summary(&mut self, elems: &[std::borrow::Cow<'_, str>]) {
        for (i, el) in elems.iter().enumerate() {
            if i + 1 < self.summary_elems {
                continue;
            }
            if i + 1 == self.summary_elems {
                let sent = self.summary_last_len;
                if el.len() > sent && el.is_char_boundary(sent) {
                    self.reasoning(&el[sent..]);
                    self.summary_last_len = el.len();
                }
            } else {
                if self.summary_elems > 0 {
                    self.reasoning("\n\n");
                }
                self.reasoning(el);
                self.summary_elems = i + 1;
                self.summary_last_len = el.len();
            }
        }
    }

    fn reasoning(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.reasoning_tokens.add(text);
        match self.reasoning_mode {
            ReasoningOutput::Hidden => {}
            ReasoningOutput::Field => {
                if let Some(list) = self.search_pending.take() {
                    self.sink.reasoning(&list);
                    self.sink.reasoning("\n");
                }
                self.sink.reasoning(text);
                self.visible = true;
            }
            ReasoningOutput::Tags => {
                if !self.think_tag_open {
                    self.sink.content("<think>\n");
                    self.think_tag_open = true;
                    if let Some(list) = self.search_pending.take() {
                        self.sink.content(&list);
                        self.sink.content("\n");
                    }
                }
                self.sink.content(text);
                self.visible = true;
            }
        }
    }

    fn close_think_tag(&mut self) {
        if self.think_tag_open {
            self.sink.content("\n</think>\n\n");
            self.think_tag_open = false;
        }
    }

    fn content(&mut self, text: &str) -> Step {
        if text.is_empty() {
            return Step::Continue;
        }
        self.close_think_tag();
        if self.images.has_held() {
            // Pictures that came during the thinking open the answer.
            let step = self.show_images(true);
            if step != Step::Continue {
                return step;
            }
        }
        self.content_seen = true;
        let Some(parser) = self.tool_parser.as_mut() else {
            return self.text(text);
        };
        let mut pieces = Vec::new();
        parser.push(text, &mut pieces);
        self.pieces(pieces)
    }

    /// The pictures not shown yet, as answer text; `before_text` when answer text follows.
    fn show_images(&mut self, before_text: bool) -> Step {
        let mut md = self.images.take(self.content_seen);
        if before_text && !self.content_seen {
            md.push_str("\n\n");
        }
        self.content(&md)
    }

    fn pieces(&mut self, pieces: Vec<Piece>) -> Step {
        for p in pieces {
            let step = match p {
                Piece::Text(t) => self.text(&t),
                Piece::Call(c) => {
                    self.call(c);
                    Step::Continue
                }
            };
            if step != Step::Continue {
                return step;
            }
        }
        Step::Continue
    }

    fn call(&mut self, c: ParsedCall) {
        // Without parallel calls the first call is the answer; later ones are dropped.
        if !self.parallel_calls && self.calls > 0 {
            return;
        }
        let id = format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        self.sink.tool_call(self.calls, &id, &c.name, &c.arguments);
        self.calls += 1;
        self.visible = true;
    }

    /// Answer text after tool parsing: stop sequences, then the token limit.
    fn text(&mut self, text: &str) -> Step {
        let Converter {
            stop,
            sink,
            content_tokens,
            max_tokens,
            visible,
            ..
        } = self;
        let mut limited = false;
        let matched = stop.push(text, |piece| {
            if !limited {
                limited = emit_limited(sink, content_tokens, *max_tokens, visible, piece);
            }
        });
        if limited {
            self.complete(FinishReason::Length)
        } else if matched {
            // Whatever the tool parser still holds comes after the stop: drop it.
            self.tool_parser = None;
            self.complete(FinishReason::Stop)
        } else {
            Step::Continue
        }
    }

    fn complete(&mut self, mut reason: FinishReason) -> Step {
        if reason == FinishReason::Stop && self.images.has_held() {
            // Pictures the answer has not shown yet, or an answer of pictures only.
            if self.show_images(false) == Step::Done {
                return Step::Done;
            }
        }
        if let (Some(parser), FinishReason::Stop) = (self.tool_parser.as_mut(), reason) {
            let mut pieces = Vec::new();
            parser.finish(&mut pieces);
            self.tool_parser = None;
            if self.pieces(pieces) == Step::Done {
                return Step::Done;
            }
        }
        if reason == FinishReason::Stop && self.calls > 0 {
            reason = FinishReason::ToolCalls;
        }
        if matches!(reason, FinishReason::Stop | FinishReason::ToolCalls) {
            let Converter {
                stop,
                sink,
                content_tokens,
                max_tokens,
                visible,
                ..
            } = self;
            let mut limited = false;
            stop.flush(|piece| {
                limited = emit_limited(sink, content_tokens, *max_tokens, visible, piece);
            });
            if limited {
                return self.complete(FinishReason::Length);
            }
        }
        if !self.content_seen && reason == FinishReason::Stop && !self.done {
            return self.fail(Failure::new(
                FailureClass::Empty,
                "the answer finished without any text",
            ));
        }
        if self.done {
            return Step::Done;
        }
        self.close_think_tag();
        if reason == FinishReason::Stop {
            if let Some(list) = self.search_pending.take() {
                self.sink.content("\n\n---\n");
                self.sink.content(&list);
            }
        }
        self.done = true;
        let usage = self.usage();
        self.sink.finish(reason, &usage);
        Step::Done
    }

    fn usage(&self) -> Usage {
        let u = RawUsage::parse(&self.usage).unwrap_or_default();
        let prompt = u.input_tokens.or(u.prompt_tokens);
        let completion = u.output_tokens.or(u.completion_tokens);
        let reasoning = self.reasoning_reported;
        let est_reasoning = self.reasoning_tokens.tokens();
        Usage {
            prompt_tokens: prompt.unwrap_or(self.prompt_estimate),
            completion_tokens: completion.unwrap_or(self.content_tokens.tokens() + est_reasoning),
            reasoning_tokens: reasoning.unwrap_or(if completion.is_some() {
                0
            } else {
                est_reasoning
            }),
            estimated: prompt.is_none() || completion.is_none(),
        }
    }
}

/// Emits answer text within the token limit; true when the limit cut it short.
fn emit_limited<S: Sink>(
    sink: &mut S,
    counter: &mut TokenCounter,
    max_tokens: Option<u64>,
    visible: &mut bool,
    piece: &str,
) -> bool {
    let allowed = match max_tokens {
        Some(limit) => counter.take_within(piece, limit),
        None => {
            counter.add(piece);
            piece
        }
    };
    if !allowed.is_empty() {
        sink.content(allowed);
        *visible = true;
    }
    allowed.len() < piece.len()
}

/// Convenience for callers that only know the prompt text.
pub fn prompt_estimate(prompt: &str) -> u64 {
    estimate(prompt)
}
