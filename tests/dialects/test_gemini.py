"""Gemini dialect: request building, response/stream parsing, errors, embeddings,
front-door round trips, and the mock server driven by the official google-genai SDK."""

from __future__ import annotations

import base64
import struct

import orjson
import pytest

from lockgate import errors
from lockgate.dialects import gemini
from lockgate.transport.sse import SSEParser
from tests.mocks import CACHED_TOKENS, COMPLETION_TOKENS, MOCK_API_KEY, MOCK_TEXT, PROMPT_TOKENS, Recorder

# ---------------------------------------------------------------- request building


def build(messages, model="gemini-2.5-flash", **extra):
    return gemini.request_from_canonical({"model": "client-name", "messages": messages, **extra}, model)


def test_leading_system_to_system_instruction_later_ones_folded_in_order():
    body = build([
        {"role": "system", "content": "one"},
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": [{"type": "text", "text": "two"}]},
        {"role": "system", "content": "three"},
    ])
    assert body["systemInstruction"] == {"parts": [{"text": "one"}]}
    assert body["contents"] == [{"role": "user", "parts": [
        {"text": "hi"},
        {"text": "<system-reminder>\ntwo\n</system-reminder>"},
        {"text": "<system-reminder>\nthree\n</system-reminder>"},
    ]}]
    assert "model" not in body


def test_images_inline_and_by_url():
    body = build([{"role": "user", "content": [
        {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?x=1", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/noext"}},
    ]}])  # fmt: skip
    assert body["contents"][0]["parts"] == [
        {"text": "look"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?x=1"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/noext"}},
    ]


WEATHER_TOOL = {
    "type": "function",
    "cache_control": {"type": "ephemeral"},
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "strict": True,
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "city": {"type": "string", "format": "uri", "examples": ["Paris"]},
                "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                "where": {"$ref": "#/$defs/Place"},
                "days": {"type": "array", "items": {"type": "integer", "additionalProperties": False}},
            },
            "required": ["city"],
            "$defs": {"Place": {"type": "object", "additionalProperties": False,
                                "properties": {"lat": {"type": "number"}}}},
        },
    },
}  # fmt: skip


def test_tools_schema_cleaned_recursively():
    body = build([{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL, {
        "type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}])
    decls = body["tools"][0]["functionDeclarations"]
    assert decls[0] == {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "nullable": True, "enum": ["c", "f"]},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
                "days": {"type": "array", "items": {"type": "integer"}},
            },
            "required": ["city"],
        },
    }
    assert decls[1] == {"name": "now"}  # no-argument tool: no parameters at all


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
)
def test_tool_choice(choice, config):
    body = build([{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL], tool_choice=choice)
    assert body["toolConfig"] == {"functionCallingConfig": config}


def tool_conversation(thinking_blocks=None):
    assistant = {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }
    if thinking_blocks:
        assistant["thinking_blocks"] = thinking_blocks
    return [
        {"role": "user", "content": "weather and time?"},
        assistant,
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
        {"role": "user", "content": "thanks"},
    ]


def test_tool_calls_and_results_with_names_resolved_and_merged():
    body = build(tool_conversation())
    user, model, results = body["contents"]
    assert user == {"role": "user", "parts": [{"text": "weather and time?"}]}
    assert model == {"role": "model", "parts": [
        {"text": "Checking."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_a"}},
        {"functionCall": {"name": "get_time", "args": {}, "id": "call_b"}},
    ]}  # fmt: skip
    assert results == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"result": {"temp": 21}}, "id": "call_a"}},
        {"functionResponse": {"name": "get_time", "response": {"result": "noon"}, "id": "call_b"}},
        {"text": "thanks"},
    ]}  # fmt: skip


def test_thinking_signature_goes_on_first_function_call():
    blocks = [{"type": "thinking", "thinking": "hmm", "signature": "SIG1"}, {"type": "redacted_thinking", "data": "x"}]
    parts = build(tool_conversation(blocks))["contents"][1]["parts"]
    assert "thoughtSignature" not in parts[0]
    assert parts[1]["thoughtSignature"] == "SIG1"
    assert "thoughtSignature" not in parts[2]
    assert all("thought" not in p for p in parts)  # thought text is not re-sent


def test_thinking_signature_on_text_only_message_and_gemini3_sentinel():
    text_only = build([
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b", "thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "S"}]},
        {"role": "user", "content": "c"},
    ])  # fmt: skip
    assert text_only["contents"][1]["parts"] == [{"text": "b", "thoughtSignature": "S"}]
    g3 = build(tool_conversation(), model="gemini-3-pro-preview")["contents"][1]["parts"]
    assert g3[1]["thoughtSignature"] == gemini.SKIP_SIGNATURE
    g25 = build(tool_conversation())["contents"][1]["parts"]
    assert "thoughtSignature" not in g25[1]


def test_generation_config_mapping():
    body = build(
        [{"role": "user", "content": "hi"}],
        temperature=0.2, top_p=0.9, top_k=40, max_tokens=100, stop="END", n=2, seed=7,
        presence_penalty=0.1, frequency_penalty=0.3, user="u1", metadata={"a": 1},
        response_format={"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": {
            "type": "object", "additionalProperties": False, "properties": {"a": {"type": "integer"}}}}},
    )  # fmt: skip
    assert body["generationConfig"] == {
        "temperature": 0.2, "topP": 0.9, "topK": 40, "maxOutputTokens": 100, "candidateCount": 2,
        "seed": 7, "presencePenalty": 0.1, "frequencyPenalty": 0.3, "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseSchema": {"type": "object", "properties": {"a": {"type": "integer"}}},
    }  # fmt: skip
    json_object = build([{"role": "user", "content": "hi"}], response_format={"type": "json_object"}, stop=["a", "b"])
    assert json_object["generationConfig"] == {"stopSequences": ["a", "b"], "responseMimeType": "application/json"}


@pytest.mark.parametrize(
    ("extra", "config"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, {"thinkingBudget": 2048, "includeThoughts": True}),
        ({"thinking": {"type": "enabled", "budget_tokens": 31999}}, {"thinkingBudget": 24576, "includeThoughts": True}),
        ({"thinking": {"type": "disabled"}}, {"thinkingBudget": 0}),
        ({"reasoning_effort": "low"}, {"thinkingBudget": 1024, "includeThoughts": True}),
        ({"reasoning_effort": "high"}, {"thinkingBudget": 24576, "includeThoughts": True}),
    ],
)
def test_thinking_config(extra, config):
    body = build([{"role": "user", "content": "hi"}], **extra)
    assert body["generationConfig"]["thinkingConfig"] == config


# ---------------------------------------------------------------- response parsing

USAGE = {
    "promptTokenCount": 11,
    "candidatesTokenCount": 5,
    "thoughtsTokenCount": 2,
    "cachedContentTokenCount": 3,
    "totalTokenCount": 18,
}


def test_text_response_and_usage():
    resp = gemini.response_to_canonical({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}, {"text": "lo"}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": USAGE, "modelVersion": "gemini-2.5-flash", "responseId": "abc",
    })  # fmt: skip
    assert resp["id"] == "abc" and resp["object"] == "chat.completion"
    assert resp["model"] == "gemini-2.5-flash"
    assert resp["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}]
    assert resp["usage"] == {
        "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 2},
    }  # fmt: skip


def test_function_call_response_ids_and_thoughts():
    body = {"candidates": [{"content": {"role": "model", "parts": [
        {"text": "pondering", "thought": True},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "SIG"},
        {"functionCall": {"name": "get_time", "args": {}, "id": "given-id"}},
    ]}, "finishReason": "STOP"}]}  # fmt: skip
    msg = gemini.response_to_canonical(body)["choices"][0]["message"]
    first, second = msg["tool_calls"]
    assert first["id"].startswith("call_") and len(first["id"]) == 29
    assert first["id"] == gemini.response_to_canonical(body)["choices"][0]["message"]["tool_calls"][0]["id"]
    assert first["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert second["id"] == "given-id"
    assert msg["content"] is None and msg["reasoning_content"] == "pondering"
    assert msg["thinking_blocks"] == [{"type": "thinking", "thinking": "pondering", "signature": "SIG"}]
    assert gemini.response_to_canonical(body)["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
     ("PROHIBITED_CONTENT", "content_filter"), ("OTHER", "stop"), ("MALFORMED_FUNCTION_CALL", "stop")],
)  # fmt: skip
def test_finish_reasons(reason, expected):
    body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert gemini.response_to_canonical(body)["choices"][0]["finish_reason"] == expected


def test_prompt_blocked_and_snake_case_input():
    blocked = gemini.response_to_canonical({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}})
    assert blocked["choices"] == [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "content_filter"}]
    assert blocked["usage"]["prompt_tokens"] == 4
    snake = gemini.response_to_canonical({
        "candidates": [{"content": {"parts": [{"function_call": {"name": "f", "args": {"a": 1}}}]}, "finish_reason": "STOP"}],
        "usage_metadata": {"prompt_token_count": 2, "candidates_token_count": 1, "total_token_count": 3},
    })  # fmt: skip
    assert snake["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "f"
    assert snake["usage"]["total_tokens"] == 3
    assert gemini.usage_from_body({"usageMetadata": {"trafficType": "ON_DEMAND"}}) is None


def test_multiple_candidates():
    body = {"candidates": [
        {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP", "index": 0},
        {"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1},
    ]}  # fmt: skip
    choices = gemini.response_to_canonical(body)["choices"]
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [(0, "a", "stop"), (1, "b", "length")]


# ---------------------------------------------------------------- stream decoding

REAL_STREAM = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "Thinking...", "thought": true}],"role": "model"},"index": 0}],'
    b'"usageMetadata": {"promptTokenCount": 11,"totalTokenCount": 11},"modelVersion": "gemini-2.5-flash","responseId": "r1"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": "Hello", "thoughtSignature": "SIG"}],"role": "model"},"index": 0}],'
    b'"usageMetadata": {"trafficType": "ON_DEMAND"},"modelVersion": "gemini-2.5-flash","responseId": "r1"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": " world"},{"functionCall": {"name": "get_weather","args": {"city": "Paris"}}}],'
    b'"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 11,"candidatesTokenCount": 5,'
    b'"thoughtsTokenCount": 2,"cachedContentTokenCount": 3,"totalTokenCount": 18},"modelVersion": "gemini-2.5-flash","responseId": "r1"}\r\n\r\n'
)


def decode(raw: bytes, split: int = 37):
    parser, decoder, chunks = SSEParser(), gemini.stream_decoder(), []
    for i in range(0, len(raw), split):
        for event, data in parser.feed(raw[i : i + split]):
            chunks.extend(decoder.feed(event, data))
    return chunks, decoder


def test_stream_decoding_real_shape():
    chunks, decoder = decode(REAL_STREAM)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"reasoning_content": "Thinking..."}
    assert deltas[2] == {"thinking_signature": "SIG"}
    assert deltas[3:5] == [{"content": "Hello"}, {"content": " world"}]
    call = deltas[5]["tool_calls"][0]
    assert call["index"] == 0 and call["id"].startswith("call_") and call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert chunks[6]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[7]["choices"] == [] and chunks[7]["usage"]["completion_tokens"] == 7
    assert len(chunks) == 8
    assert all(c["id"] == "r1" and c["model"] == "gemini-2.5-flash" for c in chunks)
    assert decoder.usage() == chunks[7]["usage"]
    # same id as the non-stream parser would give
    assert call["id"] == gemini.call_id("get_weather", {"city": "Paris"}, 0, 0)


def test_stream_error_event_raises():
    decoder = gemini.stream_decoder()
    data = b'{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}'
    with pytest.raises(errors.UpstreamError) as info:
        decoder.feed(None, data)
    assert info.value.status == 503 and "overloaded" in info.value.message


def test_usage_tap_only_parses_usage_events():
    tap = gemini.usage_tap()
    for _, data in SSEParser().feed(REAL_STREAM):
        tap.feed(None, data)
    tap.feed(None, b"not json and no usage")
    assert tap.usage()["prompt_tokens"] == 11 and tap.usage()["completion_tokens"] == 7


# ---------------------------------------------------------------- embeddings


def test_embeddings_both_ways():
    body = gemini.embeddings_request_from_canonical({"model": "emb", "input": ["a", "b"], "dimensions": 4}, "text-embedding-004")
    assert body == {"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 4},
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 4},
    ]}  # fmt: skip
    single = gemini.embeddings_request_from_canonical({"input": "x"}, "models/e")
    assert single == {"requests": [{"model": "models/e", "content": {"parts": [{"text": "x"}]}}]}
    resp = gemini.embeddings_response_to_canonical({"embeddings": [{"values": [0.5, -1.0]}, {"values": [1.0, 0.0]}]}, "emb")
    assert resp == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
            {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]},
        ],
        "model": "emb",
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
    b64 = gemini.embeddings_response_to_canonical({"embeddings": [{"values": [0.5, -1.0]}]}, "emb", "base64")
    assert struct.unpack("<2f", base64.b64decode(b64["data"][0]["embedding"])) == (0.5, -1.0)


@pytest.mark.parametrize("bad", [[1, 2, 3], [[1, 2]], [], None])
def test_embeddings_token_arrays_rejected(bad):
    with pytest.raises(errors.BadRequest) as info:
        gemini.embeddings_request_from_canonical({"input": bad}, "e")
    assert info.value.param == "input"


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (400, {"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT"}, "invalid_request_error"),
        (400, {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
               "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}, "authentication_error"),
        (401, {"code": 401, "message": "no creds", "status": "UNAUTHENTICATED"}, "authentication_error"),
        (403, {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}, "permission_error"),
        (404, {"code": 404, "message": "models/x is not found", "status": "NOT_FOUND"}, "not_found_error"),
        (429, {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}, "rate_limit_error"),
        (500, {"code": 500, "message": "internal", "status": "INTERNAL"}, "api_error"),
        (503, {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}, "api_error"),
    ],
)  # fmt: skip
def test_parse_error(status, error, expected):
    message, type_ = gemini.parse_error(status, orjson.dumps({"error": error}))
    assert (message, type_) == (error["message"], expected)


def test_parse_error_robust():
    assert gemini.parse_error(502, b"<html>Bad Gateway</html>") == ("upstream returned 502", "api_error")
    assert gemini.parse_error(400, b'[{"error": {"code": 400, "message": "m", "status": "INVALID_ARGUMENT"}}]') == ("m", "invalid_request_error")
    assert gemini.parse_error(404, b'{"error": "x"}') == ("upstream returned 404", "not_found_error")


@pytest.mark.parametrize(
    ("err", "code", "status"),
    [
        (errors.BadRequest("bad"), 400, "INVALID_ARGUMENT"),
        (errors.AuthenticationError("who"), 401, "UNAUTHENTICATED"),
        (errors.PermissionDenied("no"), 403, "PERMISSION_DENIED"),
        (errors.NotFound("gone"), 404, "NOT_FOUND"),
        (errors.RateLimited("slow down"), 429, "RESOURCE_EXHAUSTED"),
        (errors.UpstreamUnreachable("down"), 502, "UNAVAILABLE"),
        (errors.UpstreamError("busy", status=503), 503, "UNAVAILABLE"),
        (errors.UpstreamTimeout("late"), 504, "DEADLINE_EXCEEDED"),
        (errors.LockgateError("boom"), 500, "INTERNAL"),
    ],
)
def test_error_body(err, code, status):
    assert gemini.error_body(err) == {"error": {"code": code, "message": err.message, "status": status}}


def test_error_body_hides_non_lockgate_errors():
    assert gemini.error_body(RuntimeError("secret")) == {"error": {"code": 500, "message": "internal error", "status": "INTERNAL"}}


# ---------------------------------------------------------------- front door


def test_front_door_request_round_trip():
    native = {
        "model": "models/gemini-2.5-flash",
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "weather?"}, {"inlineData": {"mimeType": "image/png", "data": "AAA="}}]},
            {"role": "model", "parts": [
                {"text": "hmm", "thought": True},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "SIG"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "d",
                                             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "generationConfig": {"temperature": 0.5, "maxOutputTokens": 50, "stopSequences": ["x"],
                             "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}},
    }  # fmt: skip
    req = gemini.request_to_canonical(native)
    assert req["model"] == "gemini-2.5-flash"
    assert req["messages"][0] == {"role": "system", "content": "be brief"}
    assert req["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA="}}
    assistant, tool = req["messages"][2], req["messages"][3]
    call = assistant["tool_calls"][0]
    assert tool["tool_call_id"] == call["id"] and tool["content"] == '{"temp":21}'
    assert assistant["thinking_blocks"][0]["signature"] == "SIG"
    assert req["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (req["temperature"], req["max_tokens"], req["stop"]) == (0.5, 50, ["x"])
    assert req["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    # and back to the wire: same structure (ids added, thought text dropped)
    back = gemini.request_from_canonical(req, "gemini-2.5-flash")
    assert back["systemInstruction"] == native["systemInstruction"]
    assert back["contents"][0] == native["contents"][0]
    assert back["contents"][1]["parts"] == [{"functionCall": {
        "name": "get_weather", "args": {"city": "Paris"}, "id": call["id"]}, "thoughtSignature": "SIG"}]
    assert back["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_weather"
    assert back["toolConfig"] == native["toolConfig"]
    assert back["generationConfig"] == native["generationConfig"]


def test_front_door_response_round_trip():
    native = {
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "why", "thought": True}, {"text": "Because."},
            {"functionCall": {"name": "f", "args": {"a": 1}, "id": "c1"}, "thoughtSignature": "S"}]},
            "finishReason": "STOP", "index": 0}],
        "usageMetadata": USAGE,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "rid",
    }  # fmt: skip
    canonical = gemini.response_to_canonical(native)
    assert gemini.response_from_canonical(canonical, "gemini-2.5-flash") == native


def test_stream_encoder_round_trip():
    chunks, _ = decode(REAL_STREAM)
    encoder = gemini.stream_encoder("my-model", "req-1")
    raw = b"".join(encoder.encode(c) for c in chunks) + encoder.finish()
    assert encoder.finish() == b""
    events = [orjson.loads(data) for _, data in SSEParser().feed(raw)]
    assert all(e["modelVersion"] == "my-model" and e["responseId"] == "req-1" for e in events)
    parts = [p for e in events for c in e.get("candidates", []) for p in c.get("content", {}).get("parts", [])]
    assert parts[0] == {"text": "Thinking...", "thought": True}
    assert parts[1] == {"text": "Hello", "thoughtSignature": "SIG"}
    assert parts[2] == {"text": " world"}
    assert parts[3]["functionCall"]["name"] == "get_weather" and parts[3]["functionCall"]["args"] == {"city": "Paris"}
    finishing = [c for e in events for c in e.get("candidates", []) if "finishReason" in c]
    assert [c["finishReason"] for c in finishing] == ["STOP"]
    assert events[-1]["usageMetadata"] == USAGE
    # decoding what we encoded gives the same canonical content
    again, _ = decode(raw)
    assert [c["choices"][0]["delta"] for c in again if c["choices"]][1:5] == [
        c["choices"][0]["delta"] for c in chunks if c["choices"]][1:5]


def test_stream_encoder_buffers_streamed_tool_arguments_and_errors():
    encoder = gemini.stream_encoder("m", "r")
    assert encoder.encode({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}) == b""
    first = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a"'}}
    assert encoder.encode({"choices": [{"index": 0, "delta": {"tool_calls": [first]}}]}) == b""
    rest = {"index": 0, "function": {"arguments": ": 1}"}}
    assert encoder.encode({"choices": [{"index": 0, "delta": {"tool_calls": [rest]}}]}) == b""
    out = encoder.encode({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    event = orjson.loads(SSEParser().feed(out)[0][1])
    assert event["candidates"][0] == {
        "content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}, "id": "c1"}}]},
        "finishReason": "STOP",
        "index": 0,
    }
    err = orjson.loads(SSEParser().feed(encoder.error(errors.RateLimited("slow")))[0][1])
    assert err == {"error": {"code": 429, "message": "slow", "status": "RESOURCE_EXHAUSTED"}}


# ---------------------------------------------------------------- provider


def test_provider_urls_and_auth():
    from types import SimpleNamespace

    from lockgate.providers.gemini import PROVIDERS

    provider = PROVIDERS["gemini"]
    dep = SimpleNamespace(model="gemini-2.5-flash", api_key="k", api_base=None, model_name="flash")
    root = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
    assert provider.chat_url(dep, False) == root + ":generateContent"
    assert provider.chat_url(dep, True) == root + ":streamGenerateContent?alt=sse"
    assert provider.embeddings_url(dep) == root + ":batchEmbedContents"
    assert provider.count_tokens_url(dep) == root + ":countTokens"
    assert provider.headers(dep) == {"content-type": "application/json", "x-goog-api-key": "k"}
    dep.api_base = "http://127.0.0.1:9/v1beta/"
    assert provider.chat_url(dep, False) == "http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:generateContent"
    assert provider.prepare_body({"model": "x", "contents": []}, dep, False) == {"contents": []}
    assert provider.dialect is gemini


# ---------------------------------------------------------------- mock server + official SDK


@pytest.fixture
async def mock_server():
    from aiohttp.test_utils import TestServer

    from tests.mocks.gemini_api import create_app

    recorder = Recorder()
    server = TestServer(create_app(recorder))
    await server.start_server()
    yield server, recorder
    await server.close()


def sdk_client(server, key=MOCK_API_KEY):
    from google import genai
    from google.genai import types

    base = str(server.make_url("/"))
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=base, api_version="v1beta"))


async def test_sdk_generate_content(mock_server):
    server, recorder = mock_server
    client = sdk_client(server)
    resp = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hello")
    assert resp.text == MOCK_TEXT
    assert resp.usage_metadata.prompt_token_count == PROMPT_TOKENS
    assert resp.usage_metadata.cached_content_token_count == CACHED_TOKENS
    assert resp.usage_metadata.candidates_token_count == COMPLETION_TOKENS
    assert recorder.last.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert recorder.last.headers["x-goog-api-key"] == MOCK_API_KEY
    # the dialect parses what the SDK saw
    assert recorder.last.body["contents"][0]["parts"][0]["text"] == "hello"


async def test_sdk_generate_content_stream_and_tool(mock_server):
    from google.genai import types

    server, recorder = mock_server
    client = sdk_client(server)
    texts = []
    async for chunk in await client.aio.models.generate_content_stream(model="gemini-2.5-flash", contents="hi there"):
        texts.append(chunk.text or "")
        last = chunk
    assert "".join(texts) == MOCK_TEXT and len(texts) > 1
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata.total_token_count == PROMPT_TOKENS + COMPLETION_TOKENS
    assert recorder.last.query == {"alt": "sse"}
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="lookup", description="d")])
    resp = await client.aio.models.generate_content(
        model="gemini-2.5-flash", contents="TRIGGER_TOOL please", config=types.GenerateContentConfig(tools=[tool]))
    assert resp.function_calls[0].name == "lookup" and resp.function_calls[0].args == {"city": "Paris"}


async def test_sdk_errors(mock_server):
    from google.genai import errors as genai_errors

    server, _ = mock_server
    with pytest.raises(genai_errors.ClientError) as info:
        await sdk_client(server, key="wrong").aio.models.generate_content(model="m", contents="hi")
    assert info.value.code == 400 and "API key not valid" in info.value.message
    with pytest.raises(genai_errors.ClientError) as info:
        await sdk_client(server).aio.models.generate_content(model="m", contents="TRIGGER_429")
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"


async def test_mock_wire_through_dialect(mock_server):
    """Raw HTTP against the mock, parsed by the dialect: think, embeddings, count, stream cancel."""
    import asyncio

    import aiohttp

    server, recorder = mock_server
    headers = {"x-goog-api-key": MOCK_API_KEY}
    url = str(server.make_url("/v1beta/models/gemini-2.5-flash"))
    body = gemini.request_from_canonical({"messages": [{"role": "user", "content": "TRIGGER_THINK"}]}, "gemini-2.5-flash")
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(url + ":generateContent", json=body) as r:
            resp = gemini.response_to_canonical(await r.json())
        msg = resp["choices"][0]["message"]
        assert msg["content"] == MOCK_TEXT and msg["reasoning_content"]
        assert resp["usage"]["completion_tokens"] == COMPLETION_TOKENS
        assert resp["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
        emb_req = gemini.embeddings_request_from_canonical({"input": ["a", "b"]}, "text-embedding-004")
        async with session.post(str(server.make_url("/v1beta/models/text-embedding-004:batchEmbedContents")), json=emb_req) as r:
            emb = gemini.embeddings_response_to_canonical(await r.json(), "e")
        assert [len(d["embedding"]) for d in emb["data"]] == [8, 8] and emb["data"][0] != emb["data"][1]
        async with session.post(url + ":countTokens", json={"contents": body["contents"]}) as r:
            assert (await r.json()) == {"totalTokens": PROMPT_TOKENS}
        async with session.post(url + ":generateContent", json=body, headers={"x-goog-api-key": "bad"}) as r:
            assert r.status == 400
            assert gemini.parse_error(r.status, await r.read())[1] == "authentication_error"
        long = gemini.request_from_canonical({"messages": [{"role": "user", "content": "TRIGGER_LONGSTREAM"}]}, "m")
        async with session.post(url + ":streamGenerateContent?alt=sse", json=long) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            await r.content.readline()
            r.close()
    await asyncio.wait_for(recorder.stream_cancelled.wait(), 5)
