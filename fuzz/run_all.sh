#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 300), one after another, from the committed
# corpus and seeds. Stable rustc accepts cargo-fuzz's nightly flags with RUSTC_BOOTSTRAP=1.
# Usage: fuzz/run_all.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sse_decoder stream_converter request_translator config_parser tool_call_parser)
declare -A dict=([sse_decoder]=sse [stream_converter]=qwen_events [request_translator]=openai_request [config_parser]=config [tool_call_parser]=tool_call)
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== $t: ${secs}s"
    cargo fuzz run -O -a "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -dict="dicts/${dict[$t]}.dict" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1
done
