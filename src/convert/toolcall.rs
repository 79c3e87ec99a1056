//! Parses `<tool_call>` blocks out of streamed answer text. Text that might still become the
//! start of a block (a partial tag, an opening code fence) is held back; everything else is
//! released at once. A block becomes a call when its JSON parses (after removing a code fence
//! and repairing what is unambiguous: trailing commas, missing closing brackets, text around
//! the object); otherwise its inner text is returned as text, never the markup.

use serde_json::Value;

use super::tools::{CLOSE, OPEN};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCall {
    pub name: String,
    /// The arguments object as compact JSON text.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Call(ParsedCall),
}

/// Past this, an unterminated block is treated as text rather than buffered further.
const MAX_BLOCK: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct ToolCallParser {
    names: Vec<String>,
    buf: String,
    inside: bool,
    /// A call just ended: a closing code fence right after it belongs to the call.
    after_call: bool,
    tail: TextTail,
}

/// The end of the text released since the last call. Text is released in pieces, and two pieces
/// (or a piece and the text left after removing a tag) could meet to spell a tag; a `>` that
/// would complete one is dropped, which depends only on the text, not on how it was split.
#[derive(Debug, Default)]
struct TextTail(String);

impl TextTail {
    fn push(&mut self, out: &mut Vec<Piece>, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut clean = String::with_capacity(text.len());
        for ch in text.chars() {
            if ch == '>' && self.completes_tag(&clean) {
                continue;
            }
            clean.push(ch);
        }
        self.0.push_str(&clean);
        let mut cut = self.0.len().saturating_sub(CLOSE.len());
        while !self.0.is_char_boundary(cut) {
            cut += 1;
        }
        self.0.drain(..cut);
        push_text(out, &clean);
    }

    /// Whether the tail followed by `clean` ends with a tag minus its `>`.
    fn completes_tag(&self, clean: &str) -> bool {
        let mut end = String::new();
        if clean.len() < CLOSE.len() {
            end.push_str(&self.0);
        }
        end.push_str(clean);
        [OPEN, CLOSE]
            .iter()
            .any(|t| end.ends_with(&t[..t.len() - 1]))
    }
}

impl ToolCallParser {
    pub fn new(names: Vec<String>) -> Self {
        ToolCallParser {
            names,
            ..Default::default()
        }
    }

    pub fn push(&mut self, text: &str, out: &mut Vec<Piece>) {
        self.buf.push_str(text);
        self.drain(out, false);
    }

    /// The answer ended: an unterminated block is parsed if it can be, held text is released.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        self.drain(out, true);
        let rest = std::mem::take(&mut self.buf);
        if self.inside {
            self.inside = false;
            match parse_call(&rest, &self.names) {
                Some(c) => {
                    self.tail = TextTail::default();
                    out.push(Piece::Call(c));
                }
                None => self.tail.push(out, strip_tags(&rest).trim()),
            }
        } else if !(self.after_call && rest.trim().is_empty()) {
            self.tail.push(out, &rest);
        }
    }

    fn drain(&mut self, out: &mut Vec<Piece>, at_end: bool) {
        loop {
            if self.inside {
                let Some(pos) = self.buf.find(CLOSE) else {
                    if self.buf.len() > MAX_BLOCK {
                        self.inside = false;
                        let text = std::mem::take(&mut self.buf);
                        self.tail.push(out, &text);
                    }
                    return;
                };
                let inner: String = self.buf[..pos].to_string();
                self.buf.drain(..pos + CLOSE.len());
                self.inside = false;
                match parse_call(&inner, &self.names) {
                    Some(c) => {
                        self.tail = TextTail::default();
                        out.push(Piece::Call(c));
                        self.after_call = true;
                    }
                    None => self.tail.push(out, strip_tags(&inner).trim()),
                }
                continue;
            }
            if self.after_call {
                let t = self.buf.trim_start();
                if t.is_empty() || (!at_end && "```".starts_with(t)) {
                    return;
                }
                if let Some(rest) = t.strip_prefix("```") {
                    let rest = rest.to_string();
                    self.buf = rest;
                }
                self.after_call = false;
            }
            // A closing tag before any opening one closes nothing: drop it, it is markup too.
            let open_at = self.buf.find(OPEN).unwrap_or(self.buf.len());
            if let Some(stray) = self.buf[..open_at].find(CLOSE) {
                self.buf.replace_range(stray..stray + CLOSE.len(), "");
                continue;
            }
            if let Some(pos) = self.buf.find(OPEN) {
                let before = strip_fence_opener(&self.buf[..pos]).to_string();
                self.tail.push(out, before.trim_end());
                self.buf.drain(..pos + OPEN.len());
                self.inside = true;
                continue;
            }
            let keep = if at_end { 0 } else { held_suffix(&self.buf) };
            let cut = self.buf.len() - keep;
            if cut > 0 {
                let text: String = self.buf.drain(..cut).collect();
                self.tail.push(out, &text);
            }
            return;
        }
    }
}

/// Removes the markup; again after each pass, since removing a tag can join its neighbours into
/// a new one (`<tool<tool_call>_call>`).
fn strip_tags(s: &str) -> String {
    let mut s = s.to_string();
    while s.contains(OPEN) || s.contains(CLOSE) {
        s = s.replace(OPEN, "").replace(CLOSE, "");
    }
    s
}

fn push_text(out: &mut Vec<Piece>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Piece::Text(prev)) = out.last_mut() {
        prev.push_str(text);
    } else {
        out.push(Piece::Text(text.to_string()));
    }
}

/// How much of the end of `buf` must wait: a partial `<tool_call>`, an opening code fence that
/// may precede one, or trailing whitespace that may separate two calls.
fn held_suffix(buf: &str) -> usize {
    let b = buf.as_bytes();
    let mut keep = partial_tag(b, OPEN).max(partial_tag(b, CLOSE));
    // A partial closing tag may complete into a stray one, which is dropped: the text before it
    // then joins what follows, so a partial tag right before it must wait as well (and before
    // that one, if it is a closing tag too; an opening tag is never dropped).
    let mut end = b.len() - partial_tag(b, CLOSE);
    if end < b.len() {
        loop {
            let head = &b[..end];
            let (open, close) = (partial_tag(head, OPEN), partial_tag(head, CLOSE));
            if close > 0 && close >= open {
                end -= close;
                continue;
            }
            end -= open;
            break;
        }
        // Backticks there may join backticks after it into a code fence, and a fence opener
        // there may turn out to open a block.
        end -= b[..end]
            .iter()
            .rev()
            .take_while(|c| **c == b'`')
            .count()
            .min(3);
        if let Some(fence) = buf[..end].rfind("```") {
            let after = &buf[fence + 3..end];
            if after.trim_end().bytes().all(|c| c.is_ascii_alphanumeric()) {
                end = fence;
            }
        }
        keep = keep.max(b.len() - end);
    }
    // One or two backticks may be the start of a fence.
    let ticks = b.iter().rev().take_while(|c| **c == b'`').count();
    if (1..3).contains(&ticks) {
        keep = keep.max(ticks);
    }
    if let Some(fence) = buf.rfind("```") {
        let after = &buf[fence + 3..];
        let lang_end = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        let tail = after[lang_end..].trim_start();
        // A partial closing tag counts too: a stray one is dropped once complete, and the
        // fence may then turn out to open a block.
        if tail.is_empty() || OPEN.starts_with(tail) || CLOSE.starts_with(tail) {
            keep = keep.max(buf.len() - fence);
        }
    }
    // Whitespace before what is held goes with it: if a block follows, it is dropped with the
    // block's surroundings, whichever way the text was split.
    let head = buf[..buf.len() - keep].trim_end();
    buf.len() - head.len()
}

/// The length of the longest end of `b` that is a proper prefix of `tag`.
fn partial_tag(b: &[u8], tag: &str) -> usize {
    (1..tag.len().min(b.len() + 1))
        .rev()
        .find(|&k| tag.as_bytes().starts_with(&b[b.len() - k..]))
        .unwrap_or(0)
}

/// Drops a code-fence opener (```` ``` ```` plus a language word) right before a block.
fn strip_fence_opener(text: &str) -> &str {
    let t = text.trim_end();
    if let Some(fence) = t.rfind("```") {
        let after = &t[fence + 3..];
        if after.chars().all(|c| c.is_ascii_alphanumeric()) {
            return &t[..fence];
        }
    }
    text
}

fn strip_fences(s: &str) -> &str {
    let s = s.trim();
    let Some(rest) = s.strip_prefix("```") else {
        return s;
    };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// Unambiguous repairs: the outermost object only, no trailing commas, closing brackets added.
fn repair(s: &str) -> Option<Value> {
    let start = s.find('{')?;
    let mut body: String = s[start..].to_string();
    if let Some(end) = body.rfind('}') {
        if serde_json::from_str::<Value>(&body[..=end]).is_ok() {
            body.truncate(end + 1);
        }
    }
    let mut out = String::with_capacity(body.len() + 4);
    let mut stack = Vec::new();
    let (mut in_str, mut esc) = (false, false);
    let chars: Vec<char> = body.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if in_str {
            out.push(c);
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => stack.push('}'),
            '[' => stack.push(']'),
            '}' | ']' => match stack.pop() {
                Some(open) if open == c => {}
                _ => return None,
            },
            ',' => {
                let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
                if matches!(next, Some('}') | Some(']') | None) {
                    continue;
                }
            }
            _ => {}
        }
        out.push(c);
    }
    if in_str {
        return None;
    }
    while let Some(c) = stack.pop() {
        out.push(c);
    }
    serde_json::from_str(&out).ok()
}

pub fn parse_call(inner: &str, names: &[String]) -> Option<ParsedCall> {
    let s = strip_fences(inner);
    let v: Value = serde_json::from_str(s).ok().or_else(|| repair(s))?;
    let obj = v.as_object()?;
    let func = obj.get("function");
    let name = ["name", "tool", "tool_name"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .or_else(|| {
            func.and_then(|f| f.as_str().or_else(|| f.get("name").and_then(Value::as_str)))
        })?;
    let name = if names.is_empty() {
        name.to_string()
    } else {
        names.iter().find(|n| n.eq_ignore_ascii_case(name))?.clone()
    };
    let args = ["arguments", "parameters", "args", "input"]
        .iter()
        .find_map(|k| obj.get(*k))
        .or_else(|| func.and_then(|f| f.get("arguments")))
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let args = match args {
        Value::String(s) => serde_json::from_str::<Value>(&s)
            .ok()
            .or_else(|| repair(&s))
            .unwrap_or(Value::String(s)),
        other => other,
    };
    Some(ParsedCall {
        name,
        arguments: args.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&str]) -> Vec<Piece> {
        let mut p = ToolCallParser::new(vec!["get_weather".into(), "search".into()]);
        let mut out = Vec::new();
        for x in pieces {
            p.push(x, &mut out);
        }
        p.finish(&mut out);
        // Adjacent texts from separate pushes are one text for comparison.
        let mut merged: Vec<Piece> = Vec::new();
        for piece in out {
            match (merged.last_mut(), piece) {
                (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
                (_, p) => merged.push(p),
            }
        }
        merged
    }

    fn call(name: &str, args: &str) -> Piece {
        Piece::Call(ParsedCall {
            name: name.into(),
            arguments: args.into(),
        })
    }

    const ANSWER: &str = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": \"x\"}}\n</tool_call>";

    #[test]
    fn calls_split_at_every_position() {
        let want = vec![
            Piece::Text("Let me check.".into()),
            call("get_weather", r#"{"city":"Paris"}"#),
            call("search", r#"{"q":"x"}"#),
        ];
        assert_eq!(run(&[ANSWER]), want);
        let idx: Vec<usize> = ANSWER.char_indices().map(|(i, _)| i).collect();
        for &i in &idx {
            for &j in idx.iter().filter(|&&j| j >= i).step_by(7) {
                assert_eq!(
                    run(&[&ANSWER[..i], &ANSWER[i..j], &ANSWER[j..]]),
                    want,
                    "{i} {j}"
                );
            }
        }
    }

    #[test]
    fn a_fence_split_into_single_characters_is_still_dropped() {
        let text =
            "```json\n<tool_call>{\"tool\":\"search\",\"parameters\":{\"q\":1,}}</tool_call>\n```";
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let parts: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(run(&parts), run(&[text]));
        assert_eq!(run(&[text]), vec![call("search", r#"{"q":1}"#)]);
    }

    /// Found by the fuzzer: a stray closing tag between a fence and a block, split inside it.
    #[test]
    fn a_stray_close_tag_after_a_fence_is_split_independent() {
        for text in [
            "ok\n```</tool_call>D<tool_call>\nA{\": \"get_weather\",  \"Pa}ll>",
            "ok\n```json\n</tool_call>\n<tool_call>{\"name\":\"search\"}</tool_call>",
            // Dropping the stray tag must not join `<tool` and `_call>` into an opening tag.
            "a</tool_callson\n<tool</tool_call>_call>{:{\"q}}</tool_call>\n```",
            // Nor `</tool_cal` and `l>` into a closing one.
            "I k.\n<tool_cal}</tool_cal</tool_call>l> and more",
            // A fence opener before a partial open tag before a stray tag.
            "n```js<too</tool_call>l_call>{\"name\":\"search\"}</tool_call>",
            // A backtick before a stray tag and two after it make a fence.
            "n\n`</tool_call>``json\n<tool_call>{\"name\":\"search\"}</tool_call>\n```",
        ] {
            let whole = run(&[text]);
            for (i, _) in text.char_indices() {
                assert_eq!(
                    run(&[&text[..i], &text[i..]]),
                    whole,
                    "split at {i} of {text:?}"
                );
            }
        }
    }

    /// Found by the fuzzer: text released in pieces must not spell a tag where the pieces meet.
    #[test]
    fn released_pieces_never_spell_a_tag() {
        let text = "x<tool_call<tool_call>>{bad}</tool_call> and <tool<tool_<tool_call>call>>";
        let whole = run(&[text]);
        for (i, _) in text.char_indices() {
            assert_eq!(run(&[&text[..i], &text[i..]]), whole, "split at {i}");
        }
        for p in &whole {
            if let Piece::Text(t) = p {
                assert!(!t.contains(OPEN) && !t.contains(CLOSE), "{t:?}");
            }
        }
    }

    #[test]
    fn fences_and_odd_keys_and_repairs() {
        assert_eq!(
            run(&["```xml\n<tool_call>\n```json\n{\"tool\": \"Search\", \"parameters\": {\"q\": 1,}}\n```\n</tool_call>\n```"]),
            vec![call("search", r#"{"q":1}"#)]
        );
        assert_eq!(
            run(&["<tool_call>{\"name\":\"search\",\"arguments\":\"{\\\"q\\\":2}\"}</tool_call>"]),
            vec![call("search", r#"{"q":2}"#)]
        );
        assert_eq!(
            run(&["<tool_call>{\"name\":\"search\",\"arguments\":{\"q\":3}"]),
            vec![call("search", r#"{"q":3}"#)],
            "unterminated block and missing brace at the end"
        );
    }

    #[test]
    fn unparseable_or_unknown_blocks_become_text_without_markup() {
        assert_eq!(
            run(&["a <tool_call>not json at all</tool_call> b"]),
            vec![Piece::Text("anot json at all b".into())]
        );
        assert_eq!(
            run(&["<tool_call>{\"name\":\"rm_rf\",\"arguments\":{}}</tool_call>"]),
            vec![Piece::Text("{\"name\":\"rm_rf\",\"arguments\":{}}".into())]
        );
    }

    #[test]
    fn plain_text_streams_and_only_a_possible_tag_is_held() {
        let mut p = ToolCallParser::new(vec![]);
        let mut out = Vec::new();
        p.push("Hello wor", &mut out);
        assert_eq!(out, vec![Piece::Text("Hello wor".into())]);
        out.clear();
        p.push("ld <tool", &mut out);
        assert_eq!(out, vec![Piece::Text("ld".into())]);
        out.clear();
        p.push("s are fun", &mut out);
        assert_eq!(out, vec![Piece::Text(" <tools are fun".into())]);
        out.clear();
        p.push(" code: ```rust\nfn main() {}\n```", &mut out);
        p.finish(&mut out);
        let text: String = out
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(text, " code: ```rust\nfn main() {}\n```");
    }
}
