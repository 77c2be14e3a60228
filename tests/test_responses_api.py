"""``POST /v1/responses`` end to end, driven by the official openai SDK.

Passthrough to an OpenAI deployment (the mock serves the real Responses API)
and translation through the canonical form to Anthropic, Gemini, an
OpenAI-compatible chat provider (groq) and the in-process mock.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import MASTER_KEY, MockHost, start_gateway
from tests.mocks import COMPLETION_TOKENS, MOCK_API_KEY, MOCK_TEXT, PROMPT_TOKENS

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
TOOLS = [{"type": "function", "name": "get_weather", "description": "weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
TRANSLATED = ["claude-model", "gemini-model", "groq-model"]
ALL = TRANSLATED + ["openai-model"]


@pytest.fixture(scope="module")
def oai(mocks):
    from tests.mocks import openai_responses_api

    host = MockHost()
    yield host.start("openai-responses", openai_responses_api.create_app)
    host.stop()


@pytest.fixture(scope="module")
def gw(mocks, oai, tmp_path_factory):
    base = oai.url + "/v1"
    config = {
        "model_list": [
            {"model_name": "openai-model",
             "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": base, "api_key": MOCK_API_KEY}},
            {"model_name": "openai-capped",
             "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": base, "api_key": MOCK_API_KEY,
                                "max_tokens": 99}},
            {"model_name": "groq-model",
             "litellm_params": {"model": "groq/llama-3.1-8b-instant", "api_base": base, "api_key": MOCK_API_KEY}},
            {"model_name": "claude-model",
             "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_base": mocks["anthropic"].url,
                                "api_key": MOCK_API_KEY}},
            {"model_name": "gemini-model",
             "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_base": mocks["gemini"].url,
                                "api_key": MOCK_API_KEY}},
            {"model_name": "mock-model",
             "litellm_params": {"model": "mock/mock-model", "mock_response": "Mocked answer here."}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }
    # error tests use their own groups: a 429 or 500 cools a deployment down for later tests
    for entry in list(config["model_list"]):
        config["model_list"].append({**entry, "model_name": entry["model_name"] + "-errors"})
    running = start_gateway(config, tmp_path_factory.mktemp("responses-gw"))
    yield running
    running.process.terminate()
    running.process.wait(10)


@pytest.fixture(scope="module")
def client(gw):
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)


def _recorder(mocks, oai, model):
    return {"claude-model": mocks["anthropic"], "gemini-model": mocks["gemini"]}.get(model, oai).recorder


# ---------------------------------------------------------------- text


@pytest.mark.parametrize("model", ALL + ["mock-model"])
def test_text_with_instructions(client, mocks, oai, model):
    resp = client.responses.create(model=model, input="hello", instructions="be brief", max_output_tokens=50)
    assert resp.object == "response" and resp.id.startswith("resp")
    assert resp.status == "completed"
    assert resp.output_text == ("Mocked answer here." if model == "mock-model" else MOCK_TEXT)
    message = [item for item in resp.output if item.type == "message"][0]
    assert message.role == "assistant" and message.content[0].type == "output_text"
    if model == "mock-model":
        assert resp.usage.output_tokens > 0
        return
    assert resp.usage.input_tokens == PROMPT_TOKENS and resp.usage.output_tokens == COMPLETION_TOKENS
    assert resp.usage.input_tokens_details.cached_tokens == 3
    sent = _recorder(mocks, oai, model).last
    if model == "claude-model":
        assert sent.body["system"] in ("be brief", [{"type": "text", "text": "be brief"}])
        assert sent.body["max_tokens"] == 50
    elif model == "gemini-model":
        assert sent.body["systemInstruction"]["parts"][0]["text"] == "be brief"
        assert sent.body["generationConfig"]["maxOutputTokens"] == 50
    elif model == "groq-model":
        assert sent.path == "/v1/chat/completions"
        assert sent.body["messages"][0] == {"role": "system", "content": "be brief"}
        assert sent.body["max_tokens"] == 50
    else:  # passthrough: the Responses body itself, model rewritten
        assert sent.path == "/v1/responses"
        assert sent.body["instructions"] == "be brief" and sent.body["max_output_tokens"] == 50
        assert sent.body["model"] == "gpt-4o-mini"


def test_passthrough_keeps_unknown_fields_and_previous_response_id(client, oai):
    first = client.responses.create(model="openai-model", input="hello", extra_body={"brand_new": {"x": 1}})
    sent = oai.recorder.last.body
    assert sent["brand_new"] == {"x": 1}
    assert first.id.startswith("resp_mock")  # the provider's own response, not rebuilt
    second = client.responses.create(model="openai-model", input="and again", previous_response_id=first.id)
    assert oai.recorder.last.body["previous_response_id"] == first.id
    assert second.previous_response_id == first.id


def test_passthrough_applies_deployment_defaults_in_responses_names(client, oai):
    resp = client.responses.create(model="openai-capped", input="hello")
    assert resp.output_text == MOCK_TEXT
    sent = oai.recorder.last.body
    assert sent["max_output_tokens"] == 99 and "max_tokens" not in sent


@pytest.mark.parametrize("model", ["claude-model", "gemini-model", "groq-model", "mock-model"])
def test_previous_response_id_on_translated_route_is_400(client, model):
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=model, input="hi", previous_response_id="resp_123")
    err = info.value.body
    assert err["param"] == "previous_response_id" and "previous_response_id" in err["message"]
    assert err["type"] == "invalid_request_error"


def test_options_translated_to_chat(client, oai):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    client.responses.create(
        model="groq-model", input=[{"role": "developer", "content": "dev note"},
                                   {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        temperature=0.2, top_p=0.9, reasoning={"effort": "low"}, metadata={"k": "v"}, user="u1",
        text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
    )
    sent = oai.recorder.last.body
    assert sent["messages"] == [{"role": "developer", "content": "dev note"}, {"role": "user", "content": "hi"}]
    assert sent["temperature"] == 0.2 and sent["top_p"] == 0.9 and sent["user"] == "u1"
    assert sent["reasoning_effort"] == "low"
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "out", "schema": schema, "strict": True}}


@pytest.mark.parametrize("model", ["claude-model", "gemini-model", "groq-model"])
def test_image_input_translated(client, mocks, oai, model):
    url = "data:image/png;base64," + PNG
    client.responses.create(model=model, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "what is this"}, {"type": "input_image", "image_url": url}]}])
    sent = _recorder(mocks, oai, model).last.body
    if model == "claude-model":
        assert sent["messages"][0]["content"][1]["source"] == {"type": "base64", "media_type": "image/png",
                                                               "data": PNG}
    elif model == "gemini-model":
        assert sent["contents"][0]["parts"][1]["inlineData"] == {"mimeType": "image/png", "data": PNG}
    else:
        assert sent["messages"][0]["content"][1] == {"type": "image_url", "image_url": {"url": url}}


# ---------------------------------------------------------------- tools


def _call_of(model, client, stream):
    kwargs = {"model": model, "input": "TRIGGER_TOOL weather?", "tools": TOOLS, "tool_choice": "auto"}
    if not stream:
        return client.responses.create(**kwargs)
    with client.responses.stream(**kwargs) as events:
        kinds = [e.type for e in events]
        final = events.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert kinds.index("response.function_call_arguments.done") < kinds.index("response.completed")
    return final


@pytest.mark.parametrize("model", ALL)
@pytest.mark.parametrize("stream", [False, True])
def test_function_call_round_trip(client, mocks, oai, model, stream):
    resp = _call_of(model, client, stream)
    calls = [item for item in resp.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].status == "completed"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    assert calls[0].id.startswith("fc") and calls[0].call_id
    follow = [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"temp": 21}'},
    ]
    resp = client.responses.create(model=model, input=follow, tools=TOOLS)
    assert resp.output_text == MOCK_TEXT
    sent = _recorder(mocks, oai, model).last.body
    if model == "claude-model":
        block = sent["messages"][-1]["content"][0]
        assert block["type"] == "tool_result" and block["tool_use_id"] == calls[0].call_id
    elif model == "gemini-model":
        assert sent["contents"][-1]["parts"][0]["functionResponse"]["name"] == "get_weather"
    elif model == "groq-model":
        assert sent["messages"][1]["tool_calls"][0]["id"] == calls[0].call_id
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": '{"temp": 21}'}
        assert sent["tools"][0]["function"]["name"] == "get_weather"
    else:
        assert sent["input"][2]["type"] == "function_call_output"


def test_hosted_tool_on_translated_route_is_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="claude-model", input="hi", tools=[{"type": "web_search"}])
    assert info.value.body["param"] == "tools"


# ---------------------------------------------------------------- streams

MESSAGE_EVENTS = [
    "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
    "response.output_text.delta", "response.output_text.done", "response.content_part.done",
    "response.output_item.done", "response.completed",
]


@pytest.mark.parametrize("model", ALL + ["mock-model"])
def test_stream_event_order_and_usage(client, model):
    with client.responses.stream(model=model, input="hello") as events:
        seen = list(events)
        final = events.get_final_response()
    kinds = [e.type for e in seen]
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]
    assert collapsed == MESSAGE_EVENTS
    numbers = [e.sequence_number for e in seen]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    expected = "Mocked answer here." if model == "mock-model" else MOCK_TEXT
    assert text == expected and final.output_text == expected
    assert final.status == "completed" and final.usage.output_tokens > 0
    if model != "mock-model":
        assert final.usage.input_tokens == PROMPT_TOKENS


def test_stream_raw_sse_has_event_lines(gw):
    import httpx

    with httpx.stream("POST", gw.url + "/v1/responses", headers={"authorization": "Bearer " + MASTER_KEY},
                      json={"model": "claude-model", "input": "hello", "stream": True}, timeout=20) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = resp.read().decode()
    blocks = [b for b in raw.split("\n\n") if b.strip()]
    for block in blocks:
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        assert json.loads(data_line[6:])["type"] == event_line[7:]
    assert blocks[-1].startswith("event: response.completed")


# ---------------------------------------------------------------- errors


def test_errors_in_openai_shape(client, gw):
    bad = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.responses.create(model="claude-model", input="hi")
    assert info.value.body["type"] == "authentication_error"
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="no-such-model", input="hi")
    assert "no-such-model" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/responses", body={"model": "claude-model"}, cast_to=object)
    assert info.value.body["param"] == "input"


@pytest.mark.parametrize("model", ["claude-model", "groq-model", "openai-model"])
def test_upstream_429_keeps_status_and_retry_after(client, model):
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model=model + "-errors", input="TRIGGER_429")
    assert info.value.response.headers.get("retry-after") == "7"
    assert info.value.body["message"]
    if model == "openai-model":  # passthrough: the provider's own error body
        assert info.value.body["code"] == "rate_limit_exceeded"


def test_stream_upstream_error_before_start_keeps_status(client):
    with pytest.raises(openai.InternalServerError) as info:
        client.responses.create(model="gemini-model-errors", input="TRIGGER_500", stream=True)
    assert info.value.body["type"] == "api_error" and "internal error" in info.value.body["message"]
