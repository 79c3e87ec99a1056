#!/usr/bin/env python3
"""Writes the hand-written seed inputs into fuzz/seeds/<target>/ (committed; re-run to refresh).

The SSE seeds follow the upstream captures in the protocol notes (section 5): `data: {json}` with
an LF blank line, Python-style separators, cumulative `thinking_summary`, incremental `think`,
search events, error envelopes. Targets that read a header (see each target's doc comment) get one
in front of the stream.
"""

import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def ev(obj, sep=(", ", ": ")):
    return "data: " + json.dumps(obj, separators=sep, ensure_ascii=False) + "\n\n"


def usage(i, o, r=None):
    u = {"input_tokens": i, "output_tokens": o, "characters": 0, "total_tokens": i + o,
         "input_tokens_details": {"text_tokens": i}, "output_tokens_details": {"text_tokens": o},
         "prompt_tokens_details": {"cached_tokens": 0}}
    if r is not None:
        u["output_tokens_details"]["reasoning_tokens"] = r
    return u


def delta(d, u=None):
    o = {"choices": [{"delta": d}], "response_id": "bceb"}
    if u:
        o["usage"] = u
    o["timestamp"] = 1780468951
    return o


CREATED = ev({"response.created": {"chat_id": "605f", "parent_id": "0989", "response_id": "bceb",
                                   "response_index": "0"}})
FINISHED = ev({"choices": [{"delta": {"content": "", "role": "assistant", "status": "finished",
                                      "phase": "answer"}}], "response_id": "bceb"})


def answer(t, n, u=True):
    return ev(delta({"role": "assistant", "content": t, "phase": "answer", "status": "typing"},
                    usage(1049, n) if u else None))


PLAIN = CREATED + answer("Hi", 1) + answer("! 你好, wörld 😀", 2) + answer("", 2) + FINISHED


def summary(thoughts, n):
    return ev(delta({"role": "assistant", "content": "", "phase": "thinking_summary",
                     "extra": {"summary_title": {"content": ["Understanding the request"]},
                               "summary_thought": {"content": thoughts}},
                     "status": "typing"}, usage(1438, n, n - 2)))


SUMMARY = (CREATED + summary(["First"], 3) + summary(["First thought."], 5)
           + summary(["First thought.", "Second"], 7) + summary(["First thought.", "Second one."], 9)
           + ev(delta({"role": "assistant", "content": "", "phase": "thinking_summary",
                       "status": "finished"}))
           + answer("I am Qwen", 12) + answer(".", 13) + FINISHED)


def think(t, status="typing"):
    return ev(delta({"content": t, "phase": "think", "status": status}))


DETAIL = (CREATED + think("Let me ") + think("think \"hard\".\n") + think("", "finished")
          + answer("42", 5) + FINISHED)

SEARCH = (CREATED
          + ev(delta({"role": "assistant", "content": "", "name": "web_search", "phase": "web_search",
                      "status": "typing", "extra": {"web_search_info": [
                          {"url": "https://a.example/x", "title": "A | b", "snippet": "s",
                           "hostname": "a.example", "date": " (2026-06-09)"},
                          {"url": "https://b.example/y", "title": ""}]}}))
          + think("Sources read.") + answer("See [[1]].", 4) + FINISHED)

RATE_LIMIT = ev({"success": False, "request_id": "q",
                 "data": {"code": "RateLimited", "num": 2, "details": "upper limit for today's usage"}})
MID_ERROR = (CREATED + answer("Partial", 1)
             + ev({"error": {"code": "internal_error",
                             "message": "Allocated quota exceeded, please increase your quota limit."}}))
MODERATION = CREATED + answer("Some", 1) + ev({"success": False, "data": {
    "code": "data_inspection_failed", "details": "内容安全"}})
NESTED = ev({"data": {"error": {"code": "Bad_Request", "details": "Internal error"}}})
VARIANTS = ("data:{\"choices\":[{\"delta\":{\"content\":\"a\",\"phase\":\"answer\"}}]}\r\n\r\n"
            ": keep-alive\n\nevent: ping\nid: 1\ndata: {\"choices\":[{\"delta\":\n"
            "data: {\"content\":\"b\"}}]}\n\n"
            "data: not json\n\n"
            "data: {\"choices\":[{\"delta\":{\"content\":\"c\",\"status\":\"finished\"}}]}\r\r"
            "data: [DONE]\n\n")
EMPTY = CREATED + answer("", 0) + FINISHED
TRUNCATED = CREATED + answer("cut", 1)[:-2]
HTML = "<html><body>captcha verify aliyun_waf</body></html>"

STREAMS = {
    "plain": PLAIN, "summary": SUMMARY, "detail": DETAIL, "search": SEARCH,
    "rate_limit": RATE_LIMIT, "mid_error": MID_ERROR, "moderation": MODERATION, "nested": NESTED,
    "variants": VARIANTS, "empty": EMPTY, "truncated": TRUNCATED, "html": HTML,
}

# sse_decoder: 8 bytes of chunking seed, 1 byte line bound (index into BOUNDS, mod 8).
for i, (name, s) in enumerate(STREAMS.items()):
    write("sse_decoder", name, struct.pack("<QB", 0x1234567 * (i + 1), 6) + s.encode())
write("sse_decoder", "bound_16", struct.pack("<QB", 7, 2) + b"data: short\n\ndata: this line is too long\n\n")
write("sse_decoder", "cr_split", struct.pack("<QB", 9, 6) + b"data: a\r\rdata: b\r\ndata: c\r\r\n")

# stream_converter: options byte, max_tokens-1, stop mask, bound index, 4 bytes chunking seed.
FIELD, TAGS, HIDDEN = 0, 1, 2
TEXT_SEARCH, USAGE, MAXTOK, STOP, STRUCT, BYTEWISE = 4, 8, 16, 32, 64, 128


def conv(name, s, opts=0, max_tokens=1, stops=0, bound=0, seed=1):
    write("stream_converter", name,
          bytes([opts, max_tokens - 1, stops, bound]) + struct.pack("<I", seed) + s.encode())


for i, (name, s) in enumerate(STREAMS.items()):
    conv(name, s, opts=USAGE if i % 2 else 0, seed=i * 7919 + 1)
conv("summary_tags", SUMMARY, opts=TAGS | USAGE)
conv("summary_hidden", SUMMARY, opts=HIDDEN | BYTEWISE)
conv("search_tags_text", SEARCH, opts=TAGS | TEXT_SEARCH)
conv("stop_end", CREATED + answer("abc E", 1) + answer("ND tail", 2) + FINISHED, opts=STOP, stops=1)
conv("stop_cjk", CREATED + answer("前你", 1) + answer("好后", 2) + FINISHED, opts=STOP | USAGE, stops=32)
conv("max_tokens", PLAIN, opts=MAXTOK | USAGE, max_tokens=2)
# Structured mode: the body is read by `arbitrary`; a few bytes give a short event list.
conv("structured_a", "\x01\x02" + "Hello" * 4 + "\x05\x00\x03", opts=STRUCT)
conv("structured_b", "\x02\x07\x00answer\x01think\x09\x01", opts=STRUCT | TAGS | USAGE)

# request_translator: request bodies as clients send them.
REQS = {
    "readme_stream": {"model": "qwen3-max-thinking", "stream": True,
                      "messages": [{"role": "user", "content": "Hello!"}]},
    "include_usage": {"model": "qwen3-max", "stream": True, "stream_options": {"include_usage": True},
                      "messages": [{"role": "user", "content": "Hello!"}]},
    "history": {"model": "qwen3-max-thinking-search", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "assistant", "content": ""},
        {"role": "developer", "content": "[user]\nnot a turn"},
        {"role": "user", "content": [{"type": "text", "text": "What is "},
                                     {"type": "input_text", "text": "2+2?"}]}]},
    "stops_limits": {"model": "qwen3-max", "messages": [{"role": "user", "content": "count"}],
                     "stop": ["END", "\n\n"], "max_tokens": 5, "max_completion_tokens": 7,
                     "temperature": 0.2, "n": 1, "reasoning_effort": "high"},
    "tool_turns": {"model": "qwen3-max", "enable_thinking": True, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "content": "sunny", "name": "get_weather"},
        {"role": "function", "content": "{\"t\":20}"}]},
    "bad_role": {"model": "m", "messages": [{"role": "wizard", "content": "x"}]},
    "image_part": {"model": "qwen3-vl-plus", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]},
    "n2": {"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]},
    "blank": {"model": "m", "messages": [{"role": "user", "content": "   "}]},
}
for name, r in REQS.items():
    write("request_translator", name, json.dumps(r, ensure_ascii=False))
write("request_translator", "unicode", '{"model":"qwen3-max","messages":[{"role":"user",'
      '"content":"caf\\u00e9 \\ud83d\\ude00 \\u0000 你好"}],"stop":"\\u00e9"}')
write("request_translator", "not_json", '{"model": "m", "messages": [')

# config_parser: settings files in both forms.
with open(os.path.join(os.path.dirname(ROOT), "..", "conf", "gateway.env"), "rb") as f:
    write("config_parser", "gateway_env", f.read())
write("config_parser", "env_quotes", "# comment\nexport API_KEY=\"sk-admin, sk-user\"\n"
      "COOKIE='a=1 |||b=2'\nSERVER_PORT=9000\nLISTEN_ADDRESS=localhost\n"
      "QWEN_BASE_URL=http://[::1]:8080/prefix/\nTHINK_OUTPUT_FORMAT=think_tags\n")
write("config_parser", "env_invalid", "SERVER_PORT=0\nUPSTREAM_IDLE_TIMEOUT_MS=0\nNOEQUALS\n")
write("config_parser", "config_json", json.dumps({
    "SERVER_PORT": 8001, "SERVER_MODE": True, "API_KEY": "sk-1", "OUTPUT_THINK": "false",
    "SEARCH_INFO_MODE": "text", "MAX_BODY_BYTES": 2048, "THREADS": 2, "X": None,
    "QWEN_CHAT_PROXY_URL": "https://chat.qwen.ai/"}))
write("config_parser", "json_bad", '{"LOG_LEVEL": "loud", "MAX_SSE_LINE_BYTES": [1]}')
