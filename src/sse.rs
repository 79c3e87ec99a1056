//! Split-safe Server-Sent Events decoding and encoding.
//!
//! The decoder accepts everything the SSE spec allows (LF, CRLF or CR line ends, `data:` with or
//! without the space, multi-line data, comments, `event:`/`id:` fields) because the upstream has
//! been seen to deviate from its own canonical `data: {json}\n\n` framing. Lines are cut at byte
//! level, which is UTF-8 safe: a line terminator never occurs inside a multi-byte sequence.

use bytes::{Bytes, BytesMut};

/// Why decoding stopped accepting input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A single line grew past the configured bound; the stream is treated as broken instead of
    /// buffering without limit.
    LineTooLong { limit: usize },
}

/// Incremental decoder: feed arbitrary byte chunks, take complete event payloads.
///
/// Complete lines are decoded straight from the chunk they arrive in, and an event made of one
/// `data:` line that ends in the same chunk (the upstream's usual framing) is handed over as a
/// slice of that chunk: only a line cut by a chunk boundary or a multi-line event is copied.
#[derive(Debug)]
pub struct SseDecoder {
    /// The start of a line whose terminator has not arrived yet.
    partial: Vec<u8>,
    /// Data of an event that spans chunks or lines.
    data: Vec<u8>,
    has_data: bool,
    max_line: usize,
    /// A CR ended the previous line; an LF at the start of the next chunk belongs to it.
    skip_lf: bool,
}

impl SseDecoder {
    pub fn new(max_line: usize) -> Self {
        SseDecoder {
            partial: Vec::new(),
            data: Vec::new(),
            has_data: false,
            max_line,
            skip_lf: false,
        }
    }

    /// Takes `chunk` and calls `on_event` with the data of every event completed by it.
    pub fn feed(
        &mut self,
        mut chunk: &[u8],
        mut on_event: impl FnMut(&[u8]),
    ) -> Result<(), SseError> {
        self.skip_leading_lf(&mut chunk);
        if !self.partial.is_empty() {
            let Some(i) = memchr::memchr2(b'\n', b'\r', chunk) else {
                self.partial.extend_from_slice(chunk);
                return self.check_partial();
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&chunk[..=i]);
            chunk = &chunk[i + 1..];
            let done = self.lines(&line, &mut on_event);
            line.clear();
            self.partial = line;
            done?;
            self.skip_leading_lf(&mut chunk);
        }
        let used = self.lines(chunk, &mut on_event)?;
        self.partial.extend_from_slice(&chunk[used..]);
        self.check_partial()
    }

    /// Ends the stream: an event whose terminating blank line never came is still delivered,
    /// as the spec's "dispatch at EOF" leniency that upstream truncation makes useful.
    pub fn finish(&mut self, mut on_event: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            if let Some(value) = data_value(&rest) {
                self.append_data(&rest[value]);
            }
        }
        self.dispatch(&mut on_event);
    }

    fn skip_leading_lf(&mut self, chunk: &mut &[u8]) {
        if self.skip_lf && !chunk.is_empty() {
            if chunk[0] == b'\n' {
                *chunk = &chunk[1..];
            }
            self.skip_lf = false;
        }
    }

    fn check_partial(&self) -> Result<(), SseError> {
        if self.partial.len() > self.max_line {
            return Err(SseError::LineTooLong {
                limit: self.max_line,
            });
        }
        Ok(())
    }

    /// Decodes the complete lines of `s`; returns how many bytes they took.
    fn lines(&mut self, s: &[u8], on_event: &mut impl FnMut(&[u8])) -> Result<usize, SseError> {
        let mut pos = 0;
        // A lone data line not yet copied: dispatched in place if its blank line is in `s`.
        let mut single: Option<std::ops::Range<usize>> = None;
        let result = loop {
            let Some(rel) = memchr::memchr2(b'\n', b'\r', &s[pos..]) else {
                break Ok(pos);
            };
            let end = pos + rel;
            let line = pos..end;
            pos = end + 1;
            if s[end] == b'\r' {
                match s.get(pos) {
                    Some(b'\n') => pos += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            if line.len() > self.max_line {
                break Err(SseError::LineTooLong {
                    limit: self.max_line,
                });
            }
            if line.is_empty() {
                match single.take() {
                    Some(r) => on_event(&s[r]),
                    None => self.dispatch(on_event),
                }
                continue;
            }
            let Some(value) = data_value(&s[line.clone()]) else {
                continue;
            };
            let value = line.start + value.start..line.start + value.end;
            if let Some(r) = single.take() {
                self.append_data(&s[r]);
            }
            if self.has_data {
                self.append_data(&s[value]);
            } else {
                single = Some(value);
            }
        };
        if let Some(r) = single {
            self.append_data(&s[r]);
        }
        result
    }

    fn append_data(&mut self, value: &[u8]) {
        if self.has_data {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
        self.has_data = true;
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(&[u8])) {
        if self.has_data {
            on_event(&self.data);
            self.data.clear();
            self.has_data = false;
        }
    }
}

/// Where the value of a `data` field line is, within the line; `None` for comments and other
/// fields.
fn data_value(line: &[u8]) -> Option<std::ops::Range<usize>> {
    if line.first() == Some(&b':') {
        return None;
    }
    let (field, value) = match memchr::memchr(b':', line) {
        Some(i) => {
            let start = if line.get(i + 1) == Some(&b' ') {
                i + 2
            } else {
                i + 1
            };
            (&line[..i], start..line.len())
        }
        None => (line, line.len()..line.len()),
    };
    (field == b"data").then_some(value)
}

/// Appends one `data:` event. `json` must not contain line breaks (serde_json never emits them).
pub fn write_data(out: &mut BytesMut, json: &[u8]) {
    out.reserve(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

/// The OpenAI end-of-stream marker.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// A comment line that keeps idle connections (and proxies in between) from timing out.
pub fn keepalive() -> Bytes {
    Bytes::from_static(b": keep-alive\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut d = SseDecoder::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, |e| out.push(String::from_utf8_lossy(e).into_owned()))
                .unwrap();
        }
        d.finish(|e| out.push(String::from_utf8_lossy(e).into_owned()));
        out
    }

    #[test]
    fn canonical_and_variants() {
        let s: &[u8] = b"data: {\"a\":1}\n\ndata:{\"b\":2}\r\n\r\n: keep-alive\n\nevent: ping\ndata: x\ndata: y\n\n";
        assert_eq!(decode_all(&[s]), vec!["{\"a\":1}", "{\"b\":2}", "x\ny"]);
    }

    #[test]
    fn every_split_gives_same_events() {
        let s: &[u8] = "data: héllo\r\n\r\ndata: wörld 你好\n\ndata: [DONE]\n\n".as_bytes();
        let whole = decode_all(&[s]);
        for i in 0..s.len() {
            for j in i..s.len() {
                assert_eq!(decode_all(&[&s[..i], &s[i..j], &s[j..]]), whole, "{i} {j}");
            }
        }
    }

    /// Found by the fuzzer: a bare `data` field (no colon) is an empty value, not a crash.
    #[test]
    fn bare_data_field_is_an_empty_value() {
        assert_eq!(decode_all(&[b"data\n\n"]), vec![String::new()]);
        assert_eq!(decode_all(&[b"data\ndata: x\n\n"]), vec!["\nx".to_string()]);
        assert_eq!(decode_all(&[b"data: a\ndata\n\n"]), vec!["a\n".to_string()]);
    }

    #[test]
    fn cr_only_line_ends() {
        assert_eq!(
            decode_all(&[b"data: a\r\rdata: b\r", b"\r"]),
            vec!["a", "b"]
        );
    }

    #[test]
    fn unterminated_tail_is_dispatched_at_finish() {
        assert_eq!(decode_all(&[b"data: a\n\ndata: b"]), vec!["a", "b"]);
    }

    #[test]
    fn long_line_is_bounded() {
        let mut d = SseDecoder::new(16);
        let err = d.feed(&[b'x'; 40], |_| {}).unwrap_err();
        assert_eq!(err, SseError::LineTooLong { limit: 16 });
    }
}
