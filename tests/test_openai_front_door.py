"""OpenAI clients against OpenAI-dialect providers: passthrough fidelity, streams, embeddings, models."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.mocks import CACHED_TOKENS, COMPLETION_TOKENS, MOCK_API_KEY, MOCK_TEXT, PROMPT_TOKENS


def test_chat_passthrough_rewrites_only_model_and_credentials(openai_client, mocks):
    resp = openai_client.chat.completions.create(
        model="openai-model",
        messages=[{"role": "user", "content": "hello"}],
        temperature=0.3,
        seed=42,
        extra_body={"brand_new_field": {"nested": [1, 2]}},
    )
    assert resp.choices[0].message.content == MOCK_TEXT
    assert resp.usage.prompt_tokens == PROMPT_TOKENS
    assert resp.usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS
    got = mocks["openai"].recorder.last
    assert got.path == "/v1/chat/completions"
    assert got.body["model"] == "gpt-4o-mini"
    assert got.body["brand_new_field"] == {"nested": [1, 2]}  # unknown fields survive
    assert got.body["temperature"] == 0.3 and got.body["seed"] == 42
    assert got.headers["authorization"] == "Bearer " + MOCK_API_KEY  # os.environ/ resolved
    assert MASTER_KEY not in str(got.headers)  # the client's gateway key never reaches the provider


def test_response_headers_carry_request_id_and_overhead(openai_client):
    raw = openai_client.chat.completions.with_raw_response.create(
        model="openai-model", messages=[{"role": "user", "content": "hi"}]
    )
    assert len(raw.headers["x-request-id"]) == 32
    assert float(raw.headers["x-lockgate-overhead-ms"]) >= 0
    assert raw.headers["x-lockgate-deployment"]


def test_stream_passthrough_with_usage(openai_client):
    stream = openai_client.chat.completions.create(
        model="openai-model", messages=[{"role": "user", "content": "hi"}],
        stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == MOCK_TEXT
    assert chunks[-1].usage.completion_tokens == COMPLETION_TOKENS
    assert chunks[-1].choices == []


def test_stream_without_include_usage_hides_the_usage_chunk_but_counts_it(openai_client, mocks, gateway):
    stream = openai_client.chat.completions.create(
        model="openai-model", messages=[{"role": "user", "content": "count me"}], stream=True
    )
    chunks = list(stream)
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    # the gateway asked the provider for usage so it can account the request
    assert mocks["openai"].recorder.last.body["stream_options"] == {"include_usage": True}
    log = gateway.log()
    line = [ln for ln in log.splitlines() if '"stream":true' in ln and '"completion_tokens":7' in ln]
    assert line, log[-2000:]


def test_tool_calls_stream_and_non_stream(openai_client):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    resp = openai_client.chat.completions.create(
        model="openai-model", messages=[{"role": "user", "content": "TRIGGER_TOOL"}], tools=tools,
        tool_choice="auto",
    )
    assert resp.choices[0].finish_reason == "tool_calls"
    assert resp.choices[0].message.tool_calls[0].function.name == "lookup"
    stream = openai_client.chat.completions.create(
        model="openai-model", messages=[{"role": "user", "content": "TRIGGER_TOOL"}], tools=tools, stream=True
    )
    args = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in stream if c.choices and c.choices[0].delta.tool_calls
    )
    assert args == '{"city": "Paris"}'


def test_openai_compatible_provider_uses_its_base(openai_client, mocks):
    resp = openai_client.chat.completions.create(model="groq-model", messages=[{"role": "user", "content": "x"}])
    assert resp.choices[0].message.content == MOCK_TEXT
    assert mocks["openai"].recorder.last.body["model"] == "llama-3.1-8b-instant"


def test_mock_provider_stream_and_non_stream(openai_client):
    resp = openai_client.chat.completions.create(model="mock-model", messages=[{"role": "user", "content": "x"}])
    assert resp.choices[0].message.content == "Mocked answer here."
    text = "".join(
        c.choices[0].delta.content or ""
        for c in openai_client.chat.completions.create(
            model="mock-model", messages=[{"role": "user", "content": "x"}], stream=True)
        if c.choices
    )
    assert text == "Mocked answer here."


def test_images_as_content_parts_pass_through(openai_client, mocks):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    openai_client.chat.completions.create(
        model="openai-model",
        messages=[{"role": "user", "content": [{"type": "text", "text": "what is it"}, image]}],
        response_format={"type": "json_object"}, max_completion_tokens=20, n=1, stop=["END"], top_p=0.5,
        user="end-user-1",
    )
    body = mocks["openai"].recorder.last.body
    assert body["messages"][0]["content"][1] == image
    assert body["response_format"] == {"type": "json_object"}
    assert body["max_completion_tokens"] == 20 and body["stop"] == ["END"] and body["user"] == "end-user-1"


def test_embeddings_passthrough_and_translated(openai_client, mocks):
    resp = openai_client.embeddings.create(model="openai-embed", input=["a", "b"])
    assert len(resp.data) == 2 and len(resp.data[0].embedding) == 8
    assert mocks["openai"].recorder.last.body["model"] == "text-embedding-3-small"
    resp = openai_client.embeddings.create(model="gemini-embed", input="hello")
    assert len(resp.data) == 1 and resp.data[0].embedding
    assert mocks["gemini"].recorder.last.path.endswith(":batchEmbedContents")


def test_embeddings_on_a_chat_only_provider_is_a_clear_400(openai_client):
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.embeddings.create(model="claude-model", input="x")
    assert "embeddings" in info.value.message


def test_models_list_and_get(openai_client):
    ids = [m.id for m in openai_client.models.list()]
    assert "openai-model" in ids and "claude-model" in ids
    assert openai_client.models.retrieve("gemini-model").id == "gemini-model"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("nope")


@pytest.mark.parametrize("header", ["authorization", "x-api-key", "api-key"])
def test_every_auth_header_is_accepted(gateway, header):
    value = "Bearer " + MASTER_KEY if header == "authorization" else MASTER_KEY
    resp = httpx.post(gateway.url + "/chat/completions", headers={header: value},  # also without /v1
                      json={"model": "mock-model", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 200, resp.text


def test_client_disconnect_closes_the_upstream_stream(gateway, mocks):
    recorder = mocks["openai"].recorder
    recorder.stream_cancelled.clear()
    with httpx.stream("POST", gateway.url + "/v1/chat/completions",
                      headers={"authorization": "Bearer " + MASTER_KEY},
                      json={"model": "openai-model", "stream": True,
                            "messages": [{"role": "user", "content": "TRIGGER_LONGSTREAM"}]}) as resp:
        lines = resp.iter_lines()
        for _ in range(3):
            next(lines)
    # the client is gone after 3 events of a 10-second stream: the upstream must be closed at once
    deadline = time.monotonic() + 2
    while not recorder.stream_cancelled.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert recorder.stream_cancelled.is_set()
