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
  picky       answers normally, except a last message containing BAD400 / BAD413 / BAD422: that status,
              as OpenAI refuses a malformed, oversized or unprocessable body

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


def _picky(body: dict) -> int | None:
    text = str((body.get("messages") or [{}])[-1].get("content"))
    return next((s for s in (400, 413, 422) if f"BAD{s}" in text), None)


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
        elif mode == "picky" and (bad := _picky(body)) is not None:
            return _error(bad, f"the request body was refused ({bad})", "invalid_request_error", None)
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


# ---------------------------------------------------------------- a provider with broken error bodies

BROKEN_MODES = {
    # mode: (status, content type, body) -- what misconfigured proxies and crashing servers answer
    "text500": (500, "text/plain; charset=utf-8", b"500 Internal Server Error\n\nServer got itself in trouble"),
    "html502": (502, "text/html", (b"<html><head><title>502 Bad Gateway</title></head><body><center>"
                                   b"<h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>")),
    "empty503": (503, None, b""),
    "truncated500": (500, "application/json", b'{"error": {"message": "The server had an err'),
    "text400": (400, "text/plain", b"Bad Request"),
    "html404": (404, "text/html", b"<!DOCTYPE html><html><body>Not Found</body></html>"),
    "truncated429": (429, "application/json", b'{"error": {"type": "rate_limit'),
    "foreign400": (400, "application/json", b'{"detail": [{"loc": ["body"], "msg": "field required"}]}'),
    "wrongtypes400": (400, "application/json", b'{"error": {"message": 42, "type": ["x"]}}'),
}
# an error JSON in the wire format of the path (what passthrough may relay as it is)
VALID_BODIES = {
    "openai": {"error": {"message": "Invalid value for 'temperature'.", "type": "invalid_request_error",
                         "param": "temperature", "code": "invalid_value"}},
    "anthropic": {"type": "error", "error": {"type": "invalid_request_error", "message": "temperature: bad"}},
    "google": {"error": {"code": 400, "message": "Invalid value at 'generation_config.temperature'.",
                         "status": "INVALID_ARGUMENT"}},
}


# a stream that opens with the provider's error event (Anthropic: overloaded, 529 on its HTTP API)
STREAM_ERRORS = {
    "overloadedevent": {
        "anthropic": b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
                     b'"message": "Overloaded"}}\n\n',
        "google": b'data: {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}\n\n',
        "openai": b'event: error\ndata: {"type": "error", "code": "server_error", "message": "overloaded", '
                  b'"param": null, "sequence_number": 0}\n\n',
    },
}


def shape_of(path: str) -> str:
    if "/v1beta/" in path or "/v1/models/" in path:
        return "google"
    if "/messages" in path:
        return "anthropic"
    return "openai"


def create_broken_app(recorder: Recorder) -> web.Application:
    """Every provider path (OpenAI, Anthropic, Gemini) under ``<url>/<mode>/``: the mode chooses the error.

    ``BROKEN_MODES`` answer their status with a body that is not an error JSON (plain text, HTML,
    empty, truncated or of an unknown shape); ``overloadedevent`` a 200 stream whose first event is the
    provider's error event; ``valid400`` / ``valid429`` answer the path's own error
    JSON (``VALID_BODIES``; 429 with ``retry-after: 3``); ``huge`` answers 200 with a JSON body of
    ``?mb=`` megabytes (default 2) and ``hugeevent`` a stream whose second event is that large.
    """

    async def any_path(request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        raw = await request.read()
        recorder.requests.append(Received(request.path, dict(request.query), dict(request.headers), raw))
        if mode in BROKEN_MODES:
            status, ctype, body = BROKEN_MODES[mode]
            headers = {"retry-after": "3"} if status == 429 else {}
            if ctype:
                headers["Content-Type"] = ctype
            return web.Response(status=status, body=body, headers=headers)
        if mode.startswith("valid"):
            status = int(mode[5:])
            headers = {"retry-after": "3"} if status == 429 else None
            return web.json_response(VALID_BODIES[shape_of(request.path)], status=status, headers=headers)
        if mode in STREAM_ERRORS:  # a 200 stream whose first event is an error event
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(STREAM_ERRORS[mode][shape_of(request.path)])
            return resp
        size = int(float(request.query.get("mb", "2")) * 1024 * 1024)
        if mode == "huge":
            return web.Response(body=b'{"pad": "' + b"x" * size + b'"}', content_type="application/json")
        if mode == "hugeevent":
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b'data: {"pad": "small"}\n\n')
            step = 64 * 1024
            await resp.write(b'data: {"pad": "')
            try:
                for _ in range(size // step + 1):
                    await resp.write(b"x" * step)
            except (ConnectionResetError, RuntimeError):
                return resp
            await resp.write(b'"}\n\n')
            return resp
        return web.json_response({"error": {"message": f"unknown mode {mode}", "type": "invalid_request_error"}},
                                 status=404)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/{mode}/{tail:.*}", any_path)
    return app
