//! The SSE decoder over arbitrary bytes split at arbitrary points.
//!
//! Input: a 9-byte header (8 bytes of chunking seed, 1 byte choosing the line bound), then the
//! stream. Checks: no panic; the events (and the error, if any) equal those of a naive reference
//! decoder over the whole input, whether the input is fed whole, byte by byte or in seeded random
//! chunks; no event holds a line longer than the bound.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qwen_gateway_fuzz::{bytewise, chunks, decode, header, lossy, reference_decode};

const BOUNDS: [usize; 8] = [1, 7, 16, 64, 300, 4096, 1 << 20, usize::MAX];

fuzz_target!(|input: &[u8]| {
    let (h, data) = header::<9>(input);
    let seed = u64::from_le_bytes(h[..8].try_into().unwrap());
    let max_line = BOUNDS[usize::from(h[8]) % BOUNDS.len()];

    let want = reference_decode(data, max_line);
    let whole = decode(&[data], max_line);
    assert_eq!(
        whole,
        want,
        "whole input differs from the reference: {:?}",
        lossy(data)
    );
    let split = decode(&chunks(data, seed), max_line);
    assert_eq!(split, want, "seeded split differs: {:?}", lossy(data));
    let bytes = decode(&bytewise(data), max_line);
    assert_eq!(bytes, want, "byte-by-byte feed differs: {:?}", lossy(data));

    // The bound: every data line is shorter than the line that carried it, so no '\n'-separated
    // piece of an event can exceed the limit.
    for ev in &whole.events {
        for piece in ev.split(|b| *b == b'\n') {
            assert!(piece.len() <= max_line, "a line over the bound got through");
        }
    }
    // A line over the bound anywhere in the input always stops decoding.
    let longest = data
        .split(|b| *b == b'\n' || *b == b'\r')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    assert_eq!(whole.error.is_some(), longest > max_line);
});
