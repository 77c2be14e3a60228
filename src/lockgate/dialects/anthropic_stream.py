"""Anthropic Messages: streaming half of the dialect, plus the small wire tables
(stop reasons, usage, error types) that ``anthropic_messages`` shares with it.

Anthropic streams named SSE events (every event has an ``event:`` line):

    message_start            {"message": {... "content": [], "usage": {input...}}}
    content_block_start      {"index": i, "content_block": {"type": "text"|"tool_use"|"thinking"...}}
    ping
    content_block_delta *    {"index": i, "delta": {"type": "text_delta"|"input_json_delta"|
                                                    "thinking_delta"|"signature_delta", ...}}
    content_block_stop       {"index": i}
    ... (one start/delta*/stop group per block)
    message_delta            {"delta": {"stop_reason", "stop_sequence"}, "usage": {output_tokens...}}
    message_stop

An ``error`` event may replace any of them.  Usage counts in ``message_delta``
are cumulative totals, so they overwrite what ``message_start`` reported.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from ..errors import LockgateError, UpstreamError, type_for_status
from ..transport.sse import encode_event

# ---------------------------------------------------------------- wire tables

_FINISH_FROM_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STOP_FROM_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def finish_reason(stop_reason: str | None) -> str:
    return _FINISH_FROM_STOP.get(stop_reason or "", "stop")


def stop_reason(finish: str | None) -> str:
    return _STOP_FROM_FINISH.get(finish or "", "end_turn")


_USAGE_KEYS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens")


def canonical_usage(native: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage -> canonical usage (prompt_tokens includes cache reads and writes)."""
    read = native.get("cache_read_input_tokens") or 0
    created = native.get("cache_creation_input_tokens") or 0
    prompt = (native.get("input_tokens") or 0) + read + created
    completion = native.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
        "cache_creation_input_tokens": created,
    }


def native_usage(usage: dict[str, Any] | None) -> dict[str, int]:
    """Canonical usage -> Anthropic usage (input_tokens excludes cache reads and writes)."""
    usage = usage or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    created = usage.get("cache_creation_input_tokens") or 0
    return {
        "input_tokens": max((usage.get("prompt_tokens") or 0) - cached - created, 0),
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.get("completion_tokens") or 0,
    }


# Anthropic error types that say more than their status code does.
_SPECIFIC_TYPES = {
    "authentication_error", "billing_error", "permission_error", "not_found_error",
    "request_too_large", "rate_limit_error", "timeout_error", "overloaded_error",
}
_TYPE_FOR_STATUS = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
    429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error",
}


def anthropic_error_type(status: int, type_: str | None) -> str:
    if type_ in _SPECIFIC_TYPES:
        return type_
    return _TYPE_FOR_STATUS.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


# Anthropic types that mean the same in Lockgate's (OpenAI-style) vocabulary.
_SHARED_TYPES = {
    "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
    "request_too_large", "rate_limit_error", "timeout_error", "api_error", "overloaded_error",
}


def lockgate_error_type(status: int, type_: Any) -> str:
    return type_ if isinstance(type_, str) and type_ in _SHARED_TYPES else type_for_status(status)


def error_body(err: Exception) -> dict[str, Any]:
    if isinstance(err, LockgateError):
        etype, message = anthropic_error_type(err.status, err.type), err.message
    else:
        etype, message = "api_error", "internal error"
    return {"type": "error", "error": {"type": etype, "message": message}}


# ---------------------------------------------------------------- provider side: decode


class _UsageAcc:
    """Native usage counters merged from message_start and (cumulative) message_delta."""

    __slots__ = ("native",)

    def __init__(self) -> None:
        self.native: dict[str, int] | None = None

    def absorb(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        native = self.native if self.native is not None else {}
        for key in _USAGE_KEYS:
            if usage.get(key) is not None:
                native[key] = usage[key]
        self.native = native

    def usage(self) -> dict[str, Any] | None:
        return canonical_usage(self.native) if self.native is not None else None


class StreamDecoderImpl:
    """Anthropic SSE events -> canonical chunks."""

    def __init__(self) -> None:
        self.id = "msg_unknown"
        self.model = ""
        self.created = int(time.time())
        self._acc = _UsageAcc()
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> tool_calls index

    def feed(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        if event == "ping" or not data:
            return []
        ev = orjson.loads(data)
        kind = event or ev.get("type")
        if kind == "error":
            _raise_stream_error(ev)
        handler = _DECODERS.get(kind)
        return handler(self, ev) if handler else []

    def usage(self) -> dict[str, Any] | None:
        return self._acc.usage()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def _message_start(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        msg = ev.get("message") or {}
        self.id = msg.get("id") or self.id
        self.model = msg.get("model") or self.model
        self._acc.absorb(msg.get("usage"))
        return [self._chunk({"role": "assistant"})]

    def _block_start(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        block = ev.get("content_block") or {}
        btype = block.get("type")
        if btype == "tool_use":
            index = self._tool_index[ev.get("index", 0)] = len(self._tool_index)
            args = orjson.dumps(block["input"]).decode() if block.get("input") else ""
            call = {"index": index, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": args}}
            return [self._chunk({"tool_calls": [call]})]
        if btype == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if btype == "thinking" and block.get("thinking"):
            return [self._chunk({"reasoning_content": block["thinking"]})]
        return []  # redacted_thinking and server-side blocks have no canonical chunk form

    def _block_delta(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        delta = ev.get("delta") or {}
        dtype = delta.get("type")
        if dtype == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        if dtype == "input_json_delta":
            if not delta.get("partial_json"):
                return []
            index = self._tool_index.get(ev.get("index", 0), 0)
            call = {"index": index, "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        if dtype == "thinking_delta":
            return [self._chunk({"reasoning_content": delta.get("thinking", "")})]
        if dtype == "signature_delta":
            return [self._chunk({"thinking_signature": delta.get("signature", "")})]
        return []  # citations_delta and future delta types

    def _message_delta(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        self._acc.absorb(ev.get("usage"))
        reason = (ev.get("delta") or {}).get("stop_reason")
        return [self._chunk({}, finish_reason(reason))]

    def _message_stop(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        usage = self._acc.usage()
        if usage is None:
            return []
        return [{"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                 "model": self.model, "choices": [], "usage": usage}]


_DECODERS = {
    "message_start": StreamDecoderImpl._message_start,
    "content_block_start": StreamDecoderImpl._block_start,
    "content_block_delta": StreamDecoderImpl._block_delta,
    "message_delta": StreamDecoderImpl._message_delta,
    "message_stop": StreamDecoderImpl._message_stop,
}


def _raise_stream_error(ev: dict[str, Any]) -> None:
    raw = ev.get("error")
    err: dict[str, Any] = raw if isinstance(raw, dict) else {}
    etype = err.get("type")
    status = 529 if etype == "overloaded_error" else 500
    message = str(err.get("message") or "upstream stream error")
    raise UpstreamError(message, status=status, type=lockgate_error_type(status, etype))


def stream_decoder() -> StreamDecoderImpl:
    return StreamDecoderImpl()


# ---------------------------------------------------------------- front door: encode


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return encode_event(orjson.dumps(payload), name)


class StreamEncoderImpl:
    """Canonical chunks -> Anthropic's event sequence.

    A content block is opened whenever the kind of delta changes (thinking,
    text, each tool call) and closed before the next one; ``message_delta``
    and ``message_stop`` wait for ``finish()`` so that a usage chunk arriving
    after the finish_reason chunk still lands in ``message_delta``.
    """

    def __init__(self, model: str, request_id: str) -> None:
        self.model = model
        self.id = request_id if request_id.startswith("msg_") else "msg_" + request_id
        self._started = False
        self._block: Any = None  # "thinking" | "text" | ("tool", index) | None
        self._index = -1
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None

    def encode(self, chunk: dict[str, Any]) -> bytes:
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        out = [] if self._started else [self._start()]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # Anthropic has a single choice
            out.extend(self._delta(choice.get("delta") or {}))
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return b"".join(out)

    def finish(self) -> bytes:
        out = [] if self._started else [self._start()]
        out.append(self._close())
        usage = native_usage(self._usage)
        out.append(_event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(self._finish), "stop_sequence": None},
            "usage": usage,
        }))
        out.append(_event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def error(self, err: Exception) -> bytes:
        return _event("error", error_body(err))

    def _start(self) -> bytes:
        self._started = True
        usage = native_usage(self._usage)
        usage["output_tokens"] = 0
        message: dict[str, Any] = {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage,
        }
        return _event("message_start", {"type": "message_start", "message": message}) + _event(
            "ping", {"type": "ping"}
        )

    def _delta(self, delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if delta.get("reasoning_content"):
            out.append(self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""}))
            out.append(self._block_delta({"type": "thinking_delta", "thinking": delta["reasoning_content"]}))
        if delta.get("thinking_signature"):
            out.append(self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""}))
            out.append(self._block_delta({"type": "signature_delta", "signature": delta["thinking_signature"]}))
            self._block = "signed"  # the signature ends a thinking block: more reasoning opens a new one
        if delta.get("content"):
            out.append(self._open("text", {"type": "text", "text": ""}))
            out.append(self._block_delta({"type": "text_delta", "text": delta["content"]}))
        for call in delta.get("tool_calls") or ():
            out.extend(self._tool_delta(call))
        return out

    def _tool_delta(self, call: dict[str, Any]) -> list[bytes]:
        fn = call.get("function") or {}
        key = ("tool", call.get("index", 0))
        out = []
        if self._block != key:
            block: dict[str, Any] = {"type": "tool_use", "id": call.get("id") or "toolu_" + uuid.uuid4().hex[:24],
                     "name": fn.get("name") or "", "input": {}}
            out.append(self._open(key, block))
        if fn.get("arguments"):
            out.append(self._block_delta({"type": "input_json_delta", "partial_json": fn["arguments"]}))
        return out

    def _open(self, kind: Any, block: dict[str, Any]) -> bytes:
        if self._block == kind:
            return b""
        closed = self._close()
        self._block, self._index = kind, self._index + 1
        return closed + _event(
            "content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}
        )

    def _close(self) -> bytes:
        if self._block is None:
            return b""
        self._block = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _block_delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})


def stream_encoder(model: str, request_id: str) -> StreamEncoderImpl:
    return StreamEncoderImpl(model, request_id)


# ---------------------------------------------------------------- passthrough accounting


class UsageTapImpl:
    """Reads usage from message_start (input side) and message_delta (cumulative output)."""

    __slots__ = ("_acc",)

    def __init__(self) -> None:
        self._acc = _UsageAcc()

    def feed(self, event: str | None, data: bytes) -> None:
        if b'"usage"' not in data:
            return
        ev = orjson.loads(data)
        if ev.get("type") == "message_start":
            self._acc.absorb((ev.get("message") or {}).get("usage"))
        elif ev.get("type") == "message_delta":
            self._acc.absorb(ev.get("usage"))

    def usage(self) -> dict[str, Any] | None:
        return self._acc.usage()


def usage_tap() -> UsageTapImpl:
    return UsageTapImpl()
