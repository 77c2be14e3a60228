"""Mocks of Azure OpenAI and of Azure AI model inference, and OpenAI's legacy ``/v1/completions``.

Azure OpenAI (learn.microsoft.com/azure/ai-foundry/openai/reference):
  ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` (and ``/embeddings``,
  ``/completions``); the key in ``api-key`` or an Entra ID token as ``Authorization: Bearer``;
  a missing or unknown ``api-version`` and an unknown deployment answer 404; bodies are OpenAI's
  plus ``prompt_filter_results`` / ``content_filter_results``; a stream opens with a chunk whose
  ``choices`` is empty and which carries only ``prompt_filter_results``; errors are
  ``{"error": {"code", "message"}}``.

Azure AI model inference (``/chat/completions``, ``/embeddings``, ``?api-version=`` optional):
  the key in ``api-key`` or ``Authorization: Bearer``; OpenAI-shaped bodies.

OpenAI legacy completions (``POST /v1/completions``, Bearer): ``text_completion`` bodies and
streams of ``text_completion`` chunks ending in ``data: [DONE]``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from aiohttp import web

from . import COMPLETION_TOKENS, MOCK_API_KEY, MOCK_TEXT, PROMPT_TOKENS, Received, Recorder, trigger
from .openai_api import _last_user_text, _tool_call, _usage, _vector

ENTRA_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra-mock-token"
DEPLOYMENTS = {"gpt4o-prod": "gpt-4o-2024-08-06", "embed-prod": "text-embedding-3-small",
               "instruct-prod": "gpt-35-turbo-instruct"}
API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
FILTERS = {k: {"filtered": False, "severity": "safe"} for k in ("hate", "self_harm", "sexual", "violence")}
LEGACY_TEXT = " there was a mock completion."


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


async def _record(request: web.Request, recorder: Recorder) -> Any:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        body = None
    recorder.requests.append(Received(request.path, dict(request.query),
                                      {k.lower(): v for k, v in request.headers.items()}, body))
    return body


def _authorized(request: web.Request, bearer: str) -> bool:
    return request.headers.get("api-key") == MOCK_API_KEY or request.headers.get("Authorization") == "Bearer " + bearer


def _trigger_error(what: str | None) -> web.Response | None:
    if what == "429":
        return _error(429, "429", "Requests to the ChatCompletions_Create Operation have exceeded the token rate "
                      "limit of your current tier. Please retry after 7 seconds.", {"retry-after": "7"})
    if what == "500":
        return _error(500, "InternalServerError", "The server had an error while processing your request.")
    if what == "400":
        return _error(400, "invalid_value", "Invalid value for 'temperature'.")
    return None


def _completion(body: dict[str, Any], model: str, what: str | None, azure: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": MOCK_TEXT, "refusal": None}
    finish = "stop"
    if what == "TOOL":
        message = {"role": "assistant", "content": None, "tool_calls": [_tool_call(body)], "refusal": None}
        finish = "tool_calls"
    choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    out = {"id": "chatcmpl-" + uuid.uuid4().hex[:20], "object": "chat.completion", "created": int(time.time()),
           "model": model, "system_fingerprint": "fp_mock", "choices": [choice], "usage": _usage()}
    if azure:
        choice["content_filter_results"] = FILTERS
        out["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": FILTERS}]
    return out


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


async def _chat_stream(request: web.Request, body: dict[str, Any], model: str, what: str | None, azure: bool):
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await resp.prepare(request)
    base = {"id": "chatcmpl-" + uuid.uuid4().hex[:20], "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": "fp_mock"}
    if azure:  # Azure opens with the prompt's content-filter verdict and no choices
        await resp.write(_sse({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                               "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTERS}]}))

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        if azure:
            choice["content_filter_results"] = FILTERS if delta.get("content") else {}
        return _sse({**base, "choices": [choice]})

    await resp.write(chunk({"role": "assistant", "content": "", "refusal": None}))
    if what == "TOOL":
        call = _tool_call(body)
        await resp.write(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                "function": {"name": call["function"]["name"], "arguments": ""}}]}))
        await resp.write(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]}))
        finish = "tool_calls"
    else:
        for i, word in enumerate(MOCK_TEXT.split(" ")):
            await resp.write(chunk({"content": word if i == 0 else " " + word}))
        finish = "stop"
    await resp.write(chunk({}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        await resp.write(_sse({**base, "choices": [], "usage": _usage()}))
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def _chat(request: web.Request, body: Any, model: str, azure: bool) -> web.StreamResponse:
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return _error(400, "BadRequest", "'messages' is a required property")
    what = trigger(_last_user_text(body))
    error = _trigger_error(what)
    if error is not None:
        return error
    if body.get("stream"):
        return await _chat_stream(request, body, model, what, azure)
    return web.json_response(_completion(body, model, what, azure), headers={"apim-request-id": "mock"})


def _embeddings(body: Any, model: str) -> web.Response:
    if not isinstance(body, dict) or body.get("input") in (None, "", []):
        return _error(400, "BadRequest", "'input' is a required property")
    items = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = [{"object": "embedding", "index": i, "embedding": _vector(str(t))} for i, t in enumerate(items)]
    return web.json_response({"object": "list", "data": data, "model": model,
                              "usage": {"prompt_tokens": 2 * len(items), "total_tokens": 2 * len(items)}})


def create_app(recorder: Recorder) -> web.Application:
    """Azure OpenAI."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await _record(request, recorder)
        version = request.query.get("api-version")
        if not version or not API_VERSION.match(version):
            return _error(404, "404", "Resource not found")
        if not _authorized(request, ENTRA_TOKEN):
            return _error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. Make "
                          "sure to provide a valid key for an active subscription and use a correct regional API "
                          "endpoint for your resource.")
        model = DEPLOYMENTS.get(request.match_info["deployment"])
        if model is None:
            return _error(404, "DeploymentNotFound", "The API deployment for this resource does not exist.")
        operation = request.match_info["operation"]
        if operation == "embeddings":
            return _embeddings(body, model)
        if operation == "completions":
            return await _legacy(request, body)
        return await _chat(request, body, model, azure=True)

    app = web.Application()
    app.router.add_post("/openai/deployments/{deployment}/{operation:chat/completions|embeddings|completions}",
                        handle)
    return app


def create_ai_app(recorder: Recorder) -> web.Application:
    """Azure AI model inference (serverless / Foundry models endpoint)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await _record(request, recorder)
        if "api-version" in request.query and not API_VERSION.match(request.query["api-version"]):
            return _error(400, "BadRequest", "Unsupported api-version")
        if not _authorized(request, MOCK_API_KEY):
            return _error(401, "Unauthorized", "Access denied due to invalid credentials.")
        model = (body or {}).get("model") or "Mistral-large-2407"
        if request.path.endswith("/embeddings"):
            return _embeddings(body, model)
        return await _chat(request, body, model, azure=False)

    app = web.Application()
    for prefix in ("", "/models"):
        app.router.add_post(prefix + "/chat/completions", handle)
        app.router.add_post(prefix + "/embeddings", handle)
    return app


# ---------------------------------------------------------------- OpenAI legacy completions


def _legacy_body(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body["prompt"] if isinstance(body["prompt"], str) else body["prompt"][0]
    text = (prompt if body.get("echo") else "") + LEGACY_TEXT
    return {"id": "cmpl-" + uuid.uuid4().hex[:20], "object": "text_completion", "created": int(time.time()),
            "model": body.get("model"), "choices": [{"text": text, "index": 0, "logprobs": None,
                                                     "finish_reason": "stop"}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                      "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}}


async def _legacy(request: web.Request, body: Any) -> web.StreamResponse:
    if not isinstance(body, dict) or body.get("prompt") is None:
        return _error(400, "invalid_request_error", "you must provide a prompt parameter")
    what = trigger(str(body["prompt"]))
    error = _trigger_error(what)
    if error is not None:
        return error
    full = _legacy_body(body)
    if not body.get("stream"):
        return web.json_response(full)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await resp.prepare(request)
    base = {k: full[k] for k in ("id", "object", "created", "model")}
    for i, word in enumerate(LEGACY_TEXT.split(" ")):
        await resp.write(_sse({**base, "choices": [{"text": (" " if i else "") + word, "index": 0,
                                                    "logprobs": None, "finish_reason": None}]}))
    await resp.write(_sse({**base, "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]}))
    if (body.get("stream_options") or {}).get("include_usage"):
        await resp.write(_sse({**base, "choices": [], "usage": full["usage"]}))
    await resp.write(b"data: [DONE]\n\n")
    return resp


def create_legacy_app(recorder: Recorder) -> web.Application:
    """OpenAI's ``/v1/completions`` (Bearer auth, OpenAI's error shape)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await _record(request, recorder)
        if request.headers.get("Authorization") != "Bearer " + MOCK_API_KEY:
            return web.json_response({"error": {"message": "Incorrect API key provided.", "type":
                                                "invalid_request_error", "param": None, "code": "invalid_api_key"}},
                                     status=401)
        return await _legacy(request, body)

    app = web.Application()
    app.router.add_post("/v1/completions", handle)
    return app
