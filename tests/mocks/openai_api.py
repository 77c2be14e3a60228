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
import re
import time
import uuid
from typing import Any

from aiohttp import web

from . import CACHED_TOKENS, COMPLETION_TOKENS, MOCK_API_KEY, MOCK_TEXT, PROMPT_TOKENS, Received, Recorder, trigger
from .agentic import Decision, decide, text_of
from .validation import rejects_malformed

# other dialects' parameters, which the real API refuses ("Unrecognized request argument supplied");
# fields unknown to the mock pass, so a test can show that passthrough carries tomorrow's fields
FOREIGN_PARAMS = ("thinking", "top_k", "stop_sequences", "system", "context_management", "output_config",
                  "anthropic_beta", "generationConfig", "contents")
# the keys a message of each role may carry
MESSAGE_KEYS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "refusal", "audio", "function_call"},
    "tool": {"role", "content", "tool_call_id"},
}
# completion-token ceilings of the models the tests use (the real API refuses a larger max_tokens)
MAX_COMPLETION_TOKENS = {"gpt-4o": 16384, "gpt-4o-mini": 16384, "gpt-4.1": 32768}
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


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


def _tool_call(body: dict[str, Any], agent: Decision | None = None) -> dict[str, Any]:
    if agent is not None and agent.call is not None:
        return {"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
                "function": {"name": agent.call.name, "arguments": json.dumps(agent.call.arguments)}}
    tools = body.get("tools") or []
    name = tools[0]["function"]["name"] if tools else "get_weather"
    return {"id": "call_mock123", "type": "function", "function": {"name": name, "arguments": '{"city": "Paris"}'}}


def _agent(body: dict[str, Any]) -> Decision | None:
    results: list[str] = []
    called: list[str] = []
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "assistant":
            called = [(c.get("function") or {}).get("name", "") for c in msg.get("tool_calls") or ()]
            break
        if msg.get("role") == "tool":
            results.insert(0, text_of(msg.get("content")))
    names = [(t.get("function") or {}).get("name", "") for t in body.get("tools") or ()]
    return decide(_last_user_text(body), names, called, results)


def _invalid(body: dict[str, Any]) -> str | None:
    """What the real API refuses with a 400 before generating anything."""
    foreign = [k for k in FOREIGN_PARAMS if k in body]
    if foreign:
        return f"Unrecognized request argument supplied: {foreign[0]}"
    if str(body.get("model")).startswith(("o1", "o3", "o4", "gpt-5")) and "max_tokens" in body:
        return ("Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.")
    limit = MAX_COMPLETION_TOKENS.get(str(body.get("model")))
    asked = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit and isinstance(asked, int) and asked > limit:
        return (f"max_tokens is too large: {asked}. This model supports at most {limit} completion tokens, "
                f"whereas you provided {asked}.")
    for i, tool in enumerate(body.get("tools") or ()):
        name = (tool.get("function") or {}).get("name") or ""
        if not _FUNCTION_NAME.match(name):
            return (f"Invalid 'tools[{i}].function.name': string does not match pattern. "
                    "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.")
    calls: set[str] = set()
    for i, msg in enumerate(body["messages"]):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in MESSAGE_KEYS:
            return (f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                    "'function', 'tool', and 'developer'.")
        extra = sorted(set(msg) - MESSAGE_KEYS[role])
        if extra:
            return f"Additional properties are not allowed ('{extra[0]}' was unexpected) - 'messages.{i}'"
        content = msg.get("content")
        if role == "assistant" and content is None and not msg.get("tool_calls"):
            return f"Invalid value for 'messages[{i}].content': expected a string, got null."
        if role == "tool" and isinstance(content, list) and any(p.get("type") != "text" for p in content):
            return (f"Invalid 'messages[{i}]'. Content parts of a message with role 'tool' must be of type "
                    "'text'.")
        if role == "tool" and msg.get("tool_call_id") not in calls:
            return ("Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                    "with 'tool_calls'.")
        if role != "tool":  # the results must follow the calls directly
            calls = {c.get("id") for c in msg.get("tool_calls") or ()} if role == "assistant" else set()
    if len(str(body.get("user") or "")) > 64:
        return (f"Invalid 'user': string too long. Expected a string with maximum length 64, but got a string "
                f"with length {len(body['user'])} instead.")
    return None


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
        if (problem := _invalid(body)) is not None:
            return _error(400, problem, "invalid_request_error", "invalid_value")
        agent = _agent(body)
        what = "TOOL" if agent is not None and agent.call is not None else trigger(_last_user_text(body))
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
            return await _stream(request, recorder, body, what, agent)
        text = agent.text if agent is not None and agent.text is not None else MOCK_TEXT
        if what == "ECHO":  # a model that repeats the prompt: what it received, as the client will see it
            text = "You said: " + _last_user_text(body)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        finish = "stop"
        if what == "TOOL":
            message = {"role": "assistant", "content": None, "tool_calls": [_tool_call(body, agent)],
                       "refusal": None}
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

    app = web.Application(middlewares=[rejects_malformed(lambda m: _error(400, m, "invalid_request_error"))])
    for prefix in ("", "/v1"):
        app.router.add_post(prefix + "/chat/completions", chat)
        app.router.add_post(prefix + "/embeddings", embeddings)
    return app


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255 for b in digest[:8]]


async def _stream(request: web.Request, recorder: Recorder, body: dict[str, Any], what: str | None,
                  agent: Decision | None = None):
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
            call = _tool_call(body, agent)
            await resp.write(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                    "function": {"name": call["function"]["name"], "arguments": ""}}]}))
            args = call["function"]["arguments"]
            for piece in (args[:7], args[7:]):
                await resp.write(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            finish = "tool_calls"
        else:
            text = agent.text if agent is not None and agent.text is not None else MOCK_TEXT
            if what == "ECHO":
                text = "You said: " + _last_user_text(body)
            words = text.split(" ") if what != "LONGSTREAM" else ["w"] * 200
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
