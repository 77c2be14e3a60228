"""A provider-faithful mock of Cohere's Chat v2 (``POST /v2/chat``) and Embed v2 (``POST /v2/embed``).

Shapes follow docs.cohere.com (reference/chat, reference/embed, docs/streaming,
docs/tool-use-streaming, reference/errors): Bearer auth; messages with roles
system/user/assistant/tool, assistant ``tool_calls`` + ``tool_plan``, tool results by
``tool_call_id``; unknown top-level fields are refused (as the real API does), so a
mistranslated request fails here; responses carry ``finish_reason`` (COMPLETE, TOOL_CALL, ...)
and ``usage: {billed_units, tokens}``; the stream is SSE with ``event:`` lines and the same
name in the JSON ``type``; errors are ``{"id", "message"}``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from . import COMPLETION_TOKENS, MOCK_API_KEY, MOCK_TEXT, PROMPT_TOKENS, Received, Recorder, trigger
from .openai_api import _vector

TOOL_PLAN = "I will look up the weather in Paris."
CHAT_FIELDS = {
    "model", "messages", "tools", "strict_tools", "documents", "citation_options", "response_format",
    "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed", "frequency_penalty",
    "presence_penalty", "k", "p", "logprobs", "tool_choice", "thinking", "stream", "priority",
}
ROLES = {"system", "user", "assistant", "tool"}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"id": str(uuid.uuid4()), "message": message}, status=status, headers=headers)


def _usage() -> dict[str, Any]:
    return {"billed_units": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS},
            "tokens": {"input_tokens": PROMPT_TOKENS + 180, "output_tokens": COMPLETION_TOKENS + 2}}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text")


def _validate(body: Any) -> str | None:
    """The checks the real API makes that a translation could trip; the message it would send."""
    if not isinstance(body, dict):
        return "invalid request: body must be a JSON object"
    if not body.get("model"):
        return "invalid request: model must be provided"
    extra = sorted(set(body) - CHAT_FIELDS)
    if extra:
        return f"invalid request: unknown field: parameter {extra[0]} is not a valid field"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "invalid request: messages must not be empty"
    called: set[str] = set()
    for i, msg in enumerate(messages):
        if msg.get("role") not in ROLES:
            return f"invalid request: messages[{i}].role must be one of system, user, assistant, tool"
        for call in msg.get("tool_calls") or []:
            if call.get("type") != "function" or not isinstance(call.get("function", {}).get("arguments"), str):
                return f"invalid request: messages[{i}].tool_calls must be function calls with string arguments"
            called.add(call.get("id"))
        if msg["role"] == "tool" and msg.get("tool_call_id") not in called:
            return f"invalid request: messages[{i}].tool_call_id does not match any tool call"
    for tool in body.get("tools") or []:
        if tool.get("type") != "function" or not tool.get("function", {}).get("name"):
            return "invalid request: tools must be {type: function, function: {name, parameters}}"
    return None


def _last_user(body: dict[str, Any]) -> str:
    for msg in reversed(body["messages"]):
        if msg.get("role") == "user":
            return _text(msg.get("content"))
    return ""


def _tool_call(body: dict[str, Any]) -> dict[str, Any]:
    tools = body.get("tools") or []
    name = tools[0]["function"]["name"] if tools else "get_weather"
    return {"id": f"{name}_mock123", "type": "function", "function": {"name": name, "arguments": '{"city": "Paris"}'}}


def _answer(body: dict[str, Any], what: str | None) -> dict[str, Any]:
    if what == "TOOL":
        message = {"role": "assistant", "tool_plan": TOOL_PLAN, "tool_calls": [_tool_call(body)]}
        finish = "TOOL_CALL"
    else:
        message = {"role": "assistant", "content": [{"type": "text", "text": MOCK_TEXT}]}
        finish = "COMPLETE"
    return {"id": str(uuid.uuid4()), "finish_reason": finish, "message": message, "usage": _usage()}


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()


def _stream_events(body: dict[str, Any], what: str | None) -> list[bytes]:
    start = {"id": str(uuid.uuid4()), "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "",
                                                            "tool_calls": [], "citations": []}}}
    events = [_event("message-start", start)]
    if what == "TOOL":
        call = _tool_call(body)
        for piece in TOOL_PLAN.split(" "):
            events.append(_event("tool-plan-delta", {"delta": {"message": {"tool_plan": piece + " "}}}))
        first = {"id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}
        events.append(_event("tool-call-start", {"index": 0, "delta": {"message": {"tool_calls": first}}}))
        for piece in ('{"city"', ': "Paris"}'):
            delta = {"message": {"tool_calls": {"function": {"arguments": piece}}}}
            events.append(_event("tool-call-delta", {"index": 0, "delta": delta}))
        events.append(_event("tool-call-end", {"index": 0}))
        finish = "TOOL_CALL"
    else:
        events.append(_event("content-start", {"index": 0, "delta": {"message": {"content": {"type": "text",
                                                                                              "text": ""}}}}))
        for i, word in enumerate(MOCK_TEXT.split(" ")):
            text = word if i == 0 else " " + word
            events.append(_event("content-delta", {"index": 0, "delta": {"message": {"content": {"text": text}}}}))
        events.append(_event("content-end", {"index": 0}))
        finish = "COMPLETE"
    events.append(_event("message-end", {"delta": {"finish_reason": finish, "usage": _usage()}}))
    return events


def create_app(recorder: Recorder) -> web.Application:
    async def read(request: web.Request) -> Any:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        recorder.requests.append(Received(request.path, dict(request.query),
                                          {k.lower(): v for k, v in request.headers.items()}, body))
        return body

    def denied(request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != "Bearer " + MOCK_API_KEY:
            return _error(401, "invalid api token")
        return None

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await read(request)
        if (refused := denied(request)) is not None:
            return refused
        if (problem := _validate(body)) is not None:
            return _error(400, problem)
        # after a tool result the model answers in text, whatever the earlier user turn asked
        what = None if body["messages"][-1].get("role") == "tool" else trigger(_last_user(body))
        if what == "429":
            return _error(429, "You are using a Trial key, which is limited to 10 API calls / minute.",
                          {"retry-after": "7"})
        if what == "500":
            return _error(500, "internal server error, this has been reported to our developers")
        if what == "400":
            return _error(400, "invalid request: temperature must be between 0 and 1.0 inclusive.")
        if not body.get("stream"):
            return web.json_response(_answer(body, what))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in _stream_events(body, what):
            await resp.write(event)
        return resp

    async def embed(request: web.Request) -> web.Response:
        body = await read(request)
        if (refused := denied(request)) is not None:
            return refused
        if not isinstance(body, dict) or not body.get("model"):
            return _error(400, "invalid request: model must be provided")
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts:
            return _error(400, "invalid request: texts must not be empty")
        if body.get("input_type") not in ("search_document", "search_query", "classification", "clustering", "image"):
            return _error(400, "invalid request: valid input_type must be provided with the provided model")
        if body.get("embedding_types") != ["float"]:
            return _error(400, "invalid request: this mock serves embedding_types [\"float\"]")
        return web.json_response({
            "id": str(uuid.uuid4()), "texts": texts, "response_type": "embeddings_by_type",
            "embeddings": {"float": [_vector(t) for t in texts]},
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 3 * len(texts)}},
        })

    app = web.Application()
    app.router.add_post("/v2/chat", chat)
    app.router.add_post("/v2/embed", embed)
    return app
