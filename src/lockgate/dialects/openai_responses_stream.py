"""Responses API streams, both directions.

Every event is ``event: <type>`` + ``data: {"type": <type>, "sequence_number": n, ...}``.
The sequence for one answer:

    response.created, response.in_progress
    per output item:  response.output_item.added
      message:        response.content_part.added, response.output_text.delta*,
                      response.output_text.done, response.content_part.done
      reasoning:      response.reasoning_summary_part.added, response.reasoning_summary_text.delta*,
                      response.reasoning_summary_text.done, response.reasoning_summary_part.done
      function_call:  response.function_call_arguments.delta*, response.function_call_arguments.done
                      response.output_item.done
    response.completed (or response.incomplete), with the full response and usage

* ``StreamEncoderImpl`` (front door) renders canonical chunks as that sequence;
  items are opened as their first delta arrives and closed when another kind starts.
* ``StreamDecoderImpl`` (provider side) turns it back into canonical chunks.
* ``UsageTapImpl`` reads usage from the final event of a passthrough stream.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import LockgateError, UpstreamError
from ..transport.sse import encode_event
from .openai_responses import (
    call_item,
    canonical_usage,
    finish_of,
    message_item,
    new_id,
    response_object,
)

FINAL_EVENTS = ("response.completed", "response.incomplete")


class StreamEncoderImpl:
    def __init__(self, model: str, request_id: str) -> None:
        self.model = model
        self.id = "resp_" + request_id
        self.seq = 0
        self.started = False
        self.items: list[dict[str, Any]] = []  # output items by output_index
        self.open: dict[str, Any] | None = None  # the item being streamed: kind, index, id, text
        self.calls: dict[int, dict[str, Any]] = {}  # canonical tool index -> open state
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    # -- framing

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return encode_event(orjson.dumps(data), kind)

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        resp = response_object(self.id, self.model, [], None, None, status="in_progress")
        return self._event("response.created", response=resp) + self._event("response.in_progress", response=resp)

    # -- contract

    def encode(self, chunk: dict[str, Any]) -> bytes:
        out = self._start()
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # the Responses API has one output list: only the first choice is rendered
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                out += self._delta("reasoning", delta["reasoning_content"])
            if delta.get("content"):
                out += self._delta("message", delta["content"])
            for tc in delta.get("tool_calls") or ():
                out += self._call(tc)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> bytes:
        out = self._start() + self._close()
        resp = response_object(self.id, self.model, self.items, self.finish_reason, self.usage)
        kind = "response.incomplete" if resp["status"] == "incomplete" else "response.completed"
        return out + self._event(kind, response=resp)

    def error(self, err: Exception) -> bytes:
        if isinstance(err, LockgateError):
            fields = {"code": err.code or err.type, "message": err.message, "param": err.param}
        else:
            fields = {"code": "server_error", "message": "internal error", "param": None}
        return self._event("error", **fields)

    # -- items

    def _open_item(self, kind: str, item: dict[str, Any]) -> bytes:
        index = len(self.items)
        self.items.append(item)
        self.open = {"kind": kind, "index": index, "id": item["id"], "text": ""}
        return self._event("response.output_item.added", output_index=index, item=item)

    def _delta(self, kind: str, text: str) -> bytes:
        out = b""
        if self.open is None or self.open["kind"] != kind:
            out += self._close()
            if kind == "message":
                out += self._open_item(kind, message_item(new_id("msg_"), "", status="in_progress"))
                out += self._event("response.content_part.added", **self._where(content_index=0),
                                   part={"type": "output_text", "text": "", "annotations": []})
            else:
                out += self._open_item(kind, {"type": "reasoning", "id": new_id("rs_"), "summary": []})
                out += self._event("response.reasoning_summary_part.added", **self._where(summary_index=0),
                                   part={"type": "summary_text", "text": ""})
        assert self.open is not None
        self.open["text"] += text
        if kind == "message":
            return out + self._event("response.output_text.delta", **self._where(content_index=0),
                                     delta=text, logprobs=[])
        return out + self._event("response.reasoning_summary_text.delta", **self._where(summary_index=0), delta=text)

    def _call(self, tc: dict[str, Any]) -> bytes:
        out = b""
        n = tc.get("index", 0)
        fn = tc.get("function") or {}
        if n not in self.calls:
            out += self._close()
            item = call_item(new_id("fc_"), tc.get("id") or new_id("call_"), fn.get("name") or "", "", "in_progress")
            out += self._open_item("function_call", item)
            assert self.open is not None
            self.calls[n] = self.open
        state = self.calls[n]
        piece = fn.get("arguments") or ""
        if piece and state is self.open:
            state["text"] += piece
            out += self._event("response.function_call_arguments.delta", item_id=state["id"],
                               output_index=state["index"], delta=piece)
        return out

    def _where(self, **extra: int) -> dict[str, Any]:
        assert self.open is not None
        return {"item_id": self.open["id"], "output_index": self.open["index"], **extra}

    def _close(self) -> bytes:
        state, self.open = self.open, None
        if state is None:
            return b""
        index, text = state["index"], state["text"]
        where = {"item_id": state["id"], "output_index": index}
        if state["kind"] == "message":
            part = {"type": "output_text", "text": text, "annotations": []}
            out = self._event("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            out += self._event("response.content_part.done", **where, content_index=0, part=part)
            item = message_item(state["id"], text)
        elif state["kind"] == "reasoning":
            part = {"type": "summary_text", "text": text}
            out = self._event("response.reasoning_summary_text.done", **where, summary_index=0, text=text)
            out += self._event("response.reasoning_summary_part.done", **where, summary_index=0, part=part)
            item = {"type": "reasoning", "id": state["id"], "summary": [part]}
        else:
            prev = self.items[index]
            out = self._event("response.function_call_arguments.done", **where, name=prev["name"], arguments=text)
            item = call_item(state["id"], prev["call_id"], prev["name"], text, "completed")
        self.items[index] = item
        return out + self._event("response.output_item.done", output_index=index, item=item)


class StreamDecoderImpl:
    """Responses events -> canonical chunks."""

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._calls: dict[str, int] = {}  # item id -> tool index
        self._usage: dict[str, Any] | None = None

    def feed(self, event: str | None, data: bytes) -> list[dict[str, Any]]:
        if not data or data == b"[DONE]":
            return []
        obj = orjson.loads(data)
        kind = obj.get("type") or event
        if kind == "response.created":
            resp = obj.get("response") or {}
            self._id, self._model = resp.get("id") or "", resp.get("model") or ""
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "response.output_text.delta":
            return [self._chunk({"content": obj.get("delta") or ""})]
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return [self._chunk({"reasoning_content": obj.get("delta") or ""})]
        if kind == "response.output_item.added" and (obj.get("item") or {}).get("type") == "function_call":
            return [self._call_start(obj["item"])]
        if kind == "response.function_call_arguments.delta":
            n = self._calls.get(obj.get("item_id") or "", 0)
            return [self._chunk({"tool_calls": [{"index": n, "function": {"arguments": obj.get("delta") or ""}}]})]
        if kind in FINAL_EVENTS:
            return self._final(obj.get("response") or {})
        if kind in ("response.failed", "error"):
            raise _stream_error(obj)
        return []

    def usage(self) -> dict[str, Any] | None:
        return self._usage

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "model": self._model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def _call_start(self, item: dict[str, Any]) -> dict[str, Any]:
        n = self._calls[item.get("id") or ""] = len(self._calls)
        call = {"index": n, "id": item.get("call_id"), "type": "function",
                "function": {"name": item.get("name") or "", "arguments": item.get("arguments") or ""}}
        return self._chunk({"tool_calls": [call]})

    def _final(self, resp: dict[str, Any]) -> list[dict[str, Any]]:
        chunks = [self._chunk({}, finish_of(resp, bool(self._calls)))]
        self._usage = canonical_usage(resp.get("usage"))
        if self._usage:
            chunks.append({"id": self._id, "object": "chat.completion.chunk", "model": self._model,
                           "choices": [], "usage": self._usage})
        return chunks


def _stream_error(obj: dict[str, Any]) -> UpstreamError:
    err = obj if obj.get("type") == "error" else ((obj.get("response") or {}).get("error") or {})
    code = str(err.get("code") or "")
    status = 429 if code == "rate_limit_exceeded" else 502
    return UpstreamError(str(err.get("message") or "upstream stream error"), status=status)


class UsageTapImpl:
    __slots__ = ("_usage",)

    def __init__(self) -> None:
        self._usage: dict[str, Any] | None = None

    def feed(self, event: str | None, data: bytes) -> None:
        if (event is not None and event not in FINAL_EVENTS) or b'"usage"' not in data:
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if obj.get("type") in FINAL_EVENTS:
            self._usage = canonical_usage((obj.get("response") or {}).get("usage")) or self._usage

    def usage(self) -> dict[str, Any] | None:
        return self._usage
