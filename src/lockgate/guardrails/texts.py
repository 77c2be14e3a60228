"""Where the text is: the text fields of a request (by route, in the client's own dialect), of a
non-streamed answer (by route), and of a canonical stream chunk.  Each is a ``Slot`` that can be read and
replaced, so a guardrail checks every text the provider or the client would see, and masks in place.

Requests: every message / turn of every role (system prompts included), string or text parts; tool
results; Responses ``instructions``; legacy ``prompt``; embeddings ``input``.  Answers: the assistant's
text, and the arguments of tool calls (as text: JSON in a string, or the JSON object's strings).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Slot:
    holder: dict[str, Any] | list[Any]
    key: str | int
    json: bool = False  # the text is JSON (tool-call arguments): a value put back into it is JSON-escaped

    def get(self) -> str:
        return self.holder[self.key]  # type: ignore[index]

    def set(self, value: str) -> None:
        self.holder[self.key] = value  # type: ignore[index]


def _text_of(holder: dict[str, Any] | list[Any], key: str | int) -> Iterator[Slot]:
    """A string, or a list of parts whose text parts are yielded."""
    value = holder[key]  # type: ignore[index]
    if isinstance(value, str):
        yield Slot(holder, key)
    elif isinstance(value, list):
        for index, part in enumerate(value):
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    yield Slot(part, "text")
                if part.get("type") == "tool_result" and "content" in part:
                    yield from _text_of(part, "content")
            elif isinstance(part, str):
                yield Slot(value, index)


def _strings(holder: dict[str, Any] | list[Any]) -> Iterator[Slot]:
    """Every string inside a JSON value (tool-call arguments given as an object)."""
    items = holder.items() if isinstance(holder, dict) else enumerate(holder)
    for key, value in items:
        if isinstance(value, str):
            yield Slot(holder, key)
        elif isinstance(value, dict | list):
            yield from _strings(value)


def request_slots(route: str, body: dict[str, Any]) -> list[Slot]:
    out: list[Slot] = []
    if route in ("chat", "messages", "count_tokens"):
        if "system" in body and isinstance(body["system"], str | list):
            out += _text_of(body, "system")
        for message in body.get("messages") or []:
            if isinstance(message, dict) and "content" in message:
                out += _text_of(message, "content")
    elif route in ("generate", "gemini_count_tokens"):
        system = body.get("systemInstruction") or body.get("system_instruction")
        turns = ([system] if isinstance(system, dict) else []) + list(body.get("contents") or [])
        for turn in turns:
            if isinstance(turn, dict) and isinstance(turn.get("parts"), list):
                out += _text_of(turn, "parts")
    elif route == "responses":
        if isinstance(body.get("instructions"), str):
            out.append(Slot(body, "instructions"))
        if isinstance(body.get("input"), str):
            out.append(Slot(body, "input"))
        else:
            for item in body.get("input") or []:
                if isinstance(item, dict) and "content" in item:
                    out += _text_of(item, "content")
                elif isinstance(item, dict) and isinstance(item.get("output"), str):  # function_call_output
                    out.append(Slot(item, "output"))
    elif route == "completions" and "prompt" in body:
        out += _text_of(body, "prompt")
    elif route == "embeddings" and "input" in body:
        inputs = body["input"]
        if isinstance(inputs, str) or (isinstance(inputs, list) and all(isinstance(i, str) for i in inputs)):
            out += _text_of(body, "input")
    return out


def answer_slots(route: str, body: dict[str, Any]) -> list[Slot]:
    """The text of a non-streamed answer in the client's dialect."""
    out: list[Slot] = []
    if route == "chat":
        for choice in body.get("choices") or []:
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict):
                continue
            if isinstance(message.get("content"), str):
                out.append(Slot(message, "content"))
            for call in message.get("tool_calls") or []:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    out.append(Slot(fn, "arguments", json=True))
    elif route == "completions":
        for choice in body.get("choices") or []:
            if isinstance(choice, dict) and isinstance(choice.get("text"), str):
                out.append(Slot(choice, "text"))
    elif route == "messages":
        for block in body.get("content") or []:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                out.append(Slot(block, "text"))
            elif isinstance(block, dict) and isinstance(block.get("input"), dict):
                out += _strings(block["input"])
    elif route == "generate":
        for candidate in body.get("candidates") or []:
            content = candidate.get("content") if isinstance(candidate, dict) else None
            for part in (content or {}).get("parts") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    out.append(Slot(part, "text"))
                elif isinstance(part, dict) and isinstance((part.get("functionCall") or {}).get("args"), dict):
                    out += _strings(part["functionCall"]["args"])
    elif route == "responses":
        for item in body.get("output") or []:
            if not isinstance(item, dict):
                continue
            for part in item.get("content") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    out.append(Slot(part, "text"))
            if isinstance(item.get("arguments"), str):
                out.append(Slot(item, "arguments", json=True))
        if isinstance(body.get("output_text"), str):
            out.append(Slot(body, "output_text"))
    return out


def chunk_slots(chunk: dict[str, Any]) -> list[Slot]:
    """The text of a canonical (OpenAI chat) stream chunk: content and tool-call argument deltas."""
    out: list[Slot] = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        if isinstance(delta.get("content"), str):
            out.append(Slot(delta, "content"))
        for call in delta.get("tool_calls") or []:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                out.append(Slot(fn, "arguments"))
    return out
