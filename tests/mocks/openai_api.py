"""A provider-faithful mock of OpenAI's Chat Completions and Embeddings APIs.

Paths, the Bearer auth check, bodies, the SSE chunk sequence (role chunk,
content chunks, finish chunk, optional usage chunk with ``choices: []``,
``data: [DONE]``) and the error shape ``{"error": {message, type, param,
code}}`` follow https://platform.openai.com/docs/api-reference/chat.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from typing import Any

from aiohttp import web

from . import (CACHED_TOKENS, COMPLETION_TOKENS, MOCK_API_KEY, MOCK_TEXT, PROMPT_TOKENS, Received, Recorder,
               trigger)


def _error(status: int, message: str, type_: str, code: str | None = None, headers: dict[str, str] | None = None):
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _last_user_text(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if p.get("type") == "text")
    return ""


def _usage(reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def _tool_call(body: dict[str, Any]) -> dict[str, Any]:
    tools = body.get("tools") or []
    name = tools[0]["function"]["name"] if tools else "get_weather"
    return {"id": "call_mock123", "type": "function", "function": {"name": name, "arguments": '{"city": "Paris"}'}}


def _check(request: web.Request, recorder: Recorder, body: Any) -> web.Response | None:
    recorder.requests.append(Received(request.path, dict(request.query),
                                      {k.lower(): v for k, v in request.headers.items()}, body))
    auth = request.headers.get("Authorization", "")
    if auth != "Bearer " + MOCK_API_KEY:
        return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
    return None


def create_app(recorder: Recorder) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        if (denied := _check(request, recorder, body)) is not None:
            return denied
        if not isinstance(body, dict) or "messages" not in body:
            return _error(400, "Missing required parameter: 'messages'.", "invalid_request_error")
        what = trigger(_last_user_text(body))
        if what == "429":
            return _error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded",
                          {"retry-after": "7"})
        if what == "500":
            return _error(500, "The server had an error while processing your request.", "server_error")
        if what == "400":
            return _error(400, "Invalid value for 'temperature'.", "invalid_request_error", "invalid_value")
        if what == "SLOW":
            await asyncio.sleep(3)
        if body.get("stream"):
            return await _stream(request, recorder, body, what)
        message: dict[str, Any] = {"role": "assistant", "content": MOCK_TEXT, "refusal": None}
        finish = "stop"
        if what == "TOOL":
            message = {"role": "assistant", "content": None, "tool_calls": [_tool_call(body)], "refusal": None}
            finish = "tool_calls"
        return web.json_response({
            "id": "chatcmpl-" + uuid.uuid4().hex[:20], "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"), "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": _usage(),
        }, headers={"x-request-id": "req_mock"})

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        if (denied := _check(request, recorder, body)) is not None:
            return denied
        items = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": _vector(str(t))} for i, t in enumerate(items)]
        return web.json_response({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": 2 * len(items), "total_tokens": 2 * len(items)}})

    app = web.Application()
    for prefix in ("", "/v1"):
        app.router.add_post(prefix + "/chat/completions", chat)
        app.router.add_post(prefix + "/embeddings", embeddings)
    return app


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255 for b in digest[:8]]


async def _stream(request: web.Request, recorder: Recorder, body: dict[str, Any], what: str | None):
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await resp.prepare(request)
    base = {"id": "chatcmpl-" + uuid.uuid4().hex[:20], "object": "chat.completion.chunk",
            "created": int(time.time()), "model": body.get("model"), "system_fingerprint": "fp_mock"}
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            data["usage"] = None
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    try:
        await resp.write(chunk({"role": "assistant", "content": "", "refusal": None}))
        if what == "TOOL":
            call = _tool_call(body)
            await resp.write(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                    "function": {"name": call["function"]["name"], "arguments": ""}}]}))
            for piece in ('{"city"', ': "Paris"}'):
                await resp.write(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            finish = "tool_calls"
        else:
            words = MOCK_TEXT.split(" ") if what != "LONGSTREAM" else ["w"] * 200
            for i, word in enumerate(words):
                if what == "LONGSTREAM":
                    await asyncio.sleep(0.05)
                await resp.write(chunk({"content": word if i == 0 else " " + word}))
            finish = "stop"
        await resp.write(chunk({}, finish))
        if include_usage:
            data = {**base, "choices": [], "usage": _usage()}
            await resp.write(b"data: " + json.dumps(data).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        recorder.stream_cancelled.set()
        raise
    return resp
