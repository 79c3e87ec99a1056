#!/usr/bin/env bash
# Shrinks corpus/<target> to the inputs that add edge coverage beyond seeds/<target>, so that the
# committed corpus stays small. Run after run_all.sh (it uses the binaries that built).
# Usage: fuzz/minimise.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sse_decoder stream_converter request_translator config_parser tool_call_parser)
bin=target/x86_64-unknown-linux-gnu/release
for t in "${targets[@]}"; do
    tmp=$(mktemp -d)
    cp "seeds/$t"/* "$tmp/"
    # Edges only (-use_counters=0): hit-count buckets would keep many near-duplicates.
    "$bin/$t" -set_cover_merge=1 -use_counters=0 "$tmp" "corpus/$t" >/dev/null 2>&1
    for f in "seeds/$t"/*; do rm -f "$tmp/$(basename "$f")"; done
    rm -rf "corpus/$t"
    mkdir -p "corpus/$t"
    cp "$tmp"/* "corpus/$t/" 2>/dev/null || true
    rm -rf "$tmp"
    echo "$t: $(ls "corpus/$t" | wc -l) files, $(cat "corpus/$t"/* 2>/dev/null | wc -c) bytes"
done
