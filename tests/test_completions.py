"""The legacy ``POST /v1/completions`` front door, driven by the openai SDK's ``client.completions``.

Passed through to providers that serve ``/completions`` (an OpenAI mock, Azure's deployment
URL); translated through the chat path for every other provider (Anthropic, Cohere, the mock
provider) and rendered back as ``text_completion`` objects and stream chunks.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import MASTER_KEY, MockHost, start_gateway
from tests.mocks import COMPLETION_TOKENS, MOCK_API_KEY, MOCK_TEXT, PROMPT_TOKENS
from tests.mocks import anthropic_api, azure_api, cohere_api


@pytest.fixture(scope="module")
def servers():
    host = MockHost()
    yield {
        "legacy": host.start("legacy", azure_api.create_legacy_app),
        "azure": host.start("azure", azure_api.create_app),
        "anthropic": host.start("anthropic", anthropic_api.create_app),
        "cohere": host.start("cohere", cohere_api.create_app),
    }
    host.stop()


@pytest.fixture(scope="module")
def gw(servers, tmp_path_factory):
    def entry(name: str, model: str, base: str | None, **extra: object) -> dict:
        params = {"model": model, "api_key": MOCK_API_KEY, **extra}
        if base:
            params["api_base"] = base
        return {"model_name": name, "litellm_params": params}

    config = {
        "model_list": [
            entry("instruct", "openai/gpt-3.5-turbo-instruct", servers["legacy"].url + "/v1"),
            entry("azure-instruct", "azure/instruct-prod", servers["azure"].url),
            entry("claude", "anthropic/claude-sonnet-4-5", servers["anthropic"].url),
            entry("cohere", "cohere/command-a-03-2025", servers["cohere"].url),
            entry("mocked", "mock/m", None, mock_response="Mocked answer here."),
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "router_settings": {"disable_cooldowns": True},
    }
    gateway = start_gateway(config, tmp_path_factory.mktemp("completions"))
    yield gateway
    gateway.process.terminate()
    gateway.process.wait(10)


@pytest.fixture(scope="module")
def oa(gw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)


def _text(chunks: list) -> str:
    return "".join(c.choices[0].text for c in chunks if c.choices)


# ---------------------------------------------------------------- passthrough


def test_passthrough_unary(oa, servers):
    resp = oa.completions.create(model="instruct", prompt="Say this is a test", max_tokens=7, temperature=0)
    assert resp.object == "text_completion"
    assert resp.choices[0].text == azure_api.LEGACY_TEXT
    assert resp.usage.prompt_tokens == PROMPT_TOKENS
    sent = servers["legacy"].recorder.last
    assert sent.path == "/v1/completions"
    assert sent.body == {"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "max_tokens": 7,
                         "temperature": 0}


def test_passthrough_keeps_echo(oa):
    resp = oa.completions.create(model="instruct", prompt="Once upon a time", echo=True)
    assert resp.choices[0].text == "Once upon a time" + azure_api.LEGACY_TEXT


@pytest.mark.parametrize("include_usage", [True, False])
def test_passthrough_stream(oa, servers, gw, include_usage):
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(oa.completions.create(model="instruct", prompt="hello", stream=True, **kwargs))
    assert _text(chunks) == azure_api.LEGACY_TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == (1 if include_usage else 0)
    assert servers["legacy"].recorder.last.body["stream_options"] == {"include_usage": True}
    record = [json.loads(line) for line in gw.log().splitlines() if line.startswith("{")][-1]
    assert (record["route"], record["passthrough"], record["prompt_tokens"]) == ("completions", True, PROMPT_TOKENS)


def test_passthrough_to_azure_deployment(oa, servers):
    resp = oa.completions.create(model="azure-instruct", prompt="hello")
    assert resp.choices[0].text == azure_api.LEGACY_TEXT
    sent = servers["azure"].recorder.last
    assert sent.path == "/openai/deployments/instruct-prod/completions"
    assert sent.headers["api-key"] == MOCK_API_KEY


# ---------------------------------------------------------------- translated through chat


@pytest.mark.parametrize("model,server,upstream", [("claude", "anthropic", "claude-sonnet-4-5"),
                                                   ("cohere", "cohere", "command-a-03-2025")])
def test_translated_unary(oa, servers, model, server, upstream):
    resp = oa.completions.create(model=model, prompt=["Write a haiku"], max_tokens=20, stop=["\n\n"])
    assert resp.object == "text_completion"
    assert resp.model == upstream  # as the chat front door does: the model that answered
    assert resp.id.startswith("cmpl-")
    assert resp.choices[0].text == MOCK_TEXT
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    sent = servers[server].recorder.last.body
    assert sent["messages"] == [{"role": "user", "content": "Write a haiku"}] or \
        sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Write a haiku"}]}]
    assert sent["max_tokens"] == 20


@pytest.mark.parametrize("model", ["claude", "cohere", "mocked"])
def test_translated_stream(oa, model):
    chunks = list(oa.completions.create(model=model, prompt="hello", stream=True,
                                        stream_options={"include_usage": True}))
    expected = "Mocked answer here." if model == "mocked" else MOCK_TEXT
    assert _text(chunks) == expected
    assert all(c.object == "text_completion" for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].prompt_tokens > 0


def test_translated_stream_without_usage_has_no_usage_chunk(oa):
    chunks = list(oa.completions.create(model="claude", prompt="hello", stream=True))
    assert _text(chunks) == MOCK_TEXT
    assert all(c.choices for c in chunks)


@pytest.mark.parametrize("field,value", [("echo", True), ("suffix", "end"), ("logprobs", 2), ("best_of", 3)])
def test_translated_refuses_what_chat_cannot_do(oa, field, value):
    with pytest.raises(openai.BadRequestError) as info:
        oa.completions.create(model="claude", prompt="hello", **{field: value})
    assert info.value.body["param"] == field
    assert field in info.value.message


def test_prompt_validation(oa):
    with pytest.raises(openai.BadRequestError) as several:
        oa.completions.create(model="cohere", prompt=["one", "two"])
    assert several.value.body["param"] == "prompt"
    with pytest.raises(openai.BadRequestError) as tokens:
        oa.completions.create(model="cohere", prompt=[1, 2, 3])
    assert tokens.value.body["param"] == "prompt"
    with pytest.raises(openai.BadRequestError) as missing:
        oa.post("/completions", body={"model": "cohere"}, cast_to=object)
    assert "prompt" in missing.value.message


def test_translated_upstream_error_in_openai_shape(oa):
    with pytest.raises(openai.RateLimitError) as info:
        oa.completions.create(model="claude", prompt="TRIGGER_429")
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.body["type"] == "rate_limit_error"
