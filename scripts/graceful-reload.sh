#!/usr/bin/env bash
# Proves a graceful reload (Pingora upgrade: SIGQUIT to the old process, `-u` for the new one)
# loses no request under load. Loopback only, bounded in time; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/qwen-gateway}
DURATION=${DURATION:-8}
dir=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); sim_port=$(free_port)
cat > "$dir/pingora.yaml" <<YAML
---
version: 1
threads: 2
pid_file: $dir/gw.pid
error_log: $dir/error.log
upgrade_sock: $dir/upgrade.sock
grace_period_seconds: 3
graceful_shutdown_timeout_seconds: 2
YAML
# The simulated upstream runs as its own process: the upgrade hands over every listening
# socket of the gateway process, so an in-process (--demo) upstream would be replaced mid-test.
"$BIN" --sim-only --sim-listen "127.0.0.1:$sim_port" --sim-delta-delay-ms 20 > /dev/null 2>&1 &
sim=$!
cleanup() {
  [ -f "$dir/gw.pid" ] && kill -INT "$(cat "$dir/gw.pid")" 2>/dev/null || true
  kill -INT "$sim" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$sim_port/__sim/state" >/dev/null && break; sleep 0.1; done
token=$(curl -sf -X POST "http://127.0.0.1:$sim_port/__sim/mint" -d '{"email":"demo@example.com","ttl_secs":3600}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export SERVER_PORT=$port LISTEN_ADDRESS=127.0.0.1 METRICS_LISTEN=off LOG_LEVEL=warn
export QWEN_BASE_URL="http://127.0.0.1:$sim_port" QWEN_TOKEN="$token"

"$BIN" -d -c "$dir/pingora.yaml"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

# Clients: new connections, streamed and unstreamed chat, for DURATION seconds.
python3 - "$port" "$DURATION" > "$dir/load.out" <<'PY' &
import http.client, json, sys, time, threading
port, duration = int(sys.argv[1]), float(sys.argv[2])
ok = fail = 0
lock = threading.Lock()
def worker(n):
    global ok, fail
    end = time.time() + duration
    i = 0
    while time.time() < end:
        i += 1
        body = json.dumps({"model": "qwen3-max", "stream": i % 2 == 0,
                           "messages": [{"role": "user", "content": f"reload {n}-{i}"}]})
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            r = c.getresponse(); data = r.read(); c.close()
            good = r.status == 200 and (b"[DONE]" in data or b"chat.completion" in data)
        except Exception:
            good = False
        with lock:
            if good: ok += 1
            else: fail += 1
threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(f"ok={ok} fail={fail}")
PY
load=$!
sleep $((DURATION / 3))
old=$(cat "$dir/gw.pid")
kill -QUIT "$old"
"$BIN" -u -d -c "$dir/pingora.yaml"
wait $load
result=$(cat "$dir/load.out")
new=$(cat "$dir/gw.pid")
echo "graceful reload: $result (old pid $old, new pid $new)"
[ "$old" != "$new" ] || { echo "the process was not replaced"; exit 1; }
case "$result" in *" fail=0") exit 0 ;; *) exit 1 ;; esac
