"""What a request's span says about its answer: the finish reasons, and (opt-in) the messages.

``AnswerTap`` is a stage tap (stages/__init__.py) that tracing adds to each request: it sees the bytes
the client gets and keeps the finish reasons it finds (``finish_reason``, ``stop_reason``,
``finishReason``, ``stopReason``: every dialect's field).  With content export on it also keeps the
answer's bytes (bounded), turned into ``gen_ai.output.messages`` when the span ends.

The prompt is read from ``ctx.body``: what the guardrails stage left there, so a masked prompt is
exported masked.  Both follow the GenAI conventions' JSON form:
``[{"role": ..., "parts": [{"type": "text", "content": ...}]}]``; each attribute is cut at
``MAX_CHARS``.  Only text is exported: other parts keep their type, never their data.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

MAX_CHARS = 32_768  # per attribute
MAX_KEPT = 256 * 1024  # answer bytes kept for gen_ai.output.messages
MAX_REASONS = 8
_REASON = re.compile(rb'"(?:finish_reason|stop_reason|finishReason|stopReason)"\s*:\s*"([^"\\]{1,64})"')


class AnswerTap:
    """Finish reasons (and, when ``keep``, the answer's bytes) of one request; holds no reference to it."""

    __slots__ = ("keep", "kept", "reasons", "size")

    def __init__(self, keep: bool) -> None:
        self.reasons: list[str] = []
        self.keep = keep
        self.kept: list[bytes] = []
        self.size = 0

    def __call__(self, data: bytes) -> None:
        if b'eason":"' in data or b'eason": "' in data:  # a reason with a value (not null), compact or spaced
            for match in _REASON.finditer(data):
                reason = match.group(1).decode("utf-8", "replace")
                if reason not in self.reasons and len(self.reasons) < MAX_REASONS:
                    self.reasons.append(reason)
        if self.keep and self.size < MAX_KEPT:
            self.kept.append(data[: MAX_KEPT - self.size])
            self.size += len(data)


def input_messages(body: dict[str, Any]) -> str | None:
    """``gen_ai.input.messages`` from a request body of any front door (chat, messages, responses,
    completions, Gemini)."""
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        out.append({"role": "system", "parts": _parts(system)})
    messages = body.get("messages")
    if isinstance(messages, list):
        out += [_message(m) for m in messages if isinstance(m, dict)]
    contents = body.get("contents")  # Gemini
    if isinstance(contents, list):
        out += [{"role": c.get("role") or "user", "parts": _parts(c.get("parts"))}
                for c in contents if isinstance(c, dict)]
    for field in ("input", "prompt"):  # responses, completions (embeddings' input too)
        value = body.get(field)
        if isinstance(value, str | list) and not messages:
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                out += [_message(v) for v in value]
            else:
                out.append({"role": "user", "parts": _parts(value)})
    return _dump(out) if out else None


def output_messages(tap: AnswerTap, stream: bool) -> str | None:
    """``gen_ai.output.messages`` from the answer's bytes as the client got them."""
    raw = b"".join(tap.kept)
    texts: list[str] = []
    if stream:
        for line in raw.split(b"\n"):
            line = line.strip()
            if line.startswith(b"data:"):
                line = line[5:].strip()
            if line.startswith(b"{"):
                try:
                    texts += _answer_texts(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
    else:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if isinstance(data, dict):
            texts = _answer_texts(data)
    message: dict[str, Any] = {"role": "assistant", "parts": [{"type": "text", "content": "".join(texts)}]}
    if tap.reasons:
        message["finish_reason"] = tap.reasons[0]
    return _dump([message])


def _answer_texts(obj: Any) -> list[str]:
    """The text of an answer or of one stream chunk, in any dialect."""
    if not isinstance(obj, dict):
        return []
    out: list[str] = []
    for choice in obj.get("choices") or ():  # OpenAI chat / completions, whole or chunk
        if isinstance(choice, dict):
            msg = choice.get("message") or choice.get("delta") or {}
            if isinstance(msg, dict) and isinstance(msg.get("content"), str):
                out.append(msg["content"])
            elif isinstance(choice.get("text"), str):
                out.append(choice["text"])
    content = obj.get("content")  # Anthropic, whole
    if isinstance(content, list):
        out += [b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)]
    delta = obj.get("delta")
    if isinstance(delta, dict) and isinstance(delta.get("text"), str):  # Anthropic stream
        out.append(delta["text"])
    elif isinstance(delta, str) and obj.get("type") == "response.output_text.delta":  # Responses stream
        out.append(delta)
    for item in obj.get("output") or ():  # Responses, whole
        if isinstance(item, dict):
            out += [p["text"] for p in item.get("content") or () if isinstance(p, dict) and isinstance(p.get("text"), str)]
    for candidate in obj.get("candidates") or ():  # Gemini
        parts = (candidate.get("content") or {}).get("parts") if isinstance(candidate, dict) else None
        out += [p["text"] for p in parts or () if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return out


def _message(m: dict[str, Any]) -> dict[str, Any]:
    return {"role": m.get("role") or "user", "parts": _parts(m.get("content", m.get("parts")))}


def _parts(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"type": "text", "content": value}]
    parts: list[dict[str, Any]] = []
    for part in value if isinstance(value, list) else ():
        if isinstance(part, str):
            parts.append({"type": "text", "content": part})
        elif isinstance(part, dict):
            text = part.get("text")
            if isinstance(text, str):
                parts.append({"type": "text", "content": text})
            else:
                parts.append({"type": str(part.get("type") or "other")})
    return parts


def _dump(messages: list[dict[str, Any]]) -> str:
    text = orjson.dumps(messages).decode()
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS]
