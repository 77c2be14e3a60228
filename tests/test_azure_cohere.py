"""Azure OpenAI, Azure AI model inference and Cohere behind the gateway, driven by the official SDKs.

The mocks check what the real services check (paths, ``api-version``, ``api-key`` / Bearer /
Entra token, Cohere's field names and tool-call pairing), so a passing test means the gateway
built the provider's request and translated its answers (and streams) both ways.
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from lockgate.providers.azure import DEFAULT_API_VERSION
from tests.conftest import MASTER_KEY, MockHost, start_gateway
from tests.mocks import COMPLETION_TOKENS, MOCK_API_KEY, MOCK_TEXT, PROMPT_TOKENS
from tests.mocks import azure_api, cohere_api
from tests.mocks.openai_api import _vector

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
TOOLS_ANTHROPIC = [{"name": "get_weather", "description": "weather of a city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def _entry(name: str, model: str, base: str, **extra: object) -> dict:
    return {"model_name": name, "litellm_params": {"model": model, "api_base": base, **extra}}


@pytest.fixture(scope="module")
def servers():
    host = MockHost()
    yield {
        "azure": host.start("azure", azure_api.create_app),
        "azure_ai": host.start("azure_ai", azure_api.create_ai_app),
        "cohere": host.start("cohere", cohere_api.create_app),
    }
    host.stop()


@pytest.fixture(scope="module")
def gw(servers, tmp_path_factory):
    az, ai, co = servers["azure"].url, servers["azure_ai"].url + "/models", servers["cohere"].url
    config = {
        "model_list": [
            _entry("azure-chat", "azure/gpt4o-prod", az, api_key=MOCK_API_KEY, api_version="2024-10-21"),
            _entry("azure-default-version", "azure/gpt4o-prod", az + "/openai", api_key=MOCK_API_KEY),
            _entry("azure-entra", "azure/gpt4o-prod", az, azure_ad_token="os.environ/TEST_AZURE_AD_TOKEN"),
            _entry("azure-embed", "azure/embed-prod", az, api_key=MOCK_API_KEY),
            _entry("azure-ai", "azure_ai/Mistral-large-2407", ai, api_key=MOCK_API_KEY,
                   api_version="2024-05-01-preview"),
            _entry("azure-ai-embed", "azure_ai/Cohere-embed-v3-english", ai, api_key=MOCK_API_KEY),
            _entry("cohere-chat", "cohere/command-a-03-2025", co, api_key=MOCK_API_KEY),
            _entry("cohere-embed", "cohere/embed-english-v3.0", co + "/v2", api_key=MOCK_API_KEY),
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "router_settings": {"disable_cooldowns": True},
    }
    gateway = start_gateway(config, tmp_path_factory.mktemp("azure_cohere"),
                            {"TEST_AZURE_AD_TOKEN": azure_api.ENTRA_TOKEN})
    yield gateway
    gateway.process.terminate()
    gateway.process.wait(10)


@pytest.fixture(scope="module")
def oa(gw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def an(gw):
    return anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------- Azure OpenAI


def test_azure_chat_openai_sdk_uses_deployment_url_version_and_api_key(oa, servers):
    resp = oa.chat.completions.create(model="azure-chat", messages=_user("hello"))
    assert resp.choices[0].message.content == MOCK_TEXT
    assert resp.usage.prompt_tokens == PROMPT_TOKENS
    sent = servers["azure"].recorder.last
    assert sent.path == "/openai/deployments/gpt4o-prod/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == MOCK_API_KEY
    assert "authorization" not in sent.headers


def test_azure_default_api_version_and_openai_suffix_in_api_base(oa, servers):
    resp = oa.chat.completions.create(model="azure-default-version", messages=_user("hello"))
    assert resp.choices[0].message.content == MOCK_TEXT
    sent = servers["azure"].recorder.last
    assert sent.path == "/openai/deployments/gpt4o-prod/chat/completions"
    assert sent.query == {"api-version": DEFAULT_API_VERSION}


@pytest.mark.parametrize("include_usage", [True, False])
def test_azure_stream_openai_sdk(oa, include_usage):
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(oa.chat.completions.create(model="azure-chat", messages=_user("hello"), stream=True, **kwargs))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == MOCK_TEXT
    usage = [c.usage for c in chunks if c.usage]
    if include_usage:
        assert usage[-1].completion_tokens == COMPLETION_TOKENS
    else:
        assert usage == []  # asked of Azure for accounting, not shown to a client that did not ask


def test_azure_through_anthropic_sdk(an):
    msg = an.messages.create(model="azure-chat", max_tokens=64, messages=_user("hello"))
    assert msg.content[0].text == MOCK_TEXT
    assert msg.usage.output_tokens == COMPLETION_TOKENS
    with an.messages.stream(model="azure-chat", max_tokens=64, messages=_user("hello")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == MOCK_TEXT
    assert final.stop_reason == "end_turn"
    tool = an.messages.create(model="azure-chat", max_tokens=64, tools=TOOLS_ANTHROPIC,
                              messages=_user("TRIGGER_TOOL weather?"))
    assert tool.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in tool.content if b.type == "tool_use"] == [("get_weather", {"city": "Paris"})]


def test_azure_entra_id_token_is_sent_as_bearer_and_never_logged(oa, servers, gw):
    resp = oa.chat.completions.create(model="azure-entra", messages=_user("hello"))
    assert resp.choices[0].message.content == MOCK_TEXT
    sent = servers["azure"].recorder.last
    assert sent.headers["authorization"] == "Bearer " + azure_api.ENTRA_TOKEN
    assert "api-key" not in sent.headers
    assert azure_api.ENTRA_TOKEN not in gw.log()


def test_azure_embeddings(oa, servers):
    resp = oa.embeddings.create(model="azure-embed", input=["a", "b"])
    assert [d.embedding for d in resp.data] == [_vector("a"), _vector("b")]
    sent = servers["azure"].recorder.last
    assert sent.path == "/openai/deployments/embed-prod/embeddings"
    assert sent.query["api-version"] == DEFAULT_API_VERSION


def test_azure_rate_limit_keeps_status_and_retry_after(oa):
    with pytest.raises(openai.RateLimitError) as info:
        oa.chat.completions.create(model="azure-chat", messages=_user("TRIGGER_429"))
    assert info.value.response.headers["retry-after"] == "7"
    assert "rate limit" in info.value.message


# ---------------------------------------------------------------- Azure AI model inference


def test_azure_ai_chat_and_stream(oa, an, servers):
    resp = oa.chat.completions.create(model="azure-ai", messages=_user("hello"))
    assert resp.choices[0].message.content == MOCK_TEXT
    sent = servers["azure_ai"].recorder.last
    assert sent.path == "/models/chat/completions"
    assert sent.query == {"api-version": "2024-05-01-preview"}
    assert sent.headers["api-key"] == MOCK_API_KEY
    assert sent.body["model"] == "Mistral-large-2407"
    with an.messages.stream(model="azure-ai", max_tokens=64, messages=_user("hello")) as stream:
        assert "".join(stream.text_stream) == MOCK_TEXT


def test_azure_ai_embeddings_without_api_version(oa, servers):
    resp = oa.embeddings.create(model="azure-ai-embed", input="hello")
    assert resp.data[0].embedding == _vector("hello")
    sent = servers["azure_ai"].recorder.last
    assert sent.path == "/models/embeddings" and sent.query == {}


# ---------------------------------------------------------------- Cohere: OpenAI SDK


def test_cohere_text_openai_sdk(oa, servers):
    resp = oa.chat.completions.create(
        model="cohere-chat", max_tokens=50, temperature=0.2, top_p=0.9, stop=["END"],
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
    )
    assert resp.choices[0].message.content == MOCK_TEXT
    assert resp.choices[0].finish_reason == "stop"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    sent = servers["cohere"].recorder.last
    assert sent.path == "/v2/chat"
    assert sent.headers["authorization"] == "Bearer " + MOCK_API_KEY
    assert sent.body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    assert (sent.body["max_tokens"], sent.body["p"], sent.body["stop_sequences"]) == (50, 0.9, ["END"])


def test_cohere_tool_call_and_tool_result_openai_sdk(oa, servers):
    resp = oa.chat.completions.create(model="cohere-chat", tools=TOOLS, messages=_user("TRIGGER_TOOL weather?"))
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    assert choice.message.content == cohere_api.TOOL_PLAN
    assert servers["cohere"].recorder.last.body["tools"] == TOOLS
    follow = oa.chat.completions.create(model="cohere-chat", tools=TOOLS, messages=[
        *_user("TRIGGER_TOOL weather?"),
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"},
        *_user("thanks"),
    ])
    assert follow.choices[0].message.content == MOCK_TEXT
    sent = servers["cohere"].recorder.last.body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id and "content" not in sent[1]
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"}


def test_cohere_stream_text_and_tools_openai_sdk(oa):
    chunks = list(oa.chat.completions.create(model="cohere-chat", messages=_user("hello"), stream=True,
                                             stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == MOCK_TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert [c.usage.prompt_tokens for c in chunks if c.usage] == [PROMPT_TOKENS]
    chunks = list(oa.chat.completions.create(model="cohere-chat", messages=_user("TRIGGER_TOOL"), tools=TOOLS,
                                             stream=True))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].function.name == "get_weather" and calls[0].id == "get_weather_mock123"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_cohere_errors_openai_sdk(oa):
    with pytest.raises(openai.RateLimitError) as info:
        oa.chat.completions.create(model="cohere-chat", messages=_user("TRIGGER_429"))
    assert "Trial key" in info.value.message
    assert info.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.BadRequestError) as bad:
        oa.chat.completions.create(model="cohere-chat", messages=_user("TRIGGER_400"))
    assert "temperature must be between" in bad.value.message


# ---------------------------------------------------------------- Cohere: Anthropic SDK


def test_cohere_anthropic_sdk_text_stream_tools_and_results(an, servers):
    msg = an.messages.create(model="cohere-chat", max_tokens=64, system="be brief", messages=_user("hello"))
    assert msg.content[0].text == MOCK_TEXT
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    with an.messages.stream(model="cohere-chat", max_tokens=64, messages=_user("hello")) as stream:
        assert "".join(stream.text_stream) == MOCK_TEXT
    with an.messages.stream(model="cohere-chat", max_tokens=64, tools=TOOLS_ANTHROPIC,
                            messages=_user("TRIGGER_TOOL")) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use"
    assert (uses[0].name, uses[0].input) == ("get_weather", {"city": "Paris"})
    answer = an.messages.create(model="cohere-chat", max_tokens=64, tools=TOOLS_ANTHROPIC, messages=[
        *_user("TRIGGER_TOOL"),
        {"role": "assistant", "content": [{"type": "tool_use", "id": uses[0].id, "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "18 C"}]},
    ])
    assert answer.content[0].text == MOCK_TEXT
    sent = servers["cohere"].recorder.last.body["messages"]
    assert any(m["role"] == "tool" and m["tool_call_id"] == uses[0].id and m["content"] == "18 C" for m in sent)


def test_cohere_error_anthropic_sdk(an):
    with pytest.raises(anthropic.RateLimitError) as info:
        an.messages.create(model="cohere-chat", max_tokens=10, messages=_user("TRIGGER_429"))
    assert "Trial key" in str(info.value)


def test_cohere_embeddings_openai_sdk(oa, servers):
    resp = oa.embeddings.create(model="cohere-embed", input=["alpha", "beta"])
    assert [d.embedding for d in resp.data] == [_vector("alpha"), _vector("beta")]
    assert resp.usage.prompt_tokens == 6
    sent = servers["cohere"].recorder.last
    assert sent.path == "/v2/embed"
    assert sent.body == {"model": "embed-english-v3.0", "texts": ["alpha", "beta"],
                         "input_type": "search_document", "embedding_types": ["float"]}
