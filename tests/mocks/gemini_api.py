"""Mock of Google's Gemini API v1beta (generativelanguage.googleapis.com).

Serves ``POST /v1beta/models/{model}:{method}`` (and /v1, /v1alpha) for generateContent,
streamGenerateContent (``?alt=sse`` -> ``data: {json}\\r\\n\\r\\n`` events, without
it a JSON array, as the real API does), batchEmbedContents and countTokens.
Auth is ``x-goog-api-key`` or ``?key=``: a missing key is 403
PERMISSION_DENIED, a wrong one 400 INVALID_ARGUMENT "API key not valid"
(the real API's answers).  Triggers: see ``tests/mocks/__init__``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

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
from .agentic import Decision, decide

# the fields of Gemini's Schema object (function parameters); anything else is
# refused as 'Invalid JSON payload received. Unknown name ...' by the real API
SCHEMA_FIELDS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf",
    "propertyOrdering", "default", "items", "minimum", "maximum",
})

THINK_TEXT = "Let me think about this step by step."
THOUGHT_TOKENS = 4  # THINK: canonical completion_tokens stays COMPLETION_TOKENS
RESPONSE_ID = "mockResp-gemini-0001"

_STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}  # fmt: skip


def google_error(
    code: int, message: str, details: list[Any] | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    err: dict[str, Any] = {"code": code, "message": message, "status": _STATUS_NAMES.get(code, "UNKNOWN")}
    if details:
        err["details"] = details
    return web.json_response({"error": err}, status=code, headers=headers)


def _key_error(request: web.Request) -> web.Response | None:
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        return google_error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity)."
            " Please use API Key or other form of API consumer identity to call this API.",
        )
    if key != MOCK_API_KEY:
        info = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
        return google_error(400, "API key not valid. Please pass a valid API key.", [info])
    return None


def _trigger_error(name: str | None) -> web.Response | None:
    if name == "429":
        retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
        return google_error(
            429, "You exceeded your current quota, please check your plan and billing details.",
            [retry], headers={"retry-after": "7"},
        )  # fmt: skip
    if name == "500":
        return google_error(
            500,
            "An internal error has occurred. Please retry or report in"
            " https://developers.generativeai.google/guide/troubleshooting",
        )
    if name == "400":
        return google_error(400, "Request contains an invalid argument.")
    return None


def _user_texts(body: dict[str, Any]) -> list[str]:
    texts = []
    for content in body.get("contents") or []:
        if content.get("role", "user") == "user":
            texts.append("".join(p.get("text", "") for p in content.get("parts") or []))
    return texts


def _tool_names(body: dict[str, Any]) -> list[str]:
    return [d.get("name", "") for tool in body.get("tools") or []
            for d in tool.get("functionDeclarations") or tool.get("function_declarations") or []]


def _agent(body: dict[str, Any]) -> Decision | None:
    results: list[str] = []
    called: list[str] = []
    for content in reversed(body.get("contents") or []):
        if content.get("role") == "model":
            called = [(p.get("functionCall") or p.get("function_call") or {}).get("name", "")
                      for p in content.get("parts") or ()]
            break
        for part in reversed(content.get("parts") or []):
            response = part.get("functionResponse") or part.get("function_response")
            if response:
                results.insert(0, _response_text(response.get("response")))
    return decide(last_user_text(_user_texts(body)), _tool_names(body), called, results)


def _response_text(response: Any) -> str:
    """The text of a functionResponse's ``response`` ({"output"}, {"result"} or {"error"} by convention)."""
    if isinstance(response, dict):
        for key in ("output", "result", "error"):
            if key in response:
                value = response[key]
                return value if isinstance(value, str) else json.dumps(value)
    return json.dumps(response)


def _schema_error(schema: Any, where: str) -> str | None:
    if not isinstance(schema, dict):
        return None
    for key, value in schema.items():
        if key not in SCHEMA_FIELDS:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
        nested = (list(value.items()) if key == "properties" and isinstance(value, dict)
                  else [(str(i), v) for i, v in enumerate(value)] if key == "anyOf" and isinstance(value, list)
                  else [("", value)] if key == "items" else [])
        for name, sub in nested:
            found = _schema_error(sub, f"{where}.{key}[{name}]" if name else f"{where}.{key}")
            if found:
                return found
    return None


def call_signature(body: dict[str, Any]) -> str:
    """The thought signature the model gives its function call (deterministic, per conversation)."""
    first = json.dumps((body.get("contents") or [{}])[0], sort_keys=True)
    return "gemini-sig-" + hashlib.sha256(first.encode()).hexdigest()[:16]


def _signs_calls(model: str, body: dict[str, Any]) -> bool:
    """Thinking models sign their function calls (Gemini 3 always, 2.5 when thinking is on)."""
    return model.startswith("gemini-3") or bool((body.get("generationConfig") or {}).get("thinkingConfig"))


def _invalid(model: str, body: dict[str, Any]) -> str | None:
    """What the real API refuses before generating: unknown roles, unknown schema fields,
    and (Gemini 3) a replayed function call without its thought signature."""
    for i, content in enumerate(body.get("contents") or []):
        if content.get("role", "user") not in ("user", "model"):
            return "Please use a valid role: user, model."
        if not content.get("parts"):
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
        calls = [p for p in content["parts"] if "functionCall" in p or "function_call" in p]
        if model.startswith("gemini-3") and calls and not (calls[0].get("thoughtSignature")
                                                           or calls[0].get("thought_signature")):
            return (f"Function call is missing a thought_signature in functionCall parts. This is required for "
                    f"tools to work correctly. Additional data, function call, position {i}.")
    for i, tool in enumerate(body.get("tools") or []):
        for j, decl in enumerate(tool.get("functionDeclarations") or tool.get("function_declarations") or []):
            found = _schema_error(decl.get("parameters"), f"tools[{i}].function_declarations[{j}].parameters")
            if found:
                return found
    return None


def _tool_name(body: dict[str, Any]) -> str:
    for tool in body.get("tools") or []:
        decls = tool.get("functionDeclarations") or tool.get("function_declarations") or []
        if decls:
            return decls[0].get("name", "get_weather")
    return "get_weather"


def _usage(final: bool, think: bool) -> dict[str, Any]:
    if not final:
        return {"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS}
    candidates = COMPLETION_TOKENS - (THOUGHT_TOKENS if think else 0)
    meta = {
        "promptTokenCount": PROMPT_TOKENS,
        "candidatesTokenCount": candidates,
        "totalTokenCount": PROMPT_TOKENS + COMPLETION_TOKENS,
        "cachedContentTokenCount": CACHED_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": PROMPT_TOKENS}],
    }
    if think:
        meta["thoughtsTokenCount"] = THOUGHT_TOKENS
    return meta


def _fragment(model: str, parts: list[dict[str, Any]], finish: bool, think: bool) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = "STOP"
    usage = _usage(finish, think)
    return {"candidates": [cand], "usageMetadata": usage, "modelVersion": model, "responseId": RESPONSE_ID}


def _answer_parts(body: dict[str, Any], name: str | None, model: str = "") -> list[dict[str, Any]]:
    agent = _agent(body)
    if agent is not None and agent.call is not None:
        part: dict[str, Any] = {"functionCall": {"name": agent.call.name, "args": agent.call.arguments}}
        if _signs_calls(model, body):
            part["thoughtSignature"] = call_signature(body)
        return [part]
    if agent is not None:
        return [{"text": agent.text or ""}]
    if name == "TOOL":
        return [{"functionCall": {"name": _tool_name(body), "args": {"city": "Paris"}}}]
    parts = [{"text": THINK_TEXT, "thought": True}] if name == "THINK" else []
    return parts + [{"text": MOCK_TEXT}]


def _stream_pieces(body: dict[str, Any], name: str | None, model: str = "") -> list[list[dict[str, Any]]]:
    if name == "TOOL" or _agent(body) is not None:
        return [_answer_parts(body, name, model)]
    if name == "LONGSTREAM":
        return [[{"text": f"tok{i} "}] for i in range(200)]
    words = MOCK_TEXT.split(" ")
    pieces = [[{"text": w + (" " if i < len(words) - 1 else "")}] for i, w in enumerate(words)]
    return ([[{"text": THINK_TEXT, "thought": True}]] if name == "THINK" else []) + pieces


def _generate(model: str, body: dict[str, Any], name: str | None) -> web.Response:
    resp = _fragment(model, _answer_parts(body, name, model), True, name == "THINK")
    if name == "LONGSTREAM":
        resp["candidates"][0]["content"]["parts"] = [{"text": "".join(f"tok{i} " for i in range(200))}]
    return web.json_response(resp)


async def _stream(
    request: web.Request, model: str, body: dict[str, Any], name: str | None, recorder: Recorder
) -> web.StreamResponse:
    pieces = _stream_pieces(body, name, model)
    sse = request.query.get("alt") == "sse"
    resp = web.StreamResponse(headers={"content-type": "text/event-stream" if sse else "application/json"})
    await resp.prepare(request)
    try:
        for i, parts in enumerate(pieces):
            frag = json.dumps(_fragment(model, parts, i == len(pieces) - 1, name == "THINK"))
            if sse:
                await resp.write(b"data: " + frag.encode() + b"\r\n\r\n")
            else:
                # without alt=sse the real API streams one JSON array, element by element
                end = "]" if i == len(pieces) - 1 else ""
                await resp.write((("[" if i == 0 else ",\r\n") + frag + end).encode())
            if name == "LONGSTREAM":
                await asyncio.sleep(0.05)
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        recorder.stream_cancelled.set()
        raise
    return resp


MAX_DIMENSIONALITY = 3072  # gemini-embedding-001's largest output


def valid_dimensionality(size: object) -> bool:
    return isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= MAX_DIMENSIONALITY


def _embed(model: str, body: dict[str, Any]) -> web.Response:
    out = []
    for item in body.get("requests") or []:
        if item.get("model") != "models/" + model:
            return google_error(400, f"Model {item.get('model')!r} in the request does not match models/{model}.")
        text = "".join(p.get("text", "") for p in (item.get("content") or {}).get("parts") or [])
        digest = hashlib.sha256(text.encode()).digest()
        size = item.get("outputDimensionality") or 8
        if not valid_dimensionality(size):  # the real API refuses what its models cannot produce
            return google_error(400, f"Invalid value at 'requests[0].output_dimensionality' ({size!r}): "
                                     f"must be an integer between 1 and {MAX_DIMENSIONALITY}.")
        out.append({"values": [round(digest[i % 32] / 255 * 2 - 1, 6) for i in range(size)]})
    return web.json_response({"embeddings": out})


def create_app(recorder: Recorder) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["spec"].rpartition(":")
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        recorder.requests.append(Received(request.path, dict(request.query), headers, body))
        error = _key_error(request)
        if error is not None:
            return error
        if not isinstance(body, dict):
            return google_error(400, "Invalid JSON payload received.")
        if method == "batchEmbedContents":
            return _embed(model, body)
        if method == "countTokens":
            return web.json_response({"totalTokens": PROMPT_TOKENS})
        if method not in ("generateContent", "streamGenerateContent"):
            return google_error(404, f"Method {method!r} not found for models/{model}.")
        if not body.get("contents"):
            return google_error(400, "* GenerateContentRequest.contents: contents is not specified\n")
        if (problem := _invalid(model, body)) is not None:
            return google_error(400, problem)
        name = trigger(last_user_text(_user_texts(body)))
        error = _trigger_error(name)
        if error is not None:
            return error
        if name == "SLOW":
            await asyncio.sleep(3)
        if method == "generateContent":
            return _generate(model, body, name)
        return await _stream(request, model, body, name, recorder)

    app = web.Application(middlewares=[rejects_malformed(lambda m: google_error(400, m))])
    for version in ("v1beta", "v1", "v1alpha"):  # the real API serves all three
        app.router.add_post(f"/{version}/models/{{spec}}", handle)
    return app
