"""Golden tests of the Cohere Chat v2 dialect (provider side) and its stream parser."""

from __future__ import annotations

import orjson
import pytest

from lockgate.dialects import cohere_chat
from lockgate.errors import BadRequest
from lockgate.providers.cohere import StreamParser


def test_request_mapping():
    req = {
        "model": "client-name", "max_tokens": 9, "top_p": 0.5, "top_k": 3, "stop": "END", "seed": 1,
        "messages": [{"role": "developer", "content": [{"type": "text", "text": "rules"}]},
                     {"role": "user", "content": [{"type": "text", "text": "hi"},
                                                  {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
                     {"role": "assistant", "content": "let me check", "tool_calls": [
                         {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "42"}]}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}},
                   "cache_control": {"type": "ephemeral"}},
                  {"type": "function", "function": {"name": "g"}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "thinking": {"type": "enabled", "budget_tokens": 100},
        "n": 1, "user": "u",
    }
    body = cohere_chat.request_from_canonical(req, "command-a-03-2025")
    assert body == {
        "model": "command-a-03-2025", "max_tokens": 9, "seed": 1, "p": 0.5, "k": 3, "stop_sequences": ["END"],
        "messages": [
            {"role": "system", "content": "rules"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
            {"role": "assistant", "tool_plan": "let me check", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "REQUIRED",
        "response_format": {"type": "json_object", "json_schema": {"type": "object"}},
        "thinking": {"type": "enabled", "token_budget": 100},
    }


def test_unsupported_part_is_a_clear_400():
    with pytest.raises(BadRequest) as info:
        cohere_chat.request_from_canonical(
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "m")
    assert "input_audio" in info.value.message


def test_response_with_thinking_and_finish_reasons():
    body = {"id": "r1", "finish_reason": "MAX_TOKENS",
            "message": {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"},
                                                         {"type": "text", "text": "ok"}]},
            "usage": {"tokens": {"input_tokens": 5, "output_tokens": 2}}}
    out = cohere_chat.response_to_canonical(body)
    assert out["choices"][0] == {"index": 0, "finish_reason": "length",
                                 "message": {"role": "assistant", "content": "ok", "reasoning_content": "hmm"}}
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def test_stream_decoder_reads_type_from_json_or_event_line():
    dec = cohere_chat.stream_decoder()
    out = dec.feed(None, orjson.dumps({"type": "content-delta", "delta": {"message": {"content": {"text": "a"}}}}))
    out += dec.feed("content-delta", orjson.dumps({"delta": {"message": {"content": {"text": "b"}}}}))
    out += dec.feed("message-end", orjson.dumps({"type": "message-end", "delta": {
        "finish_reason": "COMPLETE", "usage": {"billed_units": {"input_tokens": 1, "output_tokens": 2}}}}))
    assert [c["choices"][0]["delta"].get("content") for c in out if c["choices"]] == ["a", "b", None]
    assert out[-1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert dec.usage() == out[-1]["usage"]


def test_parse_error_and_stream_parser_modes():
    assert cohere_chat.parse_error(429, b'{"id": "x", "message": "slow down"}') == ("slow down", "rate_limit_error")
    assert cohere_chat.parse_error(502, b"<html>") == ("upstream returned 502", "api_error")
    sse = StreamParser()
    assert sse.feed(b'event: message-start\ndata: {"type":"message-start"}\n\n') == [
        ("message-start", b'{"type":"message-start"}')]
    lines = StreamParser()
    assert lines.feed(b'{"type":"a"}\n{"ty') == [(None, b'{"type":"a"}')]
    assert lines.feed(b'pe":"b"}\n') == [(None, b'{"type":"b"}')]
    assert lines.flush() == []
