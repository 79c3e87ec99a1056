"""STREAM_COMMIT=accepted with the official SDKs: the early comment and keep-alives parse, and
a failure after the early 200 reaches the caller as an exception, not as an empty answer."""
import json
import urllib.request

import anthropic
import openai
import pytest


def sim_state(gw):
    return json.loads(urllib.request.urlopen(gw["sim"] + "/__sim/state").read())


def test_openai_sdk_streams_through_comments(accepted_gateway):
    gw = accepted_gateway
    client = openai.OpenAI(base_url=gw["base_url"], api_key=gw["api_key"], max_retries=0)
    stream = client.chat.completions.create(
        model="qwen3-max",
        messages=[{"role": "user", "content": "[[sim:slow_first_event=1500]] [[sim:idle_gap=1500]] hi"}],
        stream=True,
    )
    content = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert content == sim_state(gw)["last_completion"]["answer"]


def test_failure_after_the_early_200_is_raised_by_both_sdks(accepted_gateway):
    gw = accepted_gateway
    client = openai.OpenAI(base_url=gw["base_url"], api_key=gw["api_key"], max_retries=0)
    stream = client.chat.completions.create(
        model="qwen3-max", messages=[{"role": "user", "content": "[[sim:empty]]"}], stream=True
    )
    with pytest.raises(openai.APIError) as e:
        for _ in stream:
            pass
    assert "empty" in str(e.value).lower()

    claude = anthropic.Anthropic(base_url=gw["base_url"][: -len("/v1")], api_key=gw["api_key"], max_retries=0)
    with pytest.raises(anthropic.APIStatusError):
        with claude.messages.stream(
            model="qwen3-max", max_tokens=64, messages=[{"role": "user", "content": "[[sim:empty]]"}]
        ) as s:
            for _ in s:
                pass
