"""Cohere Chat v2 (``POST /v2/chat``) and Embed v2 (``POST /v2/embed``): provider side only.

Cohere has no front door here, so this module implements the provider half of the dialect
contract (request_from_canonical, response_to_canonical, stream_decoder, parse_error,
usage_from_body, usage_tap) plus embeddings.

Wire shapes (docs.cohere.com/reference/chat, /embed, /docs/streaming, /docs/tool-use-streaming):

* messages have roles ``system`` | ``user`` | ``assistant`` | ``tool``; an assistant turn that
  calls tools carries ``tool_calls`` (OpenAI-like, ``arguments`` a JSON string) and ``tool_plan``
  (the text it said before the calls); a tool result is ``{"role": "tool", "tool_call_id",
  "content"}``; tools are ``{"type": "function", "function": {name, description, parameters}}``.
* the response is ``{id, finish_reason, message: {role, content: [{type: text, text}],
  tool_plan, tool_calls}, usage: {billed_units: {input_tokens, output_tokens}, tokens: {...}}}``;
  ``finish_reason`` is COMPLETE | STOP_SEQUENCE | MAX_TOKENS | TOOL_CALL | ERROR | TIMEOUT.
* the stream is SSE whose events carry their type both in ``event:`` and in the JSON ``type``:
  message-start, content-start, content-delta, content-end, tool-plan-delta, tool-call-start,
  tool-call-delta, tool-call-end, citation-start/-end, message-end (finish_reason, usage).
* errors are ``{"message": "..."}`` (some carry an ``id`` too).

Usage: ``billed_units`` (what Cohere bills) when present, else ``tokens``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from ..errors import BadRequest, UpstreamError, type_for_status
from . import error_marked
from .system_messages import fold_into_user_turns

NAME = "cohere"

FINISH = {
    "complete": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_call": "tool_calls",
    "error": "stop", "timeout": "stop", "error_toxic": "content_filter", "error_limit": "length",
}
_PASSED = ("max_tokens", "temperature", "seed", "frequency_penalty", "presence_penalty", "stream")


# ---------------------------------------------------------------- request


def request_from_canonical(req: dict[str, Any], model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": _messages(req.get("messages") or [])}
    for key in _PASSED:
        if req.get(key) is not None:
            body[key] = req[key]
    if req.get("top_p") is not None:
        body["p"] = req["top_p"]
    if req.get("top_k") is not None:
        body["k"] = req["top_k"]
    stop = req.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = [_tool(t) for t in req.get("tools") or [] if t.get("type", "function") == "function"]
    if tools:
        body["tools"] = tools
        _tool_choice(body, req.get("tool_choice"))
    fmt = _response_format(req.get("response_format"))
    if fmt:
        body["response_format"] = fmt
    thinking = req.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        body["thinking"] = {"type": "enabled", "token_budget": thinking.get("budget_tokens")}
    return body


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _user_content(content: Any) -> Any:
    if not isinstance(content, list):
        return content if isinstance(content, str) else ""
    parts = []
    for part in content:
        if part.get("type") == "text":
            parts.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = part["image_url"]["url"] if isinstance(part.get("image_url"), dict) else part.get("image_url")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise BadRequest(f"Cohere takes text and image parts, not {part.get('type')!r}", param="messages")
    return parts


def _assistant(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant"}
    text = _text(m.get("content"))
    calls = m.get("tool_calls") or []
    if calls:
        out["tool_calls"] = [
            {"id": c.get("id"), "type": "function",
             "function": {"name": c["function"]["name"], "arguments": c["function"].get("arguments") or "{}"}}
            for c in calls
        ]
        if text:
            out["tool_plan"] = text  # Cohere's name for what the model said before calling tools
    else:
        out["content"] = text
    return out


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in fold_into_user_turns(messages):  # a later system message joins the user turn (in place)
        role = m.get("role")
        if role in ("system", "developer"):
            out.append({"role": "system", "content": _text(m.get("content"))})
        elif role == "user" and out and out[-1]["role"] == "user":  # one user turn, as it was
            out[-1]["content"] = _joined(out[-1]["content"], _user_content(m.get("content")))
        elif role == "user":
            out.append({"role": "user", "content": _user_content(m.get("content"))})
        elif role == "assistant":
            out.append(_assistant(m))
        elif role == "tool":
            out.append({"role": "tool", "tool_call_id": m.get("tool_call_id"),
                        "content": error_marked(_text(m.get("content")), m.get("is_error"))})
        else:
            raise BadRequest(f"unsupported message role {role!r}", param="messages")
    return out


def _joined(first: Any, second: Any) -> Any:
    """The content of two consecutive user messages as one."""
    if isinstance(first, str) and isinstance(second, str):
        return first + "\n\n" + second
    return _as_parts(first) + _as_parts(second)


def _as_parts(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function") or {}
    out = {"name": fn.get("name"), "parameters": fn.get("parameters") or {"type": "object", "properties": {}}}
    if fn.get("description"):
        out["description"] = fn["description"]
    return {"type": "function", "function": out}


def _tool_choice(body: dict[str, Any], choice: Any) -> None:
    if choice == "required":
        body["tool_choice"] = "REQUIRED"
    elif choice == "none":
        body["tool_choice"] = "NONE"
    elif isinstance(choice, dict):  # one named function: Cohere can only require "some tool"
        name = (choice.get("function") or {}).get("name")
        body["tools"] = [t for t in body["tools"] if t["function"]["name"] == name] or body["tools"]
        body["tool_choice"] = "REQUIRED"


def _response_format(fmt: Any) -> dict[str, Any] | None:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        return {"type": "json_object", "json_schema": schema} if schema else {"type": "json_object"}
    return None


# ---------------------------------------------------------------- response


def finish_reason(reason: Any) -> str:
    return FINISH.get(str(reason or "complete").lower(), "stop")


def usage_of(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    counts = usage.get("billed_units") or usage.get("tokens")
    if not isinstance(counts, dict):
        return None
    prompt = int(counts.get("input_tokens") or 0)
    completion = int(counts.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _canonical_calls(calls: Any) -> list[dict[str, Any]]:
    return [
        {"id": c.get("id") or "call_" + uuid.uuid4().hex[:24], "type": "function",
         "function": {"name": (c.get("function") or {}).get("name"),
                      "arguments": (c.get("function") or {}).get("arguments") or "{}"}}
        for c in calls or []
    ]


def response_to_canonical(body: dict[str, Any]) -> dict[str, Any]:
    msg = body.get("message") or {}
    blocks = msg.get("content") or []
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    thinking = "".join(b.get("thinking", "") for b in blocks if b.get("type") == "thinking")
    calls = _canonical_calls(msg.get("tool_calls"))
    message: dict[str, Any] = {"role": "assistant", "content": text or (msg.get("tool_plan") if calls else None)}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = thinking
    out: dict[str, Any] = {
        "id": body.get("id") or "chatcmpl-" + uuid.uuid4().hex,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(body.get("finish_reason"))}],
    }
    usage = usage_of(body.get("usage"))
    if usage:
        out["usage"] = usage
    return out


def usage_from_body(body: dict[str, Any]) -> dict[str, Any] | None:
    return usage_of(body.get("usage"))


def parse_error(status: int, body: bytes) -> tuple[str, str | None]:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    message = obj.get("message") if isinstance(obj, dict) else None
    return (str(message) if message else f"upstream returned {status}"), type_for_status(status)


# ---------------------------------------------------------------- stream


class StreamDecoderImpl:
    """Cohere stream events -> canonical chunks.  The event type is read from the JSON ``type``
    (present on every event) and falls back to the SSE ``event:`` name."""

    def __init__(self) -> None:
        self._id = "chatcmpl-" + uuid.uuid4().hex
        self._created = int(time.time())
        self._calls = -1  # index of the tool call being streamed
        self._usage: dict[str, Any] | None = None

    def feed(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        if not data or data == b"[DONE]":
            return []
        obj = orjson.loads(data)
        kind = obj.get("type") or event
        if kind is None and "message" in obj:
            raise UpstreamError(str(obj["message"]), status=502)
        delta = (obj.get("delta") or {}).get("message") or {}
        if kind == "message-start":
            self._id = obj.get("id") or self._id
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind in ("content-start", "content-delta"):
            return self._content(delta.get("content") or {})
        if kind == "tool-plan-delta" and delta.get("tool_plan"):
            return [self._chunk({"content": delta["tool_plan"]})]
        if kind in ("tool-call-start", "tool-call-delta"):
            return self._tool_call(kind, delta.get("tool_calls") or {})
        if kind == "message-end":
            return self._end(obj.get("delta") or {})
        return []  # content-end, tool-call-end, citations: nothing to say in the canonical form

    def usage(self) -> dict[str, Any] | None:
        return self._usage

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": "",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def _content(self, content: dict[str, Any]) -> list[dict[str, Any]]:
        if content.get("text"):
            return [self._chunk({"content": content["text"]})]
        if content.get("thinking"):
            return [self._chunk({"reasoning_content": content["thinking"]})]
        return []

    def _tool_call(self, kind: str, call: dict[str, Any]) -> list[dict[str, Any]]:
        fn = call.get("function") or {}
        if kind == "tool-call-start":
            self._calls += 1
            start = {"index": self._calls, "id": call.get("id") or "call_" + uuid.uuid4().hex[:24],
                     "type": "function", "function": {"name": fn.get("name"), "arguments": fn.get("arguments") or ""}}
            return [self._chunk({"tool_calls": [start]})]
        if not fn.get("arguments") or self._calls < 0:
            return []
        return [self._chunk({"tool_calls": [{"index": self._calls, "function": {"arguments": fn["arguments"]}}]})]

    def _end(self, delta: dict[str, Any]) -> list[dict[str, Any]]:
        chunks = [self._chunk({}, finish_reason(delta.get("finish_reason")))]
        self._usage = usage_of(delta.get("usage"))
        if self._usage:
            chunks.append({**chunks[0], "choices": [], "usage": self._usage})
        return chunks


def stream_decoder() -> StreamDecoderImpl:
    return StreamDecoderImpl()


class UsageTapImpl:
    __slots__ = ("_usage",)

    def __init__(self) -> None:
        self._usage: dict[str, Any] | None = None

    def feed(self, event: str | None, data: bytes) -> None:
        if event == "message-end" or b'"message-end"' in data:
            self._usage = usage_of((orjson.loads(data).get("delta") or {}).get("usage")) or self._usage

    def usage(self) -> dict[str, Any] | None:
        return self._usage


def usage_tap() -> UsageTapImpl:
    return UsageTapImpl()


# ---------------------------------------------------------------- embeddings


def embeddings_request_from_canonical(req: dict[str, Any], model: str) -> dict[str, Any]:
    """OpenAI embeddings request -> Embed v2 body (``input_type`` defaults to search_document)."""
    texts = req.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("Cohere embeddings take a string or a list of strings (no token arrays)", param="input")
    body: dict[str, Any] = {"model": model, "texts": texts, "embedding_types": ["float"],
                            "input_type": req.get("input_type") or "search_document"}
    if req.get("dimensions"):
        body["output_dimension"] = req["dimensions"]
    return body


def embeddings_response_to_canonical(body: dict[str, Any], model: str) -> dict[str, Any]:
    """Embed v2 response -> OpenAI embeddings response."""
    embeddings = body.get("embeddings") or {}
    vectors = embeddings.get("float") if isinstance(embeddings, dict) else embeddings
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors or [])]
    billed = ((body.get("meta") or {}).get("billed_units") or {}).get("input_tokens") or 0
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": int(billed), "total_tokens": int(billed)}}


# canonical request parameters this dialect can express (forwarding checks the rest against drop_params)
SUPPORTED_PARAMS = frozenset({
    "max_tokens", "temperature", "top_p", "top_k", "stop", "tools", "tool_choice", "seed",
    "frequency_penalty", "presence_penalty", "response_format", "thinking", "user", "metadata",
    "parallel_tool_calls",
})
