"""Gemini streams (``streamGenerateContent?alt=sse``), both directions.

Every SSE ``data:`` event is a complete GenerateContentResponse fragment: the
candidates' new parts, ``finishReason`` on the last one, ``usageMetadata`` on
several (the last is the full count).  There is no terminator event.

* ``StreamDecoderImpl`` (provider side) turns fragments into canonical chunks.
* ``StreamEncoderImpl`` (front door) renders canonical chunks as fragments;
  tool-call arguments are buffered and sent as whole functionCall parts with the
  finishing fragment, since Gemini never streams partial arguments by default.
* ``UsageTapImpl`` reads usage from a passthrough stream without decoding it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..errors import UpstreamError
from ..transport.sse import encode_event
from .gemini import (
    GEMINI_FINISH,
    call_id,
    error_body,
    error_type,
    finish_reason,
    g,
    parse_args,
    usage_from_metadata,
    usage_metadata,
)


class StreamDecoderImpl:
    def __init__(self) -> None:
        self._meta: dict[str, Any] | None = None
        self._id = ""
        self._model = ""
        self._created = int(time.time())
        self._started: set[int] = set()
        self._finished: set[int] = set()
        self._calls: dict[int, int] = {}  # candidate index -> tool calls seen
        self._usage_sent = False

    def feed(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        if not data or data == b"[DONE]":
            return []
        obj = orjson.loads(data)
        if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
            raise _stream_error(obj["error"])
        self._id = self._id or g(obj, "responseId", "")
        self._model = g(obj, "modelVersion", self._model)
        if usage_from_metadata(g(obj, "usageMetadata")):
            self._meta = g(obj, "usageMetadata")
        chunks: list[dict[str, Any]] = []
        candidates = g(obj, "candidates", [])
        for position, cand in enumerate(candidates):
            chunks.extend(self._candidate(cand, position))
        if not candidates and g(g(obj, "promptFeedback", {}), "blockReason"):
            chunks.extend(self._blocked())
        if self._finished >= self._started and self._finished and self._meta and not self._usage_sent:
            self._usage_sent = True
            chunks.append({**self._chunk_base(), "choices": [], "usage": self.usage()})
        return chunks

    def usage(self) -> dict[str, Any] | None:
        return usage_from_metadata(self._meta)

    def _chunk_base(self) -> dict[str, Any]:
        return {
            "id": self._id or "chatcmpl-gemini",
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**self._chunk_base(), "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}

    def _start(self, index: int) -> list[dict[str, Any]]:
        if index in self._started:
            return []
        self._started.add(index)
        return [self._chunk(index, {"role": "assistant", "content": ""})]

    def _blocked(self) -> list[dict[str, Any]]:
        self._finished.add(0)
        return [*self._start(0), self._chunk(0, {}, "content_filter")]

    def _candidate(self, cand: dict[str, Any], position: int) -> list[dict[str, Any]]:
        index = g(cand, "index", position)
        chunks = self._start(index)
        for part in g(g(cand, "content", {}), "parts", []):
            sig = g(part, "thoughtSignature")
            if sig:  # the signature closes the thinking that precedes this part
                chunks.append(self._chunk(index, {"thinking_signature": sig}))
            delta = self._part_delta(index, part)
            if delta:
                chunks.append(self._chunk(index, delta))
        reason = g(cand, "finishReason")
        if reason and index not in self._finished:
            self._finished.add(index)
            chunks.append(self._chunk(index, {}, finish_reason(reason, self._calls.get(index, 0) > 0)))
        return chunks

    def _part_delta(self, index: int, part: dict[str, Any]) -> dict[str, Any] | None:
        fc = g(part, "functionCall")
        if fc:
            n = self._calls.get(index, 0)
            self._calls[index] = n + 1
            name, args = g(fc, "name", ""), g(fc, "args", {})
            call = {
                "index": n,
                "id": g(fc, "id") or call_id(name, args, index, n),
                "type": "function",
                "function": {"name": name, "arguments": orjson.dumps(args).decode()},
            }
            return {"tool_calls": [call]}
        text = g(part, "text")
        if not text:
            return None
        return {"reasoning_content": text} if part.get("thought") else {"content": text}


def _stream_error(err: dict[str, Any]) -> UpstreamError:
    code = err.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 502
    message = str(err.get("message") or "upstream stream error")
    return UpstreamError(message, status=status, type=error_type(err, status))


class StreamEncoderImpl:
    """Canonical chunks -> ``data: <GenerateContentResponse fragment>`` events."""

    def __init__(self, model: str, request_id: str) -> None:
        self.model = model
        self.response_id = request_id
        self._calls: dict[int, dict[int, dict[str, Any]]] = {}  # choice -> tool index -> call
        self._sig: dict[int, str] = {}  # choice -> signature waiting for the next part

    def encode(self, chunk: dict[str, Any]) -> bytes:
        candidates = [c for c in map(self._candidate, chunk.get("choices") or ()) if c]
        usage = chunk.get("usage")
        if not candidates and not usage:
            return b""
        return self._event(candidates, usage)

    def finish(self) -> bytes:
        """Gemini has no terminator; only calls left unflushed by a missing finish go out."""
        candidates = []
        for index in sorted(self._calls):
            parts = self._flush(index)
            if parts:
                candidates.append({"content": {"role": "model", "parts": parts}, "index": index})
        return self._event(candidates, None) if candidates else b""

    def error(self, err: Exception) -> bytes:
        return encode_event(orjson.dumps(error_body(err)))

    def _event(self, candidates: list[dict[str, Any]], usage: dict[str, Any] | None) -> bytes:
        body: dict[str, Any] = {"candidates": candidates} if candidates else {}
        if usage:
            body["usageMetadata"] = usage_metadata(usage)
        body["modelVersion"] = self.model
        body["responseId"] = self.response_id
        return encode_event(orjson.dumps(body))

    def _candidate(self, choice: dict[str, Any]) -> dict[str, Any] | None:
        index = choice.get("index", 0)
        delta = choice.get("delta") or {}
        parts: list[dict[str, Any]] = []
        if delta.get("thinking_signature"):
            self._sig[index] = delta["thinking_signature"]
        if delta.get("reasoning_content"):
            parts.append(self._signed(index, {"text": delta["reasoning_content"], "thought": True}))
        if delta.get("content"):
            parts.append(self._signed(index, {"text": delta["content"]}))
        for tc in delta.get("tool_calls") or ():
            self._buffer_call(index, tc)
        finish = choice.get("finish_reason")
        if finish:
            parts.extend(self._flush(index))
        if not parts and not finish:
            return None
        cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}} if parts else {}
        if finish:
            cand["finishReason"] = GEMINI_FINISH.get(finish, "STOP")
        cand["index"] = index
        return cand

    def _signed(self, index: int, part: dict[str, Any]) -> dict[str, Any]:
        sig = self._sig.pop(index, None)
        if sig:
            part["thoughtSignature"] = sig
        return part

    def _buffer_call(self, index: int, tc: dict[str, Any]) -> None:
        calls = self._calls.setdefault(index, {})
        fn = tc.get("function") or {}
        call = calls.setdefault(tc.get("index", len(calls)), {"id": None, "name": "", "args": ""})
        call["id"] = tc.get("id") or call["id"]
        call["name"] = fn.get("name") or call["name"]
        call["args"] += fn.get("arguments") or ""

    def _flush(self, index: int) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for _, call in sorted(self._calls.pop(index, {}).items()):
            fc: dict[str, Any] = {"name": call["name"], "args": parse_args(call["args"])}
            if call["id"]:
                fc["id"] = call["id"]
            parts.append(self._signed(index, {"functionCall": fc}) if not parts else {"functionCall": fc})
        sig = self._sig.pop(index, None)
        if sig:  # a signature nothing followed: Gemini's own shape is an empty text part
            parts.append({"text": "", "thoughtSignature": sig})
        return parts


class UsageTapImpl:
    __slots__ = ("_meta",)

    def __init__(self) -> None:
        self._meta: dict[str, Any] | None = None

    def feed(self, event: str | None, data: bytes) -> None:
        if b"usageMetadata" not in data and b"usage_metadata" not in data:
            return
        try:
            meta = g(orjson.loads(data), "usageMetadata")
        except orjson.JSONDecodeError:
            return
        if usage_from_metadata(meta):
            self._meta = meta

    def usage(self) -> dict[str, Any] | None:
        return usage_from_metadata(self._meta)
