"""An OpenAI-shaped provider whose behaviour is chosen by its base URL, for routing tests.

``api_base: <url>/<label>/<mode>/v1`` makes that deployment behave as ``mode``:

  ok          answers normally; the text names the label ("answer from <label>")
  slow        waits 150 ms, then answers
  429         429 rate_limit_exceeded with ``retry-after: 1``
  500 / 503   server errors in OpenAI's shape
  hang        never answers (sleeps 60 s)
  context     400 "maximum context length" error
  policy      400 content_policy_violation
  flakyN      the first N requests to this label fail with 500, then it answers
  drop        streams two chunks, then drops the connection (non-stream: drops at once)
  stall       streams two chunks, then stalls for 60 s

``recorder.counts[label]`` counts requests per label.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

from aiohttp import web

from . import COMPLETION_TOKENS, PROMPT_TOKENS, Received, Recorder


def _error(status: int, message: str, type_: str, code: str | None, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": type_, "param": None, "code": code}},
                             status=status, headers=headers)


def _answer(body: dict, label: str) -> web.Response:
    return web.json_response({
        "id": "chatcmpl-faulty", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer from {label}"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                  "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
    })


def _chunk(body: dict, delta: dict, finish: str | None = None) -> bytes:
    data = {"id": "chatcmpl-faulty", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


async def _stream(request: web.Request, body: dict, label: str, mode: str) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(_chunk(body, {"role": "assistant", "content": ""}))
    await resp.write(_chunk(body, {"content": "answer "}))
    if mode == "drop":
        request.transport.close()
        return resp
    if mode == "stall":
        await asyncio.sleep(60)
    await resp.write(_chunk(body, {"content": f"from {label}"}))
    await resp.write(_chunk(body, {}, "stop"))
    usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
             "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}
    await resp.write(b"data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 0,
                                             "model": body["model"], "choices": [], "usage": usage}).encode()
                     + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    return resp


def create_app(recorder: Recorder) -> web.Application:
    recorder.counts = Counter()  # type: ignore[attr-defined]

    async def chat(request: web.Request) -> web.StreamResponse:
        label, mode = request.match_info["label"], request.match_info["mode"]
        body = await request.json()
        recorder.requests.append(Received(request.path, {}, dict(request.headers), body))
        recorder.counts[label] += 1  # type: ignore[attr-defined]
        if mode == "slow":
            await asyncio.sleep(0.15)
        elif mode == "hang":
            await asyncio.sleep(60)
        elif mode == "429":
            return _error(429, "Rate limit reached", "requests", "rate_limit_exceeded", {"retry-after": "1"})
        elif mode in ("500", "503"):
            return _error(int(mode), "The server had an error", "server_error", None)
        elif mode == "context":
            return _error(400, "This model's maximum context length is 8192 tokens.", "invalid_request_error",
                          "context_length_exceeded")
        elif mode == "policy":
            return _error(400, "Your request was rejected by the safety system.", "invalid_request_error",
                          "content_policy_violation")
        elif mode.startswith("flaky") and recorder.counts[label] <= int(mode[5:]):  # type: ignore[attr-defined]
            return _error(500, "flaky failure", "server_error", None)
        if body.get("stream"):
            return await _stream(request, body, label, mode)
        if mode == "drop":
            request.transport.close()
            return web.Response()
        return _answer(body, label)

    app = web.Application()
    app.router.add_post("/{label}/{mode}/v1/chat/completions", chat)
    return app
