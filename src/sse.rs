//! Split-safe Server-Sent Events decoding and encoding.
//!
//! The decoder accepts everything the SSE spec allows (LF, CRLF or CR line ends, `data:` with or
//! without the space, multi-line data, comments, `event:`/`id:` fields) because the upstream has
//! been seen to deviate from its own canonical `data: {json}\n\n` framing. Lines are cut at byte
//! level, which is UTF-8 safe: a line terminator never occurs inside a multi-byte sequence.

use bytes::{BufMut, Bytes, BytesMut};

/// Why decoding stopped accepting input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A single line grew past the configured bound; the stream is treated as broken instead of
    /// buffering without limit.
    LineTooLong { limit: usize },
}

/// Incremental decoder: feed arbitrary byte chunks, take complete event payloads.
#[derive(Debug)]
pub struct SseDecoder {
    buf: BytesMut,
    /// Scan position inside `buf` that is known to hold no line terminator.
    scanned: usize,
    data: BytesMut,
    has_data: bool,
    max_line: usize,
    /// A CR ended the previous line; an LF at the start of the next chunk belongs to it.
    skip_lf: bool,
}

impl SseDecoder {
    pub fn new(max_line: usize) -> Self {
        SseDecoder {
            buf: BytesMut::with_capacity(512),
            scanned: 0,
            data: BytesMut::new(),
            has_data: false,
            max_line,
            skip_lf: false,
        }
    }

    /// Appends `chunk` and calls `on_event` with the data of every event completed by it.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(&[u8])) -> Result<(), SseError> {
        self.buf.extend_from_slice(chunk);
        loop {
            if self.skip_lf && !self.buf.is_empty() {
                if self.buf[0] == b'\n' {
                    let _ = self.buf.split_to(1);
                }
                self.skip_lf = false;
            }
            let hay = &self.buf[self.scanned..];
            let Some(rel) = memchr::memchr2(b'\n', b'\r', hay) else {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_line {
                    return Err(SseError::LineTooLong {
                        limit: self.max_line,
                    });
                }
                return Ok(());
            };
            let end = self.scanned + rel;
            let term = self.buf[end];
            let line = self.buf.split_to(end + 1);
            self.scanned = 0;
            let line = &line[..end];
            if term == b'\r' {
                if self.buf.first() == Some(&b'\n') {
                    let _ = self.buf.split_to(1);
                } else if self.buf.is_empty() {
                    self.skip_lf = true;
                }
            }
            if line.len() > self.max_line {
                return Err(SseError::LineTooLong {
                    limit: self.max_line,
                });
            }
            self.line(line, &mut on_event);
        }
    }

    /// Ends the stream: an event whose terminating blank line never came is still delivered,
    /// as the spec's "dispatch at EOF" leniency that upstream truncation makes useful.
    pub fn finish(&mut self, mut on_event: impl FnMut(&[u8])) {
        if !self.buf.is_empty() {
            let rest = self.buf.split();
            self.line(&rest, &mut on_event);
        }
        self.dispatch(&mut on_event);
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8])) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.put_u8(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(&[u8])) {
        if self.has_data {
            on_event(&self.data);
            self.data.clear();
            self.has_data = false;
        }
    }
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
