"""Upstream errors that are not error JSON of the client's dialect are never relayed as they came.

A provider (``tests/mocks/faulty_api.create_broken_app``) answers plain text, HTML, empty and
truncated-JSON errors, and valid error JSON of its own format, on every provider path.  Through a real
gateway, every front door (chat, messages, responses, completions, embeddings, Gemini
generateContent / streamGenerateContent / countTokens, count_tokens), in passthrough and translated
modes, stream and not: the client gets its own dialect's error JSON, an upstream 5xx is a 502 whose
message names the provider's status, an upstream 4xx keeps its status (and Retry-After).
"""

from __future__ import annotations

import httpx
import pytest

from lockgate.errors import is_error_body
from tests.conftest import MASTER_KEY, MockHost, start_gateway
from tests.mocks import MOCK_API_KEY
from tests.mocks.faulty_api import BROKEN_MODES, VALID_BODIES, create_broken_app

PROVIDERS = {"openai": "openai/gpt-4o-mini", "anthropic": "anthropic/claude-sonnet-4-5",
             "gemini": "gemini/gemini-2.5-flash"}
MODES = [*BROKEN_MODES, "valid400", "valid429"]
HI = [{"role": "user", "content": "hi"}]


def _base(url: str, provider: str, mode: str) -> str:
    return f"{url}/{mode}/v1" if provider == "openai" else f"{url}/{mode}"


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    host = MockHost()
    mock = host.start("broken", create_broken_app)
    models = [{"model_name": f"{provider}-{mode}",
               "litellm_params": {"model": model, "api_base": _base(mock.url, provider, mode), "api_key": MOCK_API_KEY}}
              for provider, model in PROVIDERS.items() for mode in MODES]
    config = {"model_list": models, "general_settings": {"master_key": MASTER_KEY},
              "router_settings": {"disable_cooldowns": True}}
    gw = start_gateway(config, tmp_path_factory.mktemp("broken"))
    yield gw
    gw.process.terminate()
    gw.process.wait(10)
    host.stop()


# door -> (path of the request, its body, the client's error shape, providers it reaches upstream)
def _doors(model: str) -> dict[str, tuple[str, dict, str, tuple[str, ...]]]:
    gem = f"/v1beta/models/{model}"
    contents = [{"role": "user", "parts": [{"text": "hi"}]}]
    return {
        "chat": ("/v1/chat/completions", {"model": model, "messages": HI}, "openai", ("openai", "anthropic", "gemini")),
        "chat-stream": ("/v1/chat/completions", {"model": model, "messages": HI, "stream": True}, "openai",
                        ("openai", "anthropic", "gemini")),
        "messages": ("/v1/messages", {"model": model, "max_tokens": 5, "messages": HI}, "anthropic",
                     ("openai", "anthropic", "gemini")),
        "messages-stream": ("/v1/messages", {"model": model, "max_tokens": 5, "messages": HI, "stream": True},
                            "anthropic", ("openai", "anthropic", "gemini")),
        "count_tokens": ("/v1/messages/count_tokens", {"model": model, "messages": HI}, "anthropic",
                         ("anthropic", "gemini")),
        "responses": ("/v1/responses", {"model": model, "input": "hi"}, "openai", ("openai", "anthropic", "gemini")),
        "responses-stream": ("/v1/responses", {"model": model, "input": "hi", "stream": True}, "openai",
                             ("openai", "anthropic", "gemini")),
        "completions": ("/v1/completions", {"model": model, "prompt": "hi"}, "openai",
                        ("openai", "anthropic", "gemini")),
        "completions-stream": ("/v1/completions", {"model": model, "prompt": "hi", "stream": True}, "openai",
                               ("openai", "anthropic", "gemini")),
        "embeddings": ("/v1/embeddings", {"model": model, "input": "hi"}, "openai", ("openai", "gemini")),
        "generateContent": (gem + ":generateContent", {"contents": contents}, "google",
                            ("openai", "anthropic", "gemini")),
        "streamGenerateContent": (gem + ":streamGenerateContent?alt=sse", {"contents": contents}, "google",
                                  ("openai", "anthropic", "gemini")),
        "countTokens": (gem + ":countTokens", {"contents": contents}, "google", ("gemini",)),
    }


DOORS = list(_doors("m"))


def _expected_status(mode: str) -> int:
    status = BROKEN_MODES[mode][0] if mode in BROKEN_MODES else int(mode[5:])
    return 502 if status >= 500 else status


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("door", DOORS)
def test_every_door_answers_upstream_errors_in_its_own_dialect(broken, door, provider):
    if provider not in _doors("m")[door][3]:
        pytest.skip(f"{door} does not call a {provider} deployment upstream")
    passthrough = {"chat": "openai", "messages": "anthropic", "count_tokens": "anthropic", "responses": "openai",
                   "completions": "openai", "embeddings": "openai", "generateContent": "gemini",
                   "streamGenerateContent": "gemini", "countTokens": "gemini"}[door.removesuffix("-stream")] == provider
    for mode in MODES:
        path, body, shape, _ = _doors(f"{provider}-{mode}")[door]
        resp = httpx.post(broken.url + path, json=body, headers={"authorization": "Bearer " + MASTER_KEY},
                          timeout=20)
        where = f"{door} -> {provider} ({'passthrough' if passthrough else 'translated'}), upstream {mode}"
        assert resp.status_code == _expected_status(mode), (where, resp.status_code, resp.text)
        assert resp.headers["content-type"].startswith("application/json"), where
        assert is_error_body(shape, resp.content), (where, resp.text)
        text = resp.text
        assert "Server got itself in trouble" not in text and "<html" not in text.lower(), where
        assert "The server had an err" not in text and "detail" not in text, where
        upstream = BROKEN_MODES[mode][0] if mode in BROKEN_MODES else int(mode[5:])
        assert resp.headers["x-lockgate-upstream-status"] == str(upstream), where
        if upstream == 429:
            assert resp.headers["retry-after"] == "3", where
        if mode in BROKEN_MODES or upstream >= 500:
            assert f"provider {provider} answered {upstream}" in text, (where, text)
        elif passthrough:  # a valid error JSON of the client's own dialect: relayed as it came
            assert resp.json() == VALID_BODIES[shape], (where, text)
        if mode == "text500":
            assert "with a text/plain body that is not an error JSON" in text, (where, text)
        if mode == "empty503":
            assert "with an empty body" in text, (where, text)


def test_sdks_see_a_502_with_the_provider_status(broken):
    import anthropic
    import openai

    client = openai.OpenAI(base_url=broken.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(openai.InternalServerError) as info:
        client.responses.create(model="openai-text500", input="hi")
    assert info.value.status_code == 502
    assert "provider openai answered 500" in info.value.body["message"]
    claude = anthropic.Anthropic(base_url=broken.url, api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as info2:
        claude.messages.create(model="anthropic-html502", max_tokens=5, messages=HI)
    assert info2.value.status_code == 502
    assert info2.value.body["error"]["type"] == "api_error"
    with pytest.raises(anthropic.BadRequestError) as info3:
        claude.messages.create(model="openai-text400", max_tokens=5, messages=HI)
    assert "provider openai answered 400" in info3.value.body["error"]["message"]


@pytest.fixture(scope="module")
def overloaded(tmp_path_factory):
    host = MockHost()
    mock = host.start("broken", create_broken_app)
    models = [{"model_name": f"{provider}-overloaded", "litellm_params": {
        "model": model, "api_base": _base(mock.url, provider, "overloadedevent"), "api_key": MOCK_API_KEY}}
        for provider, model in PROVIDERS.items()]
    gw = start_gateway({"model_list": models, "general_settings": {"master_key": MASTER_KEY},
                        "router_settings": {"disable_cooldowns": True}}, tmp_path_factory.mktemp("overloaded"))
    yield gw
    gw.process.terminate()
    gw.process.wait(10)
    host.stop()


@pytest.mark.parametrize("path, body, shape, provider", [
    ("/v1/chat/completions", {"model": "anthropic-overloaded", "messages": HI, "stream": True}, "openai", "anthropic"),
    ("/v1/responses", {"model": "gemini-overloaded", "input": "hi", "stream": True}, "openai", "gemini"),
    ("/v1beta/models/anthropic-overloaded:streamGenerateContent?alt=sse",
     {"contents": [{"parts": [{"text": "hi"}]}]}, "google", "anthropic"),
])
def test_an_error_event_before_the_first_byte_is_a_502_naming_the_provider_status(overloaded, path, body, shape,
                                                                                  provider):
    resp = httpx.post(overloaded.url + path, json=body, headers={"authorization": "Bearer " + MASTER_KEY}, timeout=20)
    assert resp.status_code == 502, resp.text
    assert is_error_body(shape, resp.content), resp.text
    upstream = resp.headers["x-lockgate-upstream-status"]
    assert upstream in ("529", "503") and f"provider {provider} answered {upstream}" in resp.text
