"""Every front door against every provider dialect, stream and non-stream.

The OpenAI and Anthropic SDKs are the clients; the provider mocks check auth
and answer in their own wire format, so a passing test means the gateway
translated both ways (or passed through when the dialects match).
"""

from __future__ import annotations

import json

import pytest

from tests.mocks import COMPLETION_TOKENS, MOCK_TEXT, PROMPT_TOKENS

PROVIDER_MODELS = ["openai-model", "claude-model", "gemini-model"]
TOOLS_OPENAI = [{"type": "function", "function": {
    "name": "get_weather", "description": "weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
TOOLS_ANTHROPIC = [{"name": "get_weather", "description": "weather of a city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                     "required": ["city"]}}]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def _provider_of(model: str) -> str:
    return {"openai-model": "openai", "claude-model": "anthropic", "gemini-model": "gemini"}[model]


@pytest.mark.parametrize("model", PROVIDER_MODELS)
def test_openai_client_text(openai_client, mocks, model):
    resp = openai_client.chat.completions.create(
        model=model, max_tokens=50,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
    )
    assert resp.choices[0].message.content == MOCK_TEXT
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == PROMPT_TOKENS
    assert resp.usage.completion_tokens == COMPLETION_TOKENS
    sent = mocks[_provider_of(model)].recorder.last.body
    if model == "claude-model":
        assert sent["system"] in ("be brief", [{"type": "text", "text": "be brief"}])
        assert sent["max_tokens"] == 50
    if model == "gemini-model":
        assert sent["systemInstruction"]["parts"][0]["text"] == "be brief"
        assert sent["generationConfig"]["maxOutputTokens"] == 50


@pytest.mark.parametrize("model", PROVIDER_MODELS + ["mock-model"])
def test_openai_client_stream(openai_client, model):
    chunks = list(openai_client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello"}], stream=True,
        stream_options={"include_usage": True},
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expected = "Mocked answer here." if model == "mock-model" else MOCK_TEXT
    assert text == expected
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert usage and usage[-1].completion_tokens > 0


@pytest.mark.parametrize("model", PROVIDER_MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_openai_client_tool_round_trip(openai_client, mocks, model, stream):
    messages = [{"role": "user", "content": "TRIGGER_TOOL weather?"}]
    if not stream:
        resp = openai_client.chat.completions.create(model=model, messages=messages, tools=TOOLS_OPENAI,
                                                     tool_choice="auto")
        call = resp.choices[0].message.tool_calls[0]
        assert resp.choices[0].finish_reason == "tool_calls"
        name, args, call_id = call.function.name, call.function.arguments, call.id
    else:
        chunks = list(openai_client.chat.completions.create(model=model, messages=messages, tools=TOOLS_OPENAI,
                                                            stream=True))
        deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        name = next(d.function.name for d in deltas if d.function and d.function.name)
        call_id = next(d.id for d in deltas if d.id)
        args = "".join(d.function.arguments or "" for d in deltas if d.function)
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
            "tool_calls"]
    assert name == "get_weather" and json.loads(args) == {"city": "Paris"}
    # send the tool result back: the provider must receive it in its own shape
    follow = messages + [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]},
        {"role": "tool", "tool_call_id": call_id, "content": '{"temp": 21}'},
    ]
    follow[0] = {"role": "user", "content": "weather?"}
    resp = openai_client.chat.completions.create(model=model, messages=follow, tools=TOOLS_OPENAI)
    assert resp.choices[0].message.content == MOCK_TEXT
    sent = mocks[_provider_of(model)].recorder.last.body
    if model == "claude-model":
        blocks = sent["messages"][-1]["content"]
        assert blocks[0]["type"] == "tool_result" and blocks[0]["tool_use_id"] == call_id
    if model == "gemini-model":
        part = sent["contents"][-1]["parts"][0]
        assert part["functionResponse"]["name"] == "get_weather"


@pytest.mark.parametrize("model", ["claude-model", "gemini-model"])
def test_openai_client_image_translated(openai_client, mocks, model):
    openai_client.chat.completions.create(model=model, messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}]}])
    sent = mocks[_provider_of(model)].recorder.last.body
    if model == "claude-model":
        image = sent["messages"][0]["content"][1]
        assert image["source"] == {"type": "base64", "media_type": "image/png", "data": PNG}
    else:
        parts = sent["contents"][0]["parts"]
        assert parts[1]["inlineData"] == {"mimeType": "image/png", "data": PNG}


@pytest.mark.parametrize("model", PROVIDER_MODELS + ["mock-model"])
def test_anthropic_client_text(anthropic_client, mocks, model):
    msg = anthropic_client.messages.create(
        model=model, max_tokens=64, system="be brief",
        messages=[{"role": "user", "content": "hello"}],
    )
    expected = "Mocked answer here." if model == "mock-model" else MOCK_TEXT
    assert msg.content[0].type == "text" and msg.content[0].text == expected
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens > 0
    if model == "openai-model":
        sent = mocks["openai"].recorder.last.body
        assert sent["messages"][0] == {"role": "system", "content": "be brief"}
        assert sent["max_tokens"] == 64


@pytest.mark.parametrize("model", PROVIDER_MODELS + ["mock-model"])
def test_anthropic_client_stream(anthropic_client, model):
    with anthropic_client.messages.stream(model=model, max_tokens=64,
                                          messages=[{"role": "user", "content": "hello"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    expected = "Mocked answer here." if model == "mock-model" else MOCK_TEXT
    assert text == expected
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", PROVIDER_MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_client_tool_use(anthropic_client, mocks, model, stream):
    kwargs = dict(model=model, max_tokens=64, tools=TOOLS_ANTHROPIC,
                  messages=[{"role": "user", "content": "TRIGGER_TOOL weather?"}])
    if stream:
        with anthropic_client.messages.stream(**kwargs) as s:
            msg = s.get_final_message()
    else:
        msg = anthropic_client.messages.create(**kwargs)
    tool_use = [b for b in msg.content if b.type == "tool_use"][0]
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "Paris"}
    assert msg.stop_reason == "tool_use"
    follow = anthropic_client.messages.create(model=model, max_tokens=64, tools=TOOLS_ANTHROPIC, messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": tool_use.id, "name": tool_use.name,
                                           "input": tool_use.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "21 C"}]},
    ])
    assert follow.content[0].text == MOCK_TEXT
    if model == "openai-model":
        sent = mocks["openai"].recorder.last.body
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": tool_use.id, "content": "21 C"} or (
            sent["messages"][-1]["role"] == "tool" and sent["messages"][-1]["tool_call_id"] == tool_use.id)


def test_anthropic_passthrough_keeps_unknown_fields_and_beta_header(anthropic_client, mocks):
    anthropic_client.messages.create(
        model="claude-model", max_tokens=64,
        system=[{"type": "text", "text": "cached system", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hello"}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_body={"future_field": {"x": 1}},
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    got = mocks["anthropic"].recorder.last
    assert got.body["model"] == "claude-sonnet-4-5"
    assert got.body["future_field"] == {"x": 1}
    assert got.body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert got.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert got.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert got.headers["anthropic-version"]


def test_anthropic_thinking_reaches_openai_client_as_reasoning(openai_client):
    resp = openai_client.chat.completions.create(model="claude-model",
                                                 messages=[{"role": "user", "content": "TRIGGER_THINK"}])
    message = resp.choices[0].message
    assert getattr(message, "reasoning_content", None)
    assert message.content == MOCK_TEXT


def test_count_tokens_exact_for_anthropic_and_estimated_otherwise(gateway, anthropic_client):
    exact = anthropic_client.messages.with_raw_response.count_tokens(
        model="claude-model", messages=[{"role": "user", "content": "hello there"}])
    assert exact.headers["x-lockgate-token-count"] == "exact"
    assert exact.parse().input_tokens > 0
    estimated = anthropic_client.messages.with_raw_response.count_tokens(
        model="openai-model", messages=[{"role": "user", "content": "hello there"}])
    assert estimated.headers["x-lockgate-token-count"] == "estimated"
    assert estimated.parse().input_tokens > 0


def test_anthropic_models_list(anthropic_client):
    ids = [m.id for m in anthropic_client.models.list()]
    assert "claude-model" in ids


def test_unsupported_parameter_is_a_400_naming_it_without_drop_params(mocks, tmp_path):
    from tests.conftest import MASTER_KEY, start_gateway
    from tests.mocks import MOCK_API_KEY

    import openai

    config = {"model_list": [
        {"model_name": "strict-claude", "litellm_params": {
            "model": "anthropic/claude-sonnet-4-5", "api_base": mocks["anthropic"].url, "api_key": MOCK_API_KEY}},
        {"model_name": "lenient-claude", "litellm_params": {
            "model": "anthropic/claude-sonnet-4-5", "api_base": mocks["anthropic"].url, "api_key": MOCK_API_KEY,
            "drop_params": True}},
    ], "general_settings": {"master_key": MASTER_KEY}}
    gw = start_gateway(config, tmp_path)
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="strict-claude", messages=[{"role": "user", "content": "x"}],
                                           frequency_penalty=0.5)
        assert info.value.body["param"] == "frequency_penalty"
        assert "drop_params" in info.value.message
        # neutral values are no request for anything: accepted
        client.chat.completions.create(model="strict-claude", messages=[{"role": "user", "content": "x"}], n=1)
        resp = client.chat.completions.create(model="lenient-claude", messages=[{"role": "user", "content": "x"}],
                                              frequency_penalty=0.5, seed=3)
        assert resp.choices[0].message.content == MOCK_TEXT
        sent = mocks["anthropic"].recorder.last.body
        assert "frequency_penalty" not in sent and "seed" not in sent
    finally:
        gw.process.terminate()
        gw.process.wait(10)
