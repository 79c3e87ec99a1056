#!/usr/bin/env python3
"""Bounded soak run: mixed traffic through the real gateway against the simulated upstream.

Starts `qwen-gateway --sim-only` with several accounts and a gateway signing in to all of them,
then for --duration seconds keeps --concurrency clients busy with streamed and unstreamed chat,
tool-enabled requests and image requests (uploaded through the simulated STS/OSS), while a
background task injects random upstream faults into random accounts and some clients hang up
mid-answer. Every answer is checked: it must carry its own request's nonce and no other
(lost or mixed answers must be 0); an error must be a truthful one (a 4xx/5xx with an error
body, or a stream that ends with an error event). The gateway's RSS and open file descriptors
are read at the start and the end. Loopback only; stops by itself. Exit status 1 if anything
was lost or mixed, a server died, or RSS/fds grew past the stated bounds.

    python3 scripts/soak.py --duration 240 --concurrency 24
"""

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

KEY = "sk-soak-admin-0123456789"
ACCOUNTS = [(f"soak{i}@example.com", f"pw-{i}-secret") for i in range(3)]
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
# Faults the sim can inject into one account's next completion (qwen-protocol.md §16.3 and more).
FAULTS = [
    ("http429", None), ("unauthorized", None), ("waf", None), ("empty", None),
    ("ratelimit_json", None), ("ratelimit_sse", None), ("http500", None), ("malformed", None),
    ("disconnect", 2), ("reset", 2), ("reset", 0), ("midstream_quota", 2), ("gzip", None),
    ("split", None), ("noncanonical", None), ("moderation_output", 2), ("after_finished", None),
]
NONCE = re.compile(r"n\d{6,}x")
# Growth allowed between the start (after warm-up) and the end of the run.
RSS_BOUND_MIB = 64
FD_BOUND = 64


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, name):
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"{name} exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{name} never opened port {port}")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def request(port, method, path, body=None, hang_up_after=None, timeout=60):
    """One HTTP/1.1 request on a fresh connection. Returns (status, body bytes) or
    ('hung-up', b'') when the client hung up on purpose."""
    r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    data = json.dumps(body).encode() if body is not None else b""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    w.write(head.encode() + data)
    await w.drain()
    try:
        if hang_up_after is not None:
            await asyncio.wait_for(r.read(hang_up_after), timeout)
            w.transport.abort()
            return "hung-up", b""
        raw = await asyncio.wait_for(r.read(), timeout)
    finally:
        w.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head[9:12]) if len(head) >= 12 else 0
    if b"transfer-encoding: chunked" in head.lower():
        out, buf = bytearray(), rest
        while buf:
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out += buf[:size]
            buf = buf[size + 2:]
        rest = bytes(out)
    return status, rest


def content_of(kind, stream, body):
    """(answer text incl. tool-call arguments, error or None, complete, finish reason)."""
    if not stream:
        v = json.loads(body)
        if "error" in v:
            return "", v["error"], True, None
        msg = v["choices"][0]["message"]
        calls = "".join(c["function"]["arguments"] for c in msg.get("tool_calls") or [])
        return (msg.get("content") or "") + calls, None, True, v["choices"][0]["finish_reason"]
    text, err, done, finish = "", None, False, None
    for block in body.decode().split("\n\n"):
        if not block.startswith("data: "):
            continue
        data = block[6:]
        if data == "[DONE]":
            done = True
            continue
        v = json.loads(data)
        if "error" in v:
            err = v["error"]
            continue
        for ch in v.get("choices", []):
            finish = ch.get("finish_reason") or finish
            d = ch.get("delta", {})
            text += d.get("content") or ""
            for c in d.get("tool_calls") or []:
                text += c.get("function", {}).get("arguments") or ""
    return text, err, done, finish


def make_body(kind, stream, nonce):
    words = f"soak {nonce} please"
    body = {"model": "qwen3-max", "stream": stream, "messages": [{"role": "user", "content": words}]}
    if kind == "tools":
        body["tools"] = [{"type": "function", "function": {
            "name": "lookup", "description": "Looks a word up.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    if kind == "image":
        body["messages"][0]["content"] = [
            {"type": "text", "text": words},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        ]
    return body


class Tally:
    def __init__(self):
        self.c = Counter()
        self.examples = []

    def bad(self, what, detail):
        self.c[what] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{what}: {detail}")


async def client(port, stop_at, tally, seq):
    while time.monotonic() < stop_at:
        n = next(seq)
        nonce = f"n{n:07d}x"
        kind = random.choice(["chat", "chat", "tools", "image"])
        stream = random.random() < 0.6
        hang = random.randint(1, 200) if stream and random.random() < 0.1 else None
        tally.c["requests"] += 1
        try:
            status, body = await request(port, "POST", "/v1/chat/completions",
                                         make_body(kind, stream, nonce), hang)
        except (asyncio.TimeoutError, OSError) as e:
            tally.bad("lost (no answer)", f"{nonce} {kind} stream={stream}: {e!r}")
            continue
        if status == "hung-up":
            tally.c["client disconnects"] += 1
            continue
        if status != 200:
            try:
                err = json.loads(body).get("error")
            except ValueError:
                err = None
            if status >= 400 and err and err.get("message"):
                tally.c["truthful errors"] += 1
                tally.c[f"error {status} {err.get('code')}"] += 1
            else:
                tally.bad("untruthful error", f"{nonce} {status} {body[:200]!r}")
            continue
        try:
            text, err, done, finish = content_of(kind, stream, body)
        except (ValueError, KeyError, IndexError) as e:
            tally.bad("unparseable 200", f"{nonce} {e!r} {body[:200]!r}")
            continue
        seen = set(NONCE.findall(text))
        if seen - {nonce}:
            tally.bad("mixed", f"{nonce} got {sorted(seen)}")
        elif err is not None:
            if stream and done and err.get("message"):
                tally.c["truthful errors"] += 1
                tally.c[f"error in stream {err.get('code')}"] += 1
            else:
                tally.bad("untruthful error", f"{nonce} {err}")
        elif finish == "content_filter" and (done or not stream):
            # Output moderation cut the answer: reported as OpenAI does, not as a success.
            tally.c["truthful errors"] += 1
            tally.c["error content_filter"] += 1
        elif nonce not in seen or (stream and not done):
            tally.bad("lost (incomplete 200)", f"{nonce} {kind} stream={stream} {text[:120]!r}")
        else:
            tally.c["successes"] += 1


async def fault_injector(sim_port, stop_at, tally):
    while time.monotonic() < stop_at:
        await asyncio.sleep(random.uniform(0.02, 0.2))
        email = random.choice(ACCOUNTS)[0]
        mode, arg = random.choice(FAULTS)
        body = {"email": email, "endpoint": "completions", "mode": mode, "count": 1}
        if arg is not None:
            body["arg"] = arg
        r, w = await asyncio.open_connection("127.0.0.1", sim_port)
        data = json.dumps(body).encode()
        w.write(f"POST /__sim/inject HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        await w.drain()
        await r.read()
        w.close()
        tally.c["faults injected"] += 1


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=240)
    ap.add_argument("--concurrency", type=int, default=24)
    ap.add_argument("--bin", default=os.environ.get("QWEN_GATEWAY_BIN", "target/release/qwen-gateway"))
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    random.seed(a.seed)
    sim_port, gw_port = free_port(), free_port()
    sim_cmd = [a.bin, "--sim-only", "--sim-listen", f"127.0.0.1:{sim_port}", "--sim-delta-delay-ms", "3"]
    for e, p in ACCOUNTS:
        sim_cmd += ["--sim-account", f"{e}:{p}"]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "QWEN_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "ACCOUNTS": ",".join(f"{e}:{p}" for e, p in ACCOUNTS),
        "API_KEY": KEY,
        "SERVER_PORT": str(gw_port), "LISTEN_ADDRESS": "127.0.0.1",
        "METRICS_LISTEN": "off", "LOG_LEVEL": "warn",
        "RATE_LIMIT_COOLDOWN_MS": "300", "BREAKER_OPEN_AFTER": "50",
        "UPSTREAM_FIRST_BYTE_TIMEOUT_MS": "3000", "UPSTREAM_IDLE_TIMEOUT_MS": "3000",
    }
    logs = open("target/soak-servers.log", "w")
    sim = subprocess.Popen(sim_cmd, stdout=logs, stderr=subprocess.STDOUT)
    gw = subprocess.Popen([a.bin], env=env, stdout=logs, stderr=subprocess.STDOUT)
    try:
        wait_port(sim_port, sim, "sim")
        wait_port(gw_port, gw, "gateway")
        for _ in range(200):
            s, b = await request(gw_port, "GET", "/health")
            if s == 200 and json.loads(b)["identity_pool"]["with_valid_token"] >= len(ACCOUNTS):
                break
            await asyncio.sleep(0.05)
        warm = Tally()
        await client(gw_port, time.monotonic() + 2, warm, iter(range(10**6, 2 * 10**6)))
        rss0, fd0 = rss_mib(gw.pid), fds(gw.pid)
        tally = Tally()
        seq = iter(range(10**6))
        stop_at = time.monotonic() + a.duration
        started = time.monotonic()
        await asyncio.gather(fault_injector(sim_port, stop_at, tally),
                             *[client(gw_port, stop_at, tally, seq) for _ in range(a.concurrency)])
        elapsed = time.monotonic() - started
        await asyncio.sleep(2)  # chat deletions and closes settle
        rss1, fd1 = rss_mib(gw.pid), fds(gw.pid)
        alive = gw.poll() is None and sim.poll() is None
    finally:
        for p in (gw, sim):
            p.send_signal(signal.SIGTERM)
        for p in (gw, sim):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    c = tally.c
    lost = sum(v for k, v in c.items() if k.startswith("lost") or k == "mixed"
               or k.startswith("untruthful") or k.startswith("unparseable"))
    ok = lost == 0 and alive and rss1 - rss0 <= RSS_BOUND_MIB and fd1 - fd0 <= FD_BOUND
    print(f"## Soak run ({time.strftime('%Y-%m-%d')}, {elapsed:.0f} s, {a.concurrency} clients, "
          f"{len(ACCOUNTS)} accounts)\n")
    print("| measure | value |\n|---|---:|")
    for k in ["requests", "successes", "truthful errors", "client disconnects", "faults injected"]:
        print(f"| {k} | {c[k]} |")
    print(f"| lost, mixed or untruthful answers | {lost} |")
    print(f"| gateway RSS start / end MiB | {rss0:.1f} / {rss1:.1f} (bound +{RSS_BOUND_MIB}) |")
    print(f"| gateway open fds start / end | {fd0} / {fd1} (bound +{FD_BOUND}) |")
    print(f"| servers alive at the end | {'yes' if alive else 'NO'} |")
    kinds = ", ".join(f"{k[6:]}: {v}" for k, v in sorted(c.items()) if k.startswith("error "))
    print(f"\nTruthful errors by kind: {kinds}")
    for e in tally.examples:
        print(f"- {e}")
    print(f"\nResult: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
