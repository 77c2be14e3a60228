"""Mock of the Anthropic Messages API (``POST /v1/messages`` and
``POST /v1/messages/count_tokens``), faithful to the real wire: ``x-api-key``
and ``anthropic-version`` headers, Anthropic's error JSON, a ``request-id``
header, and the real SSE sequence with ``event:`` lines:

    message_start, content_block_start, ping, content_block_delta*, content_block_stop,
    (more blocks), message_delta, message_stop
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from aiohttp import web

from .validation import rejects_malformed

from . import (
    CACHED_TOKENS,
    COMPLETION_TOKENS,
    MOCK_API_KEY,
    MOCK_TEXT,
    PROMPT_TOKENS,
    Received,
    Recorder,
    last_user_text,
    trigger,
)
from .agentic import Decision, decide, text_of

THINKING_TEXT = "Let me think about this step by step."
THINKING_SIGNATURE = "mock-signature-EqQBCkYIBxgCKkA"
LONGSTREAM_CHUNKS = 200
RECORDER = web.AppKey("recorder", Recorder)


def create_app(recorder: Recorder) -> web.Application:
    app = web.Application(middlewares=[rejects_malformed(lambda m: _error(400, "invalid_request_error", m))])
    app[RECORDER] = recorder
    app.router.add_post("/v1/messages", _messages)
    app.router.add_post("/v1/messages/count_tokens", _count_tokens)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


# ---------------------------------------------------------------- plumbing


def _error(status: int, etype: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "error", "error": {"type": etype, "message": message}, "request_id": _request_id()}
    return web.json_response(body, status=status, headers={"request-id": _request_id(), **(headers or {})},
                             dumps=lambda o: orjson.dumps(o).decode())


def _request_id() -> str:
    return "req_mock" + uuid.uuid4().hex[:20]


async def _receive(request: web.Request) -> tuple[Any, web.Response | None]:
    """Record the request; return (body, error response or None)."""
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    request.app[RECORDER].requests.append(Received(
        path=request.path, query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()}, body=body,
    ))
    if not _authorized(request):
        return body, _error(401, "authentication_error", "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return body, _error(400, "invalid_request_error", "anthropic-version: header is required")
    if not isinstance(body, dict):
        return body, _error(400, "invalid_request_error", "request body must be a JSON object")
    for field in ("model", "messages"):
        if field not in body:
            return body, _error(400, "invalid_request_error", f"{field}: Field required")
    return body, None


def _authorized(request: web.Request) -> bool:
    """``x-api-key`` (what Lockgate sends), or ``Authorization: Bearer`` (what
    recent official SDKs send for an API key); either must carry the mock key."""
    if "x-api-key" in request.headers:
        return request.headers["x-api-key"] == MOCK_API_KEY
    return request.headers.get("authorization") == "Bearer " + MOCK_API_KEY


def _user_texts(body: dict[str, Any]) -> list[str]:
    """Text of the last user message (tool results alone give "")."""
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return [content]
        return [" ".join(b.get("text", "") for b in content or () if b.get("type") == "text")]
    return []


def _tool_results_after_model(body: dict[str, Any]) -> list[str]:
    """Text of the tool results sent since the model's last turn."""
    results: list[str] = []
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "assistant":
            break
        content = msg.get("content")
        if msg.get("role") == "user" and isinstance(content, list):
            results[:0] = [text_of(b.get("content")) for b in content
                           if isinstance(b, dict) and b.get("type") == "tool_result"]
    return results


def _last_calls(body: dict[str, Any]) -> list[str]:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "assistant":
            content = msg.get("content")
            return [b.get("name", "") for b in content if isinstance(b, dict) and b.get("type") == "tool_use"] \
                if isinstance(content, list) else []
    return []


def _agent(body: dict[str, Any]) -> Decision | None:
    names = [t.get("name", "") for t in body.get("tools") or () if isinstance(t, dict)]
    return decide(last_user_text(_user_texts(body)), names, _last_calls(body), _tool_results_after_model(body))


def _conversation_error(body: dict[str, Any]) -> str | None:
    """What the real API refuses in ``messages``: an unknown role, a tool_result without its tool_use."""
    previous_calls: set[str] = set()
    for i, msg in enumerate(body.get("messages") or []):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in ("user", "assistant", "system"):
            return f"messages.{i}.role: Input should be 'user', 'assistant' or 'system'"
        content = msg.get("content")
        blocks = content if isinstance(content, list) else []
        if role == "user":
            for j, block in enumerate(blocks):
                if block.get("type") == "tool_result" and block.get("tool_use_id") not in previous_calls:
                    return (f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                            f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                            "`tool_use` block in the previous message.")
        if role != "system":
            previous_calls = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
    return None


def _usage() -> dict[str, int]:
    return {
        "input_tokens": PROMPT_TOKENS - CACHED_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": CACHED_TOKENS,
        "output_tokens": COMPLETION_TOKENS,
    }


async def _not_found(request: web.Request) -> web.Response:
    return _error(404, "not_found_error", f"Not found: {request.path}")


# ---------------------------------------------------------------- answers


def _answer(body: dict[str, Any], trig: str | None) -> tuple[list[dict[str, Any]], str]:
    """Content blocks and stop_reason of the answer."""
    agent = _agent(body)
    if agent is not None and agent.call is not None:
        block = {"type": "tool_use", "id": "toolu_mock" + uuid.uuid4().hex[:16], "name": agent.call.name,
                 "input": agent.call.arguments}
        return [block], "tool_use"
    if agent is not None:
        return [{"type": "text", "text": agent.text or ""}], "end_turn"
    if trig == "TOOL":
        tools = body.get("tools") or []
        name = tools[0].get("name", "get_weather") if tools else "get_weather"
        block = {"type": "tool_use", "id": "toolu_mock" + uuid.uuid4().hex[:16], "name": name,
                 "input": {"city": "Paris"}}
        return [block], "tool_use"
    blocks: list[dict[str, Any]] = []
    if trig == "THINK":
        blocks.append({"type": "thinking", "thinking": THINKING_TEXT, "signature": THINKING_SIGNATURE})
    text = " ".join(["tick"] * LONGSTREAM_CHUNKS) if trig == "LONGSTREAM" else MOCK_TEXT
    blocks.append({"type": "text", "text": text})
    return blocks, "end_turn"


async def _messages(request: web.Request) -> web.StreamResponse:
    body, err = await _receive(request)
    if err is not None:
        return err
    trig = trigger(last_user_text(_user_texts(body)))
    if trig == "429":
        return _error(429, "rate_limit_error", "Number of request tokens has exceeded your rate limit.",
                      {"retry-after": "7"})
    if trig == "500":
        return _error(500, "api_error", "Internal server error")
    if trig == "400":
        return _error(400, "invalid_request_error", "messages: mock invalid request")
    if "max_tokens" not in body:
        return _error(400, "invalid_request_error", "max_tokens: Field required")
    if (problem := _conversation_error(body)) is not None:
        return _error(400, "invalid_request_error", problem)
    if trig == "SLOW":
        await asyncio.sleep(3)
    blocks, stop = _answer(body, trig)
    message = {
        "id": "msg_mock" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant",
        "model": body["model"], "content": blocks, "stop_reason": stop, "stop_sequence": None,
        "usage": _usage(),
    }
    if body.get("stream"):
        return await _stream(request, message, trig == "LONGSTREAM")
    return web.Response(body=orjson.dumps(message), content_type="application/json",
                        headers={"request-id": _request_id()})


async def _count_tokens(request: web.Request) -> web.Response:
    body, err = await _receive(request)
    if err is not None:
        return err
    return web.Response(body=orjson.dumps({"input_tokens": PROMPT_TOKENS}), content_type="application/json",
                        headers={"request-id": _request_id()})


# ---------------------------------------------------------------- streaming


def _sse(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _block_events(index: int, block: dict[str, Any], long: bool) -> list[bytes]:
    """content_block_start, its deltas and content_block_stop, as the real API splits them."""
    btype = block["type"]
    if btype == "text":
        start = {"type": "text", "text": ""}
        words = block["text"].split(" ")
        pieces = [w + " " for w in words[:-1]] + [words[-1]] if long else [block["text"][:6], block["text"][6:]]
        deltas = [{"type": "text_delta", "text": p} for p in pieces]
    elif btype == "thinking":
        start = {"type": "thinking", "thinking": ""}
        half = len(block["thinking"]) // 2
        deltas = [{"type": "thinking_delta", "thinking": block["thinking"][:half]},
                  {"type": "thinking_delta", "thinking": block["thinking"][half:]},
                  {"type": "signature_delta", "signature": block["signature"]}]
    else:
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        args = orjson.dumps(block["input"]).decode()
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in ("", args[:9], args[9:])]
    out = [_sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})]
    out += [_sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
    out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    return out


def _stream_events(message: dict[str, Any], long: bool) -> list[bytes]:
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    start = {**message, "content": [], "stop_reason": None, "usage": start_usage}
    events = [_sse("message_start", {"type": "message_start", "message": start})]
    for i, block in enumerate(message["content"]):
        events += _block_events(i, block, long)
        if i == 0:
            events.insert(2, _sse("ping", {"type": "ping"}))  # after the first content_block_start
    events.append(_sse("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": usage["output_tokens"]},
    }))
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


async def _stream(request: web.Request, message: dict[str, Any], long: bool) -> web.StreamResponse:
    resp = web.StreamResponse(headers={
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "request-id": _request_id(),
    })
    try:
        await resp.prepare(request)
        for data in _stream_events(message, long):
            await resp.write(data)
            if long and b"text_delta" in data:
                await asyncio.sleep(0.05)
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        request.app[RECORDER].stream_cancelled.set()
        raise
    return resp
