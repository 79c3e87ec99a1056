//! The streaming `<tool_call>` parser over arbitrary answer text split at arbitrary points.
//!
//! Input: an 8-byte chunking seed, then the answer text (lossy UTF-8). Checks: no panic; the
//! pieces (texts merged) are the same whether the text comes whole, in seeded chunks or one
//! character at a time; every call's arguments are a JSON object or value; no text piece holds a
//! complete `<tool_call>` block.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qwen_gateway::convert::toolcall::{Piece, ToolCallParser};
use qwen_gateway_fuzz::header;

fn run(parts: &[&str]) -> Vec<Piece> {
    let mut p = ToolCallParser::new(vec!["get_weather".into(), "search".into()]);
    let mut out = Vec::new();
    for x in parts {
        p.push(x, &mut out);
    }
    p.finish(&mut out);
    let mut merged: Vec<Piece> = Vec::new();
    for piece in out {
        match (merged.last_mut(), piece) {
            (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
            (_, p) => merged.push(p),
        }
    }
    merged
}

fuzz_target!(|input: &[u8]| {
    let (h, data) = header::<8>(input);
    let mut seed = u64::from_le_bytes(h);
    let text = String::from_utf8_lossy(data).into_owned();
    let whole = run(&[&text]);
    let bounds: Vec<usize> = (0..=text.len()).filter(|i| text.is_char_boundary(*i)).collect();
    let mut cuts = vec![0];
    for &b in &bounds {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        if seed >> 61 == 0 {
            cuts.push(b);
        }
    }
    cuts.push(text.len());
    let seeded: Vec<&str> = cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
    assert_eq!(run(&seeded), whole, "seeded split differs: {text:?}");
    let by_char: Vec<&str> = bounds.windows(2).map(|w| &text[w[0]..w[1]]).collect();
    assert_eq!(run(&by_char), whole, "char split differs: {text:?}");
    for p in &whole {
        match p {
            Piece::Call(c) => {
                serde_json::from_str::<serde_json::Value>(&c.arguments).expect("arguments are JSON");
            }
            Piece::Text(t) => assert!(
                !(t.contains("<tool_call>") && t.contains("</tool_call>")),
                "a complete block leaked as text: {t:?}"
            ),
        }
    }
});
