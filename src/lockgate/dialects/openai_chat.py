"""OpenAI Chat Completions: the lingua franca and the canonical form itself.

Provider side, the canonical extensions OpenAI lacks are removed (``thinking``,
``top_k``, ``metadata``, ``thinking_blocks``, ``cache_control``; a tool result's
``is_error`` becomes an ``Error: `` prefix of its text), system messages stay where
they stand (one that sits between an assistant's tool calls and their results is
moved just after the results, where OpenAI accepts it), and a ``user`` longer than
OpenAI's 64 characters (Claude Code's ``metadata.user_id`` is a JSON document) is
replaced by a stable digest of it.  Reasoning models (o-series, gpt-5) get
``max_completion_tokens`` instead of ``max_tokens``, and an Anthropic thinking
budget as ``reasoning_effort`` (>= 16384 high, >= 4096 medium, else low).
"""

from __future__ import annotations

import hashlib
import re
import time
from functools import lru_cache
from typing import Any

import orjson

from ..errors import LockgateError, UpstreamError, type_for_status
from ..transport.sse import encode_event
from . import error_marked
from .system_messages import after_tool_results

NAME = "openai"
MAX_USER_LENGTH = 64  # OpenAI refuses a longer ``user``

_DROP_ON_CANONICAL = ("api_base", "base_url", "api_key", "api_version")


# ---------------------------------------------------------------- front door


def request_to_canonical(body: dict[str, Any]) -> dict[str, Any]:
    req = {k: v for k, v in body.items() if k not in _DROP_ON_CANONICAL}
    if "max_completion_tokens" in req and "max_tokens" not in req:
        req["max_tokens"] = req.pop("max_completion_tokens")
    return req


def response_from_canonical(resp: dict[str, Any], model: str) -> dict[str, Any]:
    out = dict(resp)
    out["model"] = model
    choices = []
    for choice in out.get("choices", []):
        msg = dict(choice.get("message") or {})
        msg.pop("thinking_blocks", None)
        choices.append({**choice, "message": msg})
    out["choices"] = choices
    if out.get("usage"):
        out["usage"] = _public_usage(out["usage"])
    return out


def _public_usage(usage: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in usage.items() if k != "cache_creation_input_tokens"}


class StreamEncoderImpl:
    """Canonical chunks are already OpenAI chunks: set id/model, drop extensions."""

    def __init__(self, model: str, request_id: str, include_usage: bool = True) -> None:
        self.model = model
        self.id = "chatcmpl-" + request_id
        self.created = int(time.time())
        self.include_usage = include_usage

    def encode(self, chunk: dict[str, Any]) -> bytes:
        usage = chunk.get("usage")
        if not chunk.get("choices") and (not usage or not self.include_usage):
            return b""
        out = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [_clean_choice(c) for c in chunk.get("choices", [])],
        }
        if usage and self.include_usage:
            out["usage"] = _public_usage(usage)
        return encode_event(orjson.dumps(out))

    def finish(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, err: Exception) -> bytes:
        return encode_event(orjson.dumps(error_body(err)))


def _clean_choice(choice: dict[str, Any]) -> dict[str, Any]:
    delta = choice.get("delta")
    if delta and "thinking_signature" in delta:
        delta = {k: v for k, v in delta.items() if k != "thinking_signature"}
        choice = {**choice, "delta": delta}
    return choice


def stream_encoder(model: str, request_id: str, include_usage: bool = True) -> StreamEncoderImpl:
    return StreamEncoderImpl(model, request_id, include_usage)


def error_body(err: Exception) -> dict[str, Any]:
    if isinstance(err, LockgateError):
        return {
            "error": {
                "message": err.message,
                "type": err.type,
                "param": err.param,
                "code": err.code,
            }
        }
    return {"error": {"message": "internal error", "type": "api_error", "param": None, "code": None}}


# ---------------------------------------------------------------- provider side


def request_from_canonical(req: dict[str, Any], model: str) -> dict[str, Any]:
    body = {k: v for k, v in req.items() if k not in ("thinking", "top_k", "metadata")}
    body["model"] = model
    msgs: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []  # images of tool results, sent once the results are through
    for m in after_tool_results(req.get("messages", [])):
        if images and m.get("role") != "tool":
            msgs.append(_images_message(images))
            images = []
        if _has_extensions(m):
            m = _plain_message(m)
            if m.get("role") == "assistant" and not m.get("content") and not m.get("tool_calls"):
                continue  # it held only thinking, which OpenAI cannot take: an empty turn is refused
        if m.get("role") == "tool" and isinstance(m.get("content"), list):
            m, found = _text_only_result(m)
            images.extend(found)
        msgs.append(m)
    if images:
        msgs.append(_images_message(images))
    body["messages"] = msgs
    if is_reasoning_model(model):
        _reasoning_knobs(body, req)
    if isinstance(body.get("user"), str) and len(body["user"]) > MAX_USER_LENGTH:
        body["user"] = user_digest(body["user"])
    if "tools" in body:
        body["tools"] = [{k: v for k, v in t.items() if k != "cache_control"} for t in body["tools"]]
    if body.get("stream"):
        opts = dict(body.get("stream_options") or {})
        opts["include_usage"] = True
        body["stream_options"] = opts
    return body


@lru_cache(maxsize=1024)
def user_digest(user: str) -> str:
    """A stable stand-in, within OpenAI's 64 characters, for a longer ``user`` (cached: a
    Claude Code session sends the same one on every request)."""
    return "user-" + hashlib.sha256(user.encode()).hexdigest()[:48]


_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")


@lru_cache(maxsize=256)
def is_reasoning_model(model: str) -> bool:
    """OpenAI's reasoning models (o1, o3, o4-mini, gpt-5, ...), which take ``max_completion_tokens``."""
    return _REASONING_MODEL.match(model.rsplit("/", 1)[-1]) is not None


def _reasoning_knobs(body: dict[str, Any], req: dict[str, Any]) -> None:
    """``max_tokens`` -> ``max_completion_tokens`` (reasoning models refuse the former) and an
    Anthropic thinking budget -> ``reasoning_effort`` when the request set none."""
    if "max_tokens" in body:
        body["max_completion_tokens"] = body.pop("max_tokens")
    thinking = req.get("thinking")
    if "reasoning_effort" in body or not isinstance(thinking, dict):
        return
    if thinking.get("type") == "enabled" and isinstance(thinking.get("budget_tokens"), int):
        budget = thinking["budget_tokens"]
        body["reasoning_effort"] = "high" if budget >= 16384 else "medium" if budget >= 4096 else "low"


def _text_only_result(m: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """OpenAI's tool messages hold text only: the other parts of a result are taken out."""
    found = [p for p in m["content"] if p.get("type") != "text"]
    if not found:
        return m, []
    texts = [p for p in m["content"] if p.get("type") == "text"]
    note = {"type": "text", "text": f"({len(found)} image(s) of this result follow in the next message)"}
    return {**m, "content": [*texts, note]}, found


def _images_message(images: list[dict[str, Any]]) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": "Images returned by the tools above:"}, *images]}


def _has_extensions(m: dict[str, Any]) -> bool:
    return ("thinking_blocks" in m or "is_error" in m or _has_cache_control(m)
            or (m.get("role") == "tool" and "name" in m))


def _plain_message(m: dict[str, Any]) -> dict[str, Any]:
    """A canonical message without the extensions OpenAI refuses."""
    out = {k: v for k, v in m.items() if k not in ("thinking_blocks", "is_error")}
    if out.get("role") == "tool":
        out.pop("name", None)  # the Gemini door names its results; OpenAI's tool message has no name
    content = out.get("content")
    if isinstance(content, list):
        content = [{k: v for k, v in p.items() if k != "cache_control"} for p in content]
        if m.get("is_error"):
            content = [{"type": "text", "text": error_marked("", True)}, *content]
    elif isinstance(content, str):
        content = error_marked(content, m.get("is_error"))
    out["content"] = content
    return out


def _has_cache_control(m: dict[str, Any]) -> bool:
    content = m.get("content")
    return isinstance(content, list) and any("cache_control" in p for p in content)


def response_to_canonical(body: dict[str, Any]) -> dict[str, Any]:
    return body


class StreamDecoderImpl:
    def __init__(self) -> None:
        self._usage: dict[str, Any] | None = None

    def feed(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        if data == b"[DONE]" or not data:
            return []
        chunk = orjson.loads(data)
        if "error" in chunk and "choices" not in chunk:
            err = chunk["error"] or {}
            raise UpstreamError(str(err.get("message", "upstream stream error")), status=502)
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        return [chunk]

    def usage(self) -> dict[str, Any] | None:
        return self._usage


def stream_decoder() -> StreamDecoderImpl:
    return StreamDecoderImpl()


def parse_error(status: int, body: bytes) -> tuple[str, str | None]:
    """Message and OpenAI error type of an upstream error body."""
    try:
        err = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        err = None
    if isinstance(err, dict):
        return str(err.get("message") or f"upstream returned {status}"), err.get("type") or type_for_status(status)
    if isinstance(err, str):
        return err, type_for_status(status)
    return f"upstream returned {status}", type_for_status(status)


def usage_from_body(body: dict[str, Any]) -> dict[str, Any] | None:
    return body.get("usage")


_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


class UsageTapImpl:
    __slots__ = ("_usage",)

    def __init__(self) -> None:
        self._usage: dict[str, Any] | None = None

    def feed(self, event: str | None, data: bytes) -> None:
        if _USAGE_OBJECT.search(data):
            usage = orjson.loads(data).get("usage")
            if usage:
                self._usage = usage

    def usage(self) -> dict[str, Any] | None:
        return self._usage


def usage_tap() -> UsageTapImpl:
    return UsageTapImpl()
