"""The Gemini-native front door, driven by the official google-genai SDK.

``gemini-model`` passes through to the Gemini mock; ``openai-model`` and
``claude-model`` are translated; ``mock-model`` answers in process.
"""

from __future__ import annotations

import httpx
import pytest
from google import genai
from google.genai import errors, types

from tests.conftest import MASTER_KEY
from tests.mocks import MOCK_TEXT, PROMPT_TOKENS

MODELS = ["gemini-model", "openai-model", "claude-model"]
WEATHER = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="weather of a city",
    parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]),
)])


def _client(url: str, key: str = MASTER_KEY, version: str = "v1beta") -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=url, api_version=version, timeout=20_000))


@pytest.fixture(scope="module")
def client(gateway):
    return _client(gateway.url)


def _expected(model: str) -> str:
    return "Mocked answer here." if model == "mock-model" else MOCK_TEXT


def _sent(mocks, model):
    return mocks[{"gemini-model": "gemini", "openai-model": "openai", "claude-model": "anthropic"}[model]].recorder.last


@pytest.mark.parametrize("model", MODELS + ["mock-model"])
def test_generate_content_with_system_instruction(client, mocks, model):
    config = types.GenerateContentConfig(system_instruction="be brief", max_output_tokens=50, temperature=0.3)
    resp = client.models.generate_content(model=model, contents="hello", config=config)
    assert resp.text == _expected(model)
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    assert resp.usage_metadata.candidates_token_count > 0
    if model == "mock-model":
        return
    assert resp.usage_metadata.prompt_token_count == PROMPT_TOKENS
    sent = _sent(mocks, model)
    if model == "gemini-model":  # passthrough: the model in the URL rewritten, the body as sent
        assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
        assert sent.body["systemInstruction"]["parts"][0]["text"] == "be brief"
        assert sent.body["generationConfig"]["maxOutputTokens"] == 50 and "model" not in sent.body
    elif model == "openai-model":
        assert sent.body["messages"][0] == {"role": "system", "content": "be brief"}
        assert sent.body["max_tokens"] == 50 and sent.body["temperature"] == 0.3
        assert sent.body["model"] == "gpt-4o-mini"
    else:
        assert sent.body["system"] in ("be brief", [{"type": "text", "text": "be brief"}])
        assert sent.body["max_tokens"] == 50


@pytest.mark.parametrize("model", MODELS + ["mock-model"])
def test_generate_content_stream(client, mocks, model):
    chunks = list(client.models.generate_content_stream(model=model, contents="hello"))
    assert "".join(c.text or "" for c in chunks) == _expected(model)
    usage = [c.usage_metadata for c in chunks if c.usage_metadata and c.usage_metadata.total_token_count]
    assert usage and usage[-1].candidates_token_count > 0
    if model == "gemini-model":
        sent = _sent(mocks, model)
        assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        assert sent.query.get("alt") == "sse"
    elif model == "openai-model":
        assert _sent(mocks, model).body["stream"] is True


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_function_call_round_trip(client, mocks, model, stream):
    config = types.GenerateContentConfig(tools=[WEATHER])
    ask = "TRIGGER_TOOL weather?"
    if stream:
        chunks = list(client.models.generate_content_stream(model=model, contents=ask, config=config))
        calls = [fc for c in chunks for fc in (c.function_calls or [])]
    else:
        calls = client.models.generate_content(model=model, contents=ask, config=config).function_calls
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].args == {"city": "Paris"}
    contents = [
        types.Content(role="user", parts=[types.Part(text="weather?")]),
        types.Content(role="model", parts=[types.Part(function_call=calls[0])]),
        types.Content(role="user", parts=[types.Part.from_function_response(
            name="get_weather", response={"temp": 21})]),
    ]
    resp = client.models.generate_content(model=model, contents=contents, config=config)
    assert resp.text == MOCK_TEXT
    sent = _sent(mocks, model).body
    if model == "gemini-model":
        assert sent["contents"][2]["parts"][0]["functionResponse"]["response"] == {"temp": 21}
    elif model == "openai-model":
        assert sent["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
        tool = sent["messages"][2]
        assert tool["role"] == "tool" and tool["tool_call_id"] == sent["messages"][1]["tool_calls"][0]["id"]
        assert sent["tools"][0]["function"]["name"] == "get_weather"
    else:
        block = sent["messages"][-1]["content"][0]
        assert block["type"] == "tool_result"


def test_count_tokens(client, mocks, gateway):
    exact = client.models.count_tokens(model="gemini-model", contents="hello there")
    assert exact.total_tokens == PROMPT_TOKENS  # the Gemini mock's own count
    sent = mocks["gemini"].recorder.last
    assert sent.path == "/v1beta/models/gemini-2.5-flash:countTokens" and "model" not in sent.body
    for model in ("openai-model", "claude-model", "mock-model"):
        assert client.models.count_tokens(model=model, contents="hello there " * 20).total_tokens > 10
    raw = httpx.post(gateway.url + "/v1beta/models/openai-model:countTokens",
                     headers={"x-goog-api-key": MASTER_KEY}, json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert raw.status_code == 200 and raw.headers["x-lockgate-token-count"] == "estimated"


def test_v1_prefix_and_key_in_query(gateway):
    v1 = _client(gateway.url, version="v1")  # keep a reference: the SDK closes its transport on collection
    resp = v1.models.generate_content(model="openai-model", contents="hello")
    assert resp.text == MOCK_TEXT
    raw = httpx.post(gateway.url + "/v1beta/models/mock-model:generateContent?key=" + MASTER_KEY,
                     json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert raw.status_code == 200 and raw.json()["candidates"][0]["content"]["parts"][0]["text"]
    bearer = httpx.post(gateway.url + "/v1beta/models/mock-model:generateContent",
                        headers={"authorization": "Bearer " + MASTER_KEY},
                        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert bearer.status_code == 200


# ---------------------------------------------------------------- errors in Google's shape


def test_bad_key_is_a_google_error(gateway):
    bad = _client(gateway.url, key="wrong-key")
    with pytest.raises(errors.ClientError) as info:
        bad.models.generate_content(model="gemini-model", contents="hi")
    assert info.value.code == 401 and info.value.status == "UNAUTHENTICATED"
    raw = httpx.post(gateway.url + "/v1beta/models/gemini-model:generateContent",
                     json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert raw.status_code == 401
    assert set(raw.json()["error"]) == {"code", "message", "status"}


def test_unknown_model_is_404_not_found(client):
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="no-such-model", contents="hi")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
    assert "no-such-model" in info.value.message


def test_bad_requests(gateway):
    headers = {"x-goog-api-key": MASTER_KEY}
    url = gateway.url + "/v1beta/models/openai-model:"
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    no_sse = httpx.post(url + "streamGenerateContent", headers=headers, json=body)
    assert no_sse.status_code == 400 and "alt=sse" in no_sse.json()["error"]["message"]
    assert no_sse.json()["error"]["status"] == "INVALID_ARGUMENT"
    missing = httpx.post(url + "generateContent", headers=headers, json={"generationConfig": {}})
    assert missing.status_code == 400 and "contents" in missing.json()["error"]["message"]
    unknown = httpx.post(url + "embedText", headers=headers, json=body)
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"


def test_upstream_rate_limit_in_google_shape(gateway, tmp_path_factory, mocks):
    from tests.conftest import gateway_config, start_gateway

    own = start_gateway(gateway_config(mocks), tmp_path_factory.mktemp("gemini-door-429"))
    own_client = _client(own.url)
    try:
        with pytest.raises(errors.ClientError) as info:
            own_client.models.generate_content(model="openai-model", contents="TRIGGER_429")
        assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    finally:
        own.process.terminate()
        own.process.wait(10)


# ---------------------------------------------------------------- units


def test_route_match_and_native_bodies():
    from lockgate import gemini_door
    from lockgate.dialects import gemini

    assert gemini_door.match("/v1beta/models/gemini-model:generateContent") == ("gemini-model", "generateContent")
    assert gemini_door.match("/models/team/model-a:countTokens") == ("team/model-a", "countTokens")
    assert gemini_door.match("/v1beta/models/no-method") is None
    body = gemini_door.native_count_body({"model": "x", "generateContentRequest": {"model": "models/x"}}, "g-1")
    assert body == {"generateContentRequest": {"model": "models/g-1"}}
    merged = gemini.merge_defaults({"contents": [], "generationConfig": {"temperature": 1}},
                                   {"max_tokens": 9, "temperature": 0})
    assert merged == {"contents": [], "generationConfig": {"maxOutputTokens": 9, "temperature": 1}}
