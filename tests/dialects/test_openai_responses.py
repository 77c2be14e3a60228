"""Unit tests of the Responses dialect: both directions, streams, usage and errors."""

from __future__ import annotations

import orjson
import pytest

from lockgate.dialects import get, openai_responses as rd
from lockgate.errors import BadRequest, UpstreamError
from lockgate.transport.sse import SSEParser

USAGE = {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29,
         "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}


def test_registered():
    assert get("openai_responses") is rd


def test_request_to_canonical_items():
    body = {
        "model": "m", "instructions": "sys", "max_output_tokens": 30, "tool_choice": {"type": "function", "name": "f"},
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                         {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": '{"a":2}'},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
        ],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
    }
    req = rd.request_to_canonical(body)
    assert req["max_tokens"] == 30 and req["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert req["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"},
                                                              "strict": True}}]
    msgs = req["messages"]
    assert msgs[0] == {"role": "system", "content": "sys"}
    assert msgs[1]["content"][1] == {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}
    assert msgs[2]["content"] == "calling" and [c["id"] for c in msgs[2]["tool_calls"]] == ["c1", "c2"]
    assert msgs[3:] == [{"role": "tool", "tool_call_id": "c1", "content": "one"},
                        {"role": "tool", "tool_call_id": "c2", "content": "two"}]


@pytest.mark.parametrize("body, param", [
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}, "input[0].content"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
])
def test_request_to_canonical_rejects(body, param):
    with pytest.raises(BadRequest) as info:
        rd.request_to_canonical(body)
    assert info.value.param == param


def test_provider_request_round_trip():
    canonical = {
        "model": "m", "max_tokens": 12, "temperature": 0.5, "reasoning_effort": "high",
        "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "system", "content": "s"}, {"role": "user", "content": "q"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "r"},
        ],
    }
    body = rd.request_from_canonical(canonical, "gpt-x")
    assert body["model"] == "gpt-x" and body["max_output_tokens"] == 12 and body["reasoning"] == {"effort": "high"}
    assert body["text"]["format"] == {"type": "json_schema", "name": "o", "schema": {"type": "object"}}
    assert body["tools"] == [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    back = rd.request_to_canonical(body)
    assert back["messages"] == canonical["messages"]
    assert back["response_format"] == canonical["response_format"] and back["tools"] == canonical["tools"]


def test_response_round_trip_and_incomplete():
    canonical = {"id": "x", "choices": [{"index": 0, "finish_reason": "length", "message": {
        "role": "assistant", "content": "partial", "reasoning_content": "hmm",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": USAGE}
    resp = rd.response_from_canonical(canonical, "alias")
    assert resp["status"] == "incomplete" and resp["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [i["type"] for i in resp["output"]] == ["reasoning", "message", "function_call"]
    assert resp["usage"] == {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 9,
                             "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 29}
    back = rd.response_to_canonical(resp)
    msg = back["choices"][0]["message"]
    assert msg["content"] == "partial" and msg["reasoning_content"] == "hmm" and msg["tool_calls"][0]["id"] == "c1"
    assert back["choices"][0]["finish_reason"] == "length" and back["usage"] == USAGE


def _chunks():
    def chunk(delta, finish=None):
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return [
        chunk({"role": "assistant", "content": ""}), chunk({"reasoning_content": "think"}),
        chunk({"content": "Hel"}), chunk({"content": "lo"}),
        chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
        chunk({}, "tool_calls"), {"choices": [], "usage": USAGE},
    ]


def test_stream_encoder_then_decoder():
    enc = rd.stream_encoder("alias", "abc")
    raw = b"".join(enc.encode(c) for c in _chunks()) + enc.finish()
    events = SSEParser().feed(raw)
    kinds = [e for e, _ in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    assert [orjson.loads(d)["sequence_number"] for _, d in events] == list(range(len(events)))
    final = orjson.loads(events[-1][1])["response"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][2]["arguments"] == '{"a":1}' and final["usage"]["input_tokens"] == 20
    dec = rd.stream_decoder()
    out = [c for e, d in events for c in dec.feed(e, d)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in out if c["choices"])
    args = "".join(tc["function"].get("arguments") or "" for c in out if c["choices"]
                   for tc in c["choices"][0]["delta"].get("tool_calls") or ())
    assert text == "Hello" and args == '{"a":1}'
    assert [c["choices"][0]["finish_reason"] for c in out if c["choices"] and c["choices"][0]["finish_reason"]] == [
        "tool_calls"]
    assert dec.usage() == USAGE
    tap = rd.usage_tap()
    for e, d in events:
        tap.feed(e, d)
    assert tap.usage() == USAGE


def test_stream_length_ends_incomplete_and_errors():
    enc = rd.stream_encoder("alias", "abc")
    enc.encode({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "length"}]})
    last = SSEParser().feed(enc.finish())[-1]
    assert last[0] == "response.incomplete"
    err = SSEParser().feed(enc.error(UpstreamError("boom", status=502)))[0]
    assert err[0] == "error" and orjson.loads(err[1])["message"] == "boom"
    with pytest.raises(UpstreamError):
        rd.stream_decoder().feed("error", b'{"type":"error","code":"server_error","message":"bad","param":null}')


def test_merge_defaults_uses_responses_names():
    body = rd.merge_defaults({"input": "x", "temperature": 1}, {"max_tokens": 5, "temperature": 0})
    assert body == {"max_output_tokens": 5, "temperature": 1, "input": "x"}
