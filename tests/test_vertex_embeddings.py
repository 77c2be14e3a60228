"""Vertex AI embeddings (``:predict``) and exact token counting (Gemini ``:countTokens``, Claude
``count-tokens:rawPredict``) through the gateway, with the official SDKs as clients.

The mock (tests/mocks/vertex_api.py) checks the OAuth2 token, Vertex's body shapes (``instances``,
one instance for gemini-embedding-*, countTokens without ``generateContentRequest``, ``model`` in
Claude's count body) and answers as Vertex does.
"""

from __future__ import annotations

import hashlib
import json

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from tests.conftest import MASTER_KEY, MockHost, start_gateway
from tests.mocks import PROMPT_TOKENS
from tests.mocks import vertex_api as vmock
from tests.test_vertex import CLAUDE, _service_account

PREFIX = "/v1/projects/lockgate-test-project/locations/us-central1/publishers"


@pytest.fixture(scope="module")
def vertex():
    state = vmock.TokenState()
    host = MockHost()
    server = host.start("vertex", vmock.app_factory(state))
    server.state = state  # type: ignore[attr-defined]
    yield server
    host.stop()


@pytest.fixture(scope="module")
def gw(vertex, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vertex-embed")
    account = tmp / "sa.json"
    account.write_text(json.dumps(_service_account(vertex.state, "embed", vertex.url + "/token")))

    def dep(name: str, model: str) -> dict:
        return {"model_name": name, "litellm_params": {"model": model, "api_base": vertex.url,
                                                       "vertex_credentials": str(account),
                                                       "vertex_location": "us-central1"}}

    config = {
        "model_list": [dep("text-embed", "vertex_ai/text-embedding-005"),
                       dep("gemini-embed", "vertex_ai/gemini-embedding-001"),
                       dep("gemini", "vertex_ai/gemini-2.5-flash"),
                       dep("claude", f"vertex_ai/{CLAUDE}")],
        "general_settings": {"master_key": MASTER_KEY},
        "router_settings": {"disable_cooldowns": True, "num_retries": 0},
    }
    running = start_gateway(config, tmp, {"GOOGLE_APPLICATION_CREDENTIALS": ""})
    yield running
    running.process.terminate()
    running.process.wait(10)


@pytest.fixture(scope="module")
def oai(gw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def ant(gw):
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def gem(gw):
    return genai.Client(api_key=MASTER_KEY, http_options=types.HttpOptions(base_url=gw.url, api_version="v1beta",
                                                                           timeout=20_000))


def _calls(vertex, suffix: str) -> list:  # noqa: ANN001
    return [r for r in vertex.recorder.requests if r.path.endswith(suffix)]


def _vector(text: str, size: int) -> list[float]:
    """What the mock answers for ``text`` (so order and dimensions can be checked)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % 32] / 255 * 2 - 1, 6) for i in range(size)]


# ---------------------------------------------------------------- embeddings


def test_text_embedding_batch_in_one_predict_call(oai, vertex):
    before = len(_calls(vertex, ":predict"))
    resp = oai.embeddings.create(model="text-embed", input=["red apple", "a green pear tree"], dimensions=4,
                                 encoding_format="float")
    assert [d.embedding for d in resp.data] == [_vector("red apple", 4), _vector("a green pear tree", 4)]
    assert [d.index for d in resp.data] == [0, 1]
    assert resp.usage.prompt_tokens == 2 + 4 and resp.usage.total_tokens == 6
    calls = _calls(vertex, ":predict")[before:]
    assert len(calls) == 1
    assert calls[0].path == f"{PREFIX}/google/models/text-embedding-005:predict"
    assert calls[0].body == {"instances": [{"content": "red apple"}, {"content": "a green pear tree"}],
                             "parameters": {"outputDimensionality": 4}}
    assert calls[0].headers["authorization"].startswith("Bearer ya29.mock-embed-")


def test_single_string_without_dimensions(oai, vertex):
    resp = oai.embeddings.create(model="text-embed", input="hello world", encoding_format="float")
    assert resp.data[0].embedding == _vector("hello world", 8)
    assert "parameters" not in _calls(vertex, ":predict")[-1].body


def test_gemini_embedding_sends_one_instance_per_call_and_keeps_order(oai, vertex):
    before = len(_calls(vertex, ":predict"))
    texts = ["one", "two words", "three little words"]
    resp = oai.embeddings.create(model="gemini-embed", input=texts, encoding_format="float")
    assert [d.embedding for d in resp.data] == [_vector(t, 8) for t in texts]
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert resp.usage.prompt_tokens == 1 + 2 + 3
    calls = _calls(vertex, ":predict")[before:]
    assert [c.body["instances"] for c in calls] == [[{"content": t}] for t in texts]
    assert all(c.path == f"{PREFIX}/google/models/gemini-embedding-001:predict" for c in calls)


def test_token_array_input_is_a_400(oai):
    with pytest.raises(openai.BadRequestError) as info:
        oai.embeddings.create(model="text-embed", input=[[1, 2, 3]], encoding_format="float")
    assert "list of strings" in info.value.message


# ---------------------------------------------------------------- token counting


def test_anthropic_count_tokens_on_vertex_gemini_is_exact(ant, vertex):
    resp = ant.messages.with_raw_response.count_tokens(
        model="gemini", system="be brief", messages=[{"role": "user", "content": "how many tokens?"}])
    assert resp.headers["x-lockgate-token-count"] == "exact"
    assert resp.parse().input_tokens == PROMPT_TOKENS
    sent = _calls(vertex, ":countTokens")[-1]
    assert sent.path == f"{PREFIX}/google/models/gemini-2.5-flash:countTokens"
    assert "generateContentRequest" not in sent.body and "model" not in sent.body
    assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "how many tokens?"}]}]
    assert sent.body["systemInstruction"]["parts"][0]["text"] == "be brief"


def test_anthropic_count_tokens_on_vertex_claude_is_exact(ant, vertex):
    resp = ant.messages.with_raw_response.count_tokens(
        model="claude", system="be brief", messages=[{"role": "user", "content": "how many tokens?"}])
    assert resp.headers["x-lockgate-token-count"] == "exact"
    assert resp.parse().input_tokens == PROMPT_TOKENS
    sent = _calls(vertex, "count-tokens:rawPredict")[-1]
    assert sent.path == f"{PREFIX}/anthropic/models/count-tokens:rawPredict"
    assert sent.body["model"] == CLAUDE and sent.body["system"] == "be brief"
    assert sent.headers["authorization"].startswith("Bearer ya29.mock-embed-")


def test_gemini_front_door_count_tokens_on_vertex_gemini_is_exact(gem, vertex):
    resp = gem.models.count_tokens(model="gemini", contents="how many tokens?")
    assert resp.total_tokens == PROMPT_TOKENS
    sent = _calls(vertex, ":countTokens")[-1]
    assert sent.path == f"{PREFIX}/google/models/gemini-2.5-flash:countTokens"
    assert sent.body == {"contents": [{"role": "user", "parts": [{"text": "how many tokens?"}]}]}


def test_gemini_front_door_count_tokens_on_vertex_claude_is_estimated(gem, vertex):
    """Translated counting from the Gemini door is not implemented (as for Anthropic's own API)."""
    before = len(_calls(vertex, "count-tokens:rawPredict"))
    resp = gem.models.count_tokens(model="claude", contents="how many tokens are in this sentence?")
    assert 0 < resp.total_tokens < 40
    assert len(_calls(vertex, "count-tokens:rawPredict")) == before
