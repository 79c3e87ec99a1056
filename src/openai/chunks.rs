//! OpenAI `chat.completion.chunk` streaming encoder: a [`Sink`] that writes SSE bytes into a
//! buffer the caller drains after each upstream read. Each chunk is assembled from a
//! pre-rendered head plus the escaped text, so the hot path is one buffer append per delta.

use bytes::{BufMut, Bytes, BytesMut};

use crate::convert::stream::{FinishReason, Sink, Usage};
use crate::openai::error::ApiError;
use crate::sse;

/// Bytes of tool-call arguments per streamed delta.
const ARGUMENT_SLICE: usize = 48;

pub struct StreamEncoder {
    /// `{"id":...,"object":"chat.completion.chunk","created":...,"model":...,"choices":[{"index":0,"delta":`
    head: Vec<u8>,
    /// The common prefix of the usage chunk: `{"id":...,"model":...,`
    usage_head: Vec<u8>,
    include_usage: bool,
    out: BytesMut,
    role_sent: bool,
}

pub fn write_json_str(out: &mut BytesMut, s: &str) {
    serde_json::to_writer(out.writer(), s).expect("writing to memory cannot fail");
}

impl StreamEncoder {
    pub fn new(id: &str, created: u64, model: &str, include_usage: bool) -> Self {
        let mut common = BytesMut::with_capacity(128);
        common.extend_from_slice(b"{\"id\":");
        write_json_str(&mut common, id);
        common.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        common.extend_from_slice(created.to_string().as_bytes());
        common.extend_from_slice(b",\"model\":");
        write_json_str(&mut common, model);
        let mut head = common.to_vec();
        head.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
        let mut usage_head = common.to_vec();
        usage_head.push(b',');
        StreamEncoder {
            head,
            usage_head,
            include_usage,
            out: BytesMut::with_capacity(512),
            role_sent: false,
        }
    }

    /// Takes what has been encoded so far.
    pub fn take(&mut self) -> Bytes {
        self.out.split().freeze()
    }

    pub fn pending(&self) -> usize {
        self.out.len()
    }

    fn ensure_role(&mut self) {
        if !self.role_sent {
            self.role_sent = true;
            self.begin(64);
            self.out
                .extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"\"}");
            self.end(None);
        }
    }

    fn begin(&mut self, extra: usize) {
        self.out.reserve(self.head.len() + extra + 96);
        self.out.extend_from_slice(b"data: ");
        self.out.extend_from_slice(&self.head);
    }

    fn end(&mut self, finish: Option<&str>) {
        self.out
            .extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(r) => {
                self.out.put_u8(b'"');
                self.out.extend_from_slice(r.as_bytes());
                self.out.put_u8(b'"');
            }
            None => self.out.extend_from_slice(b"null"),
        }
        self.out.extend_from_slice(b"}]");
        if self.include_usage {
            self.out.extend_from_slice(b",\"usage\":null");
        }
        self.out.extend_from_slice(b"}\n\n");
    }

    fn text_chunk(&mut self, field: &[u8], text: &str) {
        self.ensure_role();
        self.begin(text.len());
        self.out.extend_from_slice(b"{\"");
        self.out.extend_from_slice(field);
        self.out.extend_from_slice(b"\":");
        write_json_str(&mut self.out, text);
        self.out.put_u8(b'}');
        self.end(None);
    }

    /// Ends a committed stream with an error event, as OpenAI-compatible clients expect.
    pub fn error(&mut self, e: &ApiError) {
        sse::write_data(&mut self.out, &e.to_json());
        self.out.extend_from_slice(sse::DONE);
    }
}

impl Sink for StreamEncoder {
    fn reasoning(&mut self, text: &str) {
        self.text_chunk(b"reasoning_content", text);
    }

    fn content(&mut self, text: &str) {
        self.text_chunk(b"content", text);
    }

    fn tool_call(&mut self, index: usize, id: &str, name: &str, arguments: &str) {
        self.ensure_role();
        self.begin(name.len() + 64);
        self.out.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
        self.out.extend_from_slice(index.to_string().as_bytes());
        self.out.extend_from_slice(b",\"id\":");
        write_json_str(&mut self.out, id);
        self.out
            .extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
        write_json_str(&mut self.out, name);
        self.out.extend_from_slice(b",\"arguments\":\"\"}}]}");
        self.end(None);
        // Arguments follow in slices, as OpenAI streams them.
        let mut rest = arguments;
        while !rest.is_empty() {
            let mut cut = rest.len().min(ARGUMENT_SLICE);
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            let (piece, tail) = rest.split_at(cut);
            self.begin(piece.len() + 48);
            self.out.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
            self.out.extend_from_slice(index.to_string().as_bytes());
            self.out.extend_from_slice(b",\"function\":{\"arguments\":");
            write_json_str(&mut self.out, piece);
            self.out.extend_from_slice(b"}}]}");
            self.end(None);
            rest = tail;
        }
    }

    fn finish(&mut self, reason: FinishReason, usage: &Usage) {
        self.ensure_role();
        self.begin(0);
        self.out.extend_from_slice(b"{}");
        self.end(Some(reason.as_str()));
        if self.include_usage {
            self.out.extend_from_slice(b"data: ");
            self.out.extend_from_slice(&self.usage_head);
            self.out.extend_from_slice(b"\"choices\":[],\"usage\":");
            let u = usage_json(usage);
            self.out.extend_from_slice(&u);
            self.out.extend_from_slice(b"}\n\n");
        }
        self.out.extend_from_slice(sse::DONE);
    }
}

pub fn usage_json(u: &Usage) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total(),
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }))
    .expect("json value serialises")
}
