"""The official openai Python SDK against the gateway: it must parse every response."""
import json
import urllib.request

import openai
import pytest


def sim_state(gw):
    return json.loads(urllib.request.urlopen(gw["sim"] + "/__sim/state").read())


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway["base_url"], api_key=gateway["api_key"], max_retries=0)


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert "qwen3-max" in ids
    assert "qwen3-max-thinking" in ids


def test_non_streaming(client, gateway):
    r = client.chat.completions.create(
        model="qwen3-max", messages=[{"role": "user", "content": "Hello from the SDK"}]
    )
    assert r.object == "chat.completion"
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == sim_state(gateway)["last_completion"]["answer"]
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_with_usage(client, gateway):
    stream = client.chat.completions.create(
        model="qwen3-max-thinking",
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    content, reasoning, finish, usage, ids = "", "", None, None, set()
    for chunk in stream:
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == []
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        reasoning += getattr(delta, "reasoning_content", None) or (delta.model_extra or {}).get("reasoning_content") or ""
        finish = chunk.choices[0].finish_reason or finish
    last = sim_state(gateway)["last_completion"]
    assert content == last["answer"]
    assert reasoning == last["reasoning"]
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0
    assert len(ids) == 1


def test_errors_are_typed(fresh_gateway):
    gateway = fresh_gateway
    client = openai.OpenAI(base_url=gateway["base_url"], api_key=gateway["api_key"], max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="qwen3-max", messages=[], n=1)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="qwen3-max", messages=[{"role": "user", "content": "[[sim:http429]]"}])
    bad = openai.OpenAI(base_url=gateway["base_url"], api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_stream_error_after_content_is_raised_by_the_sdk(fresh_gateway):
    client = openai.OpenAI(base_url=fresh_gateway["base_url"], api_key=fresh_gateway["api_key"], max_retries=0)
    stream = client.chat.completions.create(
        model="qwen3-max",
        messages=[{"role": "user", "content": "[[sim:midstream_quota=3]]"}],
        stream=True,
    )
    got = ""
    with pytest.raises(openai.APIError):
        for chunk in stream:
            if chunk.choices:
                got += chunk.choices[0].delta.content or ""
    assert got
