"""Bedrock ConverseStream events -> canonical chunks, plus the small wire tables
(stop reasons, usage) shared with ``bedrock_converse``.

The stream arrives in AWS event-stream framing (``transport.eventstream``
splits it); each message's ``:event-type`` names the event and its payload is
that event's JSON:

    messageStart        {"role": "assistant"}
    contentBlockStart   {"contentBlockIndex": i, "start": {"toolUse": {"toolUseId", "name"}}}
    contentBlockDelta*  {"contentBlockIndex": i, "delta": {"text"} | {"toolUse": {"input": <json piece>}}
                                                          | {"reasoningContent": {"text"|"signature"|...}}}
    contentBlockStop    {"contentBlockIndex": i}
    messageStop         {"stopReason": ...}
    metadata            {"usage": {...}, "metrics": {"latencyMs"}}

Bedrock pads payloads with a random ``"p"`` field, which is ignored.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str:
    return _FINISH.get(stop_reason or "", "stop")


def canonical_usage(native: dict[str, Any]) -> dict[str, Any]:
    """Converse usage -> canonical: ``inputTokens`` excludes cache reads and writes."""
    read = native.get("cacheReadInputTokens") or 0
    written = native.get("cacheWriteInputTokens") or 0
    prompt = (native.get("inputTokens") or 0) + read + written
    completion = native.get("outputTokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
        "cache_creation_input_tokens": written,
    }


class StreamDecoderImpl:
    def __init__(self) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self._usage: dict[str, Any] | None = None
        self._tools: dict[int, int] = {}  # content block index -> tool_calls index

    def feed(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        handler = _HANDLERS.get(event or "")
        if handler is None or not data:
            return []
        return handler(self, orjson.loads(data))

    def usage(self) -> dict[str, Any] | None:
        return self._usage

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": "",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def _message_start(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._chunk({"role": "assistant"})]

    def _block_start(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        use = (ev.get("start") or {}).get("toolUse")
        if not use:
            return []
        index = self._tools[ev.get("contentBlockIndex", 0)] = len(self._tools)
        call = {"index": index, "id": use.get("toolUseId"), "type": "function",
                "function": {"name": use.get("name"), "arguments": ""}}
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        delta = ev.get("delta") or {}
        if "text" in delta:
            return [self._chunk({"content": delta["text"]})] if delta["text"] else []
        if "toolUse" in delta:
            piece = (delta["toolUse"] or {}).get("input")
            if not piece:
                return []
            index = self._tools.get(ev.get("contentBlockIndex", 0), 0)
            return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})]
        reasoning = delta.get("reasoningContent") or {}
        if reasoning.get("text"):
            return [self._chunk({"reasoning_content": reasoning["text"]})]
        if reasoning.get("signature"):
            return [self._chunk({"thinking_signature": reasoning["signature"]})]
        return []  # redacted reasoning, citations: no canonical chunk form

    def _message_stop(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._chunk({}, finish_reason(ev.get("stopReason")))]

    def _metadata(self, ev: dict[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(ev.get("usage"), dict):
            return []
        self._usage = canonical_usage(ev["usage"])
        return [{"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": "",
                 "choices": [], "usage": self._usage}]


_HANDLERS = {
    "messageStart": StreamDecoderImpl._message_start,
    "contentBlockStart": StreamDecoderImpl._block_start,
    "contentBlockDelta": StreamDecoderImpl._block_delta,
    "messageStop": StreamDecoderImpl._message_stop,
    "metadata": StreamDecoderImpl._metadata,
}


def stream_decoder() -> StreamDecoderImpl:
    return StreamDecoderImpl()


class UsageTapImpl:
    """Usage of a Converse stream: only the ``metadata`` event holds it."""

    __slots__ = ("_usage",)

    def __init__(self) -> None:
        self._usage: dict[str, Any] | None = None

    def feed(self, event: str | None, data: bytes) -> None:
        if event == "metadata":
            usage = orjson.loads(data).get("usage")
            if isinstance(usage, dict):
                self._usage = canonical_usage(usage)

    def usage(self) -> dict[str, Any] | None:
        return self._usage


def usage_tap() -> UsageTapImpl:
    return UsageTapImpl()
