"""Agent-client SDKs against the gateway: tools on chat, the Responses API (openai SDK) and
the Messages API (anthropic SDK). Every response must parse without errors."""
import json
import urllib.request

import anthropic
import openai
import pytest

CALL = [
    "Let me look that up.",
    "\n<tool_c",
    'all>\n{"name": "get_weather", "arguments": {"city": "Par',
    'is"}}\n</tool_call>',
]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def script(gw, answer):
    req = urllib.request.Request(
        gw["sim"] + "/__sim/script",
        data=json.dumps({"answer": answer}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req).read()


def last(gw):
    return json.loads(urllib.request.urlopen(gw["sim"] + "/__sim/state").read())["last_completion"]


@pytest.fixture
def oai(gateway):
    return openai.OpenAI(base_url=gateway["base_url"], api_key=gateway["api_key"], max_retries=0)


@pytest.fixture
def claude(gateway):
    return anthropic.Anthropic(base_url=gateway["base_url"][: -len("/v1")], api_key=gateway["api_key"], max_retries=0)


def test_chat_tools_non_stream_and_stream(oai, gateway):
    script(gateway, CALL)
    r = oai.chat.completions.create(
        model="qwen3-max", tools=[WEATHER], messages=[{"role": "user", "content": "Weather in Paris?"}]
    )
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    script(gateway, CALL)
    stream = oai.chat.completions.create(
        model="qwen3-max", tools=[WEATHER], stream=True, messages=[{"role": "user", "content": "Weather in Paris?"}]
    )
    args, names, finish, content = "", [], None, ""
    for chunk in stream:
        d = chunk.choices[0].delta
        content += d.content or ""
        for tc in d.tool_calls or []:
            if tc.function.name:
                names.append(tc.function.name)
            args += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert names == ["get_weather"] and json.loads(args) == {"city": "Paris"}
    assert finish == "tool_calls" and "<tool" not in content

    # The second step: the result goes back and the model answers.
    script(gateway, ["It is sunny."])
    r2 = oai.chat.completions.create(
        model="qwen3-max",
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "22C"},
        ],
    )
    assert r2.choices[0].message.content == "It is sunny."
    assert "22C" in last(gateway)["prompt"]


def test_responses_api(oai, gateway):
    r = oai.responses.create(model="qwen3-max", instructions="Be brief.", input="Hello!")
    assert r.status == "completed"
    assert r.output_text == last(gateway)["answer"]

    script(gateway, CALL)
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}
    events = list(oai.responses.create(model="qwen3-max", tools=[tool], input="Weather in Paris?", stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    calls = [o for o in events[-1].response.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}

    script(gateway, ["Sunny."])
    r = oai.responses.create(
        model="qwen3-max",
        tools=[tool],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "22C"},
        ],
    )
    assert r.output_text == "Sunny."


def test_anthropic_messages(claude, gateway):
    m = claude.messages.create(
        model="qwen3-max-thinking",
        max_tokens=1024,
        system="Be brief.",
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
    )
    assert m.stop_reason == "end_turn"
    kinds = [b.type for b in m.content]
    assert kinds == ["thinking", "text"]
    assert m.content[1].text == last(gateway)["answer"]
    assert m.usage.output_tokens > 0

    with claude.messages.stream(
        model="qwen3-max", max_tokens=1024, messages=[{"role": "user", "content": "Stream please"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == last(gateway)["answer"]
    assert final.stop_reason == "end_turn"

    n = claude.messages.count_tokens(model="qwen3-max", messages=[{"role": "user", "content": "Hello there"}])
    assert n.input_tokens > 0


def test_anthropic_tools_and_errors(claude, gateway):
    tools = [{"name": "get_weather", "description": "w", "input_schema": WEATHER["function"]["parameters"]}]
    script(gateway, CALL)
    with claude.messages.stream(
        model="qwen3-max", max_tokens=1024, tools=tools, messages=[{"role": "user", "content": "Weather in Paris?"}]
    ) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    use = [b for b in final.content if b.type == "tool_use"][0]
    assert use.name == "get_weather" and use.input == {"city": "Paris"}

    script(gateway, ["Sunny."])
    m = claude.messages.create(
        model="qwen3-max",
        max_tokens=1024,
        tools=tools,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [b.model_dump() for b in final.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "22C"}]},
        ],
    )
    assert m.content[0].text == "Sunny."

    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    bad = anthropic.Anthropic(base_url=gateway["base_url"][: -len("/v1")], api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="qwen3-max", max_tokens=10, messages=[{"role": "user", "content": "x"}])


def test_anthropic_rate_limit_is_typed(fresh_gateway):
    c = anthropic.Anthropic(base_url=fresh_gateway["base_url"][: -len("/v1")], api_key=fresh_gateway["api_key"], max_retries=0)
    with pytest.raises(anthropic.RateLimitError):
        c.messages.create(model="qwen3-max", max_tokens=10, messages=[{"role": "user", "content": "[[sim:http429]]"}])
