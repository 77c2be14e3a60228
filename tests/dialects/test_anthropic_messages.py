"""Anthropic Messages dialect: requests, responses, streams, errors, usage, and
the Anthropic mock server checked against the official ``anthropic`` SDK."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anthropic
import orjson
import pytest
from aiohttp.test_utils import TestServer

from lockgate import errors
from lockgate.dialects import anthropic_messages as am
from lockgate.dialects import openai_chat
from lockgate.providers.anthropic import PROVIDERS
from lockgate.transport.sse import SSEParser
from tests.mocks import CACHED_TOKENS, COMPLETION_TOKENS, MOCK_API_KEY, MOCK_TEXT, PROMPT_TOKENS, Recorder
from tests.mocks.anthropic_api import THINKING_SIGNATURE, THINKING_TEXT, create_app

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
EPHEMERAL = {"type": "ephemeral"}
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

# A Claude-Code-like request touching every mapped field.
ANTHROPIC_REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "system": [
        {"type": "text", "text": "You are helpful."},
        {"type": "text", "text": "Big cached context.", "cache_control": EPHEMERAL},
    ],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "What is in these images?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"},
             "cache_control": EPHEMERAL},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The user wants weather.", "signature": "sig-1"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "service down"}]},
            {"type": "text", "text": "Summarize."},
        ]},
    ],
    "tools": [{"name": "get_weather", "description": "Weather of a city", "input_schema": WEATHER_SCHEMA,
               "cache_control": EPHEMERAL}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "stop_sequences": ["###"],
    "temperature": 0.3,
    "top_p": 0.9,
    "top_k": 40,
    "stream": True,
    "metadata": {"user_id": "user-42"},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
}


# ================================================================ requests


def test_request_to_canonical_full() -> None:
    req = am.request_to_canonical(ANTHROPIC_REQUEST)
    msgs = req["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "tool", "user"]
    assert msgs[0]["content"] == [
        {"type": "text", "text": "You are helpful."},
        {"type": "text", "text": "Big cached context.", "cache_control": EPHEMERAL},
    ]
    assert msgs[1]["content"] == [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG_B64}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}, "cache_control": EPHEMERAL},
    ]
    assistant = msgs[2]
    assert assistant["content"] == "Let me check."
    assert assistant["thinking_blocks"] == [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "opaque"},
    ]
    calls = assistant["tool_calls"]
    assert [c["id"] for c in calls] == ["toolu_1", "toolu_2"]
    assert calls[0]["type"] == "function" and calls[0]["function"]["name"] == "get_weather"
    assert orjson.loads(calls[1]["function"]["arguments"]) == {"city": "Rome"}
    assert msgs[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "18C sunny"}
    assert msgs[4] == {"role": "tool", "tool_call_id": "toolu_2", "is_error": True,
                       "content": [{"type": "text", "text": "service down"}]}
    assert msgs[5] == {"role": "user", "content": [{"type": "text", "text": "Summarize."}]}
    assert req["tools"] == [{"type": "function", "cache_control": EPHEMERAL, "function": {
        "name": "get_weather", "description": "Weather of a city", "parameters": WEATHER_SCHEMA}}]
    assert req["tool_choice"] == "required" and req["parallel_tool_calls"] is False
    assert req["stop"] == ["###"] and req["user"] == "user-42"
    assert (req["temperature"], req["top_p"], req["top_k"], req["max_tokens"]) == (0.3, 0.9, 40, 1024)
    assert req["stream"] is True and req["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert req["model"] == "claude-sonnet-4-5"


def test_request_to_canonical_simple_shapes() -> None:
    req = am.request_to_canonical({"model": "m", "max_tokens": 5, "system": "Be brief.",
                                   "messages": [{"role": "user", "content": "hi"}]})
    assert req["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    plain_blocks = am.request_to_canonical({"model": "m", "max_tokens": 5, "messages": [],
                                            "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]})
    assert plain_blocks["messages"] == [{"role": "system", "content": "a\nb"}]


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, {"tool_choice": "auto"}),
    ({"type": "any"}, {"tool_choice": "required"}),
    ({"type": "none"}, {"tool_choice": "none"}),
    ({"type": "tool", "name": "get_weather"},
     {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
    ({"type": "auto", "disable_parallel_tool_use": True}, {"tool_choice": "auto", "parallel_tool_calls": False}),
])
def test_tool_choice_to_canonical(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
            "tools": [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}], "tool_choice": choice}
    req = am.request_to_canonical(body)
    assert {k: req[k] for k in expected} == expected
    if "parallel_tool_calls" not in expected:
        assert "parallel_tool_calls" not in req


@pytest.mark.parametrize(("body", "param"), [
    ([], "body"),
    ({"max_tokens": 5, "messages": []}, "model"),
    ({"model": "", "max_tokens": 5, "messages": []}, "model"),
    ({"model": "m", "max_tokens": 5}, "messages"),
    ({"model": "m", "max_tokens": 5, "messages": {"role": "user"}}, "messages"),
    ({"model": "m", "messages": []}, "max_tokens"),
    ({"model": "m", "max_tokens": 0, "messages": []}, "max_tokens"),
    ({"model": "m", "max_tokens": "5", "messages": []}, "max_tokens"),
    ({"model": "m", "max_tokens": True, "messages": []}, "max_tokens"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": 3}]}, "messages[0].content"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
     "messages[0].content[0].type"),
    ({"model": "m", "max_tokens": 5, "system": 4, "messages": []}, "system"),
    ({"model": "m", "max_tokens": 5, "messages": [], "tool_choice": {"type": "sometimes"}}, "tool_choice"),
])
def test_request_to_canonical_bad_request_names_field(body: Any, param: str) -> None:
    with pytest.raises(errors.BadRequest) as exc:
        am.request_to_canonical(body)
    assert exc.value.param == param
    assert exc.value.status == 400
    if param != "body":
        assert param.split(".")[0].split("[")[0] in exc.value.message


def test_request_from_canonical_full() -> None:
    canonical = {
        "model": "client-model",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Sys A", "cache_control": EPHEMERAL}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
            ]},
            {"role": "user", "content": "And answer."},
            {"role": "assistant", "content": "Checking.", "reasoning_content": "hmm",
             "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}],
             "tool_calls": [
                 {"id": "call_1", "type": "function",
                  "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                 {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}},
             ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "boom"}], "is_error": True},
            {"role": "developer", "content": "Mid-conversation system text."},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [{"type": "function", "cache_control": EPHEMERAL,
                   "function": {"name": "get_weather", "description": "d", "parameters": WEATHER_SCHEMA}}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stop": "END",
        "temperature": 1.5,
        "top_p": 0.5,
        "top_k": 3,
        "user": "u-1",
        "stream": True,
        "stream_options": {"include_usage": True},
        "frequency_penalty": 0.5, "presence_penalty": 0.1, "logprobs": True, "seed": 7,
        "logit_bias": {"1": 2}, "service_tier": "auto", "n": 1,
    }
    body = am.request_from_canonical(canonical, "claude-x")
    assert body["model"] == "claude-x"
    assert body["system"] == [{"type": "text", "text": "Sys A", "cache_control": EPHEMERAL}]
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[0]["content"] == [
        {"type": "text", "text": "Look:"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "text", "text": "And answer."},
    ]
    assert msgs[1]["content"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
    ]
    assert msgs[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18C"}]},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "boom"}],
         "is_error": True},
        {"type": "text", "text": "<system-reminder>\nMid-conversation system text.\n</system-reminder>"},
        {"type": "text", "text": "Thanks"},
    ]
    assert body["tools"] == [{"name": "get_weather", "description": "d", "input_schema": WEATHER_SCHEMA,
                              "cache_control": EPHEMERAL}]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["stop_sequences"] == ["END"]
    assert body["temperature"] == 1.0  # clamped to Anthropic's range
    assert (body["top_p"], body["top_k"], body["stream"]) == (0.5, 3, True)
    assert body["metadata"] == {"user_id": "u-1"}
    assert body["max_tokens"] == am.DEFAULT_MAX_TOKENS
    for dropped in ("frequency_penalty", "presence_penalty", "logprobs", "seed", "logit_bias", "n",
                    "stream_options", "service_tier", "parallel_tool_calls", "user", "response_format"):
        assert dropped not in body


def test_request_from_canonical_simple_and_tool_choice() -> None:
    body = am.request_from_canonical({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10,
                                      "stop": ["a", "b"], "metadata": {"user_id": "x", "other": 1},
                                      "thinking": {"type": "enabled", "budget_tokens": 1024}}, "m")
    assert body == {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
                    "stop_sequences": ["a", "b"], "metadata": {"user_id": "x"},
                    "thinking": {"type": "enabled", "budget_tokens": 1024}}
    tools = [{"type": "function", "function": {"name": "f"}}]
    named = am.request_from_canonical({"messages": [], "tools": tools,
                                       "tool_choice": {"type": "function", "function": {"name": "f"}}}, "m")
    assert named["tool_choice"] == {"type": "tool", "name": "f"}
    assert named["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]
    assert am.request_from_canonical({"messages": [], "tools": tools, "tool_choice": "none"}, "m")[
        "tool_choice"] == {"type": "none"}
    assert "tool_choice" not in am.request_from_canonical({"messages": [], "tool_choice": "auto"}, "m")


def test_request_from_canonical_json_mode_and_n() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = am.request_from_canonical({
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    }, "m")
    assert body["system"][0] == {"type": "text", "text": "S"}
    assert "JSON" in body["system"][1]["text"] and orjson.dumps(schema).decode() in body["system"][1]["text"]
    body = am.request_from_canonical({"messages": [], "response_format": {"type": "json_object"}}, "m")
    assert "JSON object" in body["system"][0]["text"]
    with pytest.raises(errors.BadRequest) as exc:
        am.request_from_canonical({"messages": [], "n": 2}, "m")
    assert exc.value.param == "n" and exc.value.message == "anthropic does not support n > 1"


def test_request_round_trip_anthropic_canonical_anthropic() -> None:
    body = am.request_from_canonical(am.request_to_canonical(ANTHROPIC_REQUEST), "claude-sonnet-4-5")
    assert body["system"] == ANTHROPIC_REQUEST["system"]
    assert body["tools"] == ANTHROPIC_REQUEST["tools"]
    assert body["tool_choice"] == ANTHROPIC_REQUEST["tool_choice"]
    assert body["metadata"] == ANTHROPIC_REQUEST["metadata"]
    assert body["messages"][0] == ANTHROPIC_REQUEST["messages"][0]
    assert body["messages"][1] == ANTHROPIC_REQUEST["messages"][1]
    results = body["messages"][2]["content"]
    assert [b["type"] for b in results] == ["tool_result", "tool_result", "text"]
    assert results[1]["is_error"] is True


# ================================================================ responses

ANTHROPIC_RESPONSE: dict[str, Any] = {
    "id": "msg_01ABC",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "Think. ", "signature": "sig-a"},
        {"type": "text", "text": "Hello "},
        {"type": "text", "text": "world"},
        {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 20,
              "output_tokens": 30},
}


def test_response_to_canonical() -> None:
    resp = am.response_to_canonical(ANTHROPIC_RESPONSE)
    assert resp["id"] == "msg_01ABC" and resp["object"] == "chat.completion"
    choice = resp["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    msg = choice["message"]
    assert msg["content"] == "Hello world"
    assert msg["reasoning_content"] == "Think. "
    assert msg["thinking_blocks"] == [{"type": "thinking", "thinking": "Think. ", "signature": "sig-a"}]
    assert msg["tool_calls"] == [{"id": "toolu_9", "type": "function",
                                  "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    assert resp["usage"] == {"prompt_tokens": 35, "completion_tokens": 30, "total_tokens": 65,
                             "prompt_tokens_details": {"cached_tokens": 20}, "cache_creation_input_tokens": 5}
    assert am.usage_from_body(ANTHROPIC_RESPONSE) == resp["usage"]
    assert am.usage_from_body({"content": []}) is None


@pytest.mark.parametrize(("stop", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"),
])
def test_stop_reason_mapping(stop: str, finish: str) -> None:
    resp = am.response_to_canonical({**ANTHROPIC_RESPONSE, "stop_reason": stop})
    assert resp["choices"][0]["finish_reason"] == finish


def test_response_from_canonical() -> None:
    canonical = {
        "id": "chatcmpl-xyz", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Sure.", "reasoning_content": "because",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}}],
        "usage": {"prompt_tokens": 35, "completion_tokens": 30, "total_tokens": 65,
                  "prompt_tokens_details": {"cached_tokens": 20}, "cache_creation_input_tokens": 5},
    }
    msg = am.response_from_canonical(canonical, "client-model")
    assert msg == {
        "id": "msg_xyz", "type": "message", "role": "assistant", "model": "client-model",
        "content": [
            {"type": "thinking", "thinking": "because", "signature": ""},
            {"type": "text", "text": "Sure."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 20,
                  "output_tokens": 30},
    }
    anthropic.types.Message.model_validate(msg)  # the SDK's own model accepts it


def test_response_round_trip() -> None:
    back = am.response_from_canonical(am.response_to_canonical(ANTHROPIC_RESPONSE), ANTHROPIC_RESPONSE["model"])
    merged_text = [{"type": "text", "text": "Hello world"}]
    expected = ANTHROPIC_RESPONSE["content"][:1] + merged_text + ANTHROPIC_RESPONSE["content"][3:]
    assert back["content"] == expected
    assert back["usage"] == ANTHROPIC_RESPONSE["usage"] and back["id"] == "msg_01ABC"
    assert back["stop_reason"] == "tool_use"


# ================================================================ streams


def _sse(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _events(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    parser = SSEParser()
    return [(e, orjson.loads(d)) for e, d in parser.feed(raw) + parser.flush()]


# A full real-shaped stream: thinking, text, tool_use.
REAL_STREAM = b"".join([
    _sse("message_start", {"type": "message_start", "message": {
        "id": "msg_S1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 8, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3,
                  "output_tokens": 1}}}),
    _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": ""}}),
    _sse("ping", {"type": "ping"}),
    _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "Need weather."}}),
    _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "sig-xyz"}}),
    _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    _sse("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "text", "text": ""}}),
    _sse("content_block_delta", {"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "text_delta", "text": "Checking "}}),
    _sse("content_block_delta", {"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "text_delta", "text": "now."}}),
    _sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
    _sse("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
        "type": "tool_use", "id": "toolu_S", "name": "get_weather", "input": {}}}),
    _sse("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "input_json_delta", "partial_json": ""}}),
    _sse("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "input_json_delta", "partial_json": '{"city": '}}),
    _sse("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}}),
    _sse("content_block_stop", {"type": "content_block_stop", "index": 2}),
    _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": 42}}),
    _sse("message_stop", {"type": "message_stop"}),
])

REAL_STREAM_USAGE = {"prompt_tokens": 13, "completion_tokens": 42, "total_tokens": 55,
                     "prompt_tokens_details": {"cached_tokens": 3}, "cache_creation_input_tokens": 2}


def _decode(raw: bytes) -> tuple[list[dict[str, Any]], Any]:
    decoder = am.stream_decoder()
    parser = SSEParser()
    chunks = [c for e, d in parser.feed(raw) + parser.flush() for c in decoder.feed(e, d)]
    return chunks, decoder


def test_stream_decode_full_sequence() -> None:
    chunks, decoder = _decode(REAL_STREAM)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant"}
    assert all(c["id"] == "msg_S1" and c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Need weather."
    assert [d["thinking_signature"] for d in deltas if "thinking_signature" in d] == ["sig-xyz"]
    assert "".join(d.get("content") or "" for d in deltas) == "Checking now."
    calls = [tc for d in deltas for tc in d.get("tool_calls", ())]
    assert calls[0] == {"index": 0, "id": "toolu_S", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert all(tc["index"] == 0 for tc in calls)
    assert "".join(tc["function"]["arguments"] for tc in calls) == '{"city": "Paris"}'
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "tool_calls" and finishes.count("tool_calls") == 1
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == REAL_STREAM_USAGE
    assert decoder.usage() == REAL_STREAM_USAGE


def test_stream_decode_two_tool_calls_get_their_own_index() -> None:
    raw = b"".join([
        _sse("message_start", {"type": "message_start", "message": {"id": "msg_T", "model": "m",
                                                                    "usage": {"input_tokens": 1, "output_tokens": 1}}}),
        *[_sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": {
            "type": "tool_use", "id": f"toolu_{i}", "name": "f", "input": {}}}) +
          _sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                       "delta": {"type": "input_json_delta", "partial_json": "{}"}})
          for i in range(2)],
    ])
    chunks, _ = _decode(raw)
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", ())]
    assert [(tc["index"], tc.get("id")) for tc in calls] == [(0, "toolu_0"), (0, None), (1, "toolu_1"), (1, None)]


@pytest.mark.parametrize(("etype", "status"), [("overloaded_error", 529), ("api_error", 500)])
def test_stream_decode_error_event(etype: str, status: int) -> None:
    decoder = am.stream_decoder()
    assert decoder.feed("ping", b'{"type": "ping"}') == []
    with pytest.raises(errors.UpstreamError) as exc:
        decoder.feed("error", orjson.dumps({"type": "error", "error": {"type": etype, "message": "Overloaded"}}))
    assert exc.value.status == status and exc.value.message == "Overloaded"


def _accumulate(raw: bytes) -> Any:
    """Feed our SSE bytes to the official SDK's stream accumulation."""
    from anthropic.lib.streaming._messages import accumulate_event

    snapshot, json_bufs = None, {}
    for event, data in _events(raw):
        if event == "ping":
            continue
        assert data["type"] == event
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=json_bufs)
    return snapshot


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


CANONICAL_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                   "prompt_tokens_details": {"cached_tokens": 3}}

CANONICAL_CHUNKS = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"reasoning_content": "Let me "}),
    _chunk({"reasoning_content": "think."}),
    _chunk({"thinking_signature": "sig-1"}),
    _chunk({"content": "Hi "}),
    _chunk({"content": "there."}),
    _chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                            "function": {"name": "get_weather", "arguments": ""}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    _chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                            "function": {"name": "get_time", "arguments": "{}"}}]}),
    _chunk({}, "tool_calls"),
    {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "x", "choices": [], "usage": CANONICAL_USAGE},
]


def _encode(chunks: list[dict[str, Any]]) -> bytes:
    enc = am.stream_encoder("client-model", "req123")
    return b"".join(enc.encode(c) for c in chunks) + enc.finish()


def test_stream_encode_event_order_and_sdk_accumulation() -> None:
    raw = _encode(CANONICAL_CHUNKS)
    events = _events(raw)
    names = [e for e, _ in events]
    assert names == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_delta",
        "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"] == "msg_req123" and start["model"] == "client-model" and start["content"] == []
    assert [d["index"] for _, d in events if "index" in d] == [0] * 5 + [1] * 4 + [2] * 4 + [3] * 3
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == 7 and delta["usage"]["input_tokens"] == 8
    message = _accumulate(raw)
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert message.content[0].thinking == "Let me think." and message.content[0].signature == "sig-1"
    assert message.content[1].text == "Hi there."
    assert message.content[2].input == {"city": "Paris"} and message.content[2].id == "call_a"
    assert message.content[3].name == "get_time" and message.content[3].input == {}
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens == 7 and message.usage.cache_read_input_tokens == 3


def test_stream_encode_usage_before_finish_and_nothing_to_send() -> None:
    enc = am.stream_encoder("m", "r")
    first = enc.encode(_chunk({"role": "assistant"}))
    assert [e for e, _ in _events(first)] == ["message_start", "ping"]
    assert enc.encode(_chunk({"content": ""})) == b""
    assert enc.encode({"choices": [], "usage": CANONICAL_USAGE}) == b""
    assert enc.encode(_chunk({}, "length")) == b""
    events = _events(enc.finish())
    assert [e for e, _ in events] == ["message_delta", "message_stop"]
    assert events[0][1]["delta"]["stop_reason"] == "max_tokens"
    assert events[0][1]["usage"]["output_tokens"] == 7


def test_stream_encode_empty_stream_is_still_valid() -> None:
    enc = am.stream_encoder("m", "msg_r")
    message = _accumulate(enc.finish())
    assert message.id == "msg_r" and message.content == [] and message.stop_reason == "end_turn"


def test_stream_decode_then_encode_round_trip() -> None:
    chunks, _ = _decode(REAL_STREAM)
    message = _accumulate(_encode(chunks))
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[0].signature == "sig-xyz" and message.content[1].text == "Checking now."
    assert message.content[2].input == {"city": "Paris"}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens,
            message.usage.cache_creation_input_tokens, message.usage.output_tokens) == (8, 3, 2, 42)


def test_stream_encoder_error_event() -> None:
    raw = am.stream_encoder("m", "r").error(errors.RateLimited("slow down"))
    assert _events(raw) == [("error", {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})]


# ================================================================ errors and usage


@pytest.mark.parametrize(("err", "etype"), [
    (errors.BadRequest("bad"), "invalid_request_error"),
    (errors.AuthenticationError("no key"), "authentication_error"),
    (errors.PermissionDenied("no"), "permission_error"),
    (errors.NotFound("no model"), "not_found_error"),
    (errors.LockgateError("too big", status=413, type="request_too_large"), "request_too_large"),
    (errors.RateLimited("slow"), "rate_limit_error"),
    (errors.UpstreamError("upstream 429", status=429), "rate_limit_error"),
    (errors.UpstreamError("boom", status=500), "api_error"),
    (errors.UpstreamError("busy", status=529, type="overloaded_error"), "overloaded_error"),
    (errors.UpstreamUnreachable("down"), "api_error"),
    (errors.UpstreamTimeout("slow"), "timeout_error"),
])
def test_error_body(err: errors.LockgateError, etype: str) -> None:
    assert am.error_body(err) == {"type": "error", "error": {"type": etype, "message": err.message}}


def test_error_body_hides_unknown_exceptions() -> None:
    assert am.error_body(RuntimeError("secret")) == {
        "type": "error", "error": {"type": "api_error", "message": "internal error"}}


def test_parse_error() -> None:
    body = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert am.parse_error(529, body) == ("Overloaded", "overloaded_error")
    body = orjson.dumps({"type": "error", "error": {"type": "billing_error", "message": "pay"}})
    assert am.parse_error(400, body) == ("pay", "invalid_request_error")
    assert am.parse_error(502, b"<html>Bad gateway</html>") == ("upstream returned 502", "api_error")
    assert am.parse_error(429, b"[]") == ("upstream returned 429", "rate_limit_error")
    assert am.parse_error(401, b"") == ("upstream returned 401", "authentication_error")


def test_usage_tap_reads_only_usage_events() -> None:
    tap = am.usage_tap()
    assert tap.usage() is None
    parser = SSEParser()
    for event, data in parser.feed(REAL_STREAM):
        tap.feed(event, data)
    assert tap.usage() == REAL_STREAM_USAGE
    tap.feed("content_block_delta", b"not json and no usage key")  # skipped without parsing


def test_dialect_exposes_the_same_names_as_openai() -> None:
    for name in ("NAME", "request_to_canonical", "response_from_canonical", "stream_encoder", "error_body",
                 "request_from_canonical", "response_to_canonical", "stream_decoder", "parse_error",
                 "usage_from_body", "usage_tap"):
        assert hasattr(openai_chat, name) and hasattr(am, name), name
    assert am.NAME == "anthropic"


# ================================================================ provider


def test_provider_urls_and_headers() -> None:
    provider = PROVIDERS["anthropic"]
    dep = SimpleNamespace(api_base=None, api_key="sk-ant", model_name="claude")
    assert provider.chat_url(dep, True) == "https://api.anthropic.com/v1/messages"
    assert provider.count_tokens_url(dep) == "https://api.anthropic.com/v1/messages/count_tokens"
    assert provider.headers(dep) == {"content-type": "application/json", "anthropic-version": "2023-06-01",
                                     "x-api-key": "sk-ant"}
    assert provider.client_headers == ("anthropic-beta",) and provider.supports_embeddings is False
    assert provider.dialect is am
    for base in ("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1/", "http://127.0.0.1:9"):
        dep = SimpleNamespace(api_base=base, api_key=None, model_name="claude")
        assert provider.chat_url(dep, False) == "http://127.0.0.1:9/v1/messages"


# ================================================================ the mock, through the official SDK


@pytest.fixture
async def mock_server():
    recorder = Recorder()
    server = TestServer(create_app(recorder))
    await server.start_server()
    try:
        yield SimpleNamespace(url=str(server.make_url("")).rstrip("/"), recorder=recorder)
    finally:
        await server.close()


def _client(url: str, key: str = MOCK_API_KEY) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=key, base_url=url, max_retries=0)


async def test_mock_with_sdk_non_stream(mock_server) -> None:
    client = _client(mock_server.url)
    msg = await client.messages.create(model="claude-test", max_tokens=50,
                                       messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == MOCK_TEXT and msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == PROMPT_TOKENS - CACHED_TOKENS
    assert msg.usage.cache_read_input_tokens == CACHED_TOKENS and msg.usage.output_tokens == COMPLETION_TOKENS
    assert msg._request_id and msg._request_id.startswith("req_")
    received = mock_server.recorder.last
    assert received.path == "/v1/messages" and received.body["model"] == "claude-test"
    # recent SDKs send the key as a bearer token; Lockgate itself sends x-api-key
    assert MOCK_API_KEY in (received.headers.get("x-api-key"), received.headers.get("authorization", "")[7:])
    assert received.headers["anthropic-version"]
    canonical = am.response_to_canonical(msg.model_dump())
    assert canonical["usage"]["prompt_tokens"] == PROMPT_TOKENS


async def test_mock_with_sdk_stream_think(mock_server) -> None:
    client = _client(mock_server.url)
    async with client.messages.stream(model="claude-test", max_tokens=50,
                                      messages=[{"role": "user", "content": "TRIGGER_THINK please"}]) as stream:
        msg = await stream.get_final_message()
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert msg.content[0].thinking == THINKING_TEXT and msg.content[0].signature == THINKING_SIGNATURE
    assert msg.content[1].text == MOCK_TEXT
    assert msg.usage.output_tokens == COMPLETION_TOKENS and msg.usage.input_tokens == PROMPT_TOKENS - CACHED_TOKENS


async def test_mock_with_sdk_stream_tool(mock_server) -> None:
    client = _client(mock_server.url)
    tools = [{"name": "lookup", "description": "d", "input_schema": WEATHER_SCHEMA}]
    async with client.messages.stream(model="claude-test", max_tokens=50, tools=tools,
                                      messages=[{"role": "user", "content": "TRIGGER_TOOL"}]) as stream:
        msg = await stream.get_final_message()
    assert msg.stop_reason == "tool_use"
    assert msg.content[0].type == "tool_use" and msg.content[0].name == "lookup"
    assert msg.content[0].input == {"city": "Paris"}


async def test_mock_raw_stream_decodes_to_canonical(mock_server) -> None:
    client = _client(mock_server.url)
    response = await client.messages.with_raw_response.create(
        model="claude-test", max_tokens=50, stream=True,
        messages=[{"role": "user", "content": "TRIGGER_TOOL"}])
    raw = await response.http_response.aread()
    assert response.http_response.headers["content-type"].startswith("text/event-stream")
    assert [e for e, _ in _events(raw)][:3] == ["message_start", "content_block_start", "ping"]
    chunks, decoder = _decode(raw)
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", ())]
    assert calls[0]["function"]["name"] == "get_weather"
    assert orjson.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"city": "Paris"}
    assert decoder.usage()["prompt_tokens"] == PROMPT_TOKENS


async def test_mock_errors_with_sdk(mock_server) -> None:
    msgs = [{"role": "user", "content": "TRIGGER_429"}]
    with pytest.raises(anthropic.RateLimitError) as exc:
        await _client(mock_server.url).messages.create(model="m", max_tokens=5, messages=msgs)
    assert exc.value.response.headers["retry-after"] == "7"
    assert exc.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.AuthenticationError):
        await _client(mock_server.url, "wrong").messages.create(model="m", max_tokens=5, messages=msgs)
    with pytest.raises(anthropic.InternalServerError):
        await _client(mock_server.url).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "TRIGGER_500"}])
    with pytest.raises(anthropic.BadRequestError):
        await _client(mock_server.url).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "TRIGGER_400"}])
    assert len(mock_server.recorder.requests) == 4


async def test_mock_count_tokens(mock_server) -> None:
    client = _client(mock_server.url)
    count = await client.messages.count_tokens(model="m", messages=[{"role": "user", "content": "hi"}])
    assert count.input_tokens == PROMPT_TOKENS
    assert mock_server.recorder.last.path == "/v1/messages/count_tokens"


LOCKGATE_HEADERS = {"x-api-key": MOCK_API_KEY, "anthropic-version": "2023-06-01"}
SIMPLE_BODY = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("headers", "status", "etype"), [
    (LOCKGATE_HEADERS, 200, None),
    ({"anthropic-version": "2023-06-01"}, 401, "authentication_error"),
    ({**LOCKGATE_HEADERS, "x-api-key": "wrong"}, 401, "authentication_error"),
    ({"x-api-key": MOCK_API_KEY}, 400, "invalid_request_error"),
])
async def test_mock_auth_and_version_headers(mock_server, headers: dict[str, str], status: int, etype: Any) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(mock_server.url + "/v1/messages", json=SIMPLE_BODY, headers=headers) as resp:
            assert resp.status == status and resp.headers["request-id"].startswith("req_")
            body = await resp.json()
    if etype:
        assert body["type"] == "error" and body["error"]["type"] == etype
    else:
        assert am.response_to_canonical(body)["choices"][0]["message"]["content"] == MOCK_TEXT


async def test_mock_records_abandoned_stream(mock_server) -> None:
    import asyncio

    import aiohttp

    body = {**SIMPLE_BODY, "stream": True, "messages": [{"role": "user", "content": "TRIGGER_LONGSTREAM"}]}
    async with aiohttp.ClientSession() as session:
        resp = await session.post(mock_server.url + "/v1/messages", json=body, headers=LOCKGATE_HEADERS)
        assert resp.headers["content-type"].startswith("text/event-stream")
        await resp.content.readuntil(b"text_delta")
        resp.close()  # drop the connection mid-stream
    await asyncio.wait_for(mock_server.recorder.stream_cancelled.wait(), 5)
