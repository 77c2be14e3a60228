"""A provider-faithful mock of OpenAI's Responses API, on top of the chat mock.

``create_app`` serves everything ``openai_api`` serves plus ``POST /v1/responses``
(and ``/responses``): Bearer auth, the ``response`` object (``resp_`` / ``msg_`` /
``fc_`` ids, ``output_text`` parts with ``annotations``, usage with
``input_tokens_details.cached_tokens``), the streaming event sequence
(``event:`` lines, ``sequence_number``; created, in_progress, output_item.added,
content_part.added, output_text.delta..., done events, completed) and OpenAI's
error shape, following https://platform.openai.com/docs/api-reference/responses.
Like the real API it rejects Chat-Completions-only parameters (``max_tokens``,
``messages``) and an unknown ``previous_response_id`` (only ids it issued exist).
Triggers: see ``tests/mocks/__init__``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aiohttp import web

from . import CACHED_TOKENS, COMPLETION_TOKENS, MOCK_API_KEY, MOCK_TEXT, PROMPT_TOKENS, Received, Recorder, trigger
from . import openai_api

ISSUED_PREFIX = "resp_mock"


def _error(status: int, message: str, type_: str, param: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _last_user_text(body: dict[str, Any]) -> str:
    items = body.get("input")
    if isinstance(items, str):
        return items
    for item in reversed(items or []):
        if item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if p.get("type") == "input_text")
    return ""


def _usage() -> dict[str, Any]:
    return {"input_tokens": PROMPT_TOKENS, "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
            "output_tokens": COMPLETION_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}


def _response(body: dict[str, Any], output: list[dict[str, Any]], status: str, usage: Any) -> dict[str, Any]:
    return {
        "id": body["_id"], "object": "response", "created_at": int(time.time()), "status": status,
        "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": body.get("model"), "output": output,
        "parallel_tool_calls": True, "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": body.get("tools") or [],
        "top_p": 1.0, "truncation": "disabled", "usage": usage, "user": None, "metadata": {},
    }


def _output(body: dict[str, Any], what: str | None) -> list[dict[str, Any]]:
    if what == "TOOL":
        tools = body.get("tools") or []
        name = tools[0]["name"] if tools else "get_weather"
        return [{"type": "function_call", "id": "fc_mock1", "call_id": "call_mock123", "name": name,
                 "arguments": '{"city": "Paris"}', "status": "completed"}]
    part = {"type": "output_text", "text": MOCK_TEXT, "annotations": [], "logprobs": []}
    return [{"type": "message", "id": "msg_mock1", "status": "completed", "role": "assistant", "content": [part]}]


def _reject(body: Any) -> web.Response | None:
    if not isinstance(body, dict) or not body.get("model"):
        return _error(400, "Missing required parameter: 'model'.", "invalid_request_error", "model")
    for name, instead in (("max_tokens", "max_output_tokens"), ("messages", "input")):
        if name in body:
            return _error(400, f"Unsupported parameter: '{name}'. In the Responses API, use '{instead}'.",
                          "invalid_request_error", name, "unsupported_parameter")
    previous = body.get("previous_response_id")
    if previous and not str(previous).startswith(ISSUED_PREFIX):
        return _error(400, f"Previous response with id '{previous}' not found.", "invalid_request_error",
                      "previous_response_id", "previous_response_not_found")
    return None


def add_routes(app: web.Application, recorder: Recorder) -> None:
    async def responses(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        recorder.requests.append(Received(request.path, dict(request.query),
                                          {k.lower(): v for k, v in request.headers.items()}, body))
        if request.headers.get("Authorization", "") != "Bearer " + MOCK_API_KEY:
            return _error(401, "Incorrect API key provided.", "invalid_request_error", None, "invalid_api_key")
        if (rejected := _reject(body)) is not None:
            return rejected
        what = trigger(_last_user_text(body))
        if what == "429":
            return _error(429, "Rate limit reached for requests", "requests", None, "rate_limit_exceeded",
                          {"retry-after": "7"})
        if what == "500":
            return _error(500, "The server had an error while processing your request.", "server_error")
        if what == "400":
            return _error(400, "Invalid value for 'temperature'.", "invalid_request_error", None, "invalid_value")
        body = {**body, "_id": ISSUED_PREFIX + uuid.uuid4().hex[:16]}  # the recorded body stays as sent
        output = _output(body, what)
        if body.get("stream"):
            return await _stream(request, recorder, body, output)
        body_out = _response(body, output, "completed", _usage())
        return web.json_response(body_out)

    for prefix in ("", "/v1"):
        app.router.add_post(prefix + "/responses", responses)


def create_app(recorder: Recorder) -> web.Application:
    app = openai_api.create_app(recorder)
    add_routes(app, recorder)
    return app


async def _stream(request: web.Request, recorder: Recorder, body: dict[str, Any],
                  output: list[dict[str, Any]]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await resp.prepare(request)
    seq = iter(range(10_000))

    async def send(kind: str, **fields: Any) -> None:
        data = json.dumps({"type": kind, "sequence_number": next(seq), **fields})
        await resp.write(f"event: {kind}\ndata: {data}\n\n".encode())

    started = _response(body, [], "in_progress", None)
    await send("response.created", response=started)
    await send("response.in_progress", response=started)
    for index, item in enumerate(output):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            await send("response.output_item.added", output_index=index,
                       item={**item, "status": "in_progress", "content": []})
            await send("response.content_part.added", **where, content_index=0,
                       part={"type": "output_text", "text": "", "annotations": []})
            words = MOCK_TEXT.split(" ")
            for i, word in enumerate(words):
                await send("response.output_text.delta", **where, content_index=0,
                           delta=word if i == 0 else " " + word, logprobs=[])
            await send("response.output_text.done", **where, content_index=0, text=MOCK_TEXT, logprobs=[])
            await send("response.content_part.done", **where, content_index=0, part=item["content"][0])
        else:
            await send("response.output_item.added", output_index=index,
                       item={**item, "arguments": "", "status": "in_progress"})
            for piece in ('{"city"', ': "Paris"}'):
                await send("response.function_call_arguments.delta", **where, delta=piece)
            await send("response.function_call_arguments.done", **where, arguments=item["arguments"])
        await send("response.output_item.done", output_index=index, item=item)
    await send("response.completed", response=_response(body, output, "completed", _usage()))
    return resp
