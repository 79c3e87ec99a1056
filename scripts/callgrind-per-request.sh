#!/usr/bin/env bash
# Instructions and heap allocations per streamed chat request, counted by callgrind (repeatable,
# unlike timings on a shared VM). Needs valgrind, wrk, curl and python3.
#
#   scripts/callgrind-per-request.sh gateway [BIN]   # default: target/release/qwen-gateway
#   scripts/callgrind-per-request.sh floor  [LOAD]   # the load benchmark's protocol floor
#
# The simulated upstream answers 12 deltas 2 ms apart. The server runs under callgrind; wrk drives
# it with 4 connections for 3 s, the counters are zeroed, then 10 s are measured. The whole
# process's instructions (idle threads included) are divided by the answered requests.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?gateway or floor}
gw=target/release/qwen-gateway
sim_port=41701
port=41702
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

"$gw" --sim-only --sim-listen 127.0.0.1:$sim_port --sim-answer-deltas 12 \
    --sim-delta-delay-ms 2 >"$out/sim.log" 2>&1 &
sleep 0.5
token=$(curl -sf -XPOST 127.0.0.1:$sim_port/__sim/mint -H 'content-type: application/json' \
    -d '{"email":"demo@example.com","ttl_secs":86400}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

if [ "$what" = gateway ]; then
    bin=${2:-$gw}
    path=/v1/chat/completions
    body='{"model":"qwen3-max","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    auth=""
    env -i PATH="$PATH" QWEN_BASE_URL=http://127.0.0.1:$sim_port QWEN_TOKEN="$token" \
        SERVER_PORT=$port LISTEN_ADDRESS=127.0.0.1 THREADS=2 LOG_LEVEL=warn CHAT_CLEANUP=off \
        METRICS_LISTEN=off valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
        "$bin" >"$out/server.log" 2>&1 &
else
    bin=${2:-$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)}
    path=/x
    # The completion body the floor forwards unchanged, as the gateway would send it.
    body='{"stream":true,"incremental_output":true,"chat_id":"x","chat_mode":"normal","model":"qwen3-max","parent_id":null,"messages":[{"fid":"1","parentId":null,"childrenIds":[],"role":"user","content":"hi","user_action":"chat","files":[],"timestamp":0,"models":["qwen3-max"],"chat_type":"t2t","feature_config":{"thinking_enabled":false,"output_schema":"phase"},"extra":{"meta":{"subChatType":"t2t"}},"sub_chat_type":"t2t","parent_id":null}],"timestamp":0}'
    auth="Bearer $token"
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
        "$bin" --serve-floor $port 127.0.0.1:$sim_port >"$out/server.log" 2>&1 &
fi
vg=$!
for _ in $(seq 60); do
    curl -s -o /dev/null 127.0.0.1:$port/ && break
    sleep 1
done

cat >"$out/req.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
if "$auth" ~= "" then wrk.headers["Authorization"] = "$auth" end
EOF
wrk -t1 -c4 -d3s -s "$out/req.lua" "http://127.0.0.1:$port$path" >/dev/null
callgrind_control -z $vg >/dev/null 2>&1
requests=$(wrk -t1 -c4 -d10s -s "$out/req.lua" "http://127.0.0.1:$port$path" |
    awk '/ requests in /{print $1}')
kill -INT $vg
wait $vg 2>/dev/null || true
callgrind_annotate --threshold=100 --auto=no --tree=caller "$out/cg" >"$out/tree" 2>/dev/null
python3 - "$out/tree" "$requests" "$what" <<'EOF'
import re, sys
tree, requests, what = open(sys.argv[1]).read().split("\n"), int(sys.argv[2]), sys.argv[3]
total = next(int(l.split()[0].replace(",", "")) for l in tree if "PROGRAM TOTALS" in l)
mallocs = 0
for i, line in enumerate(tree):
    if re.match(r"^\s*[\d,]+ \(.*\)\s+\*", line) and "malloc.c:malloc [" in line:
        j = i - 1
        while j >= 0 and "<" in tree[j]:
            m = re.search(r"\((\d[\d,]*)x\)", tree[j])
            mallocs += int(m.group(1).replace(",", "")) if m else 0
            j -= 1
        break
print(f"{what}: {requests} requests, {total // requests} instructions and "
      f"{mallocs / requests:.0f} mallocs per request")
EOF
