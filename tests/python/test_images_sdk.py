"""The official openai Python SDK's images API against the gateway's generation endpoints."""
import base64
import json
import urllib.request

import openai
import pytest

# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def sim_state(gw):
    return json.loads(urllib.request.urlopen(gw["sim"] + "/__sim/state").read())


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway["base_url"], api_key=gateway["api_key"], max_retries=0)


def test_generate_url(client, gateway):
    r = client.images.generate(model="qwen3-max-image", prompt="a red fox", size="1792x1024")
    assert len(r.data) == 1
    url = r.data[0].url
    assert "/cdn/output/" in url and "?key=" in url
    generation = sim_state(gateway)["media"]["last_generation"]
    assert generation["result_url"] == url
    assert generation["size"] == "16:9"


def test_generate_b64_json_matches_the_cdn(client, gateway):
    r = client.images.generate(prompt="a blue whale", response_format="b64_json", n=2)
    assert len(r.data) == 2
    url = sim_state(gateway)["media"]["last_generation"]["result_url"]
    served = urllib.request.urlopen(url).read()
    for image in r.data:
        assert image.url is None
        assert base64.b64decode(image.b64_json) == served


def test_bad_n_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="too many", n=9)
    assert e.value.status_code == 400


def test_edit_with_a_file(client, gateway):
    r = client.images.edit(image=("in.png", PNG, "image/png"), prompt="add a hat")
    generation = sim_state(gateway)["media"]["last_generation"]
    assert generation["chat_type"] == "image_edit"
    assert generation["known_uploads"] == [True]
    assert r.data[0].url == generation["result_url"]
